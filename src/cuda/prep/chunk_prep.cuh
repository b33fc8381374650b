// What the prep kernel (sm80/prefill_prep.cu, shared by both GPU prefill
// backends) computes of one chunk that does not depend on the state entering
// it, in pieces a block of four warps (128 threads) runs over shared memory;
// the results go to the workspace. With G the in-chunk cumulative gate,
// Gamma_ij = exp(G_i - G_j) (i >= j) and rows past the chunk's end zero:
//   M   = strict_lower(diag(beta) (K K^T) .* Gamma)        [64, 64]
//   Au  = (I + M)^-1 diag(beta)                            [64, 64]
//   L   = lower_incl((scale Q) K^T .* Gamma)               [64, 64]
//   s_q, s_x, s_k, decay (sm80/params.h)
// The caller computes K K^T and Q K^T of the raw (not normalised) rows and
// the reciprocal norms; mask_products applies norms, scale, gates and masks.
// The inverse is blocked over 16x16 blocks: the diagonal blocks by fp32
// forward substitution, the others by one warp per block column on tensor
// cores in 3xTF32, whose error scripts/check_prep_fragments.py measures
// (about that of fp32, far under the tf32 rounding of the stored Au).
//
// The scratch type S provides: float m[64][kPrepMatStride] (M),
// float D[kPrepBlocks][kPrepBlk][kPrepDStride], and float G[64], G2[64],
// beta[64], rnq[64], rnk[64].
#pragma once

#include "cuda/ptx/mma_sm80.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/params.h"

namespace gdn::cuda {

// Floats per row of M: a half-warp's 64-bit fragment loads and stores (rows
// g, columns 2t) hit distinct banks.
constexpr int kPrepMatStride = kChunk + 8;
constexpr int kPrepBlk = 16;                    // side of one block of the inverse
constexpr int kPrepBlocks = kChunk / kPrepBlk;  // blocks per side
constexpr int kPrepDStride = kPrepBlk + 8;      // floats per row of a D block (banks as for M)
constexpr int kPrepThreads = 128;
static_assert(kPrepBlocks * kPrepBlk == kChunk, "the chunk must split into whole blocks");
static_assert(kPrepBlocks == kPrepThreads / 32,
              "one warp per 16-row tile of the products and per block column");
static_assert(kPrepThreads == 2 * kChunk,
              "the diagonal blocks on kChunk threads, the row factors on the others");

// 2^x in one special-function instruction (PTX ex2.approx.ftz, the
// approximation CUDA's exp2f uses: 2 ulp; results under 2^-126 flush to 0).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// hi and lo tf32 A fragments of an 8-wide k-step from the accumulator tile c
// of the same 8 columns (k-permuted: logical k t is physical column 2t).
__device__ __forceinline__ void split_a_from_acc(uint32_t (&hi)[4], uint32_t (&lo)[4], const float (&c)[4]) {
  split_tf32(c[0], hi[0], lo[0]);
  split_tf32(c[2], hi[1], lo[1]);
  split_tf32(c[1], hi[2], lo[2]);
  split_tf32(c[3], hi[3], lo[3]);
}

// hi and lo k-permuted B fragment of the transpose of a row-major fp32 tile:
// B(k, n) = m[n][k], one 64-bit load.
__device__ __forceinline__ void split_b_transposed(uint32_t (&hi)[2], uint32_t (&lo)[2], const float* m,
                                                   int stride, int k0, int n0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const float2 v = *reinterpret_cast<const float2*>(m + (n0 + g) * stride + k0 + 2 * t);
  split_tf32(v.x, hi[0], lo[0]);
  split_tf32(v.y, hi[1], lo[1]);
}

// Gate and beta of row r of the chunk at token t0 (len rows; padding rows:
// g = 0, beta = 0), with the fused activation when the call asks for it.
__device__ __forceinline__ float2 chunk_row_gates(const PrefillParams& p, int64_t t0, int len, int64_t hv,
                                                  int r) {
  float g = 0.f, beta = 0.f;
  if (r < len) {
    const int64_t t = t0 + r;
    const float ga = load_gate_input(p.gate_a, p.gate_a_bf16, t * p.ga_s0 + hv * p.ga_s1);
    const float gb = load_gate_input(p.gate_b, p.gate_b_bf16, t * p.gb_s0 + hv * p.gb_s1);
    if (p.fused) {
      fused_gate(ga, gb, p.a_log[hv * p.a_log_s], p.dt_bias[hv * p.dt_bias_s], &g, &beta);
    } else {
      g = ga;
      beta = gb;
    }
  }
  return make_float2(g, beta);
}

// Gates of the chunk's rows into s.G and s.beta, one per thread r < kChunk.
template <typename S>
__device__ __forceinline__ void load_chunk_gates(const PrefillParams& p, S& s, int64_t t0, int len,
                                                 int64_t hv, int r) {
  const float2 gb = chunk_row_gates(p, t0, len, hv, r);
  s.G[r] = gb.x;
  s.beta[r] = gb.y;
}

// In-chunk inclusive cumulative sum of the gates g0, g1 of rows 2 lane and
// 2 lane + 1 (one warp) into G, and G log2(e) into G2.
__device__ __forceinline__ void cumsum_gate_pairs(float g0, float g1, int lane, float* G, float* G2) {
  float incl = g0 + g1;
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float y = __shfl_up_sync(0xffffffffu, incl, off);
    if (lane >= off) incl += y;
  }
  const float excl = incl - (g0 + g1);
  constexpr float kLog2e = 1.4426950408889634f;
  *reinterpret_cast<float2*>(G + 2 * lane) = make_float2(excl + g0, incl);
  *reinterpret_cast<float2*>(G2 + 2 * lane) = make_float2((excl + g0) * kLog2e, incl * kLog2e);
}

