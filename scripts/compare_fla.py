"""Side by side with flash-linear-attention on a GPU: every prefill row of a
suite through gdn.torch and fla's chunk_gated_delta_rule on the same inputs in
one process. Checks that the outputs agree, measures each library's error
against a float64 recurrence on the small rows, times both as plain calls and
as CUDA-graph replay, and writes a JSON file and a PNG chart of the speedups.

    PYTHONPATH=.peers/flash-linear-attention python3 scripts/compare_fla.py \
        --suite bench/suite.json --json OUT.json --png OUT.png

flash-linear-attention is read from PYTHONPATH (fetched into a git-ignored
folder; never committed). Needs PyTorch with CUDA, and matplotlib for --png.
--fla-only times flash-linear-attention's calls alone (gdn is not imported):
for profiling its kernels, e.g. under Nsight Compute.
"""

import argparse
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

gdn = gt = None  # gdn and gdn.torch, imported by main() unless --fla-only

REFERENCE_MAX_TOKENS = 4096  # rows this small also get the float64 recurrence


def inputs(row, seed):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    lens = row["seq_lens"]
    T, N = sum(lens), len(lens)
    H, HV, K, V = row["h"], row["hv"], row["k"], row["v"]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda")

    q = randn(1, T, H, K).bfloat16()
    k = randn(1, T, H, K).bfloat16()
    v = randn(1, T, HV, V).bfloat16()
    g = torch.nn.functional.logsigmoid(randn(1, T, HV) + 4.0)  # log-space decay in (-inf, 0)
    beta = torch.sigmoid(randn(1, T, HV))
    h0 = 0.1 * randn(N, HV, K, V)
    cu = torch.tensor([0] + list(_cumsum(lens)), dtype=torch.int32, device="cuda")
    return q, k, v, g, beta, h0, cu


def _cumsum(xs):
    total = 0
    for x in xs:
        total += x
        yield total


def reference(q, k, v, g, beta, h0, cu):
    """float64 token recurrence on the GPU (DESIGN section 1), l2norm on q, k."""
    q, k, v, g, beta = (x[0].double() for x in (q, k, v, g, beta))
    q = q / torch.sqrt((q * q).sum(-1, keepdim=True) + 1e-6)
    k = k / torch.sqrt((k * k).sum(-1, keepdim=True) + 1e-6)
    HV, H = v.shape[1], q.shape[1]
    rep = HV // H
    q, k = q.repeat_interleave(rep, dim=1), k.repeat_interleave(rep, dim=1)
    scale = q.shape[-1] ** -0.5
    o = torch.empty_like(v)
    states = torch.empty_like(h0, dtype=torch.float64)
    bounds = cu.tolist()
    for n in range(len(bounds) - 1):
        S = h0[n].double().clone()  # [HV, K, V]
        for t in range(bounds[n], bounds[n + 1]):
            S = S * torch.exp(g[t])[:, None, None]
            u = beta[t][:, None] * (v[t] - torch.einsum("hkv,hk->hv", S, k[t]))
            S = S + k[t][:, :, None] * u[:, None, :]
            o[t] = torch.einsum("hkv,hk->hv", S, scale * q[t])
        states[n] = S
    return o, states


def rel(x, r):
    x, r = x.double(), r.double()
    return (((x - r) ** 2).sum() / (r ** 2).sum()).sqrt().item()


def fla_call(fla_fn, q, k, v, g, beta, h0, cu):
    """flash-linear-attention's call, with precomputed chunk indices where its
    signature takes them (a host synchronisation otherwise; not capturable)."""
    params = inspect.signature(fla_fn).parameters
    kwargs = dict(initial_state=h0, output_final_state=True, use_qk_l2norm_in_kernel=True, cu_seqlens=cu.long())
    if "chunk_indices" in params:
        from fla.ops.utils import prepare_chunk_indices

        kwargs["chunk_indices"] = prepare_chunk_indices(cu.long(), 64)
    if "cu_seqlens_cpu" in params:
        kwargs["cu_seqlens_cpu"] = cu.long().cpu()
    return lambda: fla_fn(q, k, v, g, beta, **kwargs)


def gdn_call(q, k, v, g, beta, h0, cu):
    """gdn's call with the host copy of cu_seqlens that fla_call gives fla."""
    host = cu.long().cpu()
    return lambda: gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                             use_qk_l2norm_in_kernel=True, cu_seqlens=cu, cu_seqlens_cpu=host)


def time_eager(fn, reps):
    """Median wall time of a plain call through its completion, in ms."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_graph(fn, reps, calls=1):
    """Median GPU time of one call as replay of a graph holding `calls`
    calls (the replay's time over `calls`), in ms (None when the call cannot
    be captured)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
    except Exception as e:  # noqa: BLE001 - report, do not hide, a capture failure
        print(f"  graph capture failed: {e}", file=sys.stderr)
        return None
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    graph.replay()
    times = []
    for _ in range(reps):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


DECODE_GRAPH_CALLS = 16  # a decode call is a few microseconds: time a graph of many


