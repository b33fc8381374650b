// Stage 1 of the GPU prefill, both backends: what a chunk contributes that
// does not depend on the state entering it (cuda/prep/chunk_prep.cuh: M, Au,
// L and the row factors), written to the workspace (Au and L row-major, or
// for the sm90 state pass in its tile layout, prep/tile_layout.cuh). One CTA of 4 warps per (chunk,
// value head), all chunks in parallel. The state pass then needs only raw q,
// k, v:
//   U - W S = Au (V - diag(exp G) K S).
// K K^T and Q K^T run on tensor cores over the raw q and k rows (bf16/fp16
// m16n8k16 with exact products for 16-bit io, tf32 for fp32 io), only over
// the column tiles with j <= i, with the norms applied to the products (for
// 16-bit io the squared norms are the products' diagonals). For the sm90
// tiles a CTA can instead take several value heads of one q/k head
// (GDN_PREP_HEADS, kShared: the copies, products and norms once for them),
// and beside the sm90 state pass the prep can run as three units a CTA on
// the SMs the pass leaves idle, taking (chunk, value heads) items by tickets
// and marking each ready (GDN_SM90_OVERLAP, prefill_prep_overlap_kernel).
#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cuda/prep/chunk_prep.cuh"
#include "cuda/prep/prep_heads.h"
#include "cuda/prep/tile_layout.cuh"
#include "cuda/ptx/griddep.cuh"
#include "cuda/ptx/sync.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/kernels.cuh"

namespace gdn::cuda {
namespace {

constexpr int kMatStride = kPrepMatStride;
constexpr int kNumBlk = kPrepBlocks;
constexpr int kVec = 4;  // floats per vector (float4) access

// Value heads (of one q/k head) one prep CTA may take: kMaxPrepHeads
// (prep_heads.h; the kShared instantiations, sm90 tiles). K K^T, Q K^T, the
// norms, the search for the chunk's sequence and the copies of k and q are
// the same for all of them.
static_assert(kMaxPrepHeads <= kPrepThreads / 32, "one warp per head's gate sums");
// m16n8 tiles a warp keeps of a product (K K^T, Q K^T): the diagonal block's
// two and the 2 warp below it; warp w's start at tile w (w + 1) of the CTA's.
constexpr int kSavedTiles = kNumBlk * (kNumBlk + 1);
// CTAs of the shared-heads prep an SM holds at once: the Au-only one five,
// as the prep with one head a CTA does (its 38.4 KB of shared memory at K = 128 allow
// them; the bound keeps ptxas at the registers they need, 102 a thread); the
// one with L four, by its 48.6 KB.
template <bool kAuOnly>
constexpr int kSharedPrepCtas = kAuOnly ? 5 : 4;

// Raw q and k rows (the io dtype, one 16-byte pad per row: the fragment loads
// of a warp hit distinct banks); the l2 norms apply as row and column factors
// of the products, so the rows need no normalised copy. M takes their place
// once the products are in registers.
template <typename T, int K>
struct PrepSmem {
  static constexpr int kStride = K + 16 / sizeof(T);  // elements per row
  struct Rows {
    T k[kChunk][kStride];
    T q[kChunk][kStride];
  };
  union {
    Rows raw;                     // raw q and k (last read by the products)
    float m[kChunk][kMatStride];  // then M; only its strictly lower part is read
  };
  float D[kNumBlk][kPrepBlk][kPrepDStride];  // D_b = T_bb^-1 (step 1)
  float G[kChunk];                           // in-chunk cumulative gate
  float G2[kChunk];                          // G log2(e), for exp2
  float beta[kChunk], rnq[kChunk], rnk[kChunk];
};
// The shared-heads prep's (kShared): up to kMaxPrepHeads heads' gates, and
// the products' tiles kept for the heads after the first (K K^T, then Q K^T
// unless kAuOnly), over the rows once these are dead (kAuOnly: k's rows only).
template <typename T, int K, bool kAuOnly>
struct SharedPrepSmem {
  static constexpr int kStride = K + 16 / sizeof(T);
  static constexpr int kProducts = kAuOnly ? 1 : 2;
  struct RowsK {
    T k[kChunk][kStride];
  };
  struct RowsKq {
    T k[kChunk][kStride];
    T q[kChunk][kStride];
  };
  struct Kept {
    float m[kChunk][kMatStride];
    float4 saved[kProducts][kSavedTiles][32];  // a warp's tiles at its own offset (kSavedTiles)
  };
  union {
    std::conditional_t<kAuOnly, RowsK, RowsKq> raw;
    Kept kept;
  };
  float D[kNumBlk][kPrepBlk][kPrepDStride];
  float G[kMaxPrepHeads][kChunk], G2[kMaxPrepHeads][kChunk], beta[kMaxPrepHeads][kChunk];
  float rnq[kChunk], rnk[kChunk];
};
template <typename T, int K, bool kAuOnly, bool kShared>
using PrepSmemOf = std::conditional_t<kShared, SharedPrepSmem<T, K, kAuOnly>, PrepSmem<T, K>>;

// One value head's view of the shared-heads scratch (the S of
// prep/chunk_prep.cuh): the CTA's M, D and norms, head u's gates; every
// address offset by z (opaque(0) in the head loop: formed anew in each
// head rather than hoisted and held in registers across the loop).
struct PrepHead {
  float (*m)[kMatStride];
  float (*D)[kPrepBlk][kPrepDStride];
  float *G, *G2, *beta, *rnq, *rnk;
};
template <typename T, int K, bool kAuOnly>
__device__ __forceinline__ PrepHead head_scratch(SharedPrepSmem<T, K, kAuOnly>& s, int u, int z = 0) {
  return {s.kept.m + z, s.D + z, s.G[u] + z, s.G2[u] + z, s.beta[u] + z, s.rnq + z, s.rnk + z};
}
template <typename T, int K>
__device__ __forceinline__ PrepSmem<T, K>& head_scratch(PrepSmem<T, K>& s, int, int = 0) {
  return s;  // one head: the scratch itself
}

// c += a b for 16-bit io: the products are exact in fp32.
template <typename T>
__device__ __forceinline__ void mma_io16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>)
    mma_f16(c, a, b0, b1);
  else
    mma_bf16(c, a, b0, b1);
}