// The same in place of s.G, and into s.G2.
template <typename S>
__device__ __forceinline__ void cumsum_chunk_gates(S& s, int lane) {
  const float2 g = *reinterpret_cast<const float2*>(&s.G[2 * lane]);
  __syncwarp();
  cumsum_gate_pairs(g.x, g.y, lane, &s.G[0], &s.G2[0]);
}

// One n-tile nt of M and L (mask_products): element e of the accumulator
// tiles kc, qc is row i = r0 + g8 + 8 (e / 2), column j = 8 nt + 2 t4 + e % 2.
// diag: the tile is n-tile 2 warp + u of the diagonal block, where the masks
// apply (j <= i for L, j < i for M: i - j = g8 + 8 hf - 8 u - 2 t4 - e).
template <bool kWithM = true, typename S, typename StoreL>
__device__ __forceinline__ void mask_tile(S& s, int r0, int lane, const float (&g2i)[2],
                                          const float (&bki)[2], const float (&qsi)[2], const float (&kc)[4],
                                          const float (&qc)[4], int nt, bool diag, int u, StoreL& store_l) {
  const int g8 = lane >> 2, t4 = lane & 3;
  const float2 g2j = *reinterpret_cast<const float2*>(&s.G2[nt * 8 + 2 * t4]);
  const float2 rkj = *reinterpret_cast<const float2*>(&s.rnk[nt * 8 + 2 * t4]);
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    float mv[2], lv[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int below = g8 + 8 * hf - 8 * u - 2 * t4 - e;  // i - j when diag
      float gamma = exp2_approx(g2i[hf] - (e ? g2j.y : g2j.x));
      if (diag) gamma = below >= 0 ? gamma : 0.f;
      const float w = (e ? rkj.y : rkj.x) * gamma;
      mv[e] = (kc[2 * hf + e] * bki[hf]) * w;
      if (diag) mv[e] = below > 0 ? mv[e] : 0.f;
      lv[e] = (qc[2 * hf + e] * qsi[hf]) * w;
    }
    if constexpr (kWithM)  // (S has no m without it)
      *reinterpret_cast<float2*>(&s.m[r0 + g8 + 8 * hf][2 * t4 + nt * 8]) = make_float2(mv[0], mv[1]);
    store_l(r0 + g8 + 8 * hf, nt * 8 + 2 * t4, make_float2(tf32_round_rn(lv[0]), tf32_round_rn(lv[1])));
  }
}

// L's zeros of n-tile nt (above the diagonal block) in the 16 rows from r0.
template <typename StoreL>
__device__ __forceinline__ void zero_l_tile(int r0, int lane, int nt, StoreL& store_l) {
  const int g8 = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) store_l(r0 + g8 + 8 * hf, nt * 8 + 2 * t4, make_float2(0.f, 0.f));
}

// Per-row factors of rows i0 and i0 + 8: G2, beta / |k|, scale / |q|.
template <typename S>
__device__ __forceinline__ void row_gate_factors(const S& s, float scale, int i0, float (&g2i)[2],
                                                 float (&bki)[2], float (&qsi)[2]) {
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int i = i0 + 8 * hf;
    g2i[hf] = s.G2[i];
    bki[hf] = s.beta[i] * s.rnk[i];
    qsi[hf] = s.rnq[i] * scale;
  }
}

