#include "gdn/gpu_bench.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <random>

namespace gdn::cli {
namespace {

Status cuda_check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return Status::Ok();
  return Status(StatusCode::kDeviceError, std::string(what) + ": " + cudaGetErrorString(e));
}
#define GDN_TRY(expr)                                               \
  do {                                                              \
    if (Status s_ = cuda_check((expr), #expr); !s_.ok()) return s_; \
  } while (0)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

std::string gpu_name(int ordinal) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, ordinal) != cudaSuccess) return "unknown GPU";
  return p.name;
}

size_t gpu_l2_bytes(int ordinal) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, ordinal) != cudaSuccess) return 0;
  return static_cast<size_t>(p.l2CacheSize);
}

Status time_on_gpu(Op op, const std::vector<Args*>& sets, int reps, GpuTiming* out) {
  cudaStream_t stream;
  GDN_TRY(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (Args* a : sets) a->stream = stream;
  // Warm-up: every set once, plus a few more calls.
  for (int i = 0; i < 3 + static_cast<int>(sets.size()); ++i)
    if (Status s = run(op, *sets[i % sets.size()]); !s.ok()) return s;
  GDN_TRY(cudaStreamSynchronize(stream));

  // Plain calls, end to end: host launch through completion.
  // The host part of each (until run returns) and, apart, the validation alone.
  std::vector<double> eager, host, check;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    if (Status s = run(op, *sets[i % sets.size()]); !s.ok()) return s;
    const auto t1 = std::chrono::steady_clock::now();
    GDN_TRY(cudaStreamSynchronize(stream));
    eager.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    host.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  for (int i = 0; i < reps; ++i) {
    const Args& a = *sets[i % sets.size()];
    Choice choice;
    const auto t0 = std::chrono::steady_clock::now();
    if (Status s = choose_backend(op, a, &choice); !s.ok()) return s;
    check.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  out->ms_eager = median(eager);
  out->us_host = median(host);
  out->us_check = median(check);

  // One graph holding one call per input set, replayed between events.
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  GDN_TRY(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  Status captured = Status::Ok();
  for (Args* a : sets)
    if (captured.ok()) captured = run(op, *a);
  GDN_TRY(cudaStreamEndCapture(stream, &graph));
  if (!captured.ok()) return captured;
  GDN_TRY(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t e0, e1;
  GDN_TRY(cudaEventCreate(&e0));
  GDN_TRY(cudaEventCreate(&e1));
  GDN_TRY(cudaGraphLaunch(exec, stream));  // warm-up replay
  std::vector<double> graphed;
  const int replays = std::max(1, reps / static_cast<int>(sets.size()));
  for (int i = 0; i < replays; ++i) {
    GDN_TRY(cudaEventRecord(e0, stream));
    GDN_TRY(cudaGraphLaunch(exec, stream));
    GDN_TRY(cudaEventRecord(e1, stream));
    GDN_TRY(cudaEventSynchronize(e1));
    float ms = 0;
    GDN_TRY(cudaEventElapsedTime(&ms, e0, e1));
    graphed.push_back(ms / static_cast<double>(sets.size()));
  }
  out->ms_graph = median(graphed);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
  for (Args* a : sets) a->stream = nullptr;
  return Status::Ok();
}

Status measure_gpu_ceilings(Ceilings* c) {
  cudaEvent_t e0, e1;
  GDN_TRY(cudaEventCreate(&e0));
  GDN_TRY(cudaEventCreate(&e1));
  {
    const size_t bytes = size_t{1} << 30;
    void *a = nullptr, *b = nullptr;
    GDN_TRY(cudaMalloc(&a, bytes));
    GDN_TRY(cudaMalloc(&b, bytes));
    GDN_TRY(cudaMemset(a, 1, bytes));
    GDN_TRY(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
    float best = 1e30f;
    for (int i = 0; i < 10; ++i) {
      GDN_TRY(cudaEventRecord(e0));
      GDN_TRY(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice));
      GDN_TRY(cudaEventRecord(e1));
      GDN_TRY(cudaEventSynchronize(e1));
      float ms = 0;
      GDN_TRY(cudaEventElapsedTime(&ms, e0, e1));
      best = std::min(best, ms);
    }
    c->copy_gbps = 2.0 * static_cast<double>(bytes) / (best * 1e-3) / 1e9;
    cudaFree(a);
    cudaFree(b);
  }
  {
    const int n = 8192;
    std::vector<__nv_bfloat16> h(static_cast<size_t>(n) * n);
    std::mt19937 rng(7);
    std::normal_distribution<float> dist;
    for (auto& x : h) x = __float2bfloat16(dist(rng));
    void *a = nullptr, *b = nullptr, *d = nullptr;
    const size_t bytes = h.size() * sizeof(__nv_bfloat16);
    GDN_TRY(cudaMalloc(&a, bytes));
    GDN_TRY(cudaMalloc(&b, bytes));
    GDN_TRY(cudaMalloc(&d, bytes));
    GDN_TRY(cudaMemcpy(a, h.data(), bytes, cudaMemcpyHostToDevice));
    GDN_TRY(cudaMemcpy(b, h.data(), bytes, cudaMemcpyHostToDevice));
    cublasHandle_t handle;
    if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS)
      return Status(StatusCode::kDeviceError, "cublasCreate failed");
    const float alpha = 1.f, beta = 0.f;
    auto gemm = [&] {
      return cublasGemmEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, CUDA_R_16BF, n, b,
                          CUDA_R_16BF, n, &beta, d, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    };
    float best = 1e30f;
    for (int i = 0; i < 13; ++i) {
      GDN_TRY(cudaEventRecord(e0));
      if (gemm() != CUBLAS_STATUS_SUCCESS) return Status(StatusCode::kDeviceError, "cublasGemmEx failed");
      GDN_TRY(cudaEventRecord(e1));
      GDN_TRY(cudaEventSynchronize(e1));
      float ms = 0;
      GDN_TRY(cudaEventElapsedTime(&ms, e0, e1));
      if (i >= 3) best = std::min(best, ms);
    }
    c->matmul_gflops = 2.0 * n * static_cast<double>(n) * n / (best * 1e-3) / 1e9;
    cublasDestroy(handle);
    cudaFree(a);
    cudaFree(b);
    cudaFree(d);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  c->what =
      "GPU: device-to-device memcpy of 1 GiB (read + write), cuBLAS bf16 8192^3 on random data (best of 10)";
  return Status::Ok();
}

}  // namespace gdn::cli
