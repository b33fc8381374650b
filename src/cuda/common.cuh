// Device helpers shared by the GPU backends: error checks, dtype loads and
// stores, and the launch-time parameter layout of state tensors.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

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

// A one-dimensional grid of `ctas` CTAs, or why one launch cannot hold it
// (`what` names the kernel and what it counts).
inline Status linear_grid(int64_t ctas, dim3* grid, const char* what) {
  if (ctas > 0x7fffffff) return Status::Unsupported(std::string(what) + ": too many for one launch");
  *grid = dim3(static_cast<unsigned>(ctas));
  return Status::Ok();
}

// Raises `kernel`'s dynamic shared memory limit to at least `bytes` on the
// current device. The limit is a per-device attribute of the function, so
// it is set once per (kernel, device) and raised only when a launch needs
// more than that device has.
inline Status allow_dynamic_smem(const void* kernel, size_t bytes, const char* name) {
  int device = 0;
  if (Status s = cuda_status(cudaGetDevice(&device), name); !s.ok()) return s;
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, size_t> allowed;
  std::lock_guard<std::mutex> lock(mutex);
  size_t& now = allowed[{kernel, device}];
  if (bytes <= now) return Status::Ok();
  if (Status s = cuda_status(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)),
          name);
      !s.ok())
    return s;
  now = bytes;
  return Status::Ok();
}

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

// Loads `n` consecutive io elements starting at p as fp32, in 16-byte units
// (p 16-byte aligned), or 8-byte units when n elements are only 8 bytes.
template <typename T, int n>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[n]) {
  static_assert(n * sizeof(T) % 8 == 0, "vector loads move 8- or 16-byte units");
  if constexpr (n * sizeof(T) % 16 == 0) {
    constexpr int kUnits = n * sizeof(T) / 16;
    constexpr int kPer = 16 / sizeof(T);
#pragma unroll
    for (int u = 0; u < kUnits; ++u) {
      const uint4 raw = *reinterpret_cast<const uint4*>(p + u * kPer);
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < kPer; ++i) out[u * kPer + i] = to_float<T>(e[i]);
    }
  } else {
    static_assert(n * sizeof(T) == 8, "an 8-byte load");
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < n; ++i) out[i] = to_float<T>(e[i]);
  }
}

// The io dtype chosen at run time (one kernel serves bf16, fp16 and fp32
// inputs; the branch is uniform across the grid). `i` counts elements.
template <int n>
__device__ __forceinline__ void load_io(const void* p, DType dtype, int64_t i, float (&out)[n]) {
  switch (dtype) {
    case DType::kBF16:
      load_vec<__nv_bfloat16, n>(static_cast<const __nv_bfloat16*>(p) + i, out);
      break;
    case DType::kF16:
      load_vec<__half, n>(static_cast<const __half*>(p) + i, out);
      break;
    default:
      load_vec<float, n>(static_cast<const float*>(p) + i, out);
      break;
  }
}

__device__ __forceinline__ float load_io(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case DType::kF16:
      return __half2float(static_cast<const __half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

// load_io split in two: the raw bytes of n io elements at element i now
// (every io dtype's n elements are whole 16-byte units), their conversion
// later. load_io converts inside its dtype branch, so the next load issues
// only once this one's data arrived; raw loads of several inputs issue back
// to back and share one round trip.
template <int n>
struct IoUnits {
  static_assert(n * 2 % 16 == 0, "n bf16 / fp16 elements fill whole 16-byte units");
  uint4 u[n * 4 / 16];
};
template <int n>
__device__ __forceinline__ void load_io_units(const void* p, DType dtype, int64_t i, IoUnits<n>& raw) {
  const int es = dtype == DType::kF32 ? 4 : 2;
  const uint4* src = reinterpret_cast<const uint4*>(static_cast<const char*>(p) + i * es);
#pragma unroll
  for (int u = 0; u < n * 4 / 16; ++u)
    if (u < n * es / 16) raw.u[u] = src[u];
}
template <int n>
__device__ __forceinline__ void convert_io(const IoUnits<n>& raw, DType dtype, float (&out)[n]) {
  switch (dtype) {
    case DType::kBF16:
#pragma unroll
      for (int i = 0; i < n; ++i) out[i] = to_float(reinterpret_cast<const __nv_bfloat16*>(raw.u)[i]);
      break;
    case DType::kF16:
#pragma unroll
      for (int i = 0; i < n; ++i) out[i] = to_float(reinterpret_cast<const __half*>(raw.u)[i]);
      break;
    default:
#pragma unroll
      for (int i = 0; i < n; ++i) out[i] = reinterpret_cast<const float*>(raw.u)[i];
      break;
  }
}
// One io element's raw bits (load_io's scalar form, split the same way).
__device__ __forceinline__ uint32_t load_io_bits(const void* p, DType dtype, int64_t i) {
  return dtype == DType::kF32 ? static_cast<const uint32_t*>(p)[i] : static_cast<const uint16_t*>(p)[i];
}
__device__ __forceinline__ float convert_io_bits(uint32_t bits, DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return __uint_as_float(bits << 16);
    case DType::kF16:
      return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
    default:
      return __uint_as_float(bits);
  }
}

__device__ __forceinline__ void store_io(void* p, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x);
      break;
    case DType::kF16:
      static_cast<__half*>(p)[i] = __float2half_rn(x);
      break;
    default:
      static_cast<float*>(p)[i] = x;
      break;
  }
}

