// What the two state passes of the portable prefill share (prefill_state.cu,
// prefill_columns.cu): the rows of a sequence's entering and final state,
// its chunk range, its checkpoint rows, the ring slot of chunk inputs and
// its loads, and the launch with a dynamic shared-memory size.
#pragma once

#include <atomic>

#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/griddep.cuh"
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

// Sequence n's tokens and chunks (after the prep stage's chunk offsets).
struct SeqChunks {
  int64_t start = 0, end = 0;  // tokens [start, end)
  int begin = 0, stop = 0;     // chunks [begin, stop)
  __device__ __forceinline__ SeqChunks(const PrefillParams& p, int64_t n)
      : start(load_index(p.cu_seqlens, p.cu64, n)),
        end(load_index(p.cu_seqlens, p.cu64, n + 1)),
        begin(p.chunk_offset[n]),
        stop(p.chunk_offset[n + 1]) {}
  // First token and length of chunk c.
  __device__ __forceinline__ int64_t t0(int c) const { return start + int64_t{c - begin} * kChunk; }
  __device__ __forceinline__ int len(int c) const {
    return static_cast<int>(min(int64_t{kChunk}, end - t0(c)));
  }
  // The checkpoint row the state after chunk c goes to, or -1.
  __device__ __forceinline__ int64_t checkpoint_row(const PrefillParams& p, int64_t n, int c) const {
    const int64_t done = t0(c) + len(c) - start;
    return p.ckpt_every > 0 && done % p.ckpt_every == 0 ? p.ckpt_offset[n] + done / p.ckpt_every - 1 : -1;
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

// Launches a state-pass kernel with `smem` bytes of dynamic shared memory,
// raising the kernel's limit first when `allowed` (one per kernel) is below.
template <typename Kernel>
Status launch_state_kernel(Kernel kernel, std::atomic<size_t>& allowed, dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, bool programmatic, const PrefillParams& p, const char* name) {
  if (smem > allowed.load()) {
    if (Status s = cuda_status(
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
            name);
        !s.ok())
      return s;
    allowed.store(smem);
  }
  if (p.N == 0) return Status::Ok();
  return cuda_status(launch_kernel(kernel, grid, block, smem, stream, programmatic, p), name);
}

}  // namespace gdn::cuda
