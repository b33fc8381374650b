// The combine between the two passes over segments (params.h; prefill.cu
// decides when a prefill splits its sequences). The local pass left, for
// each segment p but the last, its end state from zero S_local,p and its
// state map M_p (the state is affine in the state entering the segment:
// S_end = M_p S_start + S_local,p). In order over a sequence's segments,
//   S_0 = the call's initial state (zero without one)
//   S_{p+1} = M_p S_p + S_local,p
// and S_{p+1} overwrites S_local,p in seg_state, where the final pass reads
// it as segment p + 1's entering state; S_0 goes to the last segment's slot,
// which the local pass leaves unused. One CTA per (sequence, value head, 16
// state columns), thread (row k, 8 columns), fp32 FMA in the order of i.
//
// Only S_p carries from step to step: M_p and S_local,p are all known when
// the kernel starts, so the CTA copies those of segment p + 1 into shared
// memory (cp.async, two buffers) while it computes step p, and each step
// waits on shared memory alone. (The kernel before this one read each row
// of M from global memory inside the step: 36.6 us for the three steps of
// q35-397b-tp8 1x2048 on 32 CTAs, H200 under ncu.) Where a block cannot have
// two buffers (156 KB at K = 128: sm_86, sm_89 and sm_120 allow 99 KB), one
// buffer takes each step's copies at the step's start instead.
// GDN_CUDA_COMBINE_BUFFERS=1 forces that (tests).
#include <cstdlib>
#include <string>

#include "cuda/ptx/cp_async.cuh"
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/state_pass.cuh"