// M (into s.m) and L (through store_l) from warp `warp`'s 16 rows of the
// raw products, in accumulator layout: kk, qk the n-tiles 0 .. 2 warp - 1
// below the diagonal block, kd, qd the diagonal block's two (mask_tile).
// Gamma_ij = 2^(G2_i - G2_j), formed only for j <= i. store_l(i, j, xy)
// stores L[i][j] = xy.x and L[i][j + 1] = xy.y (j even), tf32-rounded,
// including the zeros above the diagonal block.
template <typename S, typename StoreL>
__device__ __forceinline__ void mask_products(S& s, float scale, int warp, int lane,
                                              const float (&kk)[2 * (kPrepBlocks - 1)][4],
                                              const float (&qk)[2 * (kPrepBlocks - 1)][4],
                                              const float (&kd)[2][4], const float (&qd)[2][4],
                                              StoreL&& store_l) {
  const int r0 = warp * 16, g8 = lane >> 2;
  float g2i[2], bki[2], qsi[2];
  row_gate_factors(s, scale, r0 + g8, g2i, bki, qsi);
#pragma unroll
  for (int nt = 0; nt < 2 * (kPrepBlocks - 1); ++nt)
    if (nt < 2 * warp) mask_tile(s, r0, lane, g2i, bki, qsi, kk[nt], qk[nt], nt, false, 0, store_l);
  mask_tile(s, r0, lane, g2i, bki, qsi, kd[0], qd[0], 2 * warp, true, 0, store_l);
  mask_tile(s, r0, lane, g2i, bki, qsi, kd[1], qd[1], 2 * warp + 1, true, 1, store_l);
  // L is zero above the diagonal block.
#pragma unroll
  for (int nt = 2; nt < 2 * kPrepBlocks; ++nt)
    if (nt >= 2 * warp + 2) zero_l_tile(r0, lane, nt, store_l);
}

// The same from the products over all 64 columns (a wgmma m64n64
// accumulator, whose warp w holds rows 16 w .. as the m16n8 tiles of
// n-tiles 0..7, sm90.cuh): the n-tiles past the diagonal block only store
// L's zeros. kWithM: M too (else kc is not read: L alone).
template <bool kWithM = true, typename S, typename StoreL>
__device__ __forceinline__ void mask_product_rows(S& s, float scale, int warp, int lane,
                                                  const float (&kc)[2 * kPrepBlocks][4],
                                                  const float (&qc)[2 * kPrepBlocks][4], StoreL&& store_l) {
  const int r0 = warp * 16, g8 = lane >> 2;
  float g2i[2], bki[2], qsi[2];
  row_gate_factors(s, scale, r0 + g8, g2i, bki, qsi);
#pragma unroll
  for (int nt = 0; nt < 2 * kPrepBlocks; ++nt) {
    if (nt / 2 <= warp)
      mask_tile<kWithM>(s, r0, lane, g2i, bki, qsi, kc[nt], qc[nt], nt, nt / 2 == warp, nt % 2, store_l);
    else
      zero_l_tile(r0, lane, nt, store_l);
  }
}

// Step 1 of the inverse of T = I + M (unit lower triangular), thread
// r < kChunk: D_b = T_bb^-1, one column of one diagonal block per thread, by
// a forward substitution in registers, fp32 FMA, column by column: once x_j
// is final it updates every later row, so the dependent chain is one FMA a
// row (16) rather than a row's whole sum (120 in all); each x_i still sums
// its terms in the order j = 0, 1, ...
template <typename S>
__device__ __forceinline__ void invert_diagonal_blocks(S& s, int r) {
  const int b = r / kPrepBlk, b0 = b * kPrepBlk, col = r % kPrepBlk;
  float x[kPrepBlk];
#pragma unroll
  for (int i = 0; i < kPrepBlk; ++i) x[i] = i == col ? 1.f : 0.f;
#pragma unroll
  for (int j = 0; j < kPrepBlk - 1; ++j)
#pragma unroll
    for (int i = j + 1; i < kPrepBlk; ++i) x[i] = fmaf(-s.m[b0 + i][b0 + j], x[j], x[i]);
#pragma unroll
  for (int i = 0; i < kPrepBlk; ++i) s.D[b][i][col] = x[i];
}

// Row r's factors for the state pass (params.h) into F; kWithSq: s_q too
// (which needs q's norms; else the sm90 pass's kSplitL form writes it, with
// q_factor below).
__device__ __forceinline__ float q_factor(float rnq, float scale, float eg, bool valid) {  // eg = exp(G_r)
  return valid ? rnq * scale * eg : 0.f;
}
template <bool kWithSq = true, typename S>
__device__ __forceinline__ void row_factors(const S& s, float scale, int len, int r, float* F) {
  const float gc = s.G[kChunk - 1], eg = expf(s.G[r]);
  const bool valid = r < len;
  if constexpr (kWithSq) F[kFactorSq + r] = q_factor(s.rnq[r], scale, eg, valid);
  F[kFactorSx + r] = valid ? s.rnk[r] * eg : 0.f;
  F[kFactorSk + r] = valid ? s.rnk[r] * expf(gc - s.G[r]) : 0.f;
  if (r == 0) F[kFactorDecay] = expf(gc);
}

