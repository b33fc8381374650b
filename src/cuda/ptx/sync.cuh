// Synchronisation of threads beyond a CTA-wide barrier, sm_70 and newer:
// named barriers among some warps of a CTA (PTX ISA 9.7.13.1, bar.sync), and
// a ready mark one CTA releases and another acquires at GPU scope (9.7.9.8,
// st.release / ld.acquire), as the overlapped prep marks each chunk's Au, L
// and factors for the sm90 state pass.
#pragma once

#include <cstdint>

namespace gdn::cuda {

// Waits until `threads` threads (a multiple of 32) have arrived at barrier
// `id` (1..15; 0 is __syncthreads').
__device__ __forceinline__ void named_barrier(int id, int threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}

// Stores `value` to `mark` with release semantics at GPU scope: the writes
// that happen before it (this thread's, and those of threads that met it at
// a barrier before it: release is cumulative) are visible to a thread that
// acquires the mark.
__device__ __forceinline__ void release_mark(int32_t* mark, int32_t value) {
  asm volatile("st.release.gpu.global.s32 [%0], %1;" ::"l"(mark), "r"(value) : "memory");
}

// Loads `mark` with acquire semantics at GPU scope.
__device__ __forceinline__ int32_t acquire_mark(const int32_t* mark) {
  int32_t v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(mark) : "memory");
  return v;
}

}  // namespace gdn::cuda