// GDN_PREP_PROBE=1 (a measurement build, -DCMAKE_CUDA_FLAGS=-DGDN_PREP_PROBE=1):
// thread 0 of CTA 0 prints the cycles each step of the kernel took: the
// first five end at a barrier (the slowest warp's time), the last is warp 0's
// block column of the inverse, its longest chain. Measured on the H200
// (bench/results/h200-2026-12-04-7552ab4-probes.txt): one chunk alone
// (gdn run --seq-lens 64) 3268, 6, 1549, 3686, 564, 2649 cycles; 8 x 1024
// 9047, 6, 1842, 4426, 1060, 3777. Staging the sm90 tile stores of L and Au
// in shared memory to write them in whole sectors (ncu counted 35% excess
// sectors) made the suite's batch rows 4-8% slower: not kept.
#if GDN_PREP_PROBE == 1
struct PrepProbe {
  long long t[6] = {}, last = clock64();
  __device__ __forceinline__ void mark(int i) {
    const long long now = clock64();
    t[i] = now - last;
    last = now;
  }
};
#else
struct PrepProbe {
  __device__ __forceinline__ void mark(int) {}
};
#endif
#define GDN_PREP_MARK(i) probe.mark(i)

// Value head hv's M (into the scratch sh), L, Au and factors from the raw
// products (registers in mask_products' layout: kk, qk below the diagonal
// block, kd, qd on it): the kernel's last three steps, once per head. sync:
// a barrier of the unit's 128 threads (prep_unit).
template <bool kAuOnly, bool kTiles, typename S, typename Sync>
__device__ __forceinline__ void head_results(const PrefillParams& p, S& sh, int c, int hv, int len, int warp,
                                             int lane, int tid, const float (&kk)[2 * (kNumBlk - 1)][4],
                                             const float (&qk)[2 * (kNumBlk - 1)][4], const float (&kd)[2][4],
                                             const float (&qd)[2][4], const Sync& sync, PrepProbe& probe) {
  // M (into sh.m, over q and k) and L (to the workspace) from the products.
  {
    float* L = p.L + (int64_t{c} * p.HV + hv) * kChunk * kChunk;
    const TiledPrepStores tiled{nullptr, L};
    mask_products(sh, p.scale, warp, lane, kk, qk, kd, qd, [&](int i, int j, float2 xy) {
      if constexpr (kAuOnly)
        (void)i, (void)j, (void)xy;  // L is the pass's
      else if constexpr (kTiles)
        tiled.l_pair(i, j, xy);
      else
        reinterpret_cast<float2*>(L + i * kChunk)[j >> 1] = xy;
    });
  }
  sync();
  GDN_PREP_MARK(3);

  // Au = (I + M)^-1 diag(beta): the diagonal blocks and the row factors,
  // then one block column per warp.
  const int64_t item = int64_t{c} * p.HV + hv;
  if (tid < kChunk)
    invert_diagonal_blocks(sh, tid);
  else
    row_factors<!kAuOnly>(sh, p.scale, len, tid - kChunk, p.F + item * kFactorStride);
  sync();
  GDN_PREP_MARK(4);
  float* Au = p.Au + item * kChunk * kChunk;
  const TiledPrepStores tiled{Au, nullptr};
  invert_block_column(
      sh, warp, lane,
      [&](int i, int j, float x) {
        if constexpr (kTiles)
          tiled.au_element(i, j, x);
        else
          Au[i * kChunk + j] = x;
      },
      [&](int i) {  // block (i, warp) above the diagonal
        if constexpr (kTiles) {
          tiled.au_zero_block(i, warp, lane);
        } else {
#pragma unroll
          for (int hf = 0; hf < 2; ++hf)  // two float4 per lane
            *reinterpret_cast<float4*>(Au + (i * kPrepBlk + (lane >> 2) + 8 * hf) * kChunk + warp * kPrepBlk +
                                       kVec * (lane & 3)) = make_float4(0.f, 0.f, 0.f, 0.f);
        }
      });
}

