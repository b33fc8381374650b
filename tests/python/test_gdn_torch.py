"""gdn.torch: the custom ops on CPU tensors (the GPU file runs them on CUDA
tensors on a GPU machine). Skipped where PyTorch is not installed."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import gdn  # noqa: E402
import gdn.torch as gt  # noqa: E402


def make(lens, H=2, HV=4, K=32, V=32, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    T = sum(lens)
    q = torch.randn(1, T, H, K, generator=gen).to(dtype)
    k = torch.randn(1, T, H, K, generator=gen).to(dtype)
    v = torch.randn(1, T, HV, V, generator=gen).to(dtype)
    g = -0.01 - 0.3 * torch.rand(1, T, HV, generator=gen)
    beta = torch.sigmoid(torch.randn(1, T, HV, generator=gen))
    cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]), dtype=torch.int32)
    h0 = 0.1 * torch.randn(len(lens), HV, K, V, generator=gen)
    return q, k, v, g, beta, cu, h0


def test_importing_gdn_does_not_import_torch():
    code = "import sys, gdn; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ops_match_the_numpy_path():
    q, k, v, g, beta, cu, h0 = make([5, 70, 3])
    o, ht = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                      use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    on, hn = gdn.chunk_gated_delta_rule(q.numpy(), k.numpy(), v.numpy(), g.numpy(), beta.numpy(),
                                        initial_state=h0.numpy(), output_final_state=True,
                                        use_qk_l2norm_in_kernel=True, cu_seqlens=cu.numpy())
    assert torch.equal(o, torch.from_numpy(on)) and torch.equal(ht, torch.from_numpy(hn))


def test_bfloat16_tensors():
    q, k, v, g, beta, cu, h0 = make([40, 90], dtype=torch.bfloat16)
    o, _ = gt.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, use_qk_l2norm_in_kernel=True)
    o32, _ = gt.chunk_gated_delta_rule(q.float(), k.float(), v.float(), g, beta, cu_seqlens=cu,
                                       use_qk_l2norm_in_kernel=True)
    assert o.dtype == torch.bfloat16
    err = ((o.float() - o32) ** 2).sum().sqrt() / (o32 ** 2).sum().sqrt()
    assert err < 4e-3


def draft_batch():
    """N = 3 sequences of L = 4 tokens as [N, L, ...] inputs (q, k, v, g,
    beta), a pool of N + 2 rows and the rows the sequences use."""
    N, L = 3, 4
    q, k, v, g, beta, _, _ = make([L] * N)
    q4, k4, v4 = (x.reshape(N, L, *x.shape[2:]) for x in (q, k, v))
    g4, b4 = g.reshape(N, L, -1), beta.reshape(N, L, -1)
    pool = 0.1 * torch.randn(N + 2, 4, 32, 32)
    idx = torch.tensor([3, 0, 4], dtype=torch.int32)
    return N, L, (q4, k4, v4, g4, b4), pool, idx


def test_pool_decode_and_verify_mutate_in_place():
    _, L, (q4, k4, v4, g4, b4), pool, idx = draft_batch()
    before = pool.clone()
    o_ver, inter = gt.verify(q4, k4, v4, g4, b4, pool, state_indices=idx)
    assert torch.equal(pool, before)
    for j in range(L):
        o = gt.recurrent_update(q4[:, j], k4[:, j], v4[:, j], g4[:, j], b4[:, j], pool, state_indices=idx)
        assert torch.equal(o, o_ver[:, j])
        assert torch.equal(pool[idx.long()], inter[:, j])


def test_commit_states_op_mutates_the_pool():
    _, _, (q4, k4, v4, g4, b4), pool, idx = draft_batch()
    _, inter = gt.verify(q4, k4, v4, g4, b4, pool, state_indices=idx)
    accepted = torch.tensor([1, -1, 3], dtype=torch.int64)
    expected = pool.clone()
    expected[3], expected[4] = inter[0, 1], inter[2, 3]
    assert gt.commit_states(inter, accepted, pool, idx) is pool
    assert torch.equal(pool, expected)


class NoExchange(torch.Tensor):
    """Hides the DLPack C exchange API, so the extension reads these tensors
    through their attributes (its path for PyTorch before 2.10)."""

    __dlpack_c_exchange_api__ = None


def test_tensor_reading_paths_agree():
    """PyTorch tensors through the DLPack C exchange API, through their
    attributes, and NumPy arrays through DLPack capsules: the same bytes, and
    the same errors."""
    from gdn import _gdn

    q, k, v, a, b, cu, h0 = make([5, 70, 3])
    A_log = torch.nn.Parameter(torch.rand(4) - 1.0)  # a Parameter (requires grad) reads like a tensor
    dt_bias = torch.randn(4)
    args = (q, k, v, a, b)
    kw = dict(initial_state=h0, output_final_state=True, use_qk_l2norm_in_kernel=True)
    o_np, h_np = gdn.chunk_gated_delta_rule(*(x.numpy() for x in args), cu_seqlens=cu.numpy(),
                                            A_log=A_log.detach().numpy(), dt_bias=dt_bias.numpy(),
                                            **{**kw, "initial_state": h0.numpy()})
    o_t, h_t = gdn.chunk_gated_delta_rule(*args, cu_seqlens=cu, A_log=A_log, dt_bias=dt_bias, **kw)
    sub = [x.as_subclass(NoExchange) for x in args + (cu, h0, dt_bias)]
    o_s, h_s = gdn.chunk_gated_delta_rule(*sub[:5], cu_seqlens=sub[5], A_log=A_log, dt_bias=sub[7],
                                          **{**kw, "initial_state": sub[6]})
    for o, h in ((o_t, h_t), (o_s, h_s)):
        assert o.numpy().tobytes() == o_np.tobytes() and h.numpy().tobytes() == h_np.tobytes()
    if hasattr(torch.Tensor, "__dlpack_c_exchange_api__"):
        assert _gdn.has_exchange_api(torch.Tensor)
    assert not _gdn.has_exchange_api(NoExchange) and not _gdn.has_exchange_api(np.ndarray)
    for wrap in (lambda x: x, lambda x: x.as_subclass(NoExchange)):
        with pytest.raises(TypeError, match="q: dtype must be float32, float16, bfloat16, int32 or int64"):
            gdn.chunk_gated_delta_rule(wrap(q.double()), k, v, a, b, cu_seqlens=cu)
        with pytest.raises(ValueError, match=r"multiple of q/k heads H \(3\)"):
            gdn.chunk_gated_delta_rule(wrap(q[:, :, :1].repeat(1, 1, 3, 1)), k[:, :, :1].repeat(1, 1, 3, 1), v, a, b,
                                       cu_seqlens=cu)
        with pytest.raises(ValueError, match=r"v: expected 3 or 4 dimensions, got shape \(1, 78, 4, 32, 1\)"):
            gdn.chunk_gated_delta_rule(q, k, wrap(v[..., None]), a, b, cu_seqlens=cu)


def test_batch_rows_flags_and_layouts():
    """Eager gdn.torch calls leave the batch rows to the extension: a batch
    equals the same sequences packed, in any memory layout; flags are read
    as bool() reads them."""
    q, k, v, g, beta, cu, h0 = make([40, 40])
    packed = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                       use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    rows = [x.reshape(2, 40, *x.shape[2:]) for x in (q, k, v, g, beta)]
    token_major = [x.transpose(0, 1).contiguous().transpose(0, 1) for x in rows]
    assert not token_major[0].is_contiguous()
    for xs, flag in ((rows, True), (token_major, 1)):
        o, ht = gt.chunk_gated_delta_rule(*xs, initial_state=h0, output_final_state=flag, use_qk_l2norm_in_kernel=flag)
        assert o.shape == (2, 40, 4, 32)
        assert torch.equal(o.reshape(packed[0].shape), packed[0]) and torch.equal(ht, packed[1])
    o, ht = gt.chunk_gated_delta_rule(*rows, output_final_state=0)
    assert ht is None and o.shape == (2, 40, 4, 32)


def test_cu_seqlens_cpu_as_flash_linear_attention_takes_it():
    """cu_seqlens_cpu (any integer dtype, equal to cu_seqlens) changes no
    result, eager or compiled; a wrong shape or a non-CPU tensor is refused by name."""
    q, k, v, g, beta, cu, h0 = make([5, 70, 3])
    want = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                     use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
    for host in (cu.long(), cu.clone()):
        got = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                        use_qk_l2norm_in_kernel=True, cu_seqlens=cu, cu_seqlens_cpu=host)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    pkg = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                     use_qk_l2norm_in_kernel=True, cu_seqlens=cu, cu_seqlens_cpu=cu.long())
    assert torch.equal(pkg[0], want[0]) and torch.equal(pkg[1], want[1])
    compiled = torch.compile(gt.chunk_gated_delta_rule, fullgraph=True)(
        q, k, v, g, beta, initial_state=h0, output_final_state=True, use_qk_l2norm_in_kernel=True, cu_seqlens=cu,
        cu_seqlens_cpu=cu.long())
    assert torch.equal(compiled[0], want[0]) and torch.equal(compiled[1], want[1])
    for call in (gt.chunk_gated_delta_rule, gdn.chunk_gated_delta_rule):
        with pytest.raises(ValueError, match="cu_seqlens_cpu: must have the shape"):
            call(q, k, v, g, beta, cu_seqlens=cu, cu_seqlens_cpu=cu[:-1])


@pytest.mark.parametrize("name", ["prefill", "prefill_into_pool", "recurrent_update", "verify", "commit_states"])
def test_opcheck(name):
    q, k, v, g, beta, cu, h0 = make([5, 9])
    pool = 0.1 * torch.randn(4, 4, 32, 32)
    idx = torch.tensor([2, -1], dtype=torch.int32)
    cases = {
        "prefill": (torch.ops.gdn.prefill, (q, k, v, g, beta, cu, h0, None, None, 0.0, True, False, True, cu.long())),
        "prefill_into_pool": (torch.ops.gdn.prefill_into_pool,
                              (q, k, v, g, beta, cu, pool, idx, None, None, 0.0, True, False, None)),
        "recurrent_update": (torch.ops.gdn.recurrent_update,
                             (q[0, :2], k[0, :2], v[0, :2], g[0, :2], beta[0, :2], pool, idx, None, None, 0.0,
                              True, False)),
        "verify": (torch.ops.gdn.verify,
                   (q.reshape(2, 7, 2, 32), k.reshape(2, 7, 2, 32), v.reshape(2, 7, 4, 32), g.reshape(2, 7, 4),
                    beta.reshape(2, 7, 4), pool, idx, None, None, None, 0.0, True, False, True, False)),
        "commit_states": (torch.ops.gdn.commit_states,
                          (0.1 * torch.randn(2, 7, 4, 32, 32), torch.tensor([6, 0], dtype=torch.int32), pool, idx)),
    }
    op, args = cases[name]
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor"))


def test_torch_compile_traces_the_ops():
    q, k, v, g, beta, cu, h0 = make([20, 45])

    def layer(q, k, v, g, beta, cu, h0):
        o, ht = gt.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                          use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
        return o * 2.0, ht

    eager = layer(q, k, v, g, beta, cu, h0)
    compiled = torch.compile(layer, fullgraph=True)(q, k, v, g, beta, cu, h0)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])
