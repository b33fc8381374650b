// Device helpers shared by the GPU backends: error checks, dtype loads and
// stores, and the launch-time parameter layout of state tensors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "gdn/gdn.h"

namespace gdn::cuda {

// Turns a CUDA error into a Status naming the call.
inline Status cuda_status(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kDeviceError, std::string(what) + ": " + cudaGetErrorString(e));
}

#define GDN_CUDA_RETURN(expr)                                                            \
  do {                                                                                   \
    if (::gdn::Status s_ = ::gdn::cuda::cuda_status((expr), #expr); !s_.ok()) return s_; \
  } while (0)

// Makes `ordinal` the current device for a scope and restores the caller's.
class DeviceGuard {
 public:
  DeviceGuard() = default;
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
  cudaError_t set(int ordinal) {
    cudaError_t e = cudaGetDevice(&previous_);
    if (e != cudaSuccess || previous_ == ordinal) return e;
    e = cudaSetDevice(ordinal);
    changed_ = e == cudaSuccess;
    return e;
  }
  ~DeviceGuard() {
    if (changed_) cudaSetDevice(previous_);
  }

 private:
  int previous_ = -1;
  bool changed_ = false;
};

// Scalar conversions for the io dtypes.
template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half x) {
  return __half2float(x);
}

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

// Loads `n` consecutive io elements starting at p (16-byte aligned) as fp32.
template <typename T, int n>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[n]) {
  static_assert(n * sizeof(T) % 16 == 0, "vector loads move 16-byte units");
  constexpr int kUnits = n * sizeof(T) / 16;
  constexpr int kPer = 16 / sizeof(T);
#pragma unroll
  for (int u = 0; u < kUnits; ++u) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p + u * kPer);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < kPer; ++i) out[u * kPer + i] = to_float<T>(e[i]);
  }
}

// A state tensor as kernels address it: matrix (row, head) at
// base + row * row_stride + head * head_stride, element (k, v) at
// k * k_stride + v * v_stride (the layout folds into the two strides).
struct StateTensor {
  void* data = nullptr;
  int64_t row_stride = 0, head_stride = 0, k_stride = 0, v_stride = 0;
  bool bf16 = false;

  __device__ __forceinline__ float load(int64_t row, int64_t head, int64_t k, int64_t v) const {
    const int64_t i = row * row_stride + head * head_stride + k * k_stride + v * v_stride;
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(data)[i])
                : static_cast<const float*>(data)[i];
  }
  __device__ __forceinline__ void store(int64_t row, int64_t head, int64_t k, int64_t v, float x) const {
    const int64_t i = row * row_stride + head * head_stride + k * k_stride + v * v_stride;
    if (bf16)
      static_cast<__nv_bfloat16*>(data)[i] = __float2bfloat16_rn(x);
    else
      static_cast<float*>(data)[i] = x;
  }
};

}  // namespace gdn::cuda
