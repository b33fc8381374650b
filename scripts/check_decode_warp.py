#!/usr/bin/env python3
"""The warp-level mapping of src/cuda/sm80/recurrent.cu in executable form.

Emulates one warp of the decode/verify kernel lane by lane with NumPy (the
32 lanes are array rows, shuffles are permutations): the lane geometry of
both state layouts, the partial sums, the reduce-scatter and which lane owns
which finished sum, the pair swap, the per-token scalars computed up
front (eight lanes per token) and fetched from lane j, the output writes,
the gather of u and the state update. Runs every 16-column tile of a state over a few tokens and
checks that each output column is written by exactly one lane, the tiles
cover the state exactly once, and the result matches a float64 token
recurrence (DESIGN section 1), for K, V in {64, 128}, both layouts, with and
without l2norm, over six tokens and over one (where layout kv's one-token
decode forms its norms from the loop's own elements: checked bitwise against
the eight-lane prelude). It needs no GPU; keep it in step with the kernel.

    python3 scripts/check_decode_warp.py
"""
import numpy as np

LANES = np.arange(32)

def shfl_xor(v, off):
    return v[LANES ^ off]

def shfl(v, src):  # src: per-lane source lane
    return v[src]

def sum_lanes(x, first, last):
    off = first
    while off >= last:
        x = x + shfl_xor(x, off)
        off >>= 1
    return x

def reduce_scatter(x, active, off, last):
    # x: [32, N] per-lane arrays
    x = x.copy()
    while True:
        upper = (LANES & off) != 0
        h = active // 2
        for i in range(h):
            send = np.where(upper, x[:, i], x[:, i + h])
            keep = np.where(upper, x[:, i + h], x[:, i])
            x[:, i] = keep + shfl_xor(send, off)
        if off <= last:
            break
        active //= 2
        off //= 2
    return x