// A gate input (g, beta, a or b: fp32, or bf16 where allowed).
__device__ __forceinline__ float load_gate_input(const void* p, bool bf16, int64_t i) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
}

// The fused gate activation of GateMode::kFused:
//   g = -exp(A_log) softplus(a + dt_bias),  beta = sigmoid(b).
__device__ __forceinline__ void fused_gate(float a, float b, float a_log, float dt_bias, float* g,
                                           float* beta) {
  const float x = a + dt_bias;
  const float softplus = x > 20.f ? x : log1pf(expf(x));
  *g = -expf(a_log) * softplus;
  *beta = 1.f / (1.f + expf(-b));
}

// x, with its value hidden from the optimiser: what derives from it is formed
// where it is used, not hoisted (and held in registers) or folded.
template <typename T>
__device__ __forceinline__ T* opaque(T* p) {
  asm volatile("" : "+l"(p));
  return p;
}
__device__ __forceinline__ int64_t opaque(int64_t x) {
  asm volatile("" : "+l"(x));
  return x;
}
__device__ __forceinline__ int opaque(int x) {
  asm volatile("" : "+r"(x));
  return x;
}

// An int32 or int64 index tensor's element i (cu_seqlens, state_indices).
__device__ __forceinline__ int64_t load_index(const void* p, bool is64, int64_t i) {
  return is64 ? static_cast<const int64_t*>(p)[i] : static_cast<const int32_t*>(p)[i];
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

// The StateTensor of a 4-D state tensor [rows, HV, K, V] ([rows, HV, V, K]
// with kVK), or of a 5-D one [N, L, HV, ., .] whose slot dimension the
// caller addresses itself (row = n; *slot_stride gets stride[1]). An
// undefined tensor gives data == nullptr.
inline StateTensor state_view(const Tensor& t, StateLayout layout, int64_t* slot_stride = nullptr) {
  StateTensor s;
  if (!t.defined()) return s;
  const int d = t.rank == 5 ? 1 : 0;  // dimensions before the head
  s.data = t.data;
  s.row_stride = t.stride[0];
  if (slot_stride != nullptr) *slot_stride = d == 1 ? t.stride[1] : 0;
  s.head_stride = t.stride[d + 1];
  s.k_stride = layout == StateLayout::kKV ? t.stride[d + 2] : t.stride[d + 3];
  s.v_stride = layout == StateLayout::kKV ? t.stride[d + 3] : t.stride[d + 2];
  s.bf16 = t.dtype == DType::kBF16;
  return s;
}

// The token inputs every GPU kernel family reads (strides in elements; the
// last dimension is contiguous): q, k, v, and the gates, log-space g and beta
// or (fused) raw a and b with A_log and dt_bias.
struct TokenInputs {
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t q_s0 = 0, q_s1 = 0, k_s0 = 0, k_s1 = 0, v_s0 = 0, v_s1 = 0;
  bool fused = false;
  const void* gate_a = nullptr;  // g (fp32) or a
  const void* gate_b = nullptr;  // beta or b
  bool gate_a_bf16 = false, gate_b_bf16 = false;
  int64_t ga_s0 = 0, ga_s1 = 0, gb_s0 = 0, gb_s1 = 0;
  const float* a_log = nullptr;
  const float* dt_bias = nullptr;
  int64_t a_log_s = 0, dt_bias_s = 0;
};

// The TokenInputs of a validated call.
inline void set_token_inputs(const Args& a, TokenInputs* p) {
  p->q = a.q.data, p->k = a.k.data, p->v = a.v.data;
  p->q_s0 = a.q.stride[0], p->q_s1 = a.q.stride[1];
  p->k_s0 = a.k.stride[0], p->k_s1 = a.k.stride[1];
  p->v_s0 = a.v.stride[0], p->v_s1 = a.v.stride[1];
  p->fused = a.gate_mode == GateMode::kFused;
  const Tensor& ga = p->fused ? a.a : a.g;
  const Tensor& gb = p->fused ? a.b : a.beta;
  p->gate_a = ga.data, p->gate_b = gb.data;
  p->gate_a_bf16 = ga.dtype == DType::kBF16, p->gate_b_bf16 = gb.dtype == DType::kBF16;
  p->ga_s0 = ga.stride[0], p->ga_s1 = ga.stride[1], p->gb_s0 = gb.stride[0], p->gb_s1 = gb.stride[1];
  if (p->fused) {
    p->a_log = static_cast<const float*>(a.a_log.data);
    p->dt_bias = static_cast<const float*>(a.dt_bias.data);
    p->a_log_s = a.a_log.stride[0], p->dt_bias_s = a.dt_bias.stride[0];
  }
}

// The state fields of a launch's parameters P (init, fin; indices, idx64,
// idx_s, pool_rows for a pool): a pool (`pool_rows` rows) is read and, when
// the call writes final states, updated in place; dense states come from
// initial_state and go to final_state.
template <typename P>
void set_state_inputs(const Args& a, bool pool, int64_t pool_rows, P* p) {
  p->init = state_view(a.initial_state, a.state_layout);
  if (pool) {
    p->indices = a.state_indices.data;
    p->idx64 = a.state_indices.dtype == DType::kI64;
    p->idx_s = a.state_indices.stride[0];
    p->pool_rows = pool_rows;
    if (a.write_final_state) p->fin = p->init;
  } else if (a.write_final_state) {
    p->fin = state_view(a.final_state, a.state_layout);
  }
}

}  // namespace gdn::cuda
