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
segments match float64, and that the 3xTF32 error stays near fp32's. The
tf32 split and the m16n8k8 / 3xTF32 lane primitives are check_prep_fragments.py's.
It needs no GPU; keep it in step with the kernel.

    python3 scripts/check_combine_tiles.py
"""
import numpy as np

from check_prep_fragments import G8, T4, acc3, acc3_sum, mma_tf32x3, split

COLS = 16  # kCombineColumns
VEC = 4  # floats per 16-byte copy


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


def c_at(w, e, h):
    """Tile (row, column) of accumulator element e of half h, per lane of warp w."""
    return 16 * w + G8 + (e >> 1) * 8, 8 * h + 2 * T4 + (e & 1)


def distinct_banks(addrs):
    assert len(set(int(x) % 32 for x in addrs)) == 32, "conflicting fragment reads"


def step(m_smem, s, b, k):
    """One combine step on emulated lanes: M S + B (fp32) from the swizzled
    map and the tile written split, checking bank-conflict freedom."""
    s_hi = np.full(k * COLS, np.nan, np.float32)
    s_lo = np.full(k * COLS, np.nan, np.float32)
    for w in range(k // 16):
        for h in range(2):
            for e in range(4):
                r, c = c_at(w, e, h)
                s_hi[tile_at(r, c)], s_lo[tile_at(r, c)] = split(s[r, c])
    assert not np.isnan(s_hi).any(), "the tile is not covered"
    out = np.full((k, COLS), np.nan, np.float32)
    for w in range(k // 16):
        acc = [acc3(), acc3()]
        for k0 in range(0, k, 8):
            # A element e: row g (+ 8 for odd e), column t (+ 4 for e >= 2)
            a_at = [map_at(16 * w + G8 + (e & 1) * 8, k0 + T4 + (e >> 1) * 4, k) for e in range(4)]
            for x in a_at:
                distinct_banks(x)
            a_hi, a_lo = zip(*(split(m_smem[x]) for x in a_at))
            for h in range(2):
                b_at = [tile_at(k0 + T4 + 4 * i, 8 * h + G8) for i in range(2)]
                for x in b_at:
                    distinct_banks(x)
                acc[h] = mma_tf32x3(acc[h], list(a_hi), list(a_lo), [s_hi[x] for x in b_at], [s_lo[x] for x in b_at])
        for h in range(2):
            prod = acc3_sum(acc[h])
            for e in range(4):
                r, c = c_at(w, e, h)
                assert np.isnan(out[r, c]).all(), "an output written twice"
                out[r, c] = b[r, c] + prod[e]
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
