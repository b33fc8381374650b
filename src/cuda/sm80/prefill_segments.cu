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
// state columns) of K / 16 warps; warp w forms rows 16 w .. 16 w + 15 of
// S_{p+1} on tensor cores (m16n8k8, two 8-column halves) in 3xTF32: M_p and
// S_p split into tf32 hi + lo, the products hi hi + lo hi + hi lo in fp32
// accumulators, about 2^-22 relative per product (ptx/mma_sm80.cuh).
//
// Only S_p carries from step to step: M_p and S_local,p are all known when
// the kernel starts, so the CTA copies those of segment p + 1 into shared
// memory (cp.async, two buffers) while it computes step p, and each step
// waits on shared memory alone. S_p goes to shared memory split once per
// step, by the thread whose accumulators hold it. Where a block cannot have
// two buffers (sm_86, sm_89 and sm_120 allow 99 KB), one buffer takes each
// step's copies at the step's start instead. GDN_CUDA_COMBINE_BUFFERS=1
// forces that (tests).
//
// Measured (H100, ncu, q35-397b-tp8 1x2048: 64 CTAs, three steps at
// K = 128): the fp32-FMA version this replaced (thread = row x 8 columns)
// took 14.5 us, 5,500 instructions a warp at 0.46 issued per cycle and
// scheduler, stalled on its shared-memory loads
// (h100-2026-12-07-e2c6896-probes.txt); this one takes 11.7 us, 3,250
// instructions a warp at 0.40 (h100-2026-12-07-51ee430-checks.txt).
#include <cstdlib>
#include <string>

#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/mma_sm80.cuh"
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/state_pass.cuh"

