"""gdn's Python API on the CPU backend, with NumPy, against an independent
float64 NumPy recurrence (DESIGN section 1)."""

import numpy as np
import pytest

import gdn
from reference import recurrence, rel

RNG = np.random.default_rng(7)


def inputs(lens, H=2, HV=4, K=32, V=48, dtype=np.float32):
    T = sum(lens)
    q = RNG.standard_normal((1, T, H, K)).astype(dtype)
    k = RNG.standard_normal((1, T, H, K)).astype(dtype)
    v = RNG.standard_normal((1, T, HV, V)).astype(dtype)
    g = -RNG.uniform(0.01, 0.3, (1, T, HV)).astype(np.float32)
    beta = (1 / (1 + np.exp(-RNG.standard_normal((1, T, HV))))).astype(np.float32)
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    h0 = (0.1 * RNG.standard_normal((len(lens), HV, K, V))).astype(np.float32)
    return q, k, v, g, beta, cu, h0


def test_prefill_packed_matches_the_recurrence():
    q, k, v, g, beta, cu, h0 = inputs([1, 7, 63, 64, 65, 130])
    o, ht = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                       use_qk_l2norm_in_kernel=True, cu_seqlens=cu, backend="cpu", strict=True)
    ro, rs = recurrence(q[0], k[0], v[0], g[0], beta[0], cu, h0)
    assert o.shape == v.shape and o.dtype == np.float32
    assert rel(o[0], ro) < 1e-5
    assert ht.shape == h0.shape and rel(ht, rs) < 1e-5


def test_cu_seqlens_cpu_changes_no_result():
    """cu_seqlens_cpu (flash-linear-attention's host copy; a list or an array
    of any integer dtype) gives the bits of the call without it; a copy of
    the wrong length is refused by name."""
    q, k, v, g, beta, cu, h0 = inputs([1, 7, 63, 130])
    want = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True, cu_seqlens=cu)
    for host in (cu.astype(np.int64), cu.tolist()):
        got = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True, cu_seqlens=cu,
                                         cu_seqlens_cpu=host)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    with pytest.raises(ValueError, match="cu_seqlens_cpu: must have the shape"):
        gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, cu_seqlens_cpu=cu[:-1])


def test_prefill_batch_rows_are_sequences():
    q, k, v, g, beta, _, _ = inputs([50])
    q2, k2, v2 = (np.concatenate([x, x[:, ::-1]]) for x in (q, k, v))
    g2, b2 = np.concatenate([g, g[:, ::-1]]), np.concatenate([beta, beta[:, ::-1]])
    o, ht = gdn.chunk_gated_delta_rule(q2, k2, v2, g2, b2, output_final_state=True, use_qk_l2norm_in_kernel=True)
    for b in range(2):
        ro, rs = recurrence(q2[b], k2[b], v2[b], g2[b], b2[b], [0, 50])
        assert rel(o[b], ro) < 1e-5 and rel(ht[b], rs[0]) < 1e-5


def test_pool_in_place_with_padding_and_vk_layout():
    q, k, v, g, beta, cu, h0 = inputs([9, 70, 3])
    pool = (0.1 * RNG.standard_normal((6, 4, 48, 32))).astype(np.float32)  # [P, HV, V, K]
    before = pool.copy()
    idx = np.array([4, -1, 1], dtype=np.int32)
    o, ht = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=pool, state_indices=idx, cu_seqlens=cu,
                                       state_v_first=True, use_qk_l2norm_in_kernel=True)
    assert ht is pool
    start = np.zeros((3, 4, 32, 48), np.float32)
    start[0], start[2] = before[4].transpose(0, 2, 1), before[1].transpose(0, 2, 1)
    ro, rs = recurrence(q[0], k[0], v[0], g[0], beta[0], cu, start)
    assert rel(o[0], ro) < 1e-5
    assert rel(pool[4].transpose(0, 2, 1), rs[0]) < 1e-5 and rel(pool[1].transpose(0, 2, 1), rs[2]) < 1e-5
    for row in (0, 2, 3, 5):  # rows no sequence owns, and the padding sequence writes nothing
        assert np.array_equal(pool[row], before[row])


