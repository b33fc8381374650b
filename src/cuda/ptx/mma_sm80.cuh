// Warp-level tensor-core products (PTX ISA 9.7.14, "mma"), sm_80 and newer:
// m16n8k8 with tf32 operands and m16n8k16 with bf16 or fp16 operands, all
// with fp32 accumulators.
//
// Fragment ownership within a warp (g = lane / 4, t = lane % 4):
//   A 16x8 (row-major): a0 (g, t)  a1 (g + 8, t)  a2 (g, t + 4)  a3 (g + 8, t + 4)
//   B 8x8  (k x n):     b0 (t, g)  b1 (t + 4, g)
//   C 16x8:             c0 (g, 2t) c1 (g, 2t + 1) c2 (g + 8, 2t) c3 (g + 8, 2t + 1)
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/ptx/cp_async.cuh"

namespace gdn::cuda {

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// x rounded to the nearest tf32 value, as a float.
__device__ __forceinline__ float tf32_round(float x) {
  return __uint_as_float(to_tf32(x));
}

// The same with ties to even: one instruction from sm_90 on (cvt.rn.tf32;
// cvt.rna takes five), to_tf32 before.
__device__ __forceinline__ uint32_t to_tf32_rn(float x) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t r;
  asm("cvt.rn.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
#else
  return to_tf32(x);
#endif
}
__device__ __forceinline__ float tf32_round_rn(float x) {
  return __uint_as_float(to_tf32_rn(x));
}

// c += a * b
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// m16n8k16 with bf16 (mma_bf16) or fp16 (mma_f16) operands and fp32
// accumulators (the same PTX section). Fragment ownership (g = lane / 4,
// t = lane % 4; each 32-bit register holds two consecutive-k elements, the
// lower k in the low half):
//   A 16x16: a0 (g, 2t..)  a1 (g + 8, 2t..)  a2 (g, 2t + 8..)  a3 (g + 8, 2t + 8..)
//   B 16x8:  b0 (2t.., g)  b1 (2t + 8.., g)
//   C 16x8:  as for m16n8k8.
// c += a * b
#define GDN_MMA_M16N8K16(NAME, AB)                                                                      \
  __device__ __forceinline__ void NAME(float(&c)[4], const uint32_t(&a)[4], uint32_t b0, uint32_t b1) { \
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32." AB "." AB                                     \
                 ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"                 \
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                       \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));                       \
  }
GDN_MMA_M16N8K16(mma_bf16, "bf16")
GDN_MMA_M16N8K16(mma_f16, "f16")
#undef GDN_MMA_M16N8K16

// Splits x into tf32 values hi + lo with x ~ hi + lo to about 2^-22
// relative (x - hi is exact): "3xTF32" products (a_lo b_hi + a_hi b_lo +
// a_hi b_hi) then carry fp32 operands at close to fp32 precision.
__device__ __forceinline__ void split_tf32(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32_rn(x);
  lo = to_tf32_rn(x - __uint_as_float(hi));
}

// c += a * b in 3xTF32 from split operands (hi hi + lo hi + hi lo), each
// term into its own accumulator (c.hh, c.lh, c.hl): the three products of a
// k-step are independent, so a chain of k-steps is one product deep per
// step instead of three.
struct Tf32x3Acc {
  float hh[4], lh[4], hl[4];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int e = 0; e < 4; ++e) hh[e] = lh[e] = hl[e] = 0.f;
  }
  // hh + (lh + hl): the small terms first.
  __device__ __forceinline__ void sum(float (&c)[4]) const {
#pragma unroll
    for (int e = 0; e < 4; ++e) c[e] = hh[e] + (lh[e] + hl[e]);
  }
};
__device__ __forceinline__ void mma_tf32x3(Tf32x3Acc& c, const uint32_t (&a_hi)[4], const uint32_t (&a_lo)[4],
                                           const uint32_t (&b_hi)[2], const uint32_t (&b_lo)[2]) {
  mma_tf32(c.lh, a_lo, b_hi);
  mma_tf32(c.hl, a_hi, b_lo);
  mma_tf32(c.hh, a_hi, b_hi);
}

// Splits the pair (x0, x1) into bf16 pairs hi + lo with x ~ hi + lo to about
// 2^-17 relative (x0 in the low halves): two bf16 products then carry an
// fp32 operand with better than tf32 precision.
__device__ __forceinline__ void split_bf16(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  const __nv_bfloat162 l = __floats2bfloat162_rn(x0 - hf.x, x1 - hf.y);
  hi = *reinterpret_cast<const uint32_t*>(&h);
  lo = *reinterpret_cast<const uint32_t*>(&l);
}

// A fragment from a row-major fp32 matrix in shared memory (stride in floats).
__device__ __forceinline__ void load_a_rowmajor(uint32_t (&a)[4], const float* m, int stride, int row0,
                                                int k0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  a[0] = to_tf32(m[(row0 + g) * stride + k0 + t]);
  a[1] = to_tf32(m[(row0 + g + 8) * stride + k0 + t]);
  a[2] = to_tf32(m[(row0 + g) * stride + k0 + t + 4]);
  a[3] = to_tf32(m[(row0 + g + 8) * stride + k0 + t + 4]);
}

