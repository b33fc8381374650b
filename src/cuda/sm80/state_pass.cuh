// What the state passes share (prefill_state.cu, prefill_columns.cu and the
// sm90 pass, sm90/state_pass.cu): the rows of a sequence's entering and final state,
// its chunk range, its checkpoint rows, the ring slot of chunk inputs and
// its loads, and the launch with a dynamic shared-memory size.
#pragma once

#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/griddep.cuh"
#include "cuda/ptx/mma_sm80.cuh"
#include "cuda/sm80/io_tiles.cuh"
#include "cuda/sm80/params.h"

namespace gdn::cuda {

// Rows of sequence n's entering and final state in p.init and p.fin (-1:
// none). A pool row out of range is neither read nor written (chunk_meta
// raises the error flag for it). Reads only the caller's inputs, so a
// programmatic launch may call it before waiting for the prep stage.
__device__ __forceinline__ void state_rows(const PrefillParams& p, int64_t n, int64_t* row_in,
                                           int64_t* row_out) {
  if (p.indices != nullptr) {
    const int64_t r = load_index(p.indices, p.idx64, n * p.idx_s);
    const bool ok = r >= 0 && r < p.pool_rows;
    *row_in = p.init.data != nullptr && ok ? r : -1;
    *row_out = p.fin.data != nullptr && ok ? r : -1;
  } else {
    *row_in = p.init.data != nullptr ? n : -1;
    *row_out = p.fin.data != nullptr ? n : -1;
  }
}

// The 16 state columns a warp owns, held as S^T in mma accumulator layout
// (the column-owner pass and the sm90 state pass): St[kt][e] =
// S[8 kt + 2t + e % 2][v_base + g + 8 (e / 2)], g = lane / 4, t = lane % 4.
template <int K>
struct StateSlice {
  static constexpr int kKt = K / 8;  // 8-wide tiles of S^T's K columns
  float St[kKt][4];
  int g, t, v_base;
  __device__ __forceinline__ StateSlice(int lane, int v_base_) : g(lane >> 2), t(lane & 3), v_base(v_base_) {}
  __device__ __forceinline__ int k_of(int kt, int e) const { return kt * 8 + 2 * t + (e & 1); }
  __device__ __forceinline__ int v_of(int e) const { return v_base + g + 8 * (e >> 1); }
  // Row `row` of `s`, or zero (row < 0), or the identity's columns (unit:
  // the columns of a state map, which start as unit vectors).
  __device__ __forceinline__ void enter(const StateTensor& s, int64_t row, int64_t hv, bool unit) {
#pragma unroll
    for (int kt = 0; kt < kKt; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        St[kt][e] = row >= 0 ? s.load(row, hv, k_of(kt, e), v_of(e))
                    : unit   ? (k_of(kt, e) == v_of(e) ? 1.f : 0.f)
                             : 0.f;
  }
  // From (to) a dense fp32 [K, width] matrix.
  __device__ __forceinline__ void load(const float* src, int width) {
#pragma unroll
    for (int kt = 0; kt < kKt; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e) St[kt][e] = src[k_of(kt, e) * width + v_of(e)];
  }
  __device__ __forceinline__ void store(float* dst, int width) const {
#pragma unroll
    for (int kt = 0; kt < kKt; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e) dst[k_of(kt, e) * width + v_of(e)] = St[kt][e];
  }
  __device__ __forceinline__ void store(const StateTensor& s, int64_t row, int64_t hv) const {
#pragma unroll
    for (int kt = 0; kt < kKt; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e) s.store(row, hv, k_of(kt, e), v_of(e), St[kt][e]);
  }
};

// k-permuted tf32 A fragment of an 8-wide k-step from the accumulator tile
// c of the same 8 columns (mma_sm80.cuh: logical k t is physical column 2t),
// rounded to nearest (one instruction on sm_90).
__device__ __forceinline__ void tf32_a_from_acc(uint32_t (&a)[4], const float (&c)[4]) {
  a[0] = to_tf32_rn(c[0]);
  a[1] = to_tf32_rn(c[2]);
  a[2] = to_tf32_rn(c[1]);
  a[3] = to_tf32_rn(c[3]);
}

// bf16 hi and lo A fragments of a 16-wide k-step from the accumulator tiles
// of its two 8-column halves.
__device__ __forceinline__ void bf16_a_from_acc(uint32_t (&hi)[4], uint32_t (&lo)[4], const float (&c0)[4],
                                                const float (&c1)[4]) {
  split_bf16(c0[0], c0[1], hi[0], lo[0]);
  split_bf16(c0[2], c0[3], hi[1], lo[1]);
  split_bf16(c1[0], c1[1], hi[2], lo[2]);
  split_bf16(c1[2], c1[3], hi[3], lo[3]);
}

// The update's A operand of 16-token k-step js, (Vn diag(s_k)) as bf16 hi
// and lo fragments: scales Vn's two accumulator tiles of the step in place
// (sf: the chunk's row factors; t = lane % 4).
__device__ __forceinline__ void update_a_from_vn(float (&vn)[kChunk / 8][4], const float* sf, int js, int t,
                                                 uint32_t (&hi)[4], uint32_t (&lo)[4]) {
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const float2 s_k = *reinterpret_cast<const float2*>(sf + kFactorSk + (2 * js + u) * 8 + 2 * t);
    float(&x)[4] = vn[2 * js + u];
    x[0] *= s_k.x, x[1] *= s_k.y, x[2] *= s_k.x, x[3] *= s_k.y;
  }
  bf16_a_from_acc(hi, lo, vn[2 * js], vn[2 * js + 1]);
}

// X = V^T - P diag(s_x) in place of the accumulator tile x of P (8 tokens
// 2t, 2t + 1 of a tile; columns g and g + 8): v_g and v_g8 the bf16 pairs of
// v^T (an ldmatrix.trans result), sx the two tokens' factors.
__device__ __forceinline__ void subtract_from_v(float (&x)[4], uint32_t v_g, uint32_t v_g8, float2 sx) {
  const float2 va = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v_g));
  const float2 vc = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&v_g8));
  x[0] = va.x - sx.x * x[0];
  x[1] = va.y - sx.y * x[1];
  x[2] = vc.x - sx.x * x[2];
  x[3] = vc.y - sx.y * x[3];
}

