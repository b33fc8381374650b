// What the two state passes of the portable prefill share (prefill_state.cu,
// prefill_columns.cu): the rows of a sequence's entering and final state,
// its chunk range, its checkpoint rows, and the launch with a dynamic
// shared-memory size.
#pragma once

#include <atomic>

#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/griddep.cuh"
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