// One unit of the prep: item b of its order (chunk c, value heads hv0 ..,
// value heads fastest), by 128 threads (tid) whose barrier is `sync`: a CTA
// of prefill_prep_kernel (__syncthreads), or a warpgroup of the overlapped
// prep (a named barrier of its own).
template <typename T, int K, int V, bool kAuOnly, bool kTiles, bool kShared, typename Smem, typename Sync>
__device__ __forceinline__ void prep_unit(const PrefillParams& p, Smem& s, uint32_t b, int tid,
                                          const Sync& sync, PrepProbe& probe) {
  // Value heads fastest: those of one q/k head are adjacent, so its q and k
  // rows cross from memory once and reach the others from L2. kShared: unit
  // (c, j) takes value heads hv0 = heads j .. hv0 + heads - 1.
  const int heads = kShared ? p.prep_heads : 1;
  const uint32_t head_sets = static_cast<uint32_t>(p.HV / heads);
  const int c = static_cast<int>(b / head_sets);
  const int hv0 = static_cast<int>(b % head_sets) * heads;
  if (c >= first_chunk(p, p.N)) return;
  // The sequence holding chunk c: the last n with first_chunk(n) <= c.
  int64_t lo = 0, hi = p.N - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (first_chunk(p, mid) <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int64_t n = lo;
  const int64_t t0 = seq_start(p, n) + int64_t{c - first_chunk(p, n)} * kChunk;
  const int len = static_cast<int>(min(int64_t{kChunk}, seq_start(p, n + 1) - t0));
  const int64_t h = hv0 / static_cast<int>(p.group);  // head counts fit in int: a 32-bit division
  const int warp = tid >> 5, lane = tid & 31;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);

  // Raw q and k rows in one round of asynchronous copies (rows past the
  // chunk's end zero), overlapped with the gate loads below.
  if constexpr (!kAuOnly)
    copy_rows_async<T, K, kChunk, kPrepThreads>(&s.raw.q[0][0], Smem::kStride, q + t0 * p.q_s0 + h * p.q_s1,
                                                p.q_s0, len, tid);
  copy_rows_async<T, K, kChunk, kPrepThreads>(&s.raw.k[0][0], Smem::kStride, k + t0 * p.k_s0 + h * p.k_s1,
                                              p.k_s0, len, tid);
  cp_async_commit();
  // Gates (padding rows: g = 0, beta = 0), of each head the CTA takes.
  if (tid < kChunk) {
#pragma unroll
    for (int u = 0; u < (kShared ? kMaxPrepHeads : 1); ++u)
      if (u < heads) {
        auto&& sh = head_scratch(s, u);
        load_chunk_gates(p, sh, t0, len, hv0 + u, tid);
      }
  }
  GDN_PREP_MARK(0);
  cp_async_wait<0>();
  sync();
  GDN_PREP_MARK(1);

  // K K^T and Q K^T of the raw rows for this warp's 16 rows i, only over the
  // column tiles holding some j <= i: n-tiles 0 .. 2 warp - 1 below the
  // diagonal block, and the diagonal block's two. Norms, scale, gate and mask
  // are applied on the way out.
  const int r0 = warp * 16, g8 = lane >> 2, t4 = lane & 3;
  const auto rnorm = [&](float sq) { return p.l2norm ? 1.f / sqrtf(sq + 1e-6f) : 1.f; };
  float kk[2 * (kNumBlk - 1)][4] = {}, qk[2 * (kNumBlk - 1)][4] = {};  // below the diagonal block
  float kd[2][4] = {}, qd[2][4] = {};                                  // the diagonal block
  if constexpr (sizeof(T) == 2) {
    // m16n8k16 on the raw 16-bit values (exact products), fragments by
    // ldmatrix. A (rows r0.., k 16 ks..): matrix mi = lane / 8 is rows
    // r0 + 8 (mi % 2), columns 8 (mi / 2). B(k, j) = k[j][k] of n-tiles 2 pb
    // and 2 pb + 1: matrix mi is rows 16 pb + 8 (mi / 2), columns 8 (mi % 2),
    // registers b0 b1 of the first n-tile, then of the second. The diagonal
    // block's B fragments are the A fragments of k: (a0, a2) and (a1, a3).
    const int mi = lane >> 3, mr = lane & 7;
    // (Shared-memory addresses formed once: the loop adds constants.)
    const uint32_t a_k = smem_addr(&s.raw.k[r0 + (mi & 1) * 8 + mr][(mi >> 1) * 8]);
    uint32_t a_q = 0;
    if constexpr (!(kShared && kAuOnly)) a_q = smem_addr(&s.raw.q[r0 + (mi & 1) * 8 + mr][(mi >> 1) * 8]);
    const uint32_t b_k = smem_addr(&s.raw.k[(mi >> 1) * 8 + mr][(mi & 1) * 8]);
    constexpr uint32_t kStep = 16 * sizeof(T), kBlockRows = 16 * Smem::kStride * sizeof(T);
    float qq[2][4] = {};  // Q Q^T's diagonal block: its diagonal is |q_i|^2
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks) {
      uint32_t ak[4], aq[4];
      ldmatrix_x4(ak, a_k + ks * kStep);
      if constexpr (!kAuOnly) ldmatrix_x4(aq, a_q + ks * kStep);
#pragma unroll
      for (int pb = 0; pb < kNumBlk - 1; ++pb) {
        if (pb < warp) {
          uint32_t b[4];
          ldmatrix_x4(b, b_k + pb * kBlockRows + ks * kStep);
          mma_io16<T>(kk[2 * pb], ak, b[0], b[1]);
          mma_io16<T>(kk[2 * pb + 1], ak, b[2], b[3]);
          if constexpr (!kAuOnly) {
            mma_io16<T>(qk[2 * pb], aq, b[0], b[1]);
            mma_io16<T>(qk[2 * pb + 1], aq, b[2], b[3]);
          }
        }
      }
      mma_io16<T>(kd[0], ak, ak[0], ak[2]);
      mma_io16<T>(kd[1], ak, ak[1], ak[3]);
      if constexpr (!kAuOnly) {
        mma_io16<T>(qd[0], aq, ak[0], ak[2]);
        mma_io16<T>(qd[1], aq, ak[1], ak[3]);
        mma_io16<T>(qq[0], aq, aq[0], aq[2]);
        mma_io16<T>(qq[1], aq, aq[1], aq[3]);
      }
    }
    // Reciprocal l2 norms from the squared norms on the diagonals: row
    // r0 + g8 (+ 8) is column g8 of n-tile 0 (1), element g8 % 2 (2 + g8 % 2)
    // of lane 4 g8 + g8 / 2. Lane l then takes row r0 + l % 16 of k (l < 16)
    // or q, one reciprocal square root per lane.
    {
      const bool odd = g8 & 1;
      const float k0 = odd ? kd[0][1] : kd[0][0], k1 = odd ? kd[1][3] : kd[1][2];
      const float q0 = odd ? qq[0][1] : qq[0][0], q1 = odd ? qq[1][3] : qq[1][2];
      const int r = lane & 15, src = 4 * (r & 7) + ((r & 7) >> 1);
      const float sk0 = __shfl_sync(0xffffffffu, k0, src), sk1 = __shfl_sync(0xffffffffu, k1, src);
      const float sq0 = __shfl_sync(0xffffffffu, q0, src), sq1 = __shfl_sync(0xffffffffu, q1, src);
      const float sq = lane < 16 ? (r < 8 ? sk0 : sk1) : (r < 8 ? sq0 : sq1);
      if (!kAuOnly || lane < 16) (lane < 16 ? s.rnk : s.rnq)[r0 + r] = rnorm(sq);
    }
  } else {
    // fp32 io: tf32 m16n8k8, k-permuted fragments (a lane's two k values
    // adjacent, one 64-bit load), rounded to tf32 on the way in.
    const auto pair = [](const float* x, uint32_t& lo, uint32_t& hi) {
      const float2 f = *reinterpret_cast<const float2*>(x);
      lo = to_tf32_rn(f.x);
      hi = to_tf32_rn(f.y);
    };
#pragma unroll
    for (int kc = 0; kc < K / 8; ++kc) {
      const int kx = kc * 8 + 2 * t4;
      uint32_t ak[4], aq[4];
      pair(&s.raw.k[r0 + g8][kx], ak[0], ak[2]);
      pair(&s.raw.k[r0 + g8 + 8][kx], ak[1], ak[3]);
      pair(&s.raw.q[r0 + g8][kx], aq[0], aq[2]);
      pair(&s.raw.q[r0 + g8 + 8][kx], aq[1], aq[3]);
#pragma unroll
      for (int nt = 0; nt < 2 * (kNumBlk - 1); ++nt) {
        if (nt < 2 * warp) {
          uint32_t b[2];
          pair(&s.raw.k[nt * 8 + g8][kx], b[0], b[1]);
          mma_tf32(kk[nt], ak, b);
          mma_tf32(qk[nt], aq, b);
        }
      }
      const uint32_t b0[2] = {ak[0], ak[2]}, b1[2] = {ak[1], ak[3]};  // the diagonal block's B
      mma_tf32(kd[0], ak, b0);
      mma_tf32(kd[1], ak, b1);
      mma_tf32(qd[0], aq, b0);
      mma_tf32(qd[1], aq, b1);
    }
    // Norms of the fp32 rows (the products saw them rounded): lane l sums
    // row r0 + l % 16 of k (l < 16) or q.
    const float* row = lane < 16 ? &s.raw.k[r0 + (lane & 15)][0] : &s.raw.q[r0 + (lane & 15)][0];
    float acc[kVec] = {};
#pragma unroll
    for (int d = 0; d < K; d += kVec) {
      const float4 v = *reinterpret_cast<const float4*>(row + d);
      acc[0] = fmaf(v.x, v.x, acc[0]);
      acc[1] = fmaf(v.y, v.y, acc[1]);
      acc[2] = fmaf(v.z, v.z, acc[2]);
      acc[3] = fmaf(v.w, v.w, acc[3]);
    }
    (lane < 16 ? s.rnk : s.rnq)[r0 + (lane & 15)] = rnorm((acc[0] + acc[1]) + (acc[2] + acc[3]));
  }
  if (kShared ? warp < heads : warp == 0) {  // in-chunk cumulative gates, a warp a head
    auto&& sh = head_scratch(s, warp);
    cumsum_chunk_gates(sh, lane);
  }
  sync();  // norms and gates are in; q and k are dead
  if constexpr (kShared) {
    // The products' tiles of this warp, for every head's masks (after the
    // barrier: they take the place of the rows, which every warp reads).
    const auto keep = [&](float4* saved, const float(&d)[2][4], const float(&b)[2 * (kNumBlk - 1)][4]) {
      saved[0] = make_float4(d[0][0], d[0][1], d[0][2], d[0][3]);
      saved[32] = make_float4(d[1][0], d[1][1], d[1][2], d[1][3]);
#pragma unroll
      for (int nt = 0; nt < 2 * (kNumBlk - 1); ++nt)
        if (nt < 2 * warp) saved[32 * (nt + 2)] = make_float4(b[nt][0], b[nt][1], b[nt][2], b[nt][3]);
    };
    keep(&s.kept.saved[0][warp * (warp + 1)][lane], kd, kk);
    if constexpr (!kAuOnly) keep(&s.kept.saved[1][warp * (warp + 1)][lane], qd, qk);
  }
  GDN_PREP_MARK(2);

  if constexpr (kShared) {
#pragma unroll 1
    for (int u = 0; u < heads; ++u) {
      // The head's warp, lane and tid and the scratch's addresses formed
      // anew in each head through z, a zero the optimiser cannot see (hoisted
      // and held in registers across the loop, they spilled).
      const int z = opaque(0), warp_h = warp + z, lane_h = lane + z;
      const auto back = [&](const float4* saved, float(&d)[2][4], float(&b)[2 * (kNumBlk - 1)][4]) {
        const auto set = [](float(&x)[4], float4 v) { x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w; };
        set(d[0], saved[0]);
        set(d[1], saved[32]);
#pragma unroll
        for (int nt = 0; nt < 2 * (kNumBlk - 1); ++nt)  // (every tile set: none lives over the loop)
          set(b[nt], nt < 2 * warp_h ? saved[32 * (nt + 2)] : make_float4(0.f, 0.f, 0.f, 0.f));
      };
      back(&s.kept.saved[0][warp_h * (warp_h + 1)][lane_h], kd, kk);
      if constexpr (!kAuOnly) back(&s.kept.saved[1][warp_h * (warp_h + 1)][lane_h], qd, qk);
      if (u > 0) sync();  // the head before has read M and D
      PrepHead sh = head_scratch(s, u, z);
      head_results<kAuOnly, kTiles>(p, sh, c, hv0 + u, len, warp_h, lane_h, tid + z, kk, qk, kd, qd, sync,
                                    probe);
    }
  } else {
    head_results<kAuOnly, kTiles>(p, s, c, hv0, len, warp, lane, tid, kk, qk, kd, qd, sync, probe);
  }
}

