// Shared-memory tiles of raw io rows (q, k, v in bf16, fp16 or fp32) as
// tensor-core operands: cp.async row copies in, k-permuted tf32 fragments out
// (mma_sm80.cuh). 16-bit values are exact in tf32; fp32 ones are rounded.
#pragma once

#include "cuda/common.cuh"
#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/mma_sm80.cuh"

namespace gdn::cuda {

// Copies `rows` rows of `cols` elements (row r from src + r * src_stride)
// into a row-major tile of row stride `dst_stride` elements; rows at or past
// `valid_rows` are zero-filled without reading their source (a copy of
// source size 0 reads nothing, so their address needs no valid stand-in).
// `nthreads` threads take part, `tid` is this one; each keeps one 16-byte
// column and walks rows with pointer steps, so a copy costs a few
// instructions. Needs 16-byte aligned rows.
template <typename T, int cols, int rows, int nthreads>
__device__ __forceinline__ void copy_rows_async(T* dst, int dst_stride, const T* src, int64_t src_stride,
                                                int valid_rows, int tid) {
  constexpr int kPer = 16 / sizeof(T);
  constexpr int kUnits = cols / kPer;  // 16-byte units per row
  static_assert(cols % kPer == 0 && nthreads % kUnits == 0, "whole units per row, whole rows per pass");
  constexpr int kRowsPerPass = nthreads / kUnits;
  constexpr int kPasses = (rows + kRowsPerPass - 1) / kRowsPerPass;
  const int r0 = tid / kUnits, e = (tid % kUnits) * kPer;
  const T* s = src + r0 * src_stride + e;
  T* d = dst + r0 * dst_stride + e;
#pragma unroll
  for (int i = 0; i < kPasses; ++i) {
    const int r = r0 + i * kRowsPerPass;
    if (rows % kRowsPerPass != 0 && r >= rows) break;
    const bool valid = r < valid_rows;
    cp_async_16(d, s, valid);
    s += kRowsPerPass * src_stride;
    d += kRowsPerPass * dst_stride;
  }
}

// tf32 bits of the two 16-bit floats packed in w (low half first).
template <typename T>
__device__ __forceinline__ void unpack_pair(uint32_t w, uint32_t& lo, uint32_t& hi);
template <>
__device__ __forceinline__ void unpack_pair<__nv_bfloat16>(uint32_t w, uint32_t& lo, uint32_t& hi) {
  lo = w << 16;
  hi = w & 0xffff0000u;
}
template <>
__device__ __forceinline__ void unpack_pair<__half>(uint32_t w, uint32_t& lo, uint32_t& hi) {
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&w));
  lo = __float_as_uint(f.x);
  hi = __float_as_uint(f.y);
}

// tf32 bits of two adjacent io elements.
template <typename T>
__device__ __forceinline__ void io_pair(const T* p, uint32_t& lo, uint32_t& hi) {
  if constexpr (sizeof(T) == 2) {
    unpack_pair<T>(*reinterpret_cast<const uint32_t*>(p), lo, hi);
  } else {
    const float2 f = *reinterpret_cast<const float2*>(p);
    lo = to_tf32(f.x);
    hi = to_tf32(f.y);
  }
}

template <typename T>
__device__ __forceinline__ uint32_t io_bits(T x) {
  return sizeof(T) == 2 ? __float_as_uint(to_float<T>(x)) : to_tf32(to_float<T>(x));
}

// k-permuted A fragment (rows row0.., reduction columns k0..) from a
// row-major io tile.
template <typename T>
__device__ __forceinline__ void load_a_io(uint32_t (&a)[4], const T* m, int stride, int row0, int k0,
                                          int lane) {
  const int g = lane >> 2, t = lane & 3;
  io_pair<T>(m + (row0 + g) * stride + k0 + 2 * t, a[0], a[2]);
  io_pair<T>(m + (row0 + g + 8) * stride + k0 + 2 * t, a[1], a[3]);
}

// k-permuted B fragment of the transpose of a row-major io tile:
// B(k, n) = m[n][k] (e.g. K^T from the rows of K).
template <typename T>
__device__ __forceinline__ void load_b_io_transposed(uint32_t (&b)[2], const T* m, int stride, int k0, int n0,
                                                     int lane) {
  const int g = lane >> 2, t = lane & 3;
  io_pair<T>(m + (n0 + g) * stride + k0 + 2 * t, b[0], b[1]);
}

// k-permuted A fragment of the transpose of a row-major io tile:
// A(r, k) = m[k][r].
template <typename T>
__device__ __forceinline__ void load_a_io_transposed(uint32_t (&a)[4], const T* m, int stride, int row0,
                                                     int k0, int lane) {
  const int g = lane >> 2, t = lane & 3;
  const T* r0 = m + (k0 + 2 * t) * stride + row0 + g;
  const T* r1 = r0 + stride;
  a[0] = io_bits<T>(r0[0]);
  a[1] = io_bits<T>(r0[8]);
  a[2] = io_bits<T>(r1[0]);
  a[3] = io_bits<T>(r1[8]);
}

// A fragments of two consecutive k-steps (k0 and k0 + 8) from a row-major
// io tile: one ldmatrix for 16-bit io (rows 16-byte aligned), else load_a_io.
template <typename T>
__device__ __forceinline__ void load_a_io_x2(uint32_t (&a0)[4], uint32_t (&a1)[4], const T* m, int stride,
                                             int row0, int k0, int lane) {
  if constexpr (sizeof(T) == 2) {
    // Matrix i: rows row0 + (i % 2) * 8.., columns k0 + (i / 2) * 8..
    const int mi = lane >> 3;
    uint32_t r[4];
    ldmatrix_x4(r, m + (row0 + (mi & 1) * 8 + (lane & 7)) * stride + k0 + (mi >> 1) * 8);
    unpack_pair<T>(r[0], a0[0], a0[2]);
    unpack_pair<T>(r[1], a0[1], a0[3]);
    unpack_pair<T>(r[2], a1[0], a1[2]);
    unpack_pair<T>(r[3], a1[1], a1[3]);
  } else {
    load_a_io<T>(a0, m, stride, row0, k0, lane);
    load_a_io<T>(a1, m, stride, row0, k0 + 8, lane);
  }
}

// The same for the transpose, A(r, k) = m[k][r].
template <typename T>
__device__ __forceinline__ void load_a_io_transposed_x2(uint32_t (&a0)[4], uint32_t (&a1)[4], const T* m,
                                                        int stride, int row0, int k0, int lane) {
  if constexpr (sizeof(T) == 2) {
    // Matrix i: stored rows k0 + (i / 2) * 8.., columns row0 + (i % 2) * 8..
    const int mi = lane >> 3;
    uint32_t r[4];
    ldmatrix_x4_trans(r, m + (k0 + (mi >> 1) * 8 + (lane & 7)) * stride + row0 + (mi & 1) * 8);
    unpack_pair<T>(r[0], a0[0], a0[2]);
    unpack_pair<T>(r[1], a0[1], a0[3]);
    unpack_pair<T>(r[2], a1[0], a1[2]);
    unpack_pair<T>(r[3], a1[1], a1[3]);
  } else {
    load_a_io_transposed<T>(a0, m, stride, row0, k0, lane);
    load_a_io_transposed<T>(a1, m, stride, row0, k0 + 8, lane);
  }
}

}  // namespace gdn::cuda
