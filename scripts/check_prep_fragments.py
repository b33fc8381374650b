#!/usr/bin/env python3
"""The fragment mapping of src/cuda/sm80/prefill_prep.cu in executable form.

Emulates one CTA of the prep kernel lane by lane with NumPy (registers are
arrays over the 32 lanes; ldmatrix and mma follow the fragment layouts
documented in src/cuda/ptx/mma_sm80.cuh): the m16n8k16 products of each
warp's row tile over the column tiles j <= i for 16-bit io (and the tf32
ones for fp32 io), the squared norms read off the diagonals and spread by
shuffles, the M and L epilogue
with its masks and zero tiles, step 1 (fp32 forward substitution) and step 2
(warp j computes block column j of the inverse in 3xTF32, transposed, with
tf32 rounding emulated) down to the Au stores. Checks that every L and Au
element is written exactly once and that L, Au and the row norms match a
float64 evaluation of the chunk's formulas (file header of the kernel);
then measures step 2's error against float64 next to the previous scalar
fp32 step 2 over a few input regimes (DESIGN section 3: a split scheme
whose error is measured). It needs no GPU; keep it in step with the kernel.

    python3 scripts/check_prep_fragments.py
"""
import numpy as np

LANES = np.arange(32)
G8, T4 = LANES >> 2, LANES & 3
C = 64  # chunk
ELEM = [(0, 0), (0, 1), (8, 0), (8, 1)]  # accumulator element e: (row + 8 (e / 2), column + e % 2)


def f32(x):
    return np.asarray(x, dtype=np.float32)


def tf32_rn(x):  # cvt.rn.tf32.f32: nearest, ties to even
    b = f32(x).view(np.uint32).astype(np.uint64)
    b = (b + 0xFFF + ((b >> 13) & 1)) & 0xFFFFE000
    return b.astype(np.uint32).view(np.float32)


def split(x):  # split_tf32
    hi = tf32_rn(x)
    return hi, tf32_rn(f32(x) - hi)


# ---- warp primitives --------------------------------------------------------
def ldmatrix_x4(mem, addr):
    """addr[l] = (row, col) given by lane l -> 4 registers of (lo, hi) pairs."""
    regs = []
    for i in range(4):
        r = np.array([addr[8 * i + g][0] for g in G8])
        c = np.array([addr[8 * i + g][1] for g in G8]) + 2 * T4
        regs.append((mem[r, c], mem[r, c + 1]))
    return regs


def acc_add(c, prod, rnd):
    return [rnd(c[e] + prod[G8 + dr, 2 * T4 + dc]) for e, (dr, dc) in enumerate(ELEM)]


def mma_k16(c, a, b0, b1):
    """m16n8k16, fp32 accumulate (products of 16-bit values are exact)."""
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for reg, (r, k) in zip(a, [(0, 0), (8, 0), (0, 8), (8, 8)]):
        A[G8 + r, 2 * T4 + k], A[G8 + r, 2 * T4 + k + 1] = reg
    for reg, k in zip((b0, b1), (0, 8)):
        B[2 * T4 + k, G8], B[2 * T4 + k + 1, G8] = reg
    return acc_add(c, A @ B, np.float32)


def mma_k8(c, a, b):
    """m16n8k8 tf32 (operands already tf32 values)."""
    A = np.zeros((16, 8))
    B = np.zeros((8, 8))
    A[G8, T4], A[G8 + 8, T4], A[G8, T4 + 4], A[G8 + 8, T4 + 4] = a
    B[T4, G8], B[T4 + 4, G8] = b
    return acc_add(c, A @ B, np.float32)


def mma_tf32x3(acc, ah, al, bh, bl):
    """3xTF32 into three accumulators (hh, lh, hl), as Tf32x3Acc does."""
    hh, lh, hl = acc
    return (mma_k8(hh, ah, bh), mma_k8(lh, al, bh), mma_k8(hl, ah, bl))


def acc3():
    return (zeros(), zeros(), zeros())


