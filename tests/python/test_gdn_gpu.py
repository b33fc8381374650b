"""gdn on CUDA tensors (PyTorch): the GPU backend against the float64 oracle,
the state pool in place, CUDA-graph capture and torch.compile. Runs on a GPU
machine (scripts/device-check.sh); skipped elsewhere."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device here; this file runs on a GPU machine", allow_module_level=True)

import gdn  # noqa: E402
import gdn.torch as gt  # noqa: E402
from reference import recurrence, rel  # noqa: E402

DEV = "cuda"


def make(lens, H=2, HV=4, K=128, V=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    T = sum(lens)
    q = torch.randn(1, T, H, K, generator=gen).to(torch.bfloat16)
    k = torch.randn(1, T, H, K, generator=gen).to(torch.bfloat16)
    v = torch.randn(1, T, HV, V, generator=gen).to(torch.bfloat16)
    g = -0.01 - 0.3 * torch.rand(1, T, HV, generator=gen)
    beta = torch.sigmoid(torch.randn(1, T, HV, generator=gen))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32)
    h0 = 0.1 * torch.randn(len(lens), HV, K, V, generator=gen)
    return q, k, v, g, beta, cu, h0


def to_dev(*xs):
    return tuple(x.to(DEV) for x in xs)


def test_prefill_on_the_gpu_matches_the_oracle():
    q, k, v, g, beta, cu, h0 = make([1, 7, 63, 64, 65, 130, 1000])
    o, ht = gdn.chunk_gated_delta_rule(*to_dev(q, k, v, g, beta), initial_state=h0.to(DEV), output_final_state=True,
                                       use_qk_l2norm_in_kernel=True, cu_seqlens=cu.to(DEV))
    torch.cuda.synchronize()
    ro, rs = recurrence(q[0].float().numpy(), k[0].float().numpy(), v[0].float().numpy(), g[0].numpy(),
                        beta[0].numpy(), cu.numpy(), h0.numpy())
    assert o.is_cuda and o.dtype == torch.bfloat16
    assert rel(o[0].float().cpu().numpy(), ro) < 4e-3
    assert rel(ht.cpu().numpy(), rs) < 4e-3


def test_cu_seqlens_cpu_on_cuda_tensors_gives_the_same_bits():
    """A host copy of a CUDA cu_seqlens (flash-linear-attention's
    cu_seqlens_cpu) plans the call from the host, with no synchronisation: the
    same bits as without it, for a long tail (one long sequence, short ones),
    a pool and one sequence; eager and captured in a CUDA graph."""
    for lens, pool_rows in (([2048] + [64] * 15, 0), ([9, 70, 3], 6), ([1000], 0)):
        q, k, v, g, beta, cu, h0 = make(lens)
        args = to_dev(q, k, v, g, beta)
        cu_dev, h0 = cu.to(DEV), h0.to(DEV)

        def call(host):
            if pool_rows:
                pool = (0.1 * torch.randn(pool_rows, 4, 128, 128, generator=torch.Generator().manual_seed(1))).to(DEV)
                idx = torch.tensor([4, -1, 1], dtype=torch.int32, device=DEV)
                o, _ = gt.chunk_gated_delta_rule(*args, initial_state=pool, state_indices=idx, cu_seqlens=cu_dev,
                                                 use_qk_l2norm_in_kernel=True, cu_seqlens_cpu=host)
                return o, pool
            return gt.chunk_gated_delta_rule(*args, initial_state=h0, output_final_state=True,
                                             use_qk_l2norm_in_kernel=True, cu_seqlens=cu_dev, cu_seqlens_cpu=host)

        want = call(None)
        got = call(cu.long())
        torch.cuda.synchronize()
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), lens
        if not pool_rows:
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):  # warm-up on the capture stream
                call(cu)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = call(cu)
            out[0].fill_(float("nan"))
            graph.replay()
            torch.cuda.synchronize()
            assert torch.equal(out[0], want[0]) and torch.equal(out[1], want[1]), lens
    with pytest.raises(ValueError, match="cu_seqlens_cpu: must be a host"):
        gt.chunk_gated_delta_rule(*args, cu_seqlens=cu_dev, cu_seqlens_cpu=cu_dev)


def test_pool_in_place_leaves_other_rows_alone():
    q, k, v, g, beta, cu, _ = make([9, 70, 3])
    pool = (0.1 * torch.randn(6, 4, 128, 128)).to(DEV)
    before = pool.clone()
    idx = torch.tensor([4, -1, 1], dtype=torch.int32, device=DEV)
    gt.chunk_gated_delta_rule(*to_dev(q, k, v, g, beta), initial_state=pool, state_indices=idx,
                              cu_seqlens=cu.to(DEV), use_qk_l2norm_in_kernel=True)
    torch.cuda.synchronize()
    for row in (0, 2, 3, 5):
        assert torch.equal(pool[row], before[row])
    assert not torch.equal(pool[4], before[4]) and not torch.equal(pool[1], before[1])


def test_cuda_graph_replay_equals_eager():
    q, k, v, g, beta, cu, h0 = to_dev(*make([64, 300]))
    o_eager, h_eager = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                                 use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on the capture stream (workspace allocated here)
        gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                  use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, ht = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                          use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    for _ in range(3):
        o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(o, o_eager) and torch.equal(ht, h_eager)


class NoExchange(torch.Tensor):
    """Hides the DLPack C exchange API: the extension reads these tensors
    through their attributes (its path for PyTorch before 2.10)."""

    __dlpack_c_exchange_api__ = None


def test_reading_paths_and_batch_rows_in_graph_capture():
    """Batch rows the extension folds into tokens, and tensors read through
    their attributes instead of the DLPack C exchange API, captured on a
    side stream: each call finds the current stream and equals eager."""
    q, k, v, g, beta, cu, h0 = to_dev(*make([64, 64]))
    o_ref, h_ref = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                             use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    rows = [x.reshape(2, 64, *x.shape[2:]) for x in (q, k, v, g, beta)]
    sub = [x.as_subclass(NoExchange) for x in (q, k, v, g, beta, cu, h0)]
    calls = [
        lambda: gt.chunk_gated_delta_rule(*rows, initial_state=h0, output_final_state=True,
                                          use_qk_l2norm_in_kernel=True),
        lambda: gdn.chunk_gated_delta_rule(*sub[:5], cu_seqlens=sub[5], initial_state=sub[6], output_final_state=True,
                                           use_qk_l2norm_in_kernel=True, _host_checks=False),
    ]
    for call in calls:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            call()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            o, ht = call()
        o.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(o.reshape(o_ref.shape), o_ref) and torch.equal(ht, h_ref)


def test_decode_verify_and_commit_on_the_gpu():
    N, L = 4, 3
    q, k, v, g, beta, _, _ = make([L] * N)
    q4, k4, v4 = (x.reshape(N, L, *x.shape[2:]).to(DEV) for x in (q, k, v))
    g4, b4 = g.reshape(N, L, -1).to(DEV), beta.reshape(N, L, -1).to(DEV)
    pool = (0.1 * torch.randn(N + 3, 4, 128, 128)).to(DEV)
    idx = torch.tensor([5, -1, 0, 2], dtype=torch.int32, device=DEV)
    before = pool.clone()
    o_ver, inter = gt.verify(q4, k4, v4, g4, b4, pool, state_indices=idx, use_qk_l2norm_in_kernel=True)
    torch.cuda.synchronize()
    assert torch.equal(pool, before)
    # Stepwise decode equals verify bitwise (fp32 state); the padding
    # sequence restarts from zero at every step, so it is left out.
    for j in range(L):
        o = gt.recurrent_update(q4[:, j], k4[:, j], v4[:, j], g4[:, j], b4[:, j], pool, state_indices=idx,
                                use_qk_l2norm_in_kernel=True)
        torch.cuda.synchronize()
        for n in (0, 2, 3):
            assert torch.equal(o[n], o_ver[n, j])
            assert torch.equal(pool[idx[n]], inter[n, j])
    # Commit the accepted prefixes into the starting pool, also inside a CUDA graph.
    accepted = torch.tensor([0, 2, -1, 1], dtype=torch.int32, device=DEV)
    expected = before.clone()
    expected[5], expected[2] = inter[0, 0], inter[3, 1]
    pool.copy_(before)
    gt.commit_states(inter, accepted, pool, idx)
    torch.cuda.synchronize()
    assert torch.equal(pool, expected)
    pool.copy_(before)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        gt.commit_states(inter, accepted, pool, idx)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(pool, expected)


def test_torch_compile_on_cuda_tensors():
    q, k, v, g, beta, cu, h0 = to_dev(*make([20, 45]))

    def layer(q, k, v, g, beta, cu, h0):
        o, ht = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                          use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
        return o.float() * 2.0, ht

    eager = layer(q, k, v, g, beta, cu, h0)
    compiled = torch.compile(layer, fullgraph=True)(q, k, v, g, beta, cu, h0)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])
