// Stage 1 of the portable prefill: what a chunk contributes that does not
// depend on the state entering it. One CTA of 4 warps per (chunk, value
// head), all chunks in parallel. With G the in-chunk cumulative gate,
// Gamma_ij = exp(G_i - G_j) (i >= j), q and k l2-normalised (when asked) and
// rows past the chunk's end zero:
//   M   = strict_lower(diag(beta) (K K^T) .* Gamma)        [64, 64]
//   Au  = (I + M)^-1 diag(beta)                            [64, 64] -> workspace
//   L   = lower_incl((scale Q) K^T .* Gamma)               [64, 64] -> workspace
//   s_q, s_x, s_k, decay (params.h)                                  -> workspace
// The state pass then needs only raw q, k, v:
//   U - W S = Au (V - diag(exp G) K S).
// K K^T and Q K^T run on tensor cores over the raw q and k rows (bf16/fp16
// m16n8k16 with exact products for 16-bit io, tf32 for fp32 io), only over
// the column tiles with j <= i, with the norms applied to the products (for
// 16-bit io the squared norms are the products' diagonals). The inverse is
// blocked over 16x16 blocks: the diagonal blocks by fp32 forward
// substitution, the others by one warp per block column on tensor cores in
// 3xTF32, whose error scripts/check_prep_fragments.py measures (about that of
// fp32, far under the tf32 rounding of the stored Au).
#include <type_traits>

#include "cuda/ptx/griddep.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/kernels.cuh"

namespace gdn::cuda {
namespace {

constexpr int kPrepThreads = 128;
constexpr int kPrepWarps = kPrepThreads / 32;
// Floats per row of M: a half-warp's 64-bit fragment loads and stores (rows
// g, columns 2t) hit distinct banks.
constexpr int kMatStride = kChunk + 8;

// Blocked inverse of the 64x64 unit lower-triangular I + M.
constexpr int kBlk = 16;                // side of one block
constexpr int kNumBlk = kChunk / kBlk;  // blocks per side
constexpr int kDStride = kBlk + 8;      // floats per row of a D block (banks as for M)
constexpr int kVec = 4;                 // floats per vector (float4) access
static_assert(kNumBlk * kBlk == kChunk, "the chunk must split into whole blocks");
static_assert(kNumBlk == kPrepWarps, "one warp per 16-row tile of the products and per block column of A");
static_assert(kBlk % kVec == 0 && kMatStride % kVec == 0, "float4 rows");
static_assert(kPrepThreads == 2 * kChunk,
              "step 1 runs on the first kChunk threads, the row factors on the other kChunk");

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
  float D[kNumBlk][kBlk][kDStride];  // D_b = T_bb^-1 (step 1)
  float G[kChunk];                   // in-chunk cumulative gate
  float G2[kChunk];                  // G log2(e), for exp2
  float beta[kChunk], rnq[kChunk], rnk[kChunk];
};

// 2^x in one special-function instruction (PTX ex2.approx.ftz, the
// approximation CUDA's exp2f uses: 2 ulp; results under 2^-126 flush to 0).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// c += a b for 16-bit io: the products are exact in fp32.
template <typename T>
__device__ __forceinline__ void mma_io16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>)
    mma_f16(c, a, b0, b1);
  else
    mma_bf16(c, a, b0, b1);
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