// kAuOnly: Au and the factors but s_q only (q is not read, L not written;
// the sm90 pass forms them, state_pass.cu's kSplitL). kTiles: Au and L in
// the sm90 tile layout (p.sm90_tiles), else row-major: a template argument,
// so that no store of an element branches on it. kShared (with kTiles):
// p.prep_heads value heads of one q/k head per CTA (prep_heads_for_group).
template <typename T, int K, int V, bool kAuOnly, bool kTiles, bool kShared = false>
__global__ void __launch_bounds__(kPrepThreads, kShared ? kSharedPrepCtas<kAuOnly> : 0)
    prefill_prep_kernel(const __grid_constant__ PrefillParams p) {
  static_assert(K % 32 == 0 && V % 32 == 0, "head sizes must be multiples of 32");
  static_assert(!kShared || kTiles, "the shared-heads prep writes the sm90 tiles");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = PrepSmemOf<T, K, kAuOnly, kShared>;
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  static_assert(offsetof(Smem, raw) % 16 == 0 && sizeof(T) * Smem::kStride % 16 == 0 &&
                    offsetof(Smem, D) % 16 == 0 && offsetof(Smem, G2) % 8 == 0 &&
                    offsetof(Smem, rnk) % 8 == 0,
                "cp.async rows, float4 rows of m, float2 pairs of D, G2 and rnk");
  using OneSmem = PrepSmem<T, K>;
  using SharedSmem = SharedPrepSmem<T, K, kAuOnly>;
  static_assert(offsetof(OneSmem, m) % 16 == 0 && offsetof(SharedSmem, kept) % 16 == 0 &&
                    offsetof(typename SharedSmem::Kept, saved) % 16 == 0,
                "float4 rows of m, float4 saved tiles");
  PrepProbe probe;
  launch_dependents();       // the state pass may launch; it waits for this kernel's results
  wait_for_prerequisites();  // chunk_meta's offsets and error flag (or, inline, the caller's inputs)
  if (p.tickets != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    *p.tickets = 0;               // the persistent state pass's tickets (it waits for this kernel)
  if (p.clear_flag != nullptr) {  // inline: this kernel writes the flag (and never reads it)
    if (blockIdx.x == 0 && threadIdx.x == 0) *p.clear_flag = p.inline_check ? one_sequence_checks(p) : 0;
  } else if (device_checks_failed(p)) {
    return;
  }
  const auto sync = [] { __syncthreads(); };
  prep_unit<T, K, V, kAuOnly, kTiles, kShared>(p, s, blockIdx.x, threadIdx.x, sync, probe);
#if GDN_PREP_PROBE == 1
  GDN_PREP_MARK(5);
  if (blockIdx.x == 0 && threadIdx.x == 0)
    printf("prep probe cycles: issue %lld, wait %lld, products %lld, mask %lld, diag %lld, columns %lld\n",
           probe.t[0], probe.t[1], probe.t[2], probe.t[3], probe.t[4], probe.t[5]);
#endif
}

// One instantiation's launch (whether it waits for the kernel before is
// found once per instantiation).
template <typename T, int K, int V, bool kAuOnly, bool kTiles, bool kShared = false>
Status launch_prep_kernel(const PrefillParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(PrepSmemOf<T, K, kAuOnly, kShared>);
  const auto kernel = prefill_prep_kernel<T, K, V, kAuOnly, kTiles, kShared>;
  static const bool programmatic = kernel_waits_for_prerequisites(kernel);
  if (Status s = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmem,
                                    "prefill_prep_kernel: raising its shared memory limit");
      !s.ok())
    return s;
  if (p.max_chunks == 0) return Status::Ok();
  if (kShared && (p.prep_heads < 2 || p.prep_heads > kMaxPrepHeads || p.group % p.prep_heads != 0))
    return Status(StatusCode::kInternal,
                  "prefill_prep_kernel: prep_heads must be 2 to 4 value heads dividing those of a q/k head");
  dim3 grid;
  const int64_t head_sets = p.HV / (kShared ? p.prep_heads : 1);
  if (Status s = linear_grid(p.max_chunks * head_sets, &grid, "prefill_prep_kernel: chunks and value heads");
      !s.ok())
    return s;
  // With inline offsets the prep is the call's first kernel: launched
  // programmatically, it would let the state pass (which reads the caller's
  // entering state before its own wait) start while the kernel before the
  // call may still write that state, so it launches plainly, as chunk_meta does.
  return cuda_status(
      launch_kernel(kernel, grid, dim3(kPrepThreads), kSmem, stream, programmatic && !p.inline_offsets, p),
      "prefill_prep_kernel launch");
}

