// Stage 2 of the portable prefill for bf16 io: the sequential state pass with
// each warp owning 16 value columns of the state. Value columns of S are
// independent, so a warp holds its slice as S^T [16, K] in mma accumulator
// registers for the whole sequence and walks the chunks without exchanging
// anything with the other warps: every product takes S^T, or a result of the
// warp's own, as the A operand straight from registers, and only chunk inputs
// (shared by the CTA's warps, streamed through a cp.async ring) come from
// shared memory. Per chunk, with the state entering it (transposed forms of
// the products in prefill_state.cu):
//   P   = S^T K^T,  R = S^T Q^T                 [16, 64]   bf16 (S^T rounded, kSplitState)
//   X   = V^T - P diag(s_x)                     (= (V - diag(exp G) K_norm S)^T)
//   Vn  = X Au^T                                (= (U - W S)^T)            tf32
//   O^T = R diag(s_q) + Vn L^T                                             tf32
//   S^T = decay S^T + (Vn diag(s_k)) K           bf16, Vn diag(s_k) split hi + lo
// The hi + lo split carries an fp32 operand to about 2^-17 relative through
// two bf16 products, against raw bf16 q and k, which are exact; B fragments
// of q, k and v come by ldmatrix without conversion. Au and L are fp32
// (tf32-rounded by stage 1). A CTA is kColWarps warps (64 columns); its only
// barriers guard the ring.

#include "cuda/ptx/griddep.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/state_pass.cuh"