// A warp's output tile O^T [16 columns, 64 tokens] (accumulator tiles o)
// out as bf16 rows of 16 columns: through the warp's staging tile (row
// stride kOStride), then 16-byte row pieces to out[r * o_s0], r < len.
template <int kOStride>
__device__ __forceinline__ void store_output_tile(__nv_bfloat16* out, int64_t o_s0, int len,
                                                  __nv_bfloat16* stage_o, const float (&o)[kChunk / 8][4],
                                                  int lane) {
  const int g = lane >> 2, t = lane & 3;
  __syncwarp();  // the previous chunk's pieces are out
#pragma unroll
  for (int it = 0; it < kChunk / 8; ++it)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      stage_o[(it * 8 + 2 * t + (e & 1)) * kOStride + g + 8 * (e >> 1)] = __float2bfloat16_rn(o[it][e]);
  __syncwarp();
#pragma unroll
  for (int u = lane; u < 2 * kChunk; u += 32) {
    const int r = u >> 1, half = u & 1;
    if (r < len)
      *reinterpret_cast<uint4*>(out + r * o_s0 + 8 * half) =
          *reinterpret_cast<const uint4*>(stage_o + r * kOStride + 8 * half);
  }
}

// Sequence n's tokens and chunks (after the prep stage's chunk offsets).
struct SeqChunks {
  int64_t start = 0, end = 0;  // tokens [start, end)
  int begin = 0, stop = 0;     // chunks [begin, stop)
  __device__ __forceinline__ SeqChunks(const PrefillParams& p, int64_t n)
      : start(seq_start(p, n)),
        end(seq_start(p, n + 1)),
        begin(first_chunk(p, n)),
        stop(first_chunk(p, n + 1)) {}
  // First token and length of chunk c.
  __device__ __forceinline__ int64_t t0(int c) const { return start + int64_t{c - begin} * kChunk; }
  __device__ __forceinline__ int len(int c) const {
    return static_cast<int>(min(int64_t{kChunk}, end - t0(c)));
  }
  // Segment seg of segs: chunks [first, last) of [begin, stop).
  __device__ __forceinline__ int seg_first(int seg, int segs) const {
    return begin + static_cast<int>(int64_t{stop - begin} * seg / segs);
  }
  // The checkpoint row the state after chunk c goes to, or -1.
  __device__ __forceinline__ int64_t checkpoint_row(const PrefillParams& p, int64_t n, int c) const {
    const int64_t done = t0(c) + len(c) - start;
    return p.ckpt_every > 0 && done % p.ckpt_every == 0 ? first_ckpt(p, n) + done / p.ckpt_every - 1 : -1;
  }
};