// The overlapped prep (GDN_SM90_OVERLAP=1, prefill.cu's launch_sm90): where
// the sm90 state pass's CTAs leave at least half the SMs idle, this kernel
// runs on them while the state pass runs on the others. One CTA an SM (its
// shared memory), each warpgroup a prep unit that takes tickets from a
// counter: chunk position r within the sequences first, then the sequences
// longest first (inline_order; a position past a sequence's end is no
// work), then the value heads, so that every sequence's chain finds its
// next chunk ready alike. A unit forms its item with the prep kernel's code
// (prep_unit, a named barrier per warpgroup) and marks each value head's
// chunk ready: the warpgroup meets, then one thread a head releases the
// mark at GPU scope (the barrier orders the unit's stores before it). The
// state pass, launched programmatically once every CTA of this kernel runs,
// acquires a chunk's mark before it copies the chunk's Au, L and factors;
// this kernel waits for nothing of it, so no order in which the hardware
// starts the two grids can deadlock them. Offsets inline only (the host
// checked the call).
template <typename T, int K, int V, bool kShared>
__global__ void __launch_bounds__(kOverlapPrepUnits* kPrepThreads, 1)
    prefill_prep_overlap_kernel(const __grid_constant__ PrefillParams p) {
  static_assert(kOverlapPrepUnits + 1 <= 16, "named barriers 1..kOverlapPrepUnits");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = PrepSmemOf<T, K, false, kShared>;
  __shared__ uint32_t ticket[kOverlapPrepUnits];
  const int unit = static_cast<int>(threadIdx.x) / kPrepThreads;
  const int tid = static_cast<int>(threadIdx.x) % kPrepThreads;
  static_assert(sizeof(Smem) % 16 == 0, "each unit's scratch 16-byte aligned");
  Smem& s = reinterpret_cast<Smem*>(smem_raw)[unit];
  PrepProbe probe;
  launch_dependents();  // the state pass may launch: it waits for the marks (for this kernel at its end)
  wait_for_prerequisites();
  if (p.clear_flag != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    *p.clear_flag = 0;  // (the host checked the call: launch_sm90 overlaps only such calls)
  const int heads = kShared ? p.prep_heads : 1;
  const uint32_t head_sets = static_cast<uint32_t>(p.HV / heads);
  const uint32_t seqs = static_cast<uint32_t>(p.N);
  int32_t longest = 0;  // chunks of the longest sequence (the inline table: at most kInlineSeqs)
  for (int64_t n = 0; n < p.N; ++n) longest = max(longest, first_chunk(p, n + 1) - first_chunk(p, n));
  const uint32_t tickets = static_cast<uint32_t>(longest) * seqs * head_sets;
  int32_t* const counter = p.tickets;
  const auto sync = [unit] { named_barrier(1 + unit, kPrepThreads); };
  for (;;) {
    if (tid == 0) ticket[unit] = atomicAdd(reinterpret_cast<unsigned int*>(counter), 1u);
    sync();
    const uint32_t t = ticket[unit];
    if (t >= tickets) break;
    const uint32_t set = t % head_sets, r = t / head_sets / seqs;
    const int64_t n = p.inline_order[t / head_sets % seqs];
    const int32_t c = first_chunk(p, n) + static_cast<int32_t>(r);
    if (c < first_chunk(p, n + 1)) {  // (else past the sequence's end: no work)
      prep_unit<T, K, V, false, true, kShared>(p, s, static_cast<uint32_t>(c) * head_sets + set, tid, sync,
                                               probe);
      sync();  // the unit's stores, before the marks (and the ticket read, before the next is written)
      if (tid < heads) release_mark(p.ready + int64_t{c} * p.HV + set * heads + tid, 1);
    } else {
      sync();  // (the ticket read, before the next is written)
    }
  }
}

// Its shared memory: the units' scratch, at least 116 KB, so that no two CTAs
// share an SM (an sm_90 SM has 228 KB) and the state pass finds whole SMs.
template <typename T, int K, int V, bool kShared>
Status launch_overlap_kernel(const PrefillParams& p, int ctas, cudaStream_t stream) {
  constexpr size_t kSmem =
      std::max<size_t>(kOverlapPrepUnits * sizeof(PrepSmemOf<T, K, false, kShared>), 116 * 1024);
  const auto kernel = prefill_prep_overlap_kernel<T, K, V, kShared>;
  if (Status s = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmem,
                                    "prefill_prep_overlap_kernel: raising its shared memory limit");
      !s.ok())
    return s;
  // (The state pass after it waits for every mark: a launch that did not
  // run would hang it, so every refusal is an error.)
  if (p.max_chunks == 0 || ctas < 1 || p.tickets == nullptr || p.ready == nullptr || !p.inline_offsets ||
      p.error_flag != nullptr)
    return Status(
        StatusCode::kInternal,
        "prefill_prep_overlap_kernel: needs chunks, CTAs, its ready marks and a call the host checked");
  if (kShared && (p.prep_heads < 2 || p.prep_heads > kMaxPrepHeads || p.group % p.prep_heads != 0))
    return Status(
        StatusCode::kInternal,
        "prefill_prep_overlap_kernel: prep_heads must be 2 to 4 value heads dividing those of a q/k head");
  // (The call's first kernel, after the marks' memset: launched plainly.)
  return cuda_status(
      launch_kernel(kernel, dim3(ctas), dim3(kOverlapPrepUnits * kPrepThreads), kSmem, stream, false, p),
      "prefill_prep_overlap_kernel launch");
}

}  // namespace