template <typename T, int K, int V>
__global__ void __launch_bounds__(kPrepThreads) prefill_prep_kernel(const __grid_constant__ PrefillParams p) {
  static_assert(K % 32 == 0 && V % 32 == 0, "head sizes must be multiples of 32");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = PrepSmem<T, K>;
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  static_assert(offsetof(Smem, raw) % 16 == 0 && offsetof(typename Smem::Rows, q) % 16 == 0 &&
                    offsetof(Smem, m) % 16 == 0 && offsetof(Smem, D) % 16 == 0 &&
                    offsetof(Smem, G2) % 8 == 0 && offsetof(Smem, rnk) % 8 == 0,
                "cp.async rows, float4 rows of m, float2 pairs of D, G2 and rnk");
  launch_dependents();       // the state pass may launch; it waits for this kernel's results
  wait_for_prerequisites();  // chunk_meta's offsets and error flag
  if (*p.error_flag) return;
  const int c = blockIdx.x, hv = blockIdx.y;
  if (c >= p.chunk_offset[p.N]) return;
  // The sequence holding chunk c: the last n with chunk_offset[n] <= c.
  int64_t lo = 0, hi = p.N - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.chunk_offset[mid] <= c)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int64_t n = lo;
  const int64_t t0 = load_index(p.cu_seqlens, p.cu64, n) + int64_t{c - p.chunk_offset[n]} * kChunk;
  const int len = static_cast<int>(min(int64_t{kChunk}, load_index(p.cu_seqlens, p.cu64, n + 1) - t0));
  const int64_t h = hv / static_cast<int>(p.group);  // head counts fit in int: a 32-bit division
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);

  // Raw q and k rows in one round of asynchronous copies (rows past the
  // chunk's end zero), overlapped with the gate loads below.
  copy_rows_async<T, K, kChunk, kPrepThreads>(&s.raw.q[0][0], Smem::kStride, q + t0 * p.q_s0 + h * p.q_s1,
                                              p.q_s0, len, tid);
  copy_rows_async<T, K, kChunk, kPrepThreads>(&s.raw.k[0][0], Smem::kStride, k + t0 * p.k_s0 + h * p.k_s1,
                                              p.k_s0, len, tid);
  cp_async_commit();
  // Gates (padding rows: g = 0, beta = 0).
  if (tid < kChunk) {
    float g = 0.f, beta = 0.f;
    if (tid < len) {
      const int64_t t = t0 + tid;
      const float ga = load_gate_input(p.gate_a, p.gate_a_bf16, t * p.ga_s0 + hv * p.ga_s1);
      const float gb = load_gate_input(p.gate_b, p.gate_b_bf16, t * p.gb_s0 + hv * p.gb_s1);
      if (p.fused) {
        fused_gate(ga, gb, p.a_log[hv * p.a_log_s], p.dt_bias[hv * p.dt_bias_s], &g, &beta);
      } else {
        g = ga;
        beta = gb;
      }
    }
    s.G[tid] = g;
    s.beta[tid] = beta;
  }
  cp_async_wait<0>();
  __syncthreads();

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
    const T* a_k = &s.raw.k[r0 + (mi & 1) * 8 + mr][(mi >> 1) * 8];
    const T* a_q = &s.raw.q[r0 + (mi & 1) * 8 + mr][(mi >> 1) * 8];
    const T* b_k = &s.raw.k[(mi >> 1) * 8 + mr][(mi & 1) * 8];
    float qq[2][4] = {};  // Q Q^T's diagonal block: its diagonal is |q_i|^2
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks) {
      uint32_t ak[4], aq[4];
      ldmatrix_x4(ak, a_k + ks * 16);
      ldmatrix_x4(aq, a_q + ks * 16);
#pragma unroll
      for (int pb = 0; pb < kNumBlk - 1; ++pb) {
        if (pb < warp) {
          uint32_t b[4];
          ldmatrix_x4(b, b_k + pb * 16 * Smem::kStride + ks * 16);
          mma_io16<T>(kk[2 * pb], ak, b[0], b[1]);
          mma_io16<T>(kk[2 * pb + 1], ak, b[2], b[3]);
          mma_io16<T>(qk[2 * pb], aq, b[0], b[1]);
          mma_io16<T>(qk[2 * pb + 1], aq, b[2], b[3]);
        }
      }
      mma_io16<T>(kd[0], ak, ak[0], ak[2]);
      mma_io16<T>(kd[1], ak, ak[1], ak[3]);
      mma_io16<T>(qd[0], aq, ak[0], ak[2]);
      mma_io16<T>(qd[1], aq, ak[1], ak[3]);
      mma_io16<T>(qq[0], aq, aq[0], aq[2]);
      mma_io16<T>(qq[1], aq, aq[1], aq[3]);
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
      (lane < 16 ? s.rnk : s.rnq)[r0 + r] = rnorm(sq);
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
  if (warp == 0) {  // in-chunk inclusive cumulative sum, two gates per lane
    const float g0 = s.G[2 * lane], g1 = s.G[2 * lane + 1];
    float incl = g0 + g1;
#pragma unroll
    for (int off = 1; off < 32; off <<= 1) {
      const float y = __shfl_up_sync(0xffffffffu, incl, off);
      if (lane >= off) incl += y;
    }
    const float excl = incl - (g0 + g1);
    s.G[2 * lane] = excl + g0;
    s.G[2 * lane + 1] = incl;
    constexpr float kLog2e = 1.4426950408889634f;
    s.G2[2 * lane] = (excl + g0) * kLog2e;
    s.G2[2 * lane + 1] = incl * kLog2e;
  }
  __syncthreads();  // norms and gates are in; q and k are dead

  // M (into s.m, over q and k) and L (to the workspace) from the products.
  // Element e of n-tile nt: row i = r0 + g8 + 8 (e / 2), column
  // j = 8 nt + 2 t4 + e % 2. Gamma_ij = 2^(G2_i - G2_j), formed only for
  // j <= i. Addresses are per-lane bases plus constant offsets.
  {
    float* L = p.L + (int64_t{c} * p.HV + hv) * kChunk * kChunk + (r0 + g8) * kChunk + 2 * t4;
    float* m_out = &s.m[r0 + g8][2 * t4];
    float g2i[2], bki[2], qsi[2];  // per row: G2, beta / |k|, scale / |q|
#pragma unroll
    for (int hf = 0; hf < 2; ++hf) {
      const int i = r0 + g8 + 8 * hf;
      g2i[hf] = s.G2[i];
      bki[hf] = s.beta[i] * s.rnk[i];
      qsi[hf] = s.rnq[i] * p.scale;
    }
    // diag: the tile is n-tile 2 warp + u of the diagonal block, where the
    // masks apply (j <= i for L, j < i for M: i - j = g8 + 8 hf - 8 u - 2 t4 - e).
    const auto out_tile = [&](const float(&kc)[4], const float(&qc)[4], int nt, bool diag, int u) {
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
        *reinterpret_cast<float2*>(m_out + 8 * hf * kMatStride + nt * 8) = make_float2(mv[0], mv[1]);
        *reinterpret_cast<float2*>(L + 8 * hf * kChunk + nt * 8) =
            make_float2(tf32_round_rn(lv[0]), tf32_round_rn(lv[1]));
      }
    };
#pragma unroll
    for (int nt = 0; nt < 2 * (kNumBlk - 1); ++nt)
      if (nt < 2 * warp) out_tile(kk[nt], qk[nt], nt, false, 0);
    out_tile(kd[0], qd[0], 2 * warp, true, 0);
    out_tile(kd[1], qd[1], 2 * warp + 1, true, 1);
    // L is zero above the diagonal block.
#pragma unroll
    for (int nt = 2; nt < 2 * kNumBlk; ++nt)
      if (nt >= 2 * warp + 2)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
          *reinterpret_cast<float2*>(L + 8 * hf * kChunk + nt * 8) = make_float2(0.f, 0.f);
  }
  __syncthreads();

  // Au = (I + M)^-1 diag(beta) by a blocked inverse. T = I + M is unit lower
  // triangular; split it into kNumBlk x kNumBlk blocks T_ik of kBlk x kBlk
  // (T_ii unit lower triangular, T_ik = M_ik for i > k). A = T^-1 is block
  // lower triangular:
  //   A_ii = D_i = T_ii^-1                                  (step 1)
  //   A_ij = -D_i sum_{k=j}^{i-1} T_ik A_kj,  i > j          (step 2)
  // Block columns of A are independent: in step 2 warp j computes column j
  // top down. Padding rows (r >= len) have zero rows and columns in M, so A is
  // the identity there and Au's rows are 0.
  const int64_t item = int64_t{c} * p.HV + hv;
  if (tid < kChunk) {
    // Step 1: D_b = T_bb^-1, one column of one diagonal block per thread, by a
    // forward substitution in registers, fp32 FMA.
    const int b = tid / kBlk, b0 = b * kBlk, col = tid % kBlk;
    float x[kBlk];
#pragma unroll
    for (int i = 0; i < kBlk; ++i) {
      float acc = i == col ? 1.f : 0.f;
#pragma unroll
      for (int j4 = 0; j4 < i; j4 += kVec) {
        const float4 t = *reinterpret_cast<const float4*>(&s.m[b0 + i][b0 + j4]);
        const float tr[kVec] = {t.x, t.y, t.z, t.w};
#pragma unroll
        for (int e = 0; e < kVec && j4 + e < i; ++e) acc = fmaf(-tr[e], x[j4 + e], acc);
      }
      x[i] = acc;
    }
#pragma unroll
    for (int i = 0; i < kBlk; ++i) s.D[b][i][col] = x[i];
  } else {
    // Row factors for the state pass (warps 2 and 3).
    const int r = tid - kChunk;
    float* F = p.F + item * kFactorStride;
    const float gc = s.G[kChunk - 1], eg = expf(s.G[r]);
    const bool valid = r < len;
    F[kFactorSq + r] = valid ? s.rnq[r] * p.scale * eg : 0.f;
    F[kFactorSx + r] = valid ? s.rnk[r] * eg : 0.f;
    F[kFactorSk + r] = valid ? s.rnk[r] * expf(gc - s.G[r]) : 0.f;
    if (r == 0) F[kFactorDecay] = expf(gc);
  }
  __syncthreads();

  // Step 2, block column j = warp, on tensor cores in 3xTF32 (fp32 operands
  // split hi + lo, mma_sm80.cuh) with the blocks transposed so that each
  // result feeds the next product as an A operand straight from registers:
  //   P_ij^T = sum_{k=j}^{i-1} A_kj^T T_ik^T     A_ij^T = -P_ij^T D_i^T
  // (B(k, n) = T_ik[n][k] and D_i[n][k], 64-bit loads of row pairs). y holds
  // A_ij^T in accumulator layout, tile s and element e being
  // A_ij[8 s + 2 t4 + e % 2][g8 + 8 (e / 2)]; yh, yl keep the split A operands
  // of the column's earlier blocks. Au = A diag(beta) is stored from there,
  // tf32-rounded (the state pass feeds it to the tensor cores as is).
  {
    const int j = warp;
    float* Au = p.Au + item * kChunk * kChunk;
    const float bcol[2] = {s.beta[j * kBlk + g8], s.beta[j * kBlk + g8 + 8]};
    // Block (j + d, j) from y: a per-lane base plus constant offsets.
    float* au_col = Au + (j * kBlk + 2 * t4) * kChunk + j * kBlk + g8;
    const auto store_block = [&](const float(&y)[2][4], int d) {
#pragma unroll
      for (int st = 0; st < 2; ++st)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          au_col[(d * kBlk + 8 * st + (e & 1)) * kChunk + 8 * (e >> 1)] =
              tf32_round_rn(y[st][e] * bcol[e >> 1]);
    };
    // Blocks above the diagonal are zero: two float4 per lane per block.
#pragma unroll
    for (int i = 0; i < kNumBlk - 1; ++i)
      if (i < j)
#pragma unroll
        for (int hf = 0; hf < 2; ++hf)
          *reinterpret_cast<float4*>(Au + (i * kBlk + (lane >> 2) + 8 * hf) * kChunk + j * kBlk +
                                     kVec * (lane & 3)) = make_float4(0.f, 0.f, 0.f, 0.f);
    uint32_t yh[kNumBlk - 1][2][4], yl[kNumBlk - 1][2][4];
    float y[2][4];
#pragma unroll
    for (int st = 0; st < 2; ++st)
#pragma unroll
      for (int e = 0; e < 4; ++e) y[st][e] = s.D[j][8 * st + 2 * t4 + (e & 1)][g8 + 8 * (e >> 1)];
    store_block(y, 0);
#pragma unroll
    for (int d = 1; d < kNumBlk; ++d) {
      const int i = j + d;
      if (i >= kNumBlk) break;
      // The last block out, A_{i-1,j}, as split A operands.
      split_a_from_acc(yh[d - 1][0], yl[d - 1][0], y[0]);
      split_a_from_acc(yh[d - 1][1], yl[d - 1][1], y[1]);
      float pt[2][4] = {};  // P_ij^T
#pragma unroll
      for (int kb = 0; kb < d; ++kb) {
        const int kblk = j + kb;
#pragma unroll
        for (int st = 0; st < 2; ++st)
#pragma unroll
          for (int u = 0; u < 2; ++u) {
            uint32_t bh[2], bl[2];
            split_b_transposed(bh, bl, &s.m[0][0], kMatStride, kblk * kBlk + 8 * st, i * kBlk + 8 * u, lane);
            mma_tf32x3(pt[u], yh[kb][st], yl[kb][st], bh, bl);
          }
      }
      uint32_t ph[2][4], pl[2][4];
      split_a_from_acc(ph[0], pl[0], pt[0]);
      split_a_from_acc(ph[1], pl[1], pt[1]);
      float ya[2][4] = {};
#pragma unroll
      for (int st = 0; st < 2; ++st)
#pragma unroll
        for (int u = st; u < 2; ++u) {  // D_i[n][k] is 0 for k > n: skip k-step 1 of n-tile 0
          uint32_t bh[2], bl[2];
          split_b_transposed(bh, bl, &s.D[i][0][0], kDStride, 8 * st, 8 * u, lane);
          mma_tf32x3(ya[u], ph[st], pl[st], bh, bl);
        }
#pragma unroll
      for (int u = 0; u < 2; ++u)
#pragma unroll
        for (int e = 0; e < 4; ++e) y[u][e] = -ya[u][e];
      store_block(y, d);
    }
  }
}

}  // namespace

