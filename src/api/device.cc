// Device detection through the CUDA runtime (when built with CUDA).
#include "api/device.h"

#include <mutex>
#include <vector>

#include "gdn/dispatch.h"

#if GDN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gdn {

int device_count() {
#if GDN_WITH_CUDA
  static const int count = [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no driver / no device" error
      return 0;
    }
    return n;
  }();
  return count;
#else
  return 0;
#endif
}

DeviceInfo device_info(int ordinal) {
  DeviceInfo d;
#if GDN_WITH_CUDA
  static std::mutex mutex;
  static std::vector<DeviceInfo> cache;
  const int count = device_count();
  if (ordinal < 0 || ordinal >= count) return d;
  std::lock_guard<std::mutex> lock(mutex);
  if (cache.empty()) cache.resize(static_cast<size_t>(count));
  DeviceInfo& c = cache[static_cast<size_t>(ordinal)];
  if (!c.present) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, ordinal) != cudaSuccess) {
      cudaGetLastError();
      return d;
    }
    c.present = true;
    c.ordinal = ordinal;
    c.cc_major = prop.major;
    c.cc_minor = prop.minor;
    c.num_sms = prop.multiProcessorCount;
    c.smem_per_block_optin = static_cast<int64_t>(prop.sharedMemPerBlockOptin);
    c.name = prop.name;
  }
  d = c;
#else
  (void)ordinal;
#endif
  return d;
}

Location locate(const void* ptr) {
  Location l;
#if GDN_WITH_CUDA
  if (ptr == nullptr || device_count() == 0) return l;
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();
    return l;
  }
  if (attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged) {
    l.on_device = true;
    l.ordinal = attr.device;
  }
#else
  (void)ptr;
#endif
  return l;
}

BuildInfo build_info() {
  BuildInfo b;
#if GDN_WITH_CUDA_BACKEND
  b.cuda = true;
#endif
#if GDN_WITH_SM90_BACKEND
  b.sm90 = true;
#endif
  return b;
}

}  // namespace gdn