def decode_inputs(row, seed):
    """A decode row's tokens [N, L, ...], a state pool and N distinct rows of it."""
    gen = torch.Generator(device="cuda").manual_seed(seed)
    N, L, P = row["batch"], row["tokens_per_seq"], row["pool_slots"]
    H, HV, K, V = row["h"], row["hv"], row["k"], row["v"]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device="cuda")

    q = randn(N, L, H, K).bfloat16()
    k = randn(N, L, H, K).bfloat16()
    v = randn(N, L, HV, V).bfloat16()
    g = torch.nn.functional.logsigmoid(randn(N, L, HV) + 4.0)
    beta = torch.sigmoid(randn(N, L, HV))
    pool = 0.1 * randn(P, HV, K, V)
    idx = torch.randperm(P, generator=gen, device="cuda")[:N].int()
    return q, k, v, g, beta, pool, idx


def gdn_decode_call(q, k, v, g, beta, pool, idx):
    """gdn on the pool in place: decode for one token, verify with the pool
    updated and no intermediate states for more."""
    if q.shape[1] == 1:
        return lambda: gt.recurrent_update(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], pool, idx,
                                           use_qk_l2norm_in_kernel=True)
    return lambda: gt.verify(q, k, v, g, beta, pool, idx, use_qk_l2norm_in_kernel=True,
                             output_intermediate_states=False, update_state=True)[0]


def fla_decode_call(fla_fn, q, k, v, g, beta, h0):
    """fla's fused recurrence on a dense state (it takes no pool indices; the
    gather and scatter a pool would need are not timed). Its fourth to sixth
    parameters are g, gk, gv: beta must go by name."""
    return lambda: fla_fn(q, k, v, g=g, beta=beta, initial_state=h0, output_final_state=True,
                          use_qk_l2norm_in_kernel=True)


def compare_decode(row, seed, fla_fn, reps):
    q, k, v, g, beta, pool, idx = decode_inputs(row, seed)
    N, L = q.shape[0], q.shape[1]
    h0 = pool[idx.long()].clone()
    o_f, s_f = fla_decode_call(fla_fn, q, k, v, g, beta, h0)()
    o_g = gdn_decode_call(q, k, v, g, beta, pool, idx)()
    torch.cuda.synchronize()
    s_g = pool[idx.long()]
    o_g = o_g.reshape(o_f.shape)
    r = {"name": row["name"], "kind": "decode", "rel_diff_o": rel(o_g, o_f), "rel_diff_state": rel(s_g, s_f)}
    cu = torch.arange(0, N * L + 1, L, dtype=torch.int32, device="cuda")
    flat = [x.reshape((1, N * L) + tuple(x.shape[2:])) for x in (q, k, v, g, beta)]
    ro, rs = reference(*flat, h0, cu)
    r.update(gdn_err_o=rel(o_g.reshape(ro.shape), ro), gdn_err_state=rel(s_g, rs),
             fla_err_o=rel(o_f.reshape(ro.shape), ro), fla_err_state=rel(s_f, rs))
    gdn_fn, fla_fn_ = gdn_decode_call(q, k, v, g, beta, pool, idx), fla_decode_call(fla_fn, q, k, v, g, beta, h0)
    r["gdn_ms"] = time_eager(gdn_fn, reps)
    r["fla_ms"] = time_eager(fla_fn_, reps)
    r["gdn_ms_graph"] = time_graph(gdn_fn, reps, DECODE_GRAPH_CALLS)
    r["fla_ms_graph"] = time_graph(fla_fn_, reps, DECODE_GRAPH_CALLS)
    return r