def test_fused_gates():
    q, k, v, a, b, cu, h0 = inputs([40, 25])
    a = RNG.standard_normal(a.shape).astype(np.float32)
    b = RNG.standard_normal(b.shape).astype(np.float32)
    A_log = RNG.uniform(-2, 0.5, 4).astype(np.float32)
    dt_bias = (0.5 * RNG.standard_normal(4)).astype(np.float32)
    o, _ = gdn.chunk_gated_delta_rule(q, k, v, a, b, A_log=A_log, dt_bias=dt_bias, cu_seqlens=cu,
                                      use_qk_l2norm_in_kernel=True)
    x = a[0].astype(np.float64) + dt_bias
    g = -np.exp(A_log.astype(np.float64)) * np.where(x > 20, x, np.log1p(np.exp(x)))
    beta = 1 / (1 + np.exp(-b[0].astype(np.float64)))
    ro, _ = recurrence(q[0], k[0], v[0], g, beta, cu)
    assert rel(o[0], ro) < 1e-5


def test_float16_inputs():
    q, k, v, g, beta, cu, h0 = inputs([100, 31], dtype=np.float16)
    o, _ = gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, use_qk_l2norm_in_kernel=True)
    ro, _ = recurrence(q[0], k[0], v[0], g[0], beta[0], cu)
    assert o.dtype == np.float16 and rel(o[0], ro) < 4e-3


def test_decode_steps_equal_prefill_and_verify_keeps_every_state():
    N, L = 3, 5
    q, k, v, g, beta, _, _ = inputs([L] * N)
    q4, k4, v4 = (x.reshape(N, L, *x.shape[2:]) for x in (q, k, v))
    g4, b4 = g.reshape(N, L, -1), beta.reshape(N, L, -1)
    pool = (0.1 * RNG.standard_normal((N + 2, 4, 32, 48))).astype(np.float32)
    idx = np.array([2, 0, 4], dtype=np.int32)

    # verify: every intermediate state, pool untouched.
    before = pool.copy()
    o_ver, inter = gdn.verify(q4, k4, v4, g4, b4, pool, state_indices=idx, use_qk_l2norm_in_kernel=True)
    assert np.array_equal(pool, before)
    assert inter.shape == (N, L, 4, 32, 48)

    # decode token by token updates the pool; each step equals verify's state.
    for j in range(L):
        o = gdn.recurrent_update(q4[:, j], k4[:, j], v4[:, j], g4[:, j], b4[:, j], pool, state_indices=idx,
                                 use_qk_l2norm_in_kernel=True)
        assert np.array_equal(o, o_ver[:, j])
        for n in range(N):
            assert np.array_equal(pool[idx[n]], inter[n, j])

    # ...and the whole thing equals one prefill from the same start.
    o_pre, ht = gdn.chunk_gated_delta_rule(q, k, v, g, beta, initial_state=before[idx], output_final_state=True,
                                           cu_seqlens=np.arange(0, N * L + 1, L, dtype=np.int32),
                                           use_qk_l2norm_in_kernel=True)
    assert rel(o_ver.reshape(1, N * L, 4, 48), o_pre) < 1e-5
    assert rel(pool[idx], ht) < 1e-5


def test_commit_after_verify_keeps_each_accepted_prefix():
    N, L = 4, 5
    q, k, v, g, beta, _, _ = inputs([L] * N)
    q4, k4, v4 = (x.reshape(N, L, *x.shape[2:]) for x in (q, k, v))
    g4, b4 = g.reshape(N, L, -1), beta.reshape(N, L, -1)
    pool = (0.1 * RNG.standard_normal((7, 4, 48, 32))).astype(np.float32)  # [P, HV, V, K]
    idx = np.array([5, -1, 0, 3], dtype=np.int64)
    before = pool.copy()
    _, states = gdn.verify(q4, k4, v4, g4, b4, pool, state_indices=idx, state_v_first=True,
                           use_qk_l2norm_in_kernel=True)
    accepted = np.array([2, 0, -1, 4], dtype=np.int32)  # sequence 2 accepts nothing; 1 is padding
    assert gdn.commit_states(states, accepted, pool, idx) is pool
    expected = before.copy()
    expected[5], expected[3] = states[0, 2], states[3, 4]
    assert np.array_equal(pool, expected)
    # The committed state is the recurrence's after the accepted tokens.
    for n, row in ((0, 5), (3, 3)):
        n_tok = accepted[n] + 1
        t0 = n * L
        _, rs = recurrence(q[0, t0:t0 + n_tok], k[0, t0:t0 + n_tok], v[0, t0:t0 + n_tok], g[0, t0:t0 + n_tok],
                           beta[0, t0:t0 + n_tok], [0, n_tok], before[row:row + 1].transpose(0, 1, 3, 2))
        assert rel(pool[row].transpose(0, 2, 1), rs[0]) < 1e-5
    with pytest.raises(ValueError, match="state_indices: row 3 appears twice"):
        gdn.commit_states(states, accepted, pool, np.array([3, -1, 0, 3]))
    with pytest.raises(ValueError, match="accepted: entry 1 is 5 but intermediate_states has 5 slots"):
        gdn.commit_states(states, np.array([0, 5, 0, 0], dtype=np.int32), pool, idx)
    assert np.array_equal(pool, expected)  # the rejected calls wrote nothing