template <typename T, int K, int V>
Status launch_prefill_prep(const PrefillParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(PrepSmem<T, K>);
  static const cudaError_t attr =
      cudaFuncSetAttribute(prefill_prep_kernel<T, K, V>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  GDN_CUDA_RETURN(attr);
  static const bool programmatic = kernel_waits_for_prerequisites(prefill_prep_kernel<T, K, V>);
  if (p.max_chunks == 0) return Status::Ok();
  const dim3 grid(static_cast<unsigned>(p.max_chunks), static_cast<unsigned>(p.HV));
  return cuda_status(
      launch_kernel(prefill_prep_kernel<T, K, V>, grid, dim3(kPrepThreads), kSmem, stream, programmatic, p),
      "prefill_prep_kernel launch");
}

#define GDN_INSTANTIATE_PREP(T, KV) \
  template Status launch_prefill_prep<T, KV, KV>(const PrefillParams&, cudaStream_t);
GDN_INSTANTIATE_PREP(__nv_bfloat16, 64)
GDN_INSTANTIATE_PREP(__nv_bfloat16, 128)
GDN_INSTANTIATE_PREP(__half, 64)
GDN_INSTANTIATE_PREP(__half, 128)
GDN_INSTANTIATE_PREP(float, 64)
GDN_INSTANTIATE_PREP(float, 128)

}  // namespace gdn::cuda