int prep_heads_for_group(int64_t group) {
  const char* env = std::getenv("GDN_PREP_HEADS");
  if (env == nullptr) return 1;
  int heads = 1;
  for (int n = 2; n <= kMaxPrepHeads; ++n)
    if (group % n == 0 && (std::string(env) == "max" || std::atoi(env) == n)) heads = n;
  return heads;
}

template <typename T, int K, int V>
Status launch_prefill_prep(const PrefillParams& p, cudaStream_t stream, bool au_only) {
  if (!p.sm90_tiles && !au_only) return launch_prep_kernel<T, K, V, false, false>(p, stream);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // (the sm90 pass's layout: bf16 io only)
    if (p.prep_heads > 1)                            // (launch_sm90 sets it: prep_heads_for_group)
      return au_only ? launch_prep_kernel<T, K, V, true, true, true>(p, stream)
                     : launch_prep_kernel<T, K, V, false, true, true>(p, stream);
    return au_only ? launch_prep_kernel<T, K, V, true, true>(p, stream)
                   : launch_prep_kernel<T, K, V, false, true>(p, stream);
  } else {
    return Status(StatusCode::kInternal,
                  "prefill_prep_kernel: the sm90 tile layout is built for bf16 io only");
  }
}

template <typename T, int K, int V>
Status launch_prefill_prep_overlap(const PrefillParams& p, int ctas, cudaStream_t stream) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // (the sm90 pass's layout: bf16 io only)
    if (p.prep_heads > 1) return launch_overlap_kernel<T, K, V, true>(p, ctas, stream);
    return launch_overlap_kernel<T, K, V, false>(p, ctas, stream);
  } else {
    return Status(StatusCode::kInternal, "prefill_prep_overlap_kernel: built for bf16 io only");
  }
}

#define GDN_INSTANTIATE_PREP(T, KV) \
  template Status launch_prefill_prep<T, KV, KV>(const PrefillParams&, cudaStream_t, bool);
GDN_INSTANTIATE_PREP(__nv_bfloat16, 64)
GDN_INSTANTIATE_PREP(__nv_bfloat16, 128)
GDN_INSTANTIATE_PREP(__half, 64)
GDN_INSTANTIATE_PREP(__half, 128)
GDN_INSTANTIATE_PREP(float, 64)
GDN_INSTANTIATE_PREP(float, 128)
template Status launch_prefill_prep_overlap<__nv_bfloat16, 64, 64>(const PrefillParams&, int, cudaStream_t);
template Status launch_prefill_prep_overlap<__nv_bfloat16, 128, 128>(const PrefillParams&, int, cudaStream_t);

}  // namespace gdn::cuda