def warp_tile(K, vk, v0, Smat, toks, scale, l2norm):
    """Smat: stored matrix (kv: [K, V]; vk: [V, K]) float32; toks: list of
    (q[K], k[K], v[V], decay, beta). Returns (outputs per token [V]-dict,
    list of matrices after each token)."""
    R, RL = K // 8, K // 4
    if vk:
        a0 = v0 + R * (LANES // RL); b0 = 4 * (LANES % RL); own = LANES % RL
    else:
        a0 = R * (LANES >> 2); b0 = v0 + 4 * (LANES & 3); own = LANES >> 2
    kin0 = b0 if vk else a0
    v_own = (a0 if vk else b0) + (own >> 1)
    own_k = (own & 1) == 0
    kIn = 4 if vk else R
    s = np.zeros((32, R, 4), np.float32)
    for l in range(32):
        for r in range(R):
            s[l, r] = Smat[a0[l] + r, b0[l]:b0[l] + 4]
    outs, states = [], []
    f = np.float32
    # Per-token scalars up front: eight lanes per token, four tokens per
    # round, each lane over K / 8 elements; token j's end up on lane j.
    L = len(toks)
    assert L <= 32
    lane_qs = np.ones(32, np.float32); lane_ks = np.ones(32, np.float32); lane_qk = np.zeros(32, np.float32)
    part = (LANES & 7) * (K // 8)
    for first in range(0, L, 4):
        j = first + (LANES >> 3)
        qv = np.zeros((32, K // 8), np.float32); kv = np.zeros((32, K // 8), np.float32)
        for l in range(32):
            if j[l] < L:
                qv[l] = toks[j[l]][0][part[l]:part[l] + K // 8]
                kv[l] = toks[j[l]][1][part[l]:part[l] + K // 8]
        qq = sum_lanes((qv * qv).sum(1, dtype=np.float32), 4, 1)
        kk = sum_lanes((kv * kv).sum(1, dtype=np.float32), 4, 1)
        qk = sum_lanes((qv * kv).sum(1, dtype=np.float32), 4, 1)
        qs = (1 / np.sqrt(qq + 1e-6) if l2norm else np.ones(32, np.float32)) * scale
        ks = 1 / np.sqrt(kk + 1e-6) if l2norm else np.ones(32, np.float32)
        c = qk * qs * ks
        src = (8 * (LANES - first)) & 31
        take = (LANES >= first) & (LANES < first + 4)
        lane_qs = np.where(take, shfl(qs, src), lane_qs)
        lane_ks = np.where(take, shfl(ks, src), lane_ks)
        lane_qk = np.where(take, shfl(c, src), lane_qk)
    if L == 1 and not vk:
        # The kernel's one-token decode (layout kv) forms the scalars from the
        # loop's own q and k elements: lane 4 rg + cg holds part rg, and the
        # sum over lane bits 4, 3, 2 is the tree above, so the bits agree.
        q, k = toks[0][0], toks[0][1]
        qx = np.stack([q[kin0[l]:kin0[l] + kIn] for l in range(32)]).astype(np.float32)
        kx = np.stack([k[kin0[l]:kin0[l] + kIn] for l in range(32)]).astype(np.float32)
        qq = sum_lanes((qx * qx).sum(1, dtype=np.float32), 16, 4)
        kk = sum_lanes((kx * kx).sum(1, dtype=np.float32), 16, 4)
        qk = sum_lanes((qx * kx).sum(1, dtype=np.float32), 16, 4)
        qs = (1 / np.sqrt(qq + 1e-6) if l2norm else np.ones(32, np.float32)) * scale
        ks = 1 / np.sqrt(kk + 1e-6) if l2norm else np.ones(32, np.float32)
        for got, want in ((qs, lane_qs[0]), (ks, lane_ks[0]), (qk * qs * ks, lane_qk[0])):
            assert np.array_equal(got, np.full(32, want, np.float32)), "one-token scalars differ"
    for jt, (q, k, v, decay, beta) in enumerate(toks):
        kx = np.stack([k[kin0[l]:kin0[l] + kIn] for l in range(32)]).astype(np.float32)
        qx = np.stack([q[kin0[l]:kin0[l] + kIn] for l in range(32)]).astype(np.float32)
        vx = v[v_own].astype(np.float32)
        if vk:
            upper = (LANES & (RL // 2)) != 0
            x = np.zeros((32, R), np.float32)
            for r in range(R // 2):
                sm = np.zeros((32, 2, 2), np.float32)
                for half in range(2):
                    sm[:, half, 0] = (s[:, r + half * R // 2, :] * kx).sum(1)
                    sm[:, half, 1] = (s[:, r + half * R // 2, :] * qx).sum(1)
                for w in range(2):
                    keep = np.where(upper, sm[:, 1, w], sm[:, 0, w])
                    send = np.where(upper, sm[:, 0, w], sm[:, 1, w])
                    x[:, 2 * r + w] = keep + shfl_xor(send, RL // 2)
            x = reduce_scatter(x, R, RL // 4, 1)
        else:
            x = np.zeros((32, 8), np.float32)
            for c in range(4):
                x[:, 2 * c] = (s[:, :, c] * kx).sum(1)
                x[:, 2 * c + 1] = (s[:, :, c] * qx).sum(1)
            x = reduce_scatter(x, 8, 16, 4)
        qs = np.full(32, lane_qs[jt]); ks = np.full(32, lane_ks[jt]); qkc = np.full(32, lane_qk[jt])
        other = shfl_xor(x[:, 0], 1 if vk else 4)
        sk = ks * np.where(own_k, x[:, 0], other)
        sq = qs * np.where(own_k, other, x[:, 0])
        u = beta * (vx - decay * sk)
        o = {}
        for l in range(32):
            if own_k[l]:
                assert v_own[l] not in o, "two lanes write one column"
                o[int(v_own[l])] = qkc[l] * u[l] + decay * sq[l]
        uk = u * ks
        if vk:
            for r in range(R):
                src = (LANES & ~(RL - 1)) + 2 * r
                ur = shfl(uk, src)
                s[:, r, :] = decay * s[:, r, :] + kx * ur[:, None]
        else:
            uc = np.stack([shfl(uk, 8 * c + (LANES & 3)) for c in range(4)], 1)
            for r in range(R):
                s[:, r, :] = decay * s[:, r, :] + kx[:, r:r + 1] * uc
        M = np.full_like(Smat, np.nan)
        for l in range(32):
            for r in range(R):
                M[a0[l] + r, b0[l]:b0[l] + 4] = s[l, r]
        outs.append(o)
        states.append(M)
    return outs, states

def check(K, V, vk, L, l2norm=True, seed=0):
    rng = np.random.default_rng(seed)
    S0 = (0.1 * rng.standard_normal((K, V))).astype(np.float32)  # logical [K, V]
    toks = []
    for _ in range(L):
        q = rng.standard_normal(K).astype(np.float32); k = rng.standard_normal(K).astype(np.float32)
        if not l2norm:
            k /= np.linalg.norm(k)
        v = rng.standard_normal(V).astype(np.float32)
        g = -rng.uniform(0.01, 0.3); beta = 1 / (1 + np.exp(-rng.standard_normal()))
        toks.append((q, k, v, np.float32(np.exp(g)), np.float32(beta)))
    scale = K ** -0.5
    # float64 reference (DESIGN section 1)
    S = S0.astype(np.float64); ref_o, ref_S = [], []
    for (q, k, v, d, b) in toks:
        qn, kn = q.astype(np.float64), k.astype(np.float64)
        if l2norm:
            qn = qn / np.sqrt((qn * qn).sum() + 1e-6); kn = kn / np.sqrt((kn * kn).sum() + 1e-6)
        S = float(d) * S
        u = float(b) * (v - S.T @ kn)
        S = S + np.outer(kn, u)
        ref_o.append(S.T @ (scale * qn)); ref_S.append(S.copy())
    Smat = S0.T.copy() if vk else S0
    got_o = [np.full(V, np.nan) for _ in range(L)]
    got_S = [np.full(Smat.shape, np.nan) for _ in range(L)]
    for v0 in range(0, V, 16):
        outs, states = warp_tile(K, vk, v0, Smat, toks, np.float32(scale), l2norm)
        for j in range(L):
            for col, val in outs[j].items():
                assert v0 <= col < v0 + 16 and np.isnan(got_o[j][col])
                got_o[j][col] = val
            m = ~np.isnan(states[j])
            assert np.all(np.isnan(got_S[j][m])), "tiles overlap"
            got_S[j][m] = states[j][m]
    for j in range(L):
        assert not np.isnan(got_o[j]).any(), "output column missing"
        assert not np.isnan(got_S[j]).any(), "state element missing"
        GS = got_S[j].T if vk else got_S[j]
        eo = np.linalg.norm(got_o[j] - ref_o[j]) / np.linalg.norm(ref_o[j])
        es = np.linalg.norm(GS - ref_S[j]) / np.linalg.norm(ref_S[j])
        assert eo < 1e-5 and es < 1e-5, (K, V, vk, j, eo, es)
    return eo, es

for K in (64, 128):
    for V in (64, 128):
        for vk in (False, True):
            for l2 in (True, False):
                for L in (6, 1):
                    eo, es = check(K, V, vk, L=L, l2norm=l2, seed=K + V + vk)
                    print(f"K={K} V={V} {'vk' if vk else 'kv'} l2norm={l2} tokens={L}: out {eo:.2e} state {es:.2e}")