namespace gdn::cuda {
namespace {

using Bf16 = __nv_bfloat16;
constexpr int kColWarps = 4;
constexpr int kColThreads = 32 * kColWarps;
constexpr int kWarpColumns = 16;                       // value columns one warp owns
constexpr int kCtaColumns = kColWarps * kWarpColumns;  // value columns per CTA
constexpr int kMatStride = kChunk + 8;                 // floats per row of Au and L
constexpr int kRowTiles = kChunk / 8;                  // 8-row tiles of a chunk

// Shared-memory plan: a ring of `stages` slots of chunk inputs (Au and L
// rows of kMatStride floats: a half-warp's 64-bit fragment loads on distinct
// banks), then one output staging tile per warp.
template <int K>
struct ColumnsPlan : ChunkSlot<Bf16, K, kCtaColumns, kMatStride> {
  using Slot = ChunkSlot<Bf16, K, kCtaColumns, kMatStride>;
  static constexpr int kOStride = kWarpColumns + 8;  // bf16 per row of an output tile
  static constexpr size_t kOBytes = size_t{kColWarps} * kChunk * kOStride * sizeof(Bf16);
  static size_t bytes(int stages) { return stages * Slot::kSlot + kOBytes; }
};

// c0 += a B0 and c1 += a B1 for the B fragments of two n-tiles in one x4
// load (b0 b1 of the first, then of the second).
__device__ __forceinline__ void mma_pair(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[4]) {
  mma_bf16(c0, a, b[0], b[1]);
  mma_bf16(c1, a, b[2], b[3]);
}

// The same with A = hi + lo; the hi products first, so each accumulator has
// another product between its two.
__device__ __forceinline__ void mma_split_pair(float (&c0)[4], float (&c1)[4], const uint32_t (&hi)[4],
                                               const uint32_t (&lo)[4], const uint32_t (&b)[4]) {
  mma_pair(c0, c1, hi, b);
  mma_pair(c0, c1, lo, b);
}

// S^T enters P and R as bf16 (its hi half only; GDN_CUDA_PROBE=1, a
// measurement build, splits it hi + lo as Vn is). Measured on the H200
// (bench/results/cuda-h200-2026-12-04-split-state.txt): the split cost
// 1.085x in geometric mean over the suite's prefill rows and bought nothing
// in the final state (rel RMS 2.265e-4 either way on one 8192-token
// sequence) and 2% in o (1.703e-3 split, 1.738e-3 not).
#if GDN_CUDA_PROBE == 1
constexpr bool kSplitState = true;
#else
constexpr bool kSplitState = false;
#endif

// c0, c1 += S^T B0, B1 for S^T given as hi (and lo, used when kSplitState).
__device__ __forceinline__ void mma_state_pair(float (&c0)[4], float (&c1)[4], const uint32_t (&hi)[4],
                                               const uint32_t (&lo)[4], const uint32_t (&b)[4]) {
  if constexpr (kSplitState)
    mma_split_pair(c0, c1, hi, lo, b);
  else
    mma_pair(c0, c1, hi, b);
}

// acc += X M^T over a chunk in tf32: X [16, 64] given as accumulator tiles,
// M a row-major [64, 64] tf32-valued fp32 tile in shared memory (row stride
// kMatStride), B(i, j) = M[j][i] one 64-bit load of the k-permuted pair.
__device__ __forceinline__ void add_times_transpose(float (&acc)[kRowTiles][4],
                                                    const float (&x)[kRowTiles][4], const float* m,
                                                    int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int kk = 0; kk < kRowTiles; ++kk) {
    uint32_t a[4];
    tf32_a_from_acc(a, x[kk]);
#pragma unroll
    for (int jt = 0; jt < kRowTiles; ++jt) {
      const float2 b = *reinterpret_cast<const float2*>(m + (jt * 8 + g) * kMatStride + kk * 8 + 2 * t);
      const uint32_t bb[2] = {__float_as_uint(b.x), __float_as_uint(b.y)};
      mma_tf32(acc[jt], a, bb);
    }
  }
}

// CTAs per (sequence or segment, value head): the value columns' tiles, and
// in the local pass the state map's K columns as many again.
template <int K, int V>
constexpr int column_tiles(bool local) {
  return (V + (local ? K : 0)) / kCtaColumns;
}

// kLocal: the local pass over segments (kSegLocal); else kSegWhole or
// kSegFinal, which write outputs.

template <int K, int V, bool kLocal>
__global__ void __launch_bounds__(kColThreads, 2)
    prefill_columns_kernel(const __grid_constant__ PrefillParams p) {
  using Plan = ColumnsPlan<K>;
  constexpr int kKt = K / 8;  // 8-wide tiles of S^T's K columns
  static_assert(V % kCtaColumns == 0 && K % 16 == 0, "whole CTA column tiles, whole k-steps");
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int stages = p.stages;
  const int segs = p.segments;
  constexpr int kVTiles = V / kCtaColumns;
  const StateItem item = state_item(p, segs, column_tiles<K, V>(kLocal));
  const int64_t n = item.n, hv = item.hv, h = hv / p.group;
  const int seg = item.seg;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, t = lane & 3;
  // In the local pass, CTAs past the value columns carry columns of the
  // segment's state map M (S_end = M S_start + S_local, column by column):
  // each column of M is a state column from a unit vector with v = 0.
  const bool map_cols = kLocal && item.tile >= kVTiles;
  const int v0 = (map_cols ? item.tile - kVTiles : item.tile) * kCtaColumns;  // first (value or map) column
  if (kLocal && seg == segs - 1) return;  // the last segment's end state and map are not needed
  const int wc = warp * kWarpColumns;     // the warp's first column within the CTA's v tile
  Bf16* stage_o = reinterpret_cast<Bf16*>(smem_raw + stages * Plan::kSlot) + warp * kChunk * Plan::kOStride;

  // The entering state first: only the caller's inputs address it, so under a
  // programmatic launch this overlaps the prep stage.
  // In the final pass every segment enters with the state the combine wrote
  // (read after the wait; the first segment's too, so that no CTA reads the
  // caller's state while the last one may be writing it in place); the local
  // pass starts from zero (or a unit vector, for map columns); the last
  // segment alone writes the final state.
  int64_t row_in = -1, row_out = -1;
  state_rows(p, n, &row_in, &row_out);
  const bool combined = p.seg_phase == kSegFinal;
  if (kLocal || combined) row_in = -1;
  if (seg != segs - 1) row_out = -1;
  // S^T in accumulator layout, rows = this warp's value columns.
  StateSlice<K> S(lane, v0 + wc);
  auto& St = S.St;
  S.enter(p.init, row_in, hv, map_cols);

  wait_for_prerequisites();  // chunk offsets, error flag, Au, L, the factors, combined states
  if (device_checks_failed(p)) return;
  const int64_t seg_item = (n * segs + seg) * p.HV + hv;  // this segment's slot in seg_state / seg_map
  if (combined) {
    // Segment 0's entering state sits in the last segment's slot, segment s's
    // in slot s - 1 (prefill_segments.cu).
    const int64_t slot = (n * segs + (seg == 0 ? segs - 1 : seg - 1)) * p.HV + hv;
    S.load(p.seg_state + slot * K * V, V);
  }
  // This segment's chunks: [first, last) of the sequence's [begin, stop).
  const SeqChunks seq(p, n);
  const int first = seq.seg_first(seg, segs), last = seq.seg_first(seg + 1, segs);

  // Prefetch the first `stages` chunks; one commit group per slot, empty or not.
  for (int i = 0; i < stages; ++i) {
    if (first + i < last)
      Plan::template load<kColThreads>(p, smem_raw + i * Plan::kSlot, first + i, seq.t0(first + i),
                                       seq.len(first + i), map_cols ? 0 : seq.len(first + i), h, hv, v0, tid);
    cp_async_commit();
  }

  // Per-lane ldmatrix row addresses (element offsets within a tile): matrix
  // mi = lane / 8 of an x4 load takes row lane % 8 of its 8x8 block.
  const int mi = lane >> 3, mr = lane & 7;
  // q, k as B of S^T K^T: blocks (rows 8 jt + 8 (mi / 2), columns 16 ks + 8 (mi % 2)).
  const int qk_lane = ((mi >> 1) * 8 + mr) * Plan::kQkStride + (mi & 1) * 8;
  // k as B of Vk K (transposed): blocks (rows 16 js + 8 (mi % 2), columns 16 np + 8 (mi / 2)).
  const int kt_lane = ((mi & 1) * 8 + mr) * Plan::kQkStride + (mi >> 1) * 8;
  // v^T: blocks (rows 8 jt + 8 (mi / 2), columns wc + 8 (mi % 2)).
  const int v_lane = ((mi >> 1) * 8 + mr) * Plan::kVStride + wc + (mi & 1) * 8;

  Bf16* out = static_cast<Bf16*>(p.out);
  for (int c = first, i = 0; c < last; ++c, ++i) {
    const int64_t t0 = seq.t0(c);
    const int len = seq.len(c);
    unsigned char* slot = smem_raw + (i % stages) * Plan::kSlot;
    const SlotView<Bf16, Plan> in(slot);
    const Bf16 *sq = in.q, *sk = in.k, *sv = in.v;
    const float *sau = in.au, *sl = in.l, *sf = in.f;
    ring_wait(stages);
    __syncthreads();  // this chunk's slot is ready

    // P = S^T K^T and R = S^T Q^T (not in the local pass), over 16-wide
    // k-steps of K.
    float P[kRowTiles][4] = {}, R[kRowTiles][4] = {};
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks) {
      uint32_t hi[4], lo[4];
      bf16_a_from_acc(hi, lo, St[2 * ks], St[2 * ks + 1]);
#pragma unroll
      for (int jt = 0; jt < kRowTiles; jt += 2) {
        const int at = qk_lane + jt * 8 * Plan::kQkStride + ks * 16;
        uint32_t kb[4];
        ldmatrix_x4(kb, sk + at);
        mma_state_pair(P[jt], P[jt + 1], hi, lo, kb);
        if constexpr (!kLocal) {
          uint32_t qb[4];
          ldmatrix_x4(qb, sq + at);
          mma_state_pair(R[jt], R[jt + 1], hi, lo, qb);
        }
      }
    }

    // X = V^T - P diag(s_x), in place of P. Column j of tile jt, element e:
    // j = 8 jt + 2t + e % 2.
#pragma unroll
    for (int jt = 0; jt < kRowTiles; jt += 2) {
      uint32_t vb[4];  // (jt, v 0-7), (jt, v 8-15), (jt + 1, v 0-7), (jt + 1, v 8-15)
      ldmatrix_x4_trans(vb, sv + v_lane + jt * 8 * Plan::kVStride);
#pragma unroll
      for (int u = 0; u < 2; ++u)
        subtract_from_v(P[jt + u], vb[2 * u], vb[2 * u + 1],
                        *reinterpret_cast<const float2*>(sf + kFactorSx + (jt + u) * 8 + 2 * t));
    }

    // Vn = X Au^T: B(i, j) = Au[j][i], a 64-bit load of the k-permuted pair.
    float Vn[kRowTiles][4] = {};
    add_times_transpose(Vn, P, sau, lane);

    if constexpr (!kLocal) {
      // O^T = R diag(s_q) + Vn L^T, in place of R.
#pragma unroll
      for (int it = 0; it < kRowTiles; ++it) {
        const float2 sq2 = *reinterpret_cast<const float2*>(sf + kFactorSq + it * 8 + 2 * t);
        R[it][0] *= sq2.x, R[it][1] *= sq2.y, R[it][2] *= sq2.x, R[it][3] *= sq2.y;
      }
      add_times_transpose(R, Vn, sl, lane);
      store_output_tile<Plan::kOStride>(out + t0 * p.o_s0 + hv * p.o_s1 + v0 + wc, p.o_s0, len, stage_o, R,
                                        lane);
    }

    // S^T = decay S^T + (Vn diag(s_k)) K, over 16-wide k-steps of the chunk.
    const float decay = sf[kFactorDecay];
#pragma unroll
    for (int kt = 0; kt < kKt; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e) St[kt][e] *= decay;
#pragma unroll
    for (int js = 0; js < kChunk / 16; ++js) {
      uint32_t hi[4], lo[4];
      update_a_from_vn(Vn, sf, js, t, hi, lo);
#pragma unroll
      for (int np = 0; np < kKt / 2; ++np) {
        uint32_t kb[4];  // (rows 16 js.., n-tile 2 np): b0 b1, then n-tile 2 np + 1
        ldmatrix_x4_trans(kb, sk + kt_lane + js * 16 * Plan::kQkStride + np * 16);
        mma_split_pair(St[2 * np], St[2 * np + 1], hi, lo, kb);
      }
    }

    if (const int64_t ckpt_row = kLocal ? -1 : seq.checkpoint_row(p, n, c); ckpt_row >= 0)
      S.store(p.ckpt, ckpt_row, hv);
    __syncthreads();  // every warp is done with this slot
    if (c + stages < last)
      Plan::template load<kColThreads>(p, slot, c + stages, seq.t0(c + stages), seq.len(c + stages),
                                       map_cols ? 0 : seq.len(c + stages), h, hv, v0, tid);
    cp_async_commit();
  }
  cp_async_wait<0>();
  if (kLocal)  // this segment's local end state or its map columns
    S.store(map_cols ? p.seg_map + seg_item * K * K : p.seg_state + seg_item * K * V, map_cols ? K : V);
  else if (row_out >= 0)
    S.store(p.fin, row_out, hv);
}

}  // namespace