def finish(r):
    """Adds a compared row's speedups and verdict, and prints it."""
    r["speedup_eager"] = r["fla_ms"] / r["gdn_ms"]
    if r["gdn_ms_graph"] and r["fla_ms_graph"]:
        r["speedup_graph"] = r["fla_ms_graph"] / r["gdn_ms_graph"]
    r["agree"] = r["rel_diff_o"] <= 1e-2 and r["rel_diff_state"] <= 1e-2
    err = f" | err o gdn {r['gdn_err_o']:.2e} fla {r['fla_err_o']:.2e}" if "gdn_err_o" in r else ""
    print(f"{r['name']:28s} gdn {r['gdn_ms']:.4f} ms (graph {r['gdn_ms_graph']}) | fla {r['fla_ms']:.4f} ms "
          f"(graph {r['fla_ms_graph']}) | diff o {r['rel_diff_o']:.2e} state {r['rel_diff_state']:.2e}{err}",
          flush=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="bench/suite.json")
    ap.add_argument("--rows", default="", help="comma-separated row names (default: every prefill row)")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json", required=True)
    ap.add_argument("--png", default="")
    ap.add_argument("--no-decode", action="store_true", help="prefill rows only")
    ap.add_argument("--fla-only", action="store_true", help="time flash-linear-attention's calls alone")
    args = ap.parse_args()
    global gdn, gt
    if not args.fla_only:
        import gdn
        import gdn.torch as gt

    from fla.ops.gated_delta_rule import chunk_gated_delta_rule as fla_fn
    from fla.ops.gated_delta_rule import fused_recurrent_gated_delta_rule as fla_recurrent

    suite = json.load(open(args.suite))
    rows = suite["prefill"]
    # fla's recurrence writes no intermediate states: verify rows that keep them have no counterpart.
    decode_rows = [r for r in suite.get("decode", []) if not r.get("intermediate_states")]
    if args.rows:
        wanted = args.rows.split(",")
        rows = [r for r in rows if r["name"] in wanted]
        decode_rows = [r for r in decode_rows if r["name"] in wanted]
    elif args.no_decode:
        decode_rows = []
    fla_commit = os.environ.get("FLA_COMMIT", "")
    try:
        fla_commit = fla_commit or subprocess.run(["git", "-C", inspect.getfile(fla_fn).rsplit("/fla/", 1)[0], "rev-parse",
                                     "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        fla_commit = ""
    out = {"device": torch.cuda.get_device_name(0), "gdn": gdn.version() if gdn else "not run",
           "fla_commit": fla_commit or "unknown",
           "timing": "ms: median wall time of a plain call through torch.cuda.synchronize(); ms_graph: median "
                     "CUDA-event time of one graph replay holding one call (prefill) or %d calls, over %d (decode); "
                     "the same inputs for both libraries, each given cu_seqlens' values on the host "
                     "(cu_seqlens_cpu); decode: gdn updates a pool in place at state_indices, "
                     "fla reads a dense initial state and writes a new final state" % (DECODE_GRAPH_CALLS,
                                                                                        DECODE_GRAPH_CALLS),
           "rows": []}
    def save():  # after every row: a call that runs out of time keeps the rows it finished
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)

    if args.fla_only:
        for i, row in enumerate(rows):
            fn = fla_call(fla_fn, *inputs(row, seed=i))
            out["rows"].append({"name": row["name"], "kind": "prefill", "fla_ms": time_eager(fn, args.reps),
                                "fla_ms_graph": time_graph(fn, args.reps)})
            print(out["rows"][-1], flush=True)
            save()
        for i, row in enumerate(decode_rows):
            q, k, v, g, beta, pool, idx = decode_inputs(row, 1000 + i)
            fn = fla_decode_call(fla_recurrent, q, k, v, g, beta, pool[idx.long()].clone())
            out["rows"].append({"name": row["name"], "kind": "decode", "fla_ms": time_eager(fn, args.reps),
                                "fla_ms_graph": time_graph(fn, args.reps, DECODE_GRAPH_CALLS)})
            print(out["rows"][-1], flush=True)
            save()
        return
    for i, row in enumerate(rows):
        q, k, v, g, beta, h0, cu = inputs(row, seed=i)
        o_g, s_g = gdn_call(q, k, v, g, beta, h0, cu)()
        o_f, s_f = fla_call(fla_fn, q, k, v, g, beta, h0, cu)()
        torch.cuda.synchronize()
        r = {"name": row["name"], "kind": "prefill", "rel_diff_o": rel(o_g, o_f), "rel_diff_state": rel(s_g, s_f)}
        if sum(row["seq_lens"]) <= REFERENCE_MAX_TOKENS:
            ro, rs = reference(q, k, v, g, beta, h0, cu)
            r.update(gdn_err_o=rel(o_g[0], ro), gdn_err_state=rel(s_g, rs), fla_err_o=rel(o_f[0], ro),
                     fla_err_state=rel(s_f, rs))
        r["gdn_ms"] = time_eager(gdn_call(q, k, v, g, beta, h0, cu), args.reps)
        r["fla_ms"] = time_eager(fla_call(fla_fn, q, k, v, g, beta, h0, cu), args.reps)
        r["gdn_ms_graph"] = time_graph(gdn_call(q, k, v, g, beta, h0, cu), args.reps)
        r["fla_ms_graph"] = time_graph(fla_call(fla_fn, q, k, v, g, beta, h0, cu), args.reps)
        out["rows"].append(finish(r))
        save()
    for i, row in enumerate(decode_rows):
        out["rows"].append(finish(compare_decode(row, 1000 + i, fla_recurrent, args.reps)))
        save()
    graphs = [r["speedup_graph"] for r in out["rows"] if "speedup_graph" in r]
    prefill_graphs = [r["speedup_graph"] for r in out["rows"] if "speedup_graph" in r and r.get("kind") != "decode"]
    if prefill_graphs:
        out["geomean_speedup_graph"] = math.exp(sum(math.log(s) for s in prefill_graphs) / len(prefill_graphs))
    save()
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r["name"] for r in out["rows"] if "speedup_graph" in r]
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(names) + 1.5))
        ax.barh(names, graphs, color=["tab:green" if s >= 1 else "tab:red" for s in graphs])
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xlabel("speedup of gdn over flash-linear-attention (CUDA-graph replay)")
        ax.set_title(f"{out['device']}: gdn {out['gdn']} vs fla {out['fla_commit']}")
        ax.invert_yaxis()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
    return 0 if all(r["agree"] for r in out["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
