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
// K K^T and Q K^T run on tensor cores in tf32 over the raw q and k rows (exact
// for 16-bit io) with the norms applied to the products; the inverse is a
// blocked fp32 inverse over 16x16 blocks that keeps all four warps busy.
#include "cuda/ptx/griddep.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/kernels.cuh"

namespace gdn::cuda {
namespace {

constexpr int kPrepThreads = 128;
constexpr int kMatStride = kChunk + 4;  // padded row stride of 64x64 tiles (bank-conflict free)

// Blocked inverse of the 64x64 unit lower-triangular I + M.
constexpr int kBlk = 16;                // side of one block
constexpr int kNumBlk = kChunk / kBlk;  // blocks per side
constexpr int kHalfBlk = kBlk / 2;      // a step-2 thread owns rows r and r + kHalfBlk of a block column
constexpr int kVec = 4;                 // floats per vector (float4) access
static_assert(kNumBlk * kBlk == kChunk, "the chunk must split into whole blocks");
static_assert(kBlk % kVec == 0 && kChunk % kVec == 0 && kMatStride % kVec == 0, "float4 rows");
static_assert(kPrepThreads == 2 * kChunk,
              "step 1 runs on the first kChunk threads, the row factors on the other kChunk");
static_assert(kBlk * kHalfBlk == kPrepThreads, "step 2: one thread per (row pair, column) of a block");

// Raw q and k rows (the io dtype, one 16-byte pad per row: fragment loads of
// a warp hit distinct banks); the l2 norms apply as row and column factors
// of the products, so the rows need no normalised copy.
template <typename T, int K>
struct PrepSmem {
  static constexpr int kStride = K + 16 / sizeof(T);  // elements per row
  T kraw[kChunk][kStride];
  union {
    T qraw[kChunk][kStride];        // raw q (last read by Q K^T)
    float inv[kChunk][kMatStride];  // then: A = (I + M)^-1, and P blocks in its upper triangle
  };
  float m[kChunk][kMatStride];
  float G[kChunk], beta[kChunk], rnq[kChunk], rnk[kChunk];
};

template <typename T, int K, int V>
__global__ void __launch_bounds__(kPrepThreads) prefill_prep_kernel(const __grid_constant__ PrefillParams p) {
  static_assert(K % 32 == 0 && V % 32 == 0, "head sizes must be multiples of 32");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  using Smem = PrepSmem<T, K>;
  Smem& s = *reinterpret_cast<Smem*>(smem_raw);
  static_assert(offsetof(Smem, qraw) % 16 == 0 && offsetof(Smem, inv) % 16 == 0 &&
                    offsetof(Smem, m) % 16 == 0 && offsetof(Smem, beta) % 16 == 0 && sizeof(s.kraw) % 16 == 0,
                "float4 access to inv, m and beta");
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
  const int64_t h = hv / p.group;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const T* q = static_cast<const T*>(p.q);
  const T* k = static_cast<const T*>(p.k);

  // Raw q and k rows in one round of asynchronous copies (rows past the
  // chunk's end zero), overlapped with the gate loads below.
  copy_rows_async<T, K, kChunk, kPrepThreads>(&s.qraw[0][0], Smem::kStride, q + t0 * p.q_s0 + h * p.q_s1,
                                              p.q_s0, len, tid);
  copy_rows_async<T, K, kChunk, kPrepThreads>(&s.kraw[0][0], Smem::kStride, k + t0 * p.k_s0 + h * p.k_s1,
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
  // Reciprocal l2 norms (1 without l2norm), one warp per 16 rows, pairs of
  // elements per lane.
  for (int r = warp * 16; r < warp * 16 + 16; ++r) {
    float sq = 0.f, sk = 0.f;
#pragma unroll
    for (int d = 2 * lane; d < K; d += 64) {
      const float q0 = to_float<T>(s.qraw[r][d]), q1 = to_float<T>(s.qraw[r][d + 1]);
      const float k0 = to_float<T>(s.kraw[r][d]), k1 = to_float<T>(s.kraw[r][d + 1]);
      sq += q0 * q0 + q1 * q1;
      sk += k0 * k0 + k1 * k1;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      sq += __shfl_xor_sync(0xffffffffu, sq, off);
      sk += __shfl_xor_sync(0xffffffffu, sk, off);
    }
    if (lane == 0) {
      s.rnq[r] = p.l2norm ? 1.f / sqrtf(sq + 1e-6f) : 1.f;
      s.rnk[r] = p.l2norm ? 1.f / sqrtf(sk + 1e-6f) : 1.f;
    }
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
  }
  __syncthreads();

  // K K^T and Q K^T of the raw rows for this warp's 16 rows; norms, scale,
  // gate and mask applied on the way out.
  const int r0 = warp * 16, g8 = lane >> 2, t4 = lane & 3;
  {
    float kk[8][4] = {}, qk[8][4] = {};
#pragma unroll
    for (int kc = 0; kc < K / 8; ++kc) {
      uint32_t ak[4], aq[4];
      load_a_io<T>(ak, &s.kraw[0][0], Smem::kStride, r0, kc * 8, lane);
      load_a_io<T>(aq, &s.qraw[0][0], Smem::kStride, r0, kc * 8, lane);
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        uint32_t b[2];
        load_b_io_transposed<T>(b, &s.kraw[0][0], Smem::kStride, kc * 8, nt * 8, lane);
        mma_tf32(kk[nt], ak, b);
        mma_tf32(qk[nt], aq, b);
      }
    }
    float* L = p.L + (int64_t{c} * p.HV + hv) * kChunk * kChunk;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int i = r0 + g8 + half * 8, j = nt * 8 + 2 * t4;
        const float ki = s.rnk[i], qi = s.rnq[i] * p.scale;
        float lv[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int jj = j + e;
          const float gamma = i >= jj ? expf(s.G[i] - s.G[jj]) : 0.f;
          s.m[i][jj] = i > jj ? s.beta[i] * (kk[nt][half * 2 + e] * ki * s.rnk[jj]) * gamma : 0.f;
          lv[e] = (qk[nt][half * 2 + e] * qi * s.rnk[jj]) * gamma;
        }
        *reinterpret_cast<float2*>(L + i * kChunk + j) = make_float2(tf32_round(lv[0]), tf32_round(lv[1]));
      }
  }
  __syncthreads();

