// Host cost of the CUDA runtime calls a plain gdn call makes, on this GPU's
// host: kernel launches by parameter size (with and without the
// programmatic-serialisation attribute), pointer attribute queries and
// device queries. Each figure is the median of many calls, in microseconds.
//
//   nvcc -O2 -std=c++17 -arch=sm_90 -cudart static scripts/launch_cost.cu -o launch_cost && ./launch_cost
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(x)                                                                  \
  do {                                                                            \
    cudaError_t e_ = (x);                                                         \
    if (e_ != cudaSuccess) {                                                      \
      std::fprintf(stderr, "%s: %s (line %d)\n", #x, cudaGetErrorString(e_), __LINE__); \
      std::exit(1);                                                               \
    }                                                                             \
  } while (0)

template <int kBytes>
struct Blob {
  unsigned char b[kBytes];
};

template <int kBytes>
__global__ void empty_kernel(const __grid_constant__ Blob<kBytes> blob) {
  if (blob.b[0] == 123 && threadIdx.x == 999) printf("never\n");
}

template <typename F>
double median_us(F&& f, int reps, cudaStream_t stream) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    if (i % 64 == 63) CHECK(cudaStreamSynchronize(stream));  // keep the queue short
  }
  CHECK(cudaStreamSynchronize(stream));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

template <int kBytes>
void launches(cudaStream_t stream) {
  Blob<kBytes> blob{};
  for (int pdl = 0; pdl < 2; ++pdl) {
    const double us = median_us(
        [&] {
          cudaLaunchConfig_t cfg{};
          cfg.gridDim = dim3(32);
          cfg.blockDim = dim3(128);
          cfg.stream = stream;
          cudaLaunchAttribute attr[1];
          attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
          attr[0].val.programmaticStreamSerializationAllowed = 1;
          cfg.attrs = attr;
          cfg.numAttrs = pdl;
          CHECK(cudaLaunchKernelEx(&cfg, empty_kernel<kBytes>, blob));
        },
        2000, stream);
    std::printf("  cudaLaunchKernelEx, %5d B of parameters%s  %6.2f us\n", kBytes, pdl ? ", programmatic" : "              ", us);
  }
}

int main() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  void* d = nullptr;
  CHECK(cudaMalloc(&d, 1 << 20));
  CHECK(cudaFree(nullptr));
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("host cost of runtime calls on %s (median us)\n", prop.name);
  launches<64>(stream);
  launches<1024>(stream);
  launches<2048>(stream);
  launches<4096>(stream);
  cudaPointerAttributes attr{};
  std::printf("  cudaPointerGetAttributes (device)        %6.2f us\n",
              median_us([&] { CHECK(cudaPointerGetAttributes(&attr, d)); }, 2000, stream));
  int host_word = 0;
  std::printf("  cudaPointerGetAttributes (host)          %6.2f us\n",
              median_us([&] { CHECK(cudaPointerGetAttributes(&attr, &host_word)); }, 2000, stream));
  int dev = 0;
  std::printf("  cudaGetDevice                            %6.2f us\n",
              median_us([&] { CHECK(cudaGetDevice(&dev)); }, 2000, stream));
  cudaStreamCaptureStatus cs;
  std::printf("  cudaStreamIsCapturing                    %6.2f us\n",
              median_us([&] { CHECK(cudaStreamIsCapturing(stream, &cs)); }, 2000, stream));
  std::printf("  cudaGetLastError                         %6.2f us\n",
              median_us([&] { (void)cudaGetLastError(); }, 2000, stream));
  std::printf("  cudaStreamSynchronize (idle)             %6.2f us\n",
              median_us([&] { CHECK(cudaStreamSynchronize(stream)); }, 2000, stream));
  CHECK(cudaFree(d));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}