template <int K, int V>
size_t prefill_columns_smem(int stages) {
  return ColumnsPlan<K>::bytes(stages);
}

template <int K, int V>
int64_t prefill_columns_ctas(int64_t items) {
  return items * (V / kCtaColumns);
}

template <int K, int V, bool kLocal>
Status launch_columns_pass(const PrefillParams& p, cudaStream_t stream) {
  const size_t smem = ColumnsPlan<K>::bytes(p.stages);
  static const bool programmatic = kernel_waits_for_prerequisites(prefill_columns_kernel<K, V, kLocal>);
  dim3 grid;
  if (Status s = linear_grid(p.N * p.segments * p.HV * column_tiles<K, V>(kLocal), &grid,
                             "prefill_columns_kernel: sequences, heads and column tiles");
      !s.ok())
    return s;
  return launch_state_kernel(prefill_columns_kernel<K, V, kLocal>, grid, dim3(kColThreads), smem, stream,
                             programmatic, p, "prefill_columns_kernel launch");
}

template <int K, int V>
Status launch_prefill_columns(const PrefillParams& p, cudaStream_t stream) {
  return p.seg_phase == kSegLocal ? launch_columns_pass<K, V, true>(p, stream)
                                  : launch_columns_pass<K, V, false>(p, stream);
}

#define GDN_INSTANTIATE_COLUMNS(KV)                       \
  template size_t prefill_columns_smem<KV, KV>(int);      \
  template int64_t prefill_columns_ctas<KV, KV>(int64_t); \
  template Status launch_prefill_columns<KV, KV>(const PrefillParams&, cudaStream_t);
GDN_INSTANTIATE_COLUMNS(64)
GDN_INSTANTIATE_COLUMNS(128)

}  // namespace gdn::cuda
