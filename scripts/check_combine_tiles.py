#!/usr/bin/env python3
"""The shared-memory layout and fragment mapping of the segment combine
(src/cuda/sm80/prefill_segments.cu) in executable form.

Emulates one CTA of the combine lane by lane with NumPy, as the kernel
addresses shared memory: the cp.async copies of a state map M into its
swizzled buffer (unit u of row r at unit u ^ (r % 8)), the tile S_p written
split (tf32 hi + lo) by the threads whose accumulators hold it (the 8-column
half h of row r at h ^ (r / 2 % 2)), the m16n8k8 A and B fragments each lane
reads per k-step, the 3xTF32 products and the C fragments' rows and columns.
Checks, for K in {64, 128} and both halves of the tile, that the copies fill
every word of the buffer once, that every fragment read of a warp touches 32
distinct banks, that the steps S_{p+1} = M_p S_p + S_local,p over a few
segments match float64, and that the 3xTF32 error stays near fp32's. It needs
no GPU; keep it in step with the kernel.

    python3 scripts/check_combine_tiles.py
"""
import numpy as np

COLS = 16  # kCombineColumns
VEC = 4  # floats per 16-byte copy


def tf32(x):
    """Rounds float32 values to tf32 (10 mantissa bits), ties to even (cvt.rn)."""
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0xFFF + ((b >> 13) & 1)) & 0xFFFFE000
    return b.astype(np.uint32).view(np.float32)


def split(x):
    hi = tf32(x)
    return hi, tf32(np.float32(x) - hi)


def map_at(r, c, k):
    return r * k + (((c // VEC) ^ (r & 7)) * VEC) + c % VEC


def tile_at(r, c):
    return r * COLS + (c ^ (((r >> 1) & 1) << 3))


def copy_map(m, k):
    """The prefetch: 2K threads, thread tid copies unit tid % (K/4) of rows
    tid / (K/4) + 8 i, each to map_at of its row."""
    smem = np.full(k * k, np.nan, np.float32)
    units = k // VEC
    rows_per_round = 2 * k // units
    for tid in range(2 * k):
        r0, u = tid // units, tid % units
        for i in range(k // rows_per_round):
            r = r0 + i * rows_per_round
            dst = map_at(r, u * VEC, k)
            assert np.all(np.isnan(smem[dst : dst + VEC])), "a word copied twice"
            smem[dst : dst + VEC] = m[r, u * VEC : u * VEC + VEC]
    assert not np.isnan(smem).any(), "a word never copied"
    return smem


def c_positions(w, lane):
    """(element, tile row, tile column) of each accumulator of warp w's lane."""
    g, t = lane >> 2, lane & 3
    for h in range(2):
        for e in range(4):
            yield h, e, 16 * w + g + (e >> 1) * 8, 8 * h + 2 * t + (e & 1)


def step(m_smem, s, b, k):
    """One combine step on emulated lanes: returns M S + B (fp32) from the
    swizzled map and the tile written split, checking bank-conflict freedom."""
    s_hi = np.full(k * COLS, np.nan, np.float32)
    s_lo = np.full(k * COLS, np.nan, np.float32)
    for w in range(k // 16):
        for lane in range(32):
            for _, _, r, c in c_positions(w, lane):
                s_hi[tile_at(r, c)], s_lo[tile_at(r, c)] = split(s[r, c])
    assert not np.isnan(s_hi).any(), "the tile is not covered"
    out = np.full((k, COLS), np.nan, np.float32)
    for w in range(k // 16):
        r0 = 16 * w
        acc = {h: np.zeros((3, 16, 8), np.float32) for h in range(2)}  # hh, lh, hl
        for k0 in range(0, k, 8):
            a = np.zeros((16, 8), np.float32)
            banks = [[] for _ in range(4)]
            for lane in range(32):
                g, t = lane >> 2, lane & 3
                for e in range(4):  # a0 (g, t) a1 (g + 8, t) a2 (g, t + 4) a3 (g + 8, t + 4)
                    at = map_at(r0 + g + (e & 1) * 8, k0 + t + (e >> 1) * 4, k)
                    a[g + (e & 1) * 8, t + (e >> 1) * 4] = m_smem[at]
                    banks[e].append(at % 32)
            assert all(len(set(x)) == 32 for x in banks), "conflicting A fragment reads"
            a_hi, a_lo = split(a)
            for h in range(2):
                bh = np.zeros((8, 8), np.float32)
                bl = np.zeros((8, 8), np.float32)
                for i in range(2):  # b0 (t, g) b1 (t + 4, g)
                    ats = [tile_at(k0 + (lane & 3) + 4 * i, 8 * h + (lane >> 2)) for lane in range(32)]
                    assert len({x % 32 for x in ats}) == 32, "conflicting B fragment reads"
                    for lane, at in enumerate(ats):
                        bh[(lane & 3) + 4 * i, lane >> 2] = s_hi[at]
                        bl[(lane & 3) + 4 * i, lane >> 2] = s_lo[at]
                # mma_tf32x3: lo hi, hi lo, hi hi, each into its own accumulator
                acc[h][1] += (a_lo.astype(np.float64) @ bh).astype(np.float32)
                acc[h][2] += (a_hi.astype(np.float64) @ bl).astype(np.float32)
                acc[h][0] += (a_hi.astype(np.float64) @ bh).astype(np.float32)
        for lane in range(32):
            g, t = lane >> 2, lane & 3
            for h, e, r, c in c_positions(w, lane):
                i, j = g + (e >> 1) * 8, 2 * t + (e & 1)
                prod = acc[h][0][i, j] + (acc[h][1][i, j] + acc[h][2][i, j])
                assert np.isnan(out[r, c]), "an output written twice"
                out[r, c] = b[r, c] + prod
    assert not np.isnan(out).any(), "an output never written"
    return out


def main():
    rng = np.random.default_rng(7)
    for k in (64, 128):
        segs = 4
        # State maps near those of a segment: decays and rank-one updates
        # keep them contractive; scale them so products stay O(1).
        maps = [np.float32(0.9) * np.linalg.qr(rng.standard_normal((k, k)))[0].astype(np.float32) for _ in range(segs)]
        local = [rng.standard_normal((k, COLS)).astype(np.float32) for _ in range(segs)]
        s = rng.standard_normal((k, COLS)).astype(np.float32)
        s64 = s.astype(np.float64)
        for p in range(segs - 1):
            s = step(copy_map(maps[p], k), s, local[p], k)
            s64 = maps[p].astype(np.float64) @ s64 + local[p]
            err = np.sqrt(np.mean((s - s64) ** 2) / np.mean(s64**2))
            assert err < 2e-6, f"K={k} step {p}: relative RMS error {err:.2e}"
            print(f"K={k} step {p}: relative RMS error against float64 {err:.2e}")
    print("combine tiles: copies, fragments, banks and steps check out")


if __name__ == "__main__":
    main()
