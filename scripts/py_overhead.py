"""Where a plain (eager) Python prefill call spends its time: the gdn.torch
custom op (also given cu_seqlens_cpu, as flash-linear-attention takes it),
the gdn package function it wraps, and the extension call alone
with prebuilt outputs (the library plus reading the tensors); each end to
end (through torch.cuda.synchronize()) and as host time only (no
synchronisation). "op, Python alone" is the op's host time with the
extension stubbed out: the Python side of a call without the library;
"extension, chunk_meta" the extension call with GDN_CUDA_INLINE_OFFSETS=0
(one sequence's inline offsets off, same run).

    python3 scripts/py_overhead.py [--row "q3n-tp1 1x64"] [--reps 200]
    python3 scripts/py_overhead.py --device cpu [--dims 1,1,16,16] [--reps 5000]

On the CPU (no synchronisation, so one number per layer) the same Python
and binding glue runs; --dims H,HV,K,V shrinks the heads (default 1,1,16,16
there) so that the kernel's time does not hide the glue's.
"""

import argparse
import json
import os
import statistics
import time

import torch

import gdn
import gdn.torch as gt
from gdn import _gdn


def median_us(fn, reps, cuda, sync=True):
    for _ in range(max(10, reps // 20)):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if cuda and sync:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


class _NoExtension:
    """Stands in for the extension: what is left is the Python side of a call
    (argument handling, output allocation), without the library."""

    def run(self, *args):
        pass


def python_alone_us(fn, reps, cuda):
    ext, gdn._gdn = gdn._gdn, _NoExtension()
    try:
        return median_us(fn, reps, cuda, sync=False)
    finally:
        gdn._gdn = ext


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="bench/suite.json")
    ap.add_argument("--row", default="q3n-tp1 1x64")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--dims", help="H,HV,K,V instead of the row's (default on the CPU: 1,1,16,16)")
    ap.add_argument("--reps", type=int)
    args = ap.parse_args()
    row = next(r for r in json.load(open(args.suite))["prefill"] if r["name"] == args.row)
    T, H, HV, K, V = sum(row["seq_lens"]), row["h"], row["hv"], row["k"], row["v"]
    dev = args.device
    dims = args.dims or ("1,1,16,16" if dev == "cpu" else None)
    if dims:
        H, HV, K, V = (int(x) for x in dims.split(","))
    reps = args.reps or (5000 if dev == "cpu" else 200)
    q = torch.randn(1, T, H, K, device=dev).bfloat16()
    k = torch.randn(1, T, H, K, device=dev).bfloat16()
    v = torch.randn(1, T, HV, V, device=dev).bfloat16()
    g = torch.nn.functional.logsigmoid(torch.randn(1, T, HV, device=dev) + 4.0)
    beta = torch.sigmoid(torch.randn(1, T, HV, device=dev))
    lens = row["seq_lens"]
    cu = torch.tensor([0] + [sum(lens[: i + 1]) for i in range(len(lens))], dtype=torch.int32, device=dev)
    h0 = 0.1 * torch.randn(len(lens), HV, K, V, device=dev)

    op = lambda: gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,  # noqa: E731
                                           use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    pkg = lambda: gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0,  # noqa: E731
                                             output_final_state=True, use_qk_l2norm_in_kernel=True,
                                             cu_seqlens=cu, _host_checks=False)
    o = torch.empty(1, T, HV, V, device=dev, dtype=torch.bfloat16)
    ht = torch.empty_like(h0)
    stream = gdn._framework(q).stream(q)  # what the package passes (None: the extension asks PyTorch)
    ext = lambda: _gdn.run(0, q, k, v, g, beta, None, None, cu, h0, None, ht, None, None, o,  # noqa: E731
                           0.0, True, False, True, 0, 0, "auto", False, stream, None, None)
    cu_cpu = cu.long().cpu()
    op_host = lambda: gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0,  # noqa: E731
                                                output_final_state=True, use_qk_l2norm_in_kernel=True,
                                                cu_seqlens=cu, cu_seqlens_cpu=cu_cpu)
    layers = [("gdn.torch custom op", op), ("op with cu_seqlens_cpu", op_host), ("gdn package function", pkg),
              ("extension call", ext)]
    dims = f"T={T} H={H} HV={HV} K={K} V={V}"
    if dev == "cpu":
        print(f"row {args.row} on the CPU ({dims}): median of {reps} plain calls")
        for name, fn in layers:
            print(f"  {name:24s} {median_us(fn, reps, False):8.1f} us")
        print(f"  {'op, Python alone':24s} {python_alone_us(op, reps, False):8.1f} us")
        return
    print(f"row {args.row} ({dims}): median of {reps} plain calls, each through torch.cuda.synchronize()")
    for name, fn in layers:
        print(f"  {name:24s} {median_us(fn, reps, True):8.1f} us   (host part, no sync: "
              f"{median_us(fn, reps, True, sync=False):8.1f} us)")
    print(f"  {'op, Python alone':24s} {'':8s}      (host part, no sync: "
          f"{python_alone_us(op, reps, True):8.1f} us)")
    # The same extension call with chunk_meta forced (the library reads the
    # variable per call): what one sequence's inline offsets save, same run.
    os.environ["GDN_CUDA_INLINE_OFFSETS"] = "0"
    try:
        print(f"  {'extension, chunk_meta':24s} {median_us(ext, reps, True):8.1f} us   (host part, no sync: "
              f"{median_us(ext, reps, True, sync=False):8.1f} us)")
    finally:
        del os.environ["GDN_CUDA_INLINE_OFFSETS"]
    empty = lambda: torch.cuda.synchronize()  # noqa: E731
    print(f"  {'synchronize alone':24s} {median_us(empty, reps, True):8.1f} us")


if __name__ == "__main__":
    main()
