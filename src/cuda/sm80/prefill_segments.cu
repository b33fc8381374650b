// The combine between the two passes over segments (params.h; prefill.cu
// decides when a prefill splits its sequences). The local pass left, for
// each segment p but the last, its end state from zero S_local,p and its
// state map M_p (the state is affine in the state entering the segment:
// S_end = M_p S_start + S_local,p). In order over a sequence's segments,
//   S_0 = the call's initial state (zero without one)
//   S_{p+1} = M_p S_p + S_local,p
// and S_{p+1} overwrites S_local,p in seg_state, where the final pass reads
// it as segment p + 1's entering state; S_0 goes to the last segment's slot,
// which the local pass leaves unused. One CTA per (sequence, value head, 32
// state columns), thread (row k, 16 columns), fp32 FMA.
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/state_pass.cuh"

namespace gdn::cuda {
namespace {

constexpr int kCombineColumns = 32;
constexpr int kThreadColumns = 16;  // columns per thread: 2 threads per row
constexpr int kVec = 4;             // floats per float4

template <int K, int V>
__global__ void __launch_bounds__(2 * K) combine_segments_kernel(const __grid_constant__ PrefillParams p) {
  static_assert(V % kCombineColumns == 0, "whole column tiles");
  __shared__ __align__(16) float s[K][kCombineColumns];  // S_p of the tile
  const int64_t n = blockIdx.x, hv = blockIdx.y;
  const int segs = p.segments;
  const int k = threadIdx.x / 2;
  const int col = blockIdx.z * kCombineColumns + (threadIdx.x % 2) * kThreadColumns;  // first of the thread's
  const int cs = col % kCombineColumns;                                               // ... within the tile
  int64_t row_in = -1, row_out = -1;
  state_rows(p, n, &row_in, &row_out);
  float acc[kThreadColumns];
#pragma unroll
  for (int j = 0; j < kThreadColumns; ++j) acc[j] = row_in >= 0 ? p.init.load(row_in, hv, k, col + j) : 0.f;

  wait_for_prerequisites();  // the local pass's end states and maps
  if (*p.error_flag) return;
  auto store = [&](int64_t item) {
    float* dst = p.seg_state + item * K * V + int64_t{k} * V + col;
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec)
      *reinterpret_cast<float4*>(dst + j) = make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
  };
  store((n * segs + segs - 1) * p.HV + hv);
  for (int seg = 0; seg + 1 < segs; ++seg) {
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec)
      *reinterpret_cast<float4*>(&s[k][cs + j]) = make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
    __syncthreads();
    const int64_t item = (n * segs + seg) * p.HV + hv;
    const float* m = p.seg_map + item * K * K + int64_t{k} * K;  // row k of M_seg
    const float* sl = p.seg_state + item * K * V + int64_t{k} * V + col;
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec) {
      const float4 x = *reinterpret_cast<const float4*>(sl + j);
      acc[j] = x.x, acc[j + 1] = x.y, acc[j + 2] = x.z, acc[j + 3] = x.w;
    }
#pragma unroll 4
    for (int i = 0; i < K; i += kVec) {
      const float4 mv = *reinterpret_cast<const float4*>(m + i);
      const float mr[kVec] = {mv.x, mv.y, mv.z, mv.w};
#pragma unroll
      for (int u = 0; u < kVec; ++u)
#pragma unroll
        for (int j = 0; j < kThreadColumns; j += kVec) {
          const float4 x = *reinterpret_cast<const float4*>(&s[i + u][cs + j]);
          acc[j] = fmaf(mr[u], x.x, acc[j]);
          acc[j + 1] = fmaf(mr[u], x.y, acc[j + 1]);
          acc[j + 2] = fmaf(mr[u], x.z, acc[j + 2]);
          acc[j + 3] = fmaf(mr[u], x.w, acc[j + 3]);
        }
    }
    store(item);
    __syncthreads();  // s takes the next segment's state
  }
}

}  // namespace

template <int K, int V>
Status launch_combine_segments(const PrefillParams& p, cudaStream_t stream) {
  static const bool programmatic = kernel_waits_for_prerequisites(combine_segments_kernel<K, V>);
  if (p.N == 0) return Status::Ok();
  const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(p.HV), V / kCombineColumns);
  return cuda_status(
      launch_kernel(combine_segments_kernel<K, V>, grid, dim3(2 * K), 0, stream, programmatic, p),
      "combine_segments_kernel launch");
}

template Status launch_combine_segments<64, 64>(const PrefillParams&, cudaStream_t);
template Status launch_combine_segments<128, 128>(const PrefillParams&, cudaStream_t);

}  // namespace gdn::cuda