// Step 2 of the inverse, block column j (one warp), on tensor cores in
// 3xTF32 (fp32 operands split hi + lo) with the blocks transposed so that
// each result feeds the next product as an A operand straight from registers:
//   A_ij = -D_i sum_{k=j}^{i-1} T_ik A_kj,  i > j   (A_jj = D_j)
//   P_ij^T = sum_{k=j}^{i-1} A_kj^T T_ik^T     A_ij^T = -P_ij^T D_i^T
// (B(k, n) = T_ik[n][k] and D_i[n][k], 64-bit loads of row pairs). Au = A
// diag(beta) goes out through store_au(i, j, x) (Au[i][j] = x, tf32-rounded:
// the state pass feeds it to the tensor cores as is) for the blocks on and
// below the diagonal, and zero_above(i) for block (i, j), i < j. Padding rows
// (r >= len) have zero rows and columns in M, so A is the identity there and
// Au's rows are 0.
template <typename S, typename StoreAu, typename ZeroAbove>
__device__ __forceinline__ void invert_block_column(const S& s, int j, int lane, StoreAu&& store_au,
                                                    ZeroAbove&& zero_above) {
  const int g8 = lane >> 2, t4 = lane & 3;
  const float bcol[2] = {s.beta[j * kPrepBlk + g8], s.beta[j * kPrepBlk + g8 + 8]};
  // y holds A_ij^T in accumulator layout, tile st and element e being
  // A_ij[8 st + 2 t4 + e % 2][g8 + 8 (e / 2)].
  const auto store_block = [&](const float(&y)[2][4], int d) {
#pragma unroll
    for (int st = 0; st < 2; ++st)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        store_au((j + d) * kPrepBlk + 8 * st + 2 * t4 + (e & 1), j * kPrepBlk + g8 + 8 * (e >> 1),
                 tf32_round_rn(y[st][e] * bcol[e >> 1]));
  };
#pragma unroll
  for (int i = 0; i < kPrepBlocks - 1; ++i)
    if (i < j) zero_above(i);
  uint32_t yh[kPrepBlocks - 1][2][4], yl[kPrepBlocks - 1][2][4];
  float y[2][4];
#pragma unroll
  for (int st = 0; st < 2; ++st)
#pragma unroll
    for (int e = 0; e < 4; ++e) y[st][e] = s.D[j][8 * st + 2 * t4 + (e & 1)][g8 + 8 * (e >> 1)];
  store_block(y, 0);
#pragma unroll
  for (int d = 1; d < kPrepBlocks; ++d) {
    const int i = j + d;
    if (i >= kPrepBlocks) break;
    // The last block out, A_{i-1,j}, as split A operands.
    split_a_from_acc(yh[d - 1][0], yl[d - 1][0], y[0]);
    split_a_from_acc(yh[d - 1][1], yl[d - 1][1], y[1]);
    // Each product's three terms go to their own accumulators (Tf32x3Acc):
    // the chain is this block's latency and the block column's.
    Tf32x3Acc pacc[2];  // P_ij^T
    pacc[0].zero();
    pacc[1].zero();
#pragma unroll
    for (int kb = 0; kb < d; ++kb) {
      const int kblk = j + kb;
#pragma unroll
      for (int st = 0; st < 2; ++st)
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          uint32_t bh[2], bl[2];
          split_b_transposed(bh, bl, &s.m[0][0], kPrepMatStride, kblk * kPrepBlk + 8 * st,
                             i * kPrepBlk + 8 * u, lane);
          mma_tf32x3(pacc[u], yh[kb][st], yl[kb][st], bh, bl);
        }
    }
    float pt[2][4];
    pacc[0].sum(pt[0]);
    pacc[1].sum(pt[1]);
    uint32_t ph[2][4], pl[2][4];
    split_a_from_acc(ph[0], pl[0], pt[0]);
    split_a_from_acc(ph[1], pl[1], pt[1]);
    Tf32x3Acc yacc[2];
    yacc[0].zero();
    yacc[1].zero();
#pragma unroll
    for (int st = 0; st < 2; ++st)
#pragma unroll
      for (int u = st; u < 2; ++u) {  // D_i[n][k] is 0 for k > n: skip k-step 1 of n-tile 0
        uint32_t bh[2], bl[2];
        split_b_transposed(bh, bl, &s.D[i][0][0], kPrepDStride, 8 * st, 8 * u, lane);
        mma_tf32x3(yacc[u], ph[st], pl[st], bh, bl);
      }
    float ya[2][4];
    yacc[0].sum(ya[0]);
    yacc[1].sum(ya[1]);
#pragma unroll
    for (int u = 0; u < 2; ++u)
#pragma unroll
      for (int e = 0; e < 4; ++e) y[u][e] = -ya[u][e];
    store_block(y, d);
  }
}

}  // namespace gdn::cuda