// The ring slot both state passes stream a chunk's inputs through, for io
// type T, K columns of q and k and VT of v: q | k | v | Au | L | F. The io
// tiles' rows are padded by 16 bytes (a warp's fragment and ldmatrix loads
// on distinct banks); Au and L rows take MatStride floats, which each pass
// picks for its own fragment loads.
template <typename T, int K, int VT, int MatStride>
struct ChunkSlot {
  static constexpr int kPad = 16 / sizeof(T);
  static constexpr int kQkStride = K + kPad;  // elements of T per row of q and k
  static constexpr int kVStride = VT + kPad;  // ... of v
  static constexpr int kMatStride = MatStride;
  static constexpr size_t kQBytes = size_t{kChunk} * kQkStride * sizeof(T);
  static constexpr size_t kVBytes = size_t{kChunk} * kVStride * sizeof(T);
  static constexpr size_t kMatBytes = size_t{kChunk} * kMatStride * sizeof(float);
  static constexpr size_t kFBytes = kFactorStride * sizeof(float);
  static constexpr size_t kQ = 0, kK = kQBytes, kV = 2 * kQBytes, kAu = kV + kVBytes, kL = kAu + kMatBytes,
                          kF = kL + kMatBytes, kSlot = kF + kFBytes;
  static_assert(kSlot % 16 == 0 && kQBytes % 16 == 0 && kVBytes % 16 == 0 && kMatBytes % 16 == 0,
                "cp.async needs 16-byte slots");

  // Issues the copies of chunk c (first token t0, len tokens; q/k head h,
  // value head hv, value columns v0..) into `slot` with nthreads threads.
  // Rows past the chunk's end, and past v_rows of v, are zero-filled (their
  // source is not read).
  template <int nthreads>
  static __device__ __forceinline__ void load(const PrefillParams& p, unsigned char* slot, int c, int64_t t0,
                                              int len, int v_rows, int64_t h, int64_t hv, int v0, int tid) {
    const T* q = static_cast<const T*>(p.q);
    const T* k = static_cast<const T*>(p.k);
    const T* v = static_cast<const T*>(p.v);
    copy_rows_async<T, K, kChunk, nthreads>(reinterpret_cast<T*>(slot + kQ), kQkStride,
                                            q + t0 * p.q_s0 + h * p.q_s1, p.q_s0, len, tid);
    copy_rows_async<T, K, kChunk, nthreads>(reinterpret_cast<T*>(slot + kK), kQkStride,
                                            k + t0 * p.k_s0 + h * p.k_s1, p.k_s0, len, tid);
    copy_rows_async<T, VT, kChunk, nthreads>(reinterpret_cast<T*>(slot + kV), kVStride,
                                             v + t0 * p.v_s0 + hv * p.v_s1 + v0, p.v_s0, v_rows, tid);
    const int64_t item = int64_t{c} * p.HV + hv;
    copy_rows_async<float, kChunk, kChunk, nthreads>(reinterpret_cast<float*>(slot + kAu), kMatStride,
                                                     p.Au + item * kChunk * kChunk, kChunk, kChunk, tid);
    copy_rows_async<float, kChunk, kChunk, nthreads>(reinterpret_cast<float*>(slot + kL), kMatStride,
                                                     p.L + item * kChunk * kChunk, kChunk, kChunk, tid);
    static_assert(kFactorStride / 4 <= nthreads, "one 16-byte unit of F per thread");
    if (tid < kFactorStride / 4)
      cp_async_16(slot + kF + 16 * tid, p.F + item * kFactorStride + 4 * tid, true);
  }
};

