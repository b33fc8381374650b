// Programmatic dependent launch (PTX ISA 9.7.13.x, "griddepcontrol"; sm_90
// and newer, no-ops when compiled for older targets). A kernel launched with
// cudaLaunchAttributeProgrammaticStreamSerialization may start while the
// kernel before it in the stream still runs; it must call
// wait_for_prerequisites() before touching anything that kernel writes.
#pragma once

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

namespace gdn::cuda {

// Lets the next kernel in the stream launch once every CTA of this one has
// called this (or exited).
__device__ __forceinline__ void launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Blocks until the kernels this one depends on have completed and their
// memory is visible (returns at once without a programmatic launch).
__device__ __forceinline__ void wait_for_prerequisites() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Whether `kernel` may be launched programmatically: only when the code that
// runs contains the waits above, i.e. machine code for sm_90 or newer (a
// compute_80 PTX build JIT-compiled on a newer GPU has none).
// GDN_DISABLE_PDL=1 in the environment turns programmatic launches off (for
// measuring what they bring, and for ruling them out).
template <typename Kernel>
bool kernel_waits_for_prerequisites(Kernel kernel) {
  const char* off = std::getenv("GDN_DISABLE_PDL");
  if (off != nullptr && off[0] != '\0' && off[0] != '0') return false;
  cudaFuncAttributes attr{};
  if (cudaFuncGetAttributes(&attr, kernel) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return attr.binaryVersion >= 90 && attr.ptxVersion >= 90;
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), programmatically
// serialised after the previous kernel in the stream when `programmatic`.
template <typename... Params, typename... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          bool programmatic, Args&&... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = programmatic ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace gdn::cuda