  // Au = (I + M)^-1 diag(beta) by a blocked inverse, fp32 FMA throughout.
  // T = I + M is unit lower triangular; split it into kNumBlk x kNumBlk blocks
  // T_ik of kBlk x kBlk (T_ii unit lower triangular, T_ik = M_ik for i > k).
  // A = T^-1 is block lower triangular:
  //   A_ii = D_i = T_ii^-1                                  (step 1)
  //   A_ij = -D_i sum_{k=j}^{i-1} T_ik A_kj,  i > j          (step 2)
  // A_ij needs only blocks A_kj with k - j < i - j, so step 2 runs by diagonal
  // distance d = i - j = 1 .. kNumBlk - 1, the blocks of one distance in
  // parallel, each in two products: (a) P_ij = sum_k T_ik A_kj, (b) A_ij = -D_i P_ij.
  // A lives in s.inv (over q, dead after Q K^T); P_ij is parked in the upper
  // block (j, i) of s.inv, which A leaves zero. Padding rows (r >= len) have
  // zero rows and columns in M, so A is the identity there and Au's rows are 0.
  const int64_t item = int64_t{c} * p.HV + hv;
  if (tid < kChunk) {
    // Step 1: D_b = T_bb^-1, one column of one diagonal block per thread, by a
    // forward substitution in registers.
    const int b0 = (tid / kBlk) * kBlk, col = tid % kBlk;
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
    for (int i = 0; i < kBlk; ++i) s.inv[b0 + i][b0 + col] = x[i];
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

  // Step 2: this thread's elements of a kBlk x kBlk block: rows pr and
  // pr + kHalfBlk of column pc.
  const int pr = tid / kBlk, pc = tid % kBlk;
#pragma unroll
  for (int d = 1; d < kNumBlk; ++d) {
    // (a) P_ij = sum_{k=j}^{i-1} T_ik A_kj, one running sum in column order
    // (the order of the substitution; per-k partial sums double the worst error).
#pragma unroll
    for (int j = 0; j + d < kNumBlk; ++j) {
      const int i = j + d;
      float acc0 = 0.f, acc1 = 0.f;
#pragma unroll
      for (int k = j; k < i; ++k) {
#pragma unroll
        for (int s4 = 0; s4 < kBlk; s4 += kVec) {
          const float4 t0 = *reinterpret_cast<const float4*>(&s.m[i * kBlk + pr][k * kBlk + s4]);
          const float4 t1 = *reinterpret_cast<const float4*>(&s.m[i * kBlk + pr + kHalfBlk][k * kBlk + s4]);
          const float r0[kVec] = {t0.x, t0.y, t0.z, t0.w}, r1[kVec] = {t1.x, t1.y, t1.z, t1.w};
#pragma unroll
          for (int e = 0; e < kVec; ++e) {
            const float a = s.inv[k * kBlk + s4 + e][j * kBlk + pc];
            acc0 = fmaf(r0[e], a, acc0);
            acc1 = fmaf(r1[e], a, acc1);
          }
        }
      }
      s.inv[j * kBlk + pr][i * kBlk + pc] = acc0;
      s.inv[j * kBlk + pr + kHalfBlk][i * kBlk + pc] = acc1;
    }
    __syncthreads();
    // (b) A_ij = -D_i P_ij. D_i is lower triangular: row pr < kHalfBlk needs
    // only its first kHalfBlk entries.
#pragma unroll
    for (int j = 0; j + d < kNumBlk; ++j) {
      const int i = j + d;
      float acc0 = 0.f, acc1 = 0.f;
#pragma unroll
      for (int s4 = 0; s4 < kBlk; s4 += kVec) {
        const float4 d1 = *reinterpret_cast<const float4*>(&s.inv[i * kBlk + pr + kHalfBlk][i * kBlk + s4]);
        const float dr1[kVec] = {d1.x, d1.y, d1.z, d1.w};
        float dr0[kVec] = {};
        if (s4 < kHalfBlk) {
          const float4 d0 = *reinterpret_cast<const float4*>(&s.inv[i * kBlk + pr][i * kBlk + s4]);
          dr0[0] = d0.x, dr0[1] = d0.y, dr0[2] = d0.z, dr0[3] = d0.w;
        }
#pragma unroll
        for (int e = 0; e < kVec; ++e) {
          const float pv = s.inv[j * kBlk + s4 + e][i * kBlk + pc];
          if (s4 < kHalfBlk) acc0 = fmaf(dr0[e], pv, acc0);
          acc1 = fmaf(dr1[e], pv, acc1);
        }
      }
      s.inv[i * kBlk + pr][j * kBlk + pc] = -acc0;
      s.inv[i * kBlk + pr + kHalfBlk][j * kBlk + pc] = -acc1;
    }
    __syncthreads();
  }

  // Au = A diag(beta), row-major, float4 stores; blocks above the diagonal
  // (holding P) are zero in A.
  float* Au = p.Au + item * kChunk * kChunk;
  constexpr int kRowVecs = kChunk / kVec;
  static_assert(kChunk * kRowVecs % kPrepThreads == 0, "whole float4 stores per thread");
#pragma unroll
  for (int it = 0; it < kChunk * kRowVecs / kPrepThreads; ++it) {
    const int e = it * kPrepThreads + tid;
    const int i = e / kRowVecs, j = (e % kRowVecs) * kVec;
    float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
    if (j / kBlk <= i / kBlk) {
      const float4 a = *reinterpret_cast<const float4*>(&s.inv[i][j]);
      const float4 b = *reinterpret_cast<const float4*>(&s.beta[j]);
      // Rounded to tf32 here: the state pass feeds Au to the tensor cores as is.
      v = make_float4(tf32_round(a.x * b.x), tf32_round(a.y * b.y), tf32_round(a.z * b.z),
                      tf32_round(a.w * b.w));
    }
    *reinterpret_cast<float4*>(Au + i * kChunk + j) = v;
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