namespace gdn::cuda {
namespace {

constexpr int kCombineColumns = 16;
constexpr int kVec = 4;  // floats per 16-byte copy

// Shared memory, `buffers` (1 or 2) of each of the first two:
//   float    m[buffers][K][K]       M_p (then M_{p+1}); the 16-byte unit u of
//                                   row r at unit u ^ (r % 8)
//   float    b[buffers][K][16]      S_local,p of the tile (then S_local,p+1), plain
//   uint32_t s_hi[K][16], s_lo[K][16]  S_p of the tile split into tf32; the
//                                   8-column half h of row r at h ^ (r / 2 % 2)
// The swizzles make the A and B fragment reads conflict-free (A: the 8 rows
// g of a fragment read unit u0 ^ g; B: rows t and t + 2 read opposite halves).
template <int K>
constexpr size_t kMapFloats = size_t{K} * K;
template <int K>
constexpr size_t kTileFloats = size_t{K} * kCombineColumns;
template <int K>
constexpr size_t combine_smem_bytes(int buffers) {
  const size_t per_buffer = kMapFloats<K> + kTileFloats<K>, split_tile = 2 * kTileFloats<K>;
  return (buffers * per_buffer + split_tile) * sizeof(float);
}
static_assert(128 / kVec >= 8 && 64 / kVec >= 8, "the map swizzle takes 8 units a row");

__device__ __forceinline__ int map_at(int r, int c, int k_dim) {
  return r * k_dim + ((c / kVec) ^ (r & 7)) * kVec + c % kVec;
}
__device__ __forceinline__ int tile_at(int r, int c) {
  return r * kCombineColumns + (c ^ (((r >> 1) & 1) << 3));
}

template <int K, int V>
__global__ void __launch_bounds__(2 * K)
    combine_segments_kernel(const __grid_constant__ PrefillParams p, int buffers) {
  static_assert(V % kCombineColumns == 0, "whole column tiles");
  static_assert(2 * K == 32 * (K / 16), "a warp per 16 rows");
  extern __shared__ __align__(16) float smem_f[];
  const auto m_buf = [&](int buf) { return smem_f + buf * kMapFloats<K>; };
  const auto b_buf = [&](int buf) { return smem_f + buffers * kMapFloats<K> + buf * kTileFloats<K>; };
  uint32_t* const s_hi = reinterpret_cast<uint32_t*>(smem_f + buffers * (kMapFloats<K> + kTileFloats<K>));
  uint32_t* const s_lo = s_hi + kTileFloats<K>;
  const int64_t n = blockIdx.x, hv = blockIdx.y;
  const int segs = p.segments;
  const int tid = threadIdx.x, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int r0 = (tid >> 5) * 16;  // the warp's first row
  const int col0 = blockIdx.z * kCombineColumns;
  // Accumulator element e of half h: row r0 + g (+ 8 for e >= 2), tile
  // column 8 h + 2 t (+ 1 for odd e).
  const auto row_of = [&](int e) { return r0 + g + (e >> 1) * 8; };
  const auto col_of = [&](int h, int e) { return 8 * h + 2 * t + (e & 1); };
  int64_t row_in = -1, row_out = -1;
  state_rows(p, n, &row_in, &row_out);
  float acc[2][4];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      acc[h][e] = row_in >= 0 ? p.init.load(row_in, hv, row_of(e), col0 + col_of(h, e)) : 0.f;

  wait_for_prerequisites();  // the local pass's end states and maps
  if (device_checks_failed(p)) return;
  const auto item_of = [&](int seg) { return (n * segs + seg) * p.HV + hv; };
  // Segment seg's M and the tile's columns of S_local into buffer buf: the
  // 2 K threads copy 8 rows of M (K / 4 units each) a round, a thread's
  // unit keeping its column and its row modulo 8 (so its swizzle), then the
  // tile's K rows of 4 units.
  const auto prefetch = [&](int seg, int buf) {
    const int64_t item = item_of(seg);
    constexpr int kUnits = K / kVec, kRows = 2 * K / kUnits;
    const int r = tid / kUnits, u = tid % kUnits;
    const float* m = p.seg_map + item * K * K + int64_t{r} * K + u * kVec;
    float* dst = m_buf(buf) + map_at(r, u * kVec, K);  // rows r + 8 i keep r's swizzle
#pragma unroll 4
    for (int i = 0; i < K / kRows; ++i) cp_async_16(dst + i * kRows * K, m + int64_t{i} * kRows * K, true);
    constexpr int kTileUnits = kCombineColumns / kVec;
    const float* b = p.seg_state + item * K * V + col0;
    for (int x = tid; x < K * kTileUnits; x += 2 * K) {
      const int br = x / kTileUnits, bc = (x % kTileUnits) * kVec;
      cp_async_16(b_buf(buf) + br * kCombineColumns + bc, b + int64_t{br} * V + bc, true);
    }
  };
  auto store = [&](int64_t item) {
    float* dst = p.seg_state + item * K * V + col0;
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 4; e += 2)
        *reinterpret_cast<float2*>(dst + int64_t{row_of(e)} * V + col_of(h, e)) =
            make_float2(acc[h][e], acc[h][e + 1]);
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
    // S_p, split, where every warp reads its B fragments.
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int e = 0; e < 4; e += 2) {
        uint32_t hi0, lo0, hi1, lo1;
        split_tf32(acc[h][e], hi0, lo0);
        split_tf32(acc[h][e + 1], hi1, lo1);
        const int at = tile_at(row_of(e), col_of(h, e));
        *reinterpret_cast<uint2*>(s_hi + at) = make_uint2(hi0, hi1);
        *reinterpret_cast<uint2*>(s_lo + at) = make_uint2(lo0, lo1);
      }
    // This step's group is in; with two buffers the next one's may still fly.
    if (buffers == 2) {
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    // The fragments' addresses as a per-thread pointer plus a constant per
    // k-step (map_at and tile_at unfolded; the compiler does not see that
    // k0 is a multiple of 8 through the swizzles):
    //   A element e, k-step k0 = 32 q + 8 mm: row r0 + g (+ 8 for odd e),
    //     unit (2 (4 q + mm) + j) ^ g = 8 q + 2 (mm ^ (g / 2)) + (j ^ g % 2)
    //     with j = e / 2, so 32 q floats past a_ptr[mm][e].
    //   B rows k0 + t and k0 + t + 4: (k0 + t) / 2 % 2 = t / 2 % 2, so
    //     16 k0 past b_ptr[h][i], and s_lo a tile past s_hi.
    const float* a_ptr[4][4];
#pragma unroll
    for (int mm = 0; mm < 4; ++mm)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        a_ptr[mm][e] =
            m_buf(buf) + (r0 + g + (e & 1) * 8) * K + 8 * (mm ^ (g >> 1)) + 4 * ((e >> 1) ^ (g & 1)) + t;
    const uint32_t* b_ptr[2][2];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 2; ++i) b_ptr[h][i] = s_hi + tile_at(t + 4 * i, 8 * h + g);
    Tf32x3Acc c[2];
    c[0].zero(), c[1].zero();
#pragma unroll
    for (int k0 = 0; k0 < K; k0 += 8) {
      const int q = k0 / 32, mm = (k0 / 8) % 4;
      uint32_t a_hi[4], a_lo[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) split_tf32(a_ptr[mm][e][32 * q], a_hi[e], a_lo[e]);
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t* const b0 = b_ptr[h][0] + kCombineColumns * k0;
        const uint32_t* const b1 = b_ptr[h][1] + kCombineColumns * k0;
        const uint32_t b_hi[2] = {b0[0], b1[0]}, b_lo[2] = {b0[kTileFloats<K>], b1[kTileFloats<K>]};
        mma_tf32x3(c[h], a_hi, a_lo, b_hi, b_lo);
      }
    }
    const float* const b = b_buf(buf);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float prod[4];
      c[h].sum(prod);
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[h][e] = b[row_of(e) * kCombineColumns + col_of(h, e)] + prod[e];
    }
    store(item_of(seg));
    __syncthreads();  // s_hi, s_lo and buffer buf take the next segment's
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