def test_errors_carry_the_library_message():
    q, k, v, g, beta, cu, h0 = inputs([10])
    with pytest.raises(ValueError, match=r"multiple of q/k heads H \(3\)"):
        gdn.chunk_gated_delta_rule(q[:, :, :1].repeat(3, axis=2), k[:, :, :1].repeat(3, axis=2), v, g, beta,
                                   cu_seqlens=cu)
    bad = cu.copy()
    bad[-1] = 9
    with pytest.raises(ValueError, match="cu_seqlens: must end at T = 10"):
        gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=bad)
    with pytest.raises(TypeError, match="dtype"):
        gdn.chunk_gated_delta_rule(q.astype(np.float64), k, v, g, beta, cu_seqlens=cu)
    with pytest.raises(ValueError, match="unknown backend 'fast'"):
        gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, backend="fast")
    with pytest.raises(RuntimeError, match="cuda"):
        gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=cu, backend="cuda", strict=True)


def test_batch_rows_fold_into_tokens_in_any_layout():
    """The extension folds a leading batch dimension into the tokens: as a
    view where the strides allow, through the array's reshape (a copy)
    where they do not; results are the same either way."""
    q, k, v, g, beta, _, _ = inputs([30, 30])
    q2, k2, v2 = (x.reshape(2, 30, *x.shape[2:]) for x in (q, k, v))
    g2, b2 = g.reshape(2, 30, -1), beta.reshape(2, 30, -1)
    o, ht = gdn.chunk_gated_delta_rule(q2, k2, v2, g2, b2, output_final_state=True)
    # Token-major storage: [T, B, ...] seen as [B, T, ...] cannot fold into a view.
    tm = [np.ascontiguousarray(x.swapaxes(0, 1)).swapaxes(0, 1) for x in (q2, k2, v2, g2, b2)]
    assert not tm[0].flags.c_contiguous
    o_tm, ht_tm = gdn.chunk_gated_delta_rule(*tm, output_final_state=True)
    assert o.tobytes() == o_tm.tobytes() and ht.tobytes() == ht_tm.tobytes()
    o_cu, _ = gdn.chunk_gated_delta_rule(q, k, v, g, beta, cu_seqlens=np.array([0, 30, 60], np.int32))
    assert o.tobytes() == o_cu.tobytes()
    # Decode takes [N, 1, ...] tokens as [N, ...]; o comes back [N, HV, V].
    pool = (0.1 * RNG.standard_normal((2, 4, 32, 48))).astype(np.float32)
    pool2 = pool.copy()
    o1 = gdn.recurrent_update(q2[:, :1], k2[:, :1], v2[:, :1], g2[:, :1], b2[:, :1], pool)
    o2 = gdn.recurrent_update(q2[:, 0], k2[:, 0], v2[:, 0], g2[:, 0], b2[:, 0], pool2)
    assert o1.shape == (2, 4, 48) and o1.tobytes() == o2.tobytes() and pool.tobytes() == pool2.tobytes()
    with pytest.raises(ValueError, match=r"k: expected 3 or 4 dimensions, got shape \(2, 30, 2, 32, 1\)"):
        gdn.chunk_gated_delta_rule(q2, k2[..., None], v2, g2, b2)
    with pytest.raises(ValueError, match=r"g: expected 2 or 3 dimensions, got shape \(60,\)"):
        gdn.recurrent_update(q[0], k[0], v[0], g[0, :, 0], beta[0], pool)


def test_version_names_a_commit():
    assert "(" in gdn.version() and gdn.device_count() >= 0
