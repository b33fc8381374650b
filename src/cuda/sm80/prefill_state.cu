// Stage 2 of the portable prefill: the sequential state pass, fused with the
// outputs. One CTA of 8 warps per (sequence, value head, VT-column tile of
// the state) walks the sequence's chunks in order, its S tile [K, VT] on chip
// (fp32 in registers; a tf32-rounded shared copy feeds the tensor cores).
// Per chunk, from raw q, k, v and stage 1's Au, L and row factors (params.h):
//   KS, QS = K S, Q S                           [64, VT]
//   X      = V - diag(s_x) KS                   (= V - diag(exp G) K_norm S)
//   Vn     = Au X                               (= U - W S of DESIGN section 2)
//   O      = diag(s_q) QS + L Vn
//   S      = decay S + K^T diag(s_k) Vn
// Warps 0-3 compute KS and X, warps 4-7 QS and O (16 chunk rows each); all
// eight split Vn and the S update. The next chunks' inputs stream into a ring
// of `stages` shared-memory slots with cp.async while this one computes.
// tf32 tensor-core products (k-permuted fragments, mma_sm80.cuh), fp32
// accumulation. The fp32 B operands (S, X, Vn and diag(s_k) Vn) sit in
// shared memory tf32-rounded and pair-interleaved, one 64-bit load per
// fragment; 16-bit q and k fragments come by ldmatrix.

#include "cuda/ptx/griddep.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/state_pass.cuh"