// A fragment of the transpose of a row-major matrix: A(r, k) = m[k][r].
__device__ __forceinline__ void load_a_transposed(uint32_t (&a)[4], const float* m, int stride, int row0,
                                                  int k0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  a[0] = to_tf32(m[(k0 + t) * stride + row0 + g]);
  a[1] = to_tf32(m[(k0 + t) * stride + row0 + g + 8]);
  a[2] = to_tf32(m[(k0 + t + 4) * stride + row0 + g]);
  a[3] = to_tf32(m[(k0 + t + 4) * stride + row0 + g + 8]);
}

// B fragment (k x n) from a row-major [k][n] fp32 matrix in shared memory.
__device__ __forceinline__ void load_b_rowmajor(uint32_t (&b)[2], const float* m, int stride, int k0, int n0,
                                                int lane) {
  const int g = lane >> 2, t = lane & 3;
  b[0] = to_tf32(m[(k0 + t) * stride + n0 + g]);
  b[1] = to_tf32(m[(k0 + t + 4) * stride + n0 + g]);
}

// B fragment where B(k, n) = m[n][k] (a row-major [n][k] matrix, e.g. K^T).
__device__ __forceinline__ void load_b_transposed(uint32_t (&b)[2], const float* m, int stride, int k0,
                                                  int n0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  b[0] = to_tf32(m[(n0 + g) * stride + k0 + t]);
  b[1] = to_tf32(m[(n0 + g) * stride + k0 + t + 4]);
}

}  // namespace gdn::cuda

namespace gdn::cuda {

// k-permuted fragments. A product sums over k, so any permutation applied to
// A's columns and B's rows alike leaves it unchanged. Within each group of 8,
// logical k = t maps to physical 2t and k = t + 4 to 2t + 1: a thread's two k
// values are then adjacent in memory, one 32-bit (16-bit data) or 64-bit
// (fp32 data) shared load instead of two.

// Exact tf32 bits of a 16-bit float (its mantissa fits), rounded ones of fp32.
__device__ __forceinline__ uint32_t tf32_bits(float x) {
  return to_tf32(x);
}

// A fragment from a row-major tf32-valued fp32 tile.
__device__ __forceinline__ void load_a_perm(uint32_t (&a)[4], const float* m, int stride, int row0, int k0,
                                            int lane) {
  const int g = lane >> 2, t = lane & 3;
  const float2 lo = *reinterpret_cast<const float2*>(m + (row0 + g) * stride + k0 + 2 * t);
  const float2 hi = *reinterpret_cast<const float2*>(m + (row0 + g + 8) * stride + k0 + 2 * t);
  a[0] = __float_as_uint(lo.x);
  a[2] = __float_as_uint(lo.y);
  a[1] = __float_as_uint(hi.x);
  a[3] = __float_as_uint(hi.y);
}

// B fragment from a row-major [k][n] tf32-valued fp32 tile.
__device__ __forceinline__ void load_b_perm(uint32_t (&b)[2], const float* m, int stride, int k0, int n0,
                                            int lane) {
  const int g = lane >> 2, t = lane & 3;
  b[0] = __float_as_uint(m[(k0 + 2 * t) * stride + n0 + g]);
  b[1] = __float_as_uint(m[(k0 + 2 * t + 1) * stride + n0 + g]);
}

}  // namespace gdn::cuda

namespace gdn::cuda {

// Pair-interleaved fp32 tiles for B operands. A [k][n] tile stores element
// (k, n) at ((k / 2) * P + n) * 2 + k % 2 (P: pair-row stride in float2
// units), so the two k values of a k-permuted B fragment are one 64-bit load.
// P = n columns + 4 keeps a half-warp's loads on distinct banks.
template <int P>
__device__ __forceinline__ int pair_index(int k, int n) {
  return (((k >> 1) * P + n) << 1) + (k & 1);
}

// k-permuted B fragment from a pair-interleaved tile (k0 even).
template <int P>
__device__ __forceinline__ void load_b_pairs(uint32_t (&b)[2], const float* m, int k0, int n0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const float2 v = *reinterpret_cast<const float2*>(m + pair_index<P>(k0 + 2 * t, n0 + g));
  b[0] = __float_as_uint(v.x);
  b[1] = __float_as_uint(v.y);
}

// Four 8x8 matrices of 16-bit elements from shared memory (PTX ISA 9.7.14.5.15,
// "ldmatrix"): lane l gives the address of row l % 8 of matrix l / 8;
// register i receives matrix i's (g, 2t..2t+1) pair, or with .trans the
// (2t..2t+1, g) pair (g = lane / 4, t = lane % 4).
// The address is a shared-memory one (smem_addr), so that a base formed once
// takes constant offsets; the overload below takes a pointer.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* row_addr) {
  ldmatrix_x4(r, smem_addr(row_addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* row_addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(row_addr))
               : "memory");
}

}  // namespace gdn::cuda