def acc3_sum(acc):  # hh + (lh + hl) in fp32
    hh, lh, hl = acc
    return [np.float32(hh[e]) + (np.float32(lh[e]) + np.float32(hl[e])) for e in range(4)]


def split_a_from_acc(c):  # k-permuted: logical k t is physical column 2t
    hs, ls = zip(*(split(c[e]) for e in (0, 2, 1, 3)))
    return list(hs), list(ls)


def split_b_transposed(m, k0, n0):  # B(k, n) = m[n][k], a lane's pair (2t, 2t + 1)
    (h0, l0), (h1, l1) = split(m[n0 + G8, k0 + 2 * T4]), split(m[n0 + G8, k0 + 2 * T4 + 1])
    return [h0, h1], [l0, l1]


def zeros():
    return [np.zeros(32, np.float32) for _ in range(4)]


# ---- the kernel -------------------------------------------------------------
def products_fp32(q, k, w):
    """fp32 io: tf32 m16n8k8 on k-permuted fragments (a lane's pair 2t, 2t + 1), norms per lane."""
    r0, K = 16 * w, q.shape[1]
    kk = [zeros() for _ in range(6)]
    qk = [zeros() for _ in range(6)]
    kd, qd = [zeros(), zeros()], [zeros(), zeros()]
    for kc in range(K // 8):
        kx = 8 * kc + 2 * T4
        pair = lambda m, r: (tf32_rn(m[r, kx]), tf32_rn(m[r, kx + 1]))
        (ak0, ak2), (ak1, ak3) = pair(k, r0 + G8), pair(k, r0 + G8 + 8)
        (aq0, aq2), (aq1, aq3) = pair(q, r0 + G8), pair(q, r0 + G8 + 8)
        ak, aq = [ak0, ak1, ak2, ak3], [aq0, aq1, aq2, aq3]
        for nt in range(2 * w):
            b = list(pair(k, 8 * nt + G8))
            kk[nt], qk[nt] = mma_k8(kk[nt], ak, b), mma_k8(qk[nt], aq, b)
        b0, b1 = [ak[0], ak[2]], [ak[1], ak[3]]
        kd = [mma_k8(kd[0], ak, b0), mma_k8(kd[1], ak, b1)]
        qd = [mma_k8(qd[0], aq, b0), mma_k8(qd[1], aq, b1)]
    rows = r0 + (LANES & 15)
    sq = np.where(LANES < 16, (f32(k[rows]) ** 2).sum(1), (f32(q[rows]) ** 2).sum(1))
    return kk, qk, kd, qd, sq


def prep_cta(q, k, G, beta, scale, l2norm=True, io16=True):
    """q, k [64, K] io values (as float64), G cumulative gate, beta. Returns L, Au, rnq, rnk, writes."""
    K = q.shape[1]
    rnorm = lambda sq: f32(1 / np.sqrt(f32(sq + 1e-6))) if l2norm else np.ones(32, np.float32)
    rnq, rnk = np.zeros(C, np.float32), np.zeros(C, np.float32)
    tiles = []
    mi, mr = LANES >> 3, LANES & 7
    for w in range(4):
        r0 = 16 * w
        if not io16:
            kk, qk, kd, qd, sq = products_fp32(q, k, w)
            rn = rnorm(sq)
            rnk[r0 + np.arange(16)], rnq[r0 + np.arange(16)] = rn[:16], rn[16:]
            tiles.append((kk, qk, kd, qd))
            continue
        kk = [zeros() for _ in range(6)]
        qk = [zeros() for _ in range(6)]
        kd, qd, qq = [zeros(), zeros()], [zeros(), zeros()], [zeros(), zeros()]
        for ks in range(K // 16):
            a_addr = [(r0 + (m & 1) * 8 + r, (m >> 1) * 8 + 16 * ks) for m, r in zip(mi, mr)]
            ak, aq = ldmatrix_x4(k, a_addr), ldmatrix_x4(q, a_addr)
            for pb in range(w):  # matrix mi: rows 16 pb + 8 (mi / 2), columns 8 (mi % 2)
                b_addr = [(16 * pb + (m >> 1) * 8 + r, (m & 1) * 8 + 16 * ks) for m, r in zip(mi, mr)]
                b = ldmatrix_x4(k, b_addr)
                for u in range(2):
                    nt, b0, b1 = 2 * pb + u, b[2 * u], b[2 * u + 1]
                    kk[nt], qk[nt] = mma_k16(kk[nt], ak, b0, b1), mma_k16(qk[nt], aq, b0, b1)
            kd = [mma_k16(kd[0], ak, ak[0], ak[2]), mma_k16(kd[1], ak, ak[1], ak[3])]
            qd = [mma_k16(qd[0], aq, ak[0], ak[2]), mma_k16(qd[1], aq, ak[1], ak[3])]
            qq = [mma_k16(qq[0], aq, aq[0], aq[2]), mma_k16(qq[1], aq, aq[1], aq[3])]
        odd = (G8 & 1) == 1
        k0, k1 = np.where(odd, kd[0][1], kd[0][0]), np.where(odd, kd[1][3], kd[1][2])
        q0, q1 = np.where(odd, qq[0][1], qq[0][0]), np.where(odd, qq[1][3], qq[1][2])
        r = LANES & 15
        src = 4 * (r & 7) + ((r & 7) >> 1)
        sq = np.where(LANES < 16, np.where(r < 8, k0[src], k1[src]), np.where(r < 8, q0[src], q1[src]))
        rn = rnorm(sq)
        rnk[r0 + r[:16]], rnq[r0 + r[16:]] = rn[:16], rn[16:]
        tiles.append((kk, qk, kd, qd))

    # Epilogue: M (shared) and L (workspace).
    G2 = f32(f32(G) * f32(1.4426950408889634))
    Ms = np.full((C, C), np.nan, np.float32)  # unwritten entries stay NaN
    L = np.full((C, C), np.nan, np.float32)
    L_writes = np.zeros((C, C), int)
    for w, (kk, qk, kd, qd) in enumerate(tiles):
        r0 = 16 * w

        def out_tile(kc, qc, nt, diag, u):
            for e, (dr, dc) in enumerate(ELEM):
                i, j = r0 + G8 + dr, 8 * nt + 2 * T4 + dc
                below = G8 + dr - 8 * u - 2 * T4 - dc
                gamma = f32(np.exp2(f32(G2[i] - G2[j]).astype(np.float64)))
                if diag:
                    gamma = np.where(below >= 0, gamma, 0)
                wgt = f32(rnk[j] * gamma)
                mv = f32(f32(kc[e] * f32(beta[i] * rnk[i])) * wgt)
                if diag:
                    mv = np.where(below > 0, mv, 0)
                lv = f32(f32(qc[e] * f32(rnq[i] * scale)) * wgt)
                Ms[i, j] = mv
                L[i, j] = tf32_rn(lv)
                L_writes[i, j] += 1

        for nt in range(2 * w):
            out_tile(kk[nt], qk[nt], nt, False, 0)
        out_tile(kd[0], qd[0], 2 * w, True, 0)
        out_tile(kd[1], qd[1], 2 * w + 1, True, 1)
        for nt in range(2 * w + 2, 8):
            for dr in (0, 8):
                for dc in (0, 1):
                    L[r0 + G8 + dr, 8 * nt + 2 * T4 + dc] = 0
                    L_writes[r0 + G8 + dr, 8 * nt + 2 * T4 + dc] += 1

    D = step1(Ms)
    Au, Au_writes = step2(Ms, D, beta)
    return L, Au, rnq, rnk, L_writes, Au_writes, Ms, D


def step1(Ms):
    """D_b = T_bb^-1: fp32 forward substitution, one column per thread."""
    D = np.zeros((4, 16, 16), np.float32)
    for b in range(4):
        T = Ms[16 * b:16 * b + 16, 16 * b:16 * b + 16]
        x = np.zeros((16, 16), np.float32)  # [i, col]
        for i in range(16):
            acc = f32(np.arange(16) == i)
            for j in range(i):
                acc = f32(acc - f32(T[i, j] * x[j]))  # the kernel's fmaf rounds once
            x[i] = acc
        D[b] = x
    return D


def step2(Ms, D, beta, out_round=tf32_rn):
    """Warp j: block column j of A = T^-1, transposed, in 3xTF32; Au = A diag(beta)."""
    Au = np.full((C, C), np.nan, np.float32)
    writes = np.zeros((C, C), int)
    for j in range(4):
        bcol = [beta[16 * j + G8], beta[16 * j + G8 + 8]]

        def store(y, i):
            for st in range(2):
                for e, (dc, dr) in enumerate(ELEM):  # y[st][e] = A_ij[8 st + 2 t + e % 2][g + 8 (e / 2)]
                    r, c = 16 * i + 8 * st + 2 * T4 + dr, 16 * j + G8 + dc
                    Au[r, c] = out_round(f32(y[st][e] * bcol[dc // 8]))
                    writes[r, c] += 1

        for i in range(j):
            for hf in range(2):
                r = 16 * i + (LANES >> 2) + 8 * hf
                for cc in range(4):
                    Au[r, 16 * j + 4 * (LANES & 3) + cc] = 0
                    writes[r, 16 * j + 4 * (LANES & 3) + cc] += 1
        y = [[D[j][8 * st + 2 * T4 + dr, G8 + dc] for dc, dr in ELEM] for st in range(2)]
        store(y, j)
        yh, yl = {}, {}
        for d in range(1, 4):
            i = j + d
            if i >= 4:
                break
            yh[d - 1], yl[d - 1] = zip(*(split_a_from_acc(y[st]) for st in range(2)))
            pt = [acc3(), acc3()]
            for kb in range(d):
                for st in range(2):
                    for u in range(2):
                        bh, bl = split_b_transposed(Ms, 16 * (j + kb) + 8 * st, 16 * i + 8 * u)
                        pt[u] = mma_tf32x3(pt[u], yh[kb][st], yl[kb][st], bh, bl)
            pt = [acc3_sum(pt[u]) for u in range(2)]
            ph, pl = zip(*(split_a_from_acc(pt[st]) for st in range(2)))
            ya = [acc3(), acc3()]
            for st in range(2):
                for u in range(st, 2):
                    bh, bl = split_b_transposed(D[i], 8 * st, 8 * u)
                    ya[u] = mma_tf32x3(ya[u], ph[st], pl[st], bh, bl)
            ya = [acc3_sum(ya[u]) for u in range(2)]
            y = [[-ya[u][e] for e in range(4)] for u in range(2)]
            store(y, i)
    return Au, writes


def old_step2(Ms, D):
    """The scalar fp32 step 2 this replaced (running sums in column order)."""
    A = np.zeros((C, C), np.float32)
    for b in range(4):
        A[16 * b:16 * b + 16, 16 * b:16 * b + 16] = D[b]
    for d in range(1, 4):
        for j in range(4 - d):
            i = j + d
            P = np.zeros((16, 16), np.float32)
            for kk in range(16 * j, 16 * i):
                P = f32(P + f32(Ms[16 * i:16 * i + 16, kk, None] * A[kk, 16 * j:16 * j + 16]))
            acc = np.zeros((16, 16), np.float32)
            for s in range(16):
                acc = f32(acc + f32(D[i][:, s, None] * P[s]))
            A[16 * i:16 * i + 16, 16 * j:16 * j + 16] = -acc
    return A


# ---- checks -----------------------------------------------------------------
def inputs(rng, K, decay=0.05, beta_hi=1.0, corr=0.0, length=C):
    def rows():  # bf16 values (truncated fp32)
        x = rng.standard_normal((C, K))
        if corr:
            x = corr * rng.standard_normal(K) + (1 - corr) * x
        return (f32(x).view(np.uint32) & 0xFFFF0000).view(np.float32).astype(np.float64)

    q, k = rows(), rows()
    g = -rng.uniform(0, 2 * decay, C)
    beta = rng.uniform(0, beta_hi, C)
    q[length:], k[length:], g[length:], beta[length:] = 0, 0, 0, 0
    return q, k, f32(np.cumsum(f32(g))), f32(beta)


def reference(q, k, G, beta, scale):
    qn = q / np.sqrt((q * q).sum(1, keepdims=True) + 1e-6)
    kn = k / np.sqrt((k * k).sum(1, keepdims=True) + 1e-6)
    Gd = G.astype(np.float64)
    Gam = np.exp(np.minimum(Gd[:, None] - Gd[None, :], 0)) * np.tri(C)
    M = np.tril(beta[:, None] * (kn @ kn.T) * Gam, -1)
    L = scale * (qn @ kn.T) * Gam
    Au = np.linalg.inv(np.eye(C) + M) * beta[None, :].astype(np.float64)
    return L, Au


def check_mapping():
    rng = np.random.default_rng(0)
    for K, length, io16 in ((64, C, True), (128, 50, True), (64, 40, False)):
        q, k, G, beta = inputs(rng, K, length=length)
        if not io16:  # fp32 values: not exact in tf32
            q, k = (x + rng.standard_normal(x.shape) * 1e-3 * (x != 0) for x in (q, k))
        scale = K ** -0.5
        L, Au, rnq, rnk, Lw, Aw, _, _ = prep_cta(q, k, G, beta, scale, io16=io16)
        assert (Lw == 1).all() and (Aw == 1).all(), "every L and Au element written once"
        Lr, Aur = reference(q, k, G, beta, scale)
        eps = 2.0 ** -10  # tf32 rounding of the outputs, with room for the fp32 steps
        assert np.allclose(rnk[:length], 1 / np.sqrt((k * k).sum(1) + 1e-6)[:length], rtol=1e-6)
        assert np.allclose(rnq[:length], 1 / np.sqrt((q * q).sum(1) + 1e-6)[:length], rtol=1e-6)
        assert np.abs(L - Lr).max() <= eps * np.abs(Lr).max(), np.abs(L - Lr).max()
        assert np.abs(Au - Aur).max() <= eps * np.abs(Aur).max(), np.abs(Au - Aur).max()
        assert (Au[length:] == 0).all() and (Au[:, length:] == 0).all()
    print("mapping: L, Au and the norms match float64, each element written once (16-bit io, fp32 io)")


def study_step2():
    print("step 2 error against float64 (relative to max |A|), 3xTF32 vs the previous scalar fp32:")
    cases = [("typical", {}), ("no decay", dict(decay=0.0)), ("strong decay", dict(decay=1.0)),
             ("correlated keys", dict(decay=0.0, corr=0.6)),
             ("near-equal keys", dict(decay=0.001, corr=0.95))]
    for name, kw in cases:
        err = {"3xTF32": [], "fp32": []}
        for seed in range(4):
            q, k, G, beta = inputs(np.random.default_rng(10 + seed), 128, **kw)
            _, _, _, _, _, _, Ms, D = prep_cta(q, k, G, beta, 1.0)
            Mt = np.where(np.tri(C, k=-1) > 0, Ms, 0).astype(np.float64)
            ref = np.linalg.inv(np.eye(C) + Mt)
            A3, _ = step2(Ms, D, np.ones(C, np.float32), out_round=f32)  # A itself, unrounded
            for key, A in (("3xTF32", A3), ("fp32", old_step2(Ms, D))):
                err[key].append(np.abs(A - ref).max() / np.abs(ref).max())
        print(f"  {name:16s}" + "".join(f"  {key} {max(v):.1e}" for key, v in err.items()))
    print("  (the outputs are rounded to tf32 after this: 2^-11 = 4.9e-04)")


if __name__ == "__main__":
    check_mapping()
    study_step2()