namespace gdn::cuda {
namespace {

constexpr int kStateThreads = 256;
// Two CTAs per SM when a launch has enough of them (one ring slot each),
// which caps registers at 128 per thread; K = 64 with 32 columns needs more
// on sm_80 (ptxas spills at 128), so that variant asks for one.
template <int K, int VT>
constexpr int kStateMinBlocks = K == 64 && VT == 32 ? 1 : 2;
constexpr int kWarps = kStateThreads / 32;
constexpr int kRowWarps = 4;            // warps that split a chunk's 64 rows, 16 each
constexpr int kMatStride = kChunk + 4;  // floats per row of the 64x64 tiles

// Shared-memory plan: a ring of `stages` slots of chunk inputs, then the
// S / X buffer, Vn and diag(s_k) Vn. The VT-wide fp32 tiles are
// pair-interleaved with a pair-row stride of VT + 4 float2 (a warp's
// fragment loads on distinct banks).
template <typename T, int K, int VT>
struct StatePlan : ChunkSlot<T, K, VT, kMatStride> {
  using Slot = ChunkSlot<T, K, VT, kMatStride>;
  static constexpr int kPairStride = VT + 4;                                  // float2 per pair row: X, Vn, S
  static constexpr size_t kSBytes = size_t{K} * kPairStride * sizeof(float);  // S, later X
  static constexpr size_t kVnBytes = size_t{kChunk} * kPairStride * sizeof(float);
  static size_t bytes(int stages) { return stages * Slot::kSlot + kSBytes + 2 * kVnBytes; }
  static_assert(kSBytes % 16 == 0 && kVnBytes % 16 == 0, "the fp32 tiles start on 16-byte boundaries");
};

template <typename T, int K, int V, int VT>
__global__ void __launch_bounds__(kStateThreads, (kStateMinBlocks<K, VT>))
    prefill_state_kernel(const __grid_constant__ PrefillParams p) {
  using Plan = StatePlan<T, K, VT>;
  constexpr int kNt = VT / 8;                        // 8-column tiles of the V tile
  constexpr int kMtiles = K / 16;                    // 16-row tiles of S
  constexpr int kWarpsPerMt = kWarps / kMtiles;      // warps sharing one S row tile
  constexpr int kNtPerWarp = kNt / kWarpsPerMt;      // S column tiles per warp
  constexpr int kVnNt = kNt / (kWarps / kRowWarps);  // Vn column tiles per warp
  static_assert(kMtiles * kWarpsPerMt == kWarps && kNtPerWarp * kWarpsPerMt == kNt,
                "S tiles split over warps");
  static_assert(V % VT == 0 && kVnNt >= 1, "the V tile is a multiple of 16 columns");
  constexpr int kP = Plan::kPairStride;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int stages = p.stages;
  float* s_s = reinterpret_cast<float*>(smem_raw + stages * Plan::kSlot);  // S copy, X within a chunk
  float* s_vn = reinterpret_cast<float*>(smem_raw + stages * Plan::kSlot + Plan::kSBytes);
  float* s_vk = s_vn + Plan::kVnBytes / sizeof(float);  // diag(s_k) Vn
  const StateItem item = state_item(p, 1, V / VT);
  const int64_t n = item.n, hv = item.hv, h = hv / p.group;
  const int v0 = item.tile * VT;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g8 = lane >> 2, t4 = lane & 3;

  // The entering state first: only the caller's inputs address it, so under a
  // programmatic launch this overlaps the prep stage.
  int64_t row_in = -1, row_out = -1;
  state_rows(p, n, &row_in, &row_out);
  // This warp's part of S in accumulator layout: rows s_r0 + {g, g + 8},
  // columns (s_nt0 + j) * 8 + {2t, 2t + 1}.
  const int s_r0 = (warp / kWarpsPerMt) * 16, s_nt0 = (warp % kWarpsPerMt) * kNtPerWarp;
  float S[kNtPerWarp][4];
  auto s_row = [&](int e) { return s_r0 + g8 + (e >> 1) * 8; };
  auto s_col = [&](int j, int e) { return (s_nt0 + j) * 8 + 2 * t4 + (e & 1); };
#pragma unroll
  for (int j = 0; j < kNtPerWarp; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      S[j][e] = row_in >= 0 ? p.init.load(row_in, hv, s_row(e), v0 + s_col(j, e)) : 0.f;
      s_s[pair_index<kP>(s_row(e), s_col(j, e))] = tf32_round(S[j][e]);
    }

  wait_for_prerequisites();  // chunk offsets, error flag, Au, L and the factors
  if (device_checks_failed(p)) return;
  const SeqChunks seq(p, n);

  // Prefetch the first `stages` chunks; one commit group per slot, empty or not.
  for (int i = 0; i < stages; ++i) {
    if (seq.begin + i < seq.stop)
      Plan::template load<kStateThreads>(p, smem_raw + i * Plan::kSlot, seq.begin + i, seq.t0(seq.begin + i),
                                         seq.len(seq.begin + i), seq.len(seq.begin + i), h, hv, v0, tid);
    cp_async_commit();
  }

  T* out = static_cast<T*>(p.out);
  const bool key_warp = warp < kRowWarps;  // KS and X; the others QS and O
  const int r0 = (warp % kRowWarps) * 16;  // this warp's chunk rows
  for (int c = seq.begin, i = 0; c < seq.stop; ++c, ++i) {
    const int64_t t0 = seq.t0(c);
    const int len = seq.len(c);
    unsigned char* slot = smem_raw + (i % stages) * Plan::kSlot;
    const SlotView<T, Plan> in(slot);
    const T *sq = in.q, *sk = in.k, *sv = in.v;
    const float *sau = in.au, *sl = in.l, *sf = in.f;
    ring_wait(stages);
    __syncthreads();  // this chunk's slot and the S copy are ready

    // KS (warps 0-3) or QS (warps 4-7) for 16 rows, two k-steps per A load.
    float acc[kNt][4] = {};
    {
      const T* a_src = key_warp ? sk : sq;
#pragma unroll
      for (int kc = 0; kc < K / 8; kc += 2) {
        uint32_t a[2][4];
        load_a_io_x2<T>(a[0], a[1], a_src, Plan::kQkStride, r0, kc * 8, lane);
#pragma unroll
        for (int h2 = 0; h2 < 2; ++h2)
#pragma unroll
          for (int nt = 0; nt < kNt; ++nt) {
            uint32_t b[2];
            load_b_pairs<kP>(b, s_s, (kc + h2) * 8, nt * 8, lane);
            mma_tf32(acc[nt], a[h2], b);
          }
      }
    }
    __syncthreads();  // every warp is done reading S: its buffer now takes X

    if (key_warp) {  // X = V - diag(s_x) K S
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = r0 + g8 + half * 8, col = nt * 8 + 2 * t4;
          const float sx = sf[kFactorSx + r];
          s_s[pair_index<kP>(r, col)] =
              tf32_round(to_float<T>(sv[r * Plan::kVStride + col]) - sx * acc[nt][half * 2]);
          s_s[pair_index<kP>(r, col + 1)] =
              tf32_round(to_float<T>(sv[r * Plan::kVStride + col + 1]) - sx * acc[nt][half * 2 + 1]);
        }
    }
    __syncthreads();

    {  // Vn = Au X: rows r0, column tiles split between the two row-warp groups;
       // stored tf32-rounded as is (for O) and scaled by s_k (for the S update).
      const int nt0 = (warp / kRowWarps) * kVnNt;
      float vn[kVnNt][4] = {};
#pragma unroll
      for (int kc = 0; kc < kChunk / 8; ++kc) {
        uint32_t a[4];
        load_a_perm(a, sau, kMatStride, r0, kc * 8, lane);
#pragma unroll
        for (int j = 0; j < kVnNt; ++j) {
          uint32_t b[2];
          load_b_pairs<kP>(b, s_s, kc * 8, (nt0 + j) * 8, lane);
          mma_tf32(vn[j], a, b);
        }
      }
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = r0 + g8 + half * 8;
        const float sk_r = sf[kFactorSk + r];
#pragma unroll
        for (int j = 0; j < kVnNt; ++j)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int at = pair_index<kP>(r, (nt0 + j) * 8 + 2 * t4 + e);
            s_vn[at] = tf32_round(vn[j][half * 2 + e]);
            s_vk[at] = tf32_round(vn[j][half * 2 + e] * sk_r);
          }
      }
    }
    __syncthreads();  // Vn complete; X is no longer read