// One ring slot's chunk inputs, at the offsets a shared-memory plan gives.
template <typename T, typename Plan>
struct SlotView {
  const T *q, *k, *v;
  const float *au, *l, *f;
  __device__ __forceinline__ explicit SlotView(const unsigned char* slot)
      : q(reinterpret_cast<const T*>(slot + Plan::kQ)),
        k(reinterpret_cast<const T*>(slot + Plan::kK)),
        v(reinterpret_cast<const T*>(slot + Plan::kV)),
        au(reinterpret_cast<const float*>(slot + Plan::kAu)),
        l(reinterpret_cast<const float*>(slot + Plan::kL)),
        f(reinterpret_cast<const float*>(slot + Plan::kF)) {}
};

// Waits for the oldest of the ring's `stages` (1 or 2) copy groups.
__device__ __forceinline__ void ring_wait(int stages) {
  if (stages == 2)
    cp_async_wait<1>();
  else
    cp_async_wait<0>();
}

// A state pass's grid is one-dimensional, ordered so that the CTAs that
// read the same chunk inputs run at the same time: the column tiles of one
// (sequence or segment, value head) fastest, then the value heads (those of
// one q/k head adjacent), then segments, then sequences. A chunk's q, k, Au,
// L and factors then cross from memory about once and reach the other CTAs
// from L2; with the tiles and heads slowest, a batch's q and k crossed once
// per tile and value head. Sequences go longest first (params.h,
// kOrderedSeqs): the grid's sequence rank maps through the order table. A
// table chunk_meta wrote is read after the wait for the earlier kernels
// (the prep launches its dependents before it waits for chunk_meta), so
// such calls load their entering state after the wait.
struct StateItem {
  int64_t n, hv;
  int seg, tile;
};
// Item b of the grid's order (a CTA's: blockIdx.x, or the persistent sm90
// pass's tickets).
__device__ __forceinline__ StateItem state_item_at(const PrefillParams& p, int segs, int tiles, uint32_t b) {
  const int64_t HV = p.HV;
  StateItem it;
  it.tile = static_cast<int>(b % static_cast<uint32_t>(tiles));
  b /= static_cast<uint32_t>(tiles);
  it.hv = b % static_cast<uint32_t>(HV);
  b /= static_cast<uint32_t>(HV);
  it.seg = static_cast<int>(b % static_cast<uint32_t>(segs));
  const uint32_t rank = b / static_cast<uint32_t>(segs);
  if (p.inline_offsets) {
    it.n = p.inline_order[rank];
  } else if (p.seq_order != nullptr) {
    wait_for_prerequisites();
    it.n = p.seq_order[rank];
  } else {
    it.n = rank;
  }
  return it;
}
__device__ __forceinline__ StateItem state_item(const PrefillParams& p, int segs, int tiles) {
  return state_item_at(p, segs, tiles, blockIdx.x);
}

// Launches a state-pass kernel with `smem` bytes of dynamic shared memory,
// raising the kernel's limit on this device first where it is below.
template <typename Kernel>
Status launch_state_kernel(Kernel kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                           bool programmatic, const PrefillParams& p, const char* name) {
  if (Status s = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, name); !s.ok()) return s;
  if (p.N == 0) return Status::Ok();
  return cuda_status(launch_kernel(kernel, grid, block, smem, stream, programmatic, p), name);
}

}  // namespace gdn::cuda