namespace gdn::cuda {
namespace {

constexpr int kCombineColumns = 16;
constexpr int kThreadColumns = 8;  // columns per thread: 2 threads per row
constexpr int kVec = 4;            // floats per float4
constexpr int kMapPad = 4;         // floats after each row of M: rows k and k + 1 start 4 banks apart

// Shared memory, `buffers` (1 or 2) of each:
//   float m[buffers][K][K + kMapPad]       M_p (then M_{p+1})
//   float b[buffers][K][kCombineColumns]   S_local,p of the tile, likewise
//   float s[K][kCombineColumns]            S_p of the tile
template <int K>
constexpr size_t kMapFloats = size_t{K} * (K + kMapPad);
template <int K>
constexpr size_t kTileFloats = size_t{K} * kCombineColumns;
template <int K>
constexpr size_t combine_smem_bytes(int buffers) {
  const size_t per_buffer = kMapFloats<K> + kTileFloats<K>;
  return (buffers * per_buffer + kTileFloats<K>)*sizeof(float);
}
static_assert(((128 + kMapPad) * sizeof(float)) % 16 == 0 && ((64 + kMapPad) * sizeof(float)) % 16 == 0,
              "16-byte copies into each row");

template <int K, int V>
__global__ void __launch_bounds__(2 * K)
    combine_segments_kernel(const __grid_constant__ PrefillParams p, int buffers) {
  static_assert(V % kCombineColumns == 0, "whole column tiles");
  extern __shared__ __align__(16) float smem_f[];
  using MapRow = float[K + kMapPad];
  using TileRow = float[kCombineColumns];
  const auto m_buf = [&](int buf) { return reinterpret_cast<MapRow*>(smem_f + buf * kMapFloats<K>); };
  const auto b_buf = [&](int buf) {
    return reinterpret_cast<TileRow*>(smem_f + buffers * kMapFloats<K> + buf * kTileFloats<K>);
  };
  TileRow* const s_tile = reinterpret_cast<TileRow*>(smem_f + buffers * (kMapFloats<K> + kTileFloats<K>));
  const int64_t n = blockIdx.x, hv = blockIdx.y;
  const int segs = p.segments;
  const int tid = threadIdx.x, k = tid / 2;
  const int col0 = blockIdx.z * kCombineColumns;               // the tile's first column
  const int cs = (tid % 2) * kThreadColumns, col = col0 + cs;  // the thread's first, within the tile and in S
  int64_t row_in = -1, row_out = -1;
  state_rows(p, n, &row_in, &row_out);
  float acc[kThreadColumns];
#pragma unroll
  for (int j = 0; j < kThreadColumns; ++j) acc[j] = row_in >= 0 ? p.init.load(row_in, hv, k, col + j) : 0.f;

  wait_for_prerequisites();  // the local pass's end states and maps
  if (device_checks_failed(p)) return;
  const auto item_of = [&](int seg) { return (n * segs + seg) * p.HV + hv; };
  // Segment seg's M and the tile's columns of S_local into buffer buf: K
  // rows of K / 4 units, K rows of 4 units, spread over the 2 K threads.
  const auto prefetch = [&](int seg, int buf) {
    const int64_t item = item_of(seg);
    const float* m = p.seg_map + item * K * K;
    for (int u = tid; u < K * K / kVec; u += 2 * K) {
      const int r = u / (K / kVec), c = (u % (K / kVec)) * kVec;
      cp_async_16(&m_buf(buf)[r][c], m + int64_t{r} * K + c, true);
    }
    const float* b = p.seg_state + item * K * V + col0;
    for (int u = tid; u < K * kCombineColumns / kVec; u += 2 * K) {
      const int r = u / (kCombineColumns / kVec), c = (u % (kCombineColumns / kVec)) * kVec;
      cp_async_16(&b_buf(buf)[r][c], b + int64_t{r} * V + c, true);
    }
  };
  auto store = [&](int64_t item) {
    float* dst = p.seg_state + item * K * V + int64_t{k} * V + col;
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec)
      *reinterpret_cast<float4*>(dst + j) = make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
  };
  if (segs > 1) prefetch(0, 0);
  cp_async_commit();
  store(item_of(segs - 1));
  for (int seg = 0; seg + 1 < segs; ++seg) {
    const int buf = buffers == 2 ? seg & 1 : 0;
    // The buffer written here was last read in step seg - 1, which ended on
    // a barrier.
    if (buffers == 2 && seg + 2 < segs) prefetch(seg + 1, buf ^ 1);
    if (buffers == 1 && seg > 0) prefetch(seg, 0);
    cp_async_commit();
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec)
      *reinterpret_cast<float4*>(&s_tile[k][cs + j]) =
          make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
    // This step's group is in; with two buffers the next one's may still fly.
    if (buffers == 2) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const MapRow* const m_rows = m_buf(buf);
    const TileRow* const b_rows = b_buf(buf);
#pragma unroll
    for (int j = 0; j < kThreadColumns; j += kVec) {
      const float4 x = *reinterpret_cast<const float4*>(&b_rows[k][cs + j]);
      acc[j] = x.x, acc[j + 1] = x.y, acc[j + 2] = x.z, acc[j + 3] = x.w;
    }
#pragma unroll 4
    for (int i = 0; i < K; i += kVec) {
      const float4 mv = *reinterpret_cast<const float4*>(&m_rows[k][i]);
      const float mr[kVec] = {mv.x, mv.y, mv.z, mv.w};
#pragma unroll
      for (int u = 0; u < kVec; ++u)
#pragma unroll
        for (int j = 0; j < kThreadColumns; j += kVec) {
          const float4 x = *reinterpret_cast<const float4*>(&s_tile[i + u][cs + j]);
          acc[j] = fmaf(mr[u], x.x, acc[j]);
          acc[j + 1] = fmaf(mr[u], x.y, acc[j + 1]);
          acc[j + 2] = fmaf(mr[u], x.z, acc[j + 2]);
          acc[j + 3] = fmaf(mr[u], x.w, acc[j + 3]);
        }
    }
    store(item_of(seg));
    __syncthreads();  // s, and buffer buf, take the next segment's
  }
}

}  // namespace

template <int K, int V>
Status launch_combine_segments(const PrefillParams& p, size_t smem_optin, cudaStream_t stream) {
  const auto kernel = combine_segments_kernel<K, V>;
  const char* env = std::getenv("GDN_CUDA_COMBINE_BUFFERS");
  const int buffers =
      (env != nullptr && std::string(env) == "1") || combine_smem_bytes<K>(2) > smem_optin ? 1 : 2;
  const size_t smem = combine_smem_bytes<K>(buffers);
  if (Status s = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem,
                                    "combine_segments_kernel: raising its shared memory limit");
      !s.ok())
    return s;
  static const bool programmatic = kernel_waits_for_prerequisites(kernel);
  if (p.N == 0) return Status::Ok();
  const dim3 grid(static_cast<unsigned>(p.N), static_cast<unsigned>(p.HV), V / kCombineColumns);
  return cuda_status(launch_kernel(kernel, grid, dim3(2 * K), smem, stream, programmatic, p, buffers),
                     "combine_segments_kernel launch");
}

template Status launch_combine_segments<64, 64>(const PrefillParams&, size_t, cudaStream_t);
template Status launch_combine_segments<128, 128>(const PrefillParams&, size_t, cudaStream_t);

}  // namespace gdn::cuda