    if (!key_warp) {  // O = diag(s_q) Q S + L Vn
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[nt][e] *= sf[kFactorSq + r0 + g8 + (e >> 1) * 8];
#pragma unroll
      for (int kc = 0; kc < kChunk / 8; ++kc) {
        uint32_t a[4];
        load_a_perm(a, sl, kMatStride, r0, kc * 8, lane);
#pragma unroll
        for (int nt = 0; nt < kNt; ++nt) {
          uint32_t b[2];
          load_b_pairs<kP>(b, s_vn, kc * 8, nt * 8, lane);
          mma_tf32(acc[nt], a, b);
        }
      }
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const int r = r0 + g8 + half * 8;
          if (r < len) {
            T* dst = out + (t0 + r) * p.o_s0 + hv * p.o_s1 + v0 + nt * 8 + 2 * t4;
            dst[0] = from_float<T>(acc[nt][half * 2]);
            dst[1] = from_float<T>(acc[nt][half * 2 + 1]);
          }
        }
    }

    // S = decay S + K^T diag(s_k) Vn, this warp's rows and column tiles.
    const float decay = sf[kFactorDecay];
#pragma unroll
    for (int j = 0; j < kNtPerWarp; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) S[j][e] *= decay;
#pragma unroll
    for (int kc = 0; kc < kChunk / 8; kc += 2) {
      uint32_t a[2][4];
      load_a_io_transposed_x2<T>(a[0], a[1], sk, Plan::kQkStride, s_r0, kc * 8, lane);
#pragma unroll
      for (int h2 = 0; h2 < 2; ++h2)
#pragma unroll
        for (int j = 0; j < kNtPerWarp; ++j) {
          uint32_t b[2];
          load_b_pairs<kP>(b, s_vk, (kc + h2) * 8, (s_nt0 + j) * 8, lane);
          mma_tf32(S[j], a[h2], b);
        }
    }
    const int64_t ckpt_row = seq.checkpoint_row(p, n, c);
#pragma unroll
    for (int j = 0; j < kNtPerWarp; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s_s[pair_index<kP>(s_row(e), s_col(j, e))] = tf32_round(S[j][e]);
    if (ckpt_row >= 0) {
#pragma unroll
      for (int j = 0; j < kNtPerWarp; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) p.ckpt.store(ckpt_row, hv, s_row(e), v0 + s_col(j, e), S[j][e]);
    }
    __syncthreads();  // this slot and Vn are consumed
    if (c + stages < seq.stop)
      Plan::template load<kStateThreads>(p, slot, c + stages, seq.t0(c + stages), seq.len(c + stages),
                                         seq.len(c + stages), h, hv, v0, tid);
    cp_async_commit();
  }
  cp_async_wait<0>();
  if (row_out >= 0) {
#pragma unroll
    for (int j = 0; j < kNtPerWarp; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) p.fin.store(row_out, hv, s_row(e), v0 + s_col(j, e), S[j][e]);
  }
}

}  // namespace

template <typename T, int K, int V, int VT>
size_t prefill_state_smem(int stages) {
  return StatePlan<T, K, VT>::bytes(stages);
}

template <typename T, int K, int V, int VT>
int prefill_state_min_blocks() {
  return kStateMinBlocks<K, VT>;
}

template <typename T, int K, int V, int VT>
Status launch_prefill_state(const PrefillParams& p, cudaStream_t stream) {
  const size_t smem = StatePlan<T, K, VT>::bytes(p.stages);
  static const bool programmatic = kernel_waits_for_prerequisites(prefill_state_kernel<T, K, V, VT>);
  dim3 grid;
  if (Status s = linear_grid(p.N * p.HV * (V / VT), &grid,
                             "prefill_state_kernel: sequences, heads and column tiles");
      !s.ok())
    return s;
  return launch_state_kernel(prefill_state_kernel<T, K, V, VT>, grid, dim3(kStateThreads), smem, stream,
                             programmatic, p, "prefill_state_kernel launch");
}

#define GDN_INSTANTIATE_STATE(T, KV, VT)                  \
  template size_t prefill_state_smem<T, KV, KV, VT>(int); \
  template int prefill_state_min_blocks<T, KV, KV, VT>(); \
  template Status launch_prefill_state<T, KV, KV, VT>(const PrefillParams&, cudaStream_t);
#define GDN_INSTANTIATE_STATE_TILES(T, KV) GDN_INSTANTIATE_STATE(T, KV, 16) GDN_INSTANTIATE_STATE(T, KV, 32)
GDN_INSTANTIATE_STATE_TILES(__nv_bfloat16, 64)
GDN_INSTANTIATE_STATE_TILES(__nv_bfloat16, 128)
GDN_INSTANTIATE_STATE_TILES(__half, 64)
GDN_INSTANTIATE_STATE_TILES(__half, 128)
GDN_INSTANTIATE_STATE_TILES(float, 64)
GDN_INSTANTIATE_STATE_TILES(float, 128)

}  // namespace gdn::cuda
