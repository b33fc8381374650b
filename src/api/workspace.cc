// gdn::Workspace: device scratch owned for the caller.
#include <utility>

#include "gdn/gdn.h"

#if GDN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gdn {

Workspace::~Workspace() {
  release();
}

Workspace::Workspace(Workspace&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      device_(std::exchange(other.device_, -1)) {}

Workspace& Workspace::operator=(Workspace&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    device_ = std::exchange(other.device_, -1);
  }
  return *this;
}

void Workspace::release() {
#if GDN_WITH_CUDA
  if (data_ != nullptr) cudaFree(data_);
#endif
  data_ = nullptr;
  bytes_ = 0;
  device_ = -1;
}

Status Workspace::reserve(size_t need, int device) {
  if (need <= bytes_ && device == device_) return Status::Ok();
#if GDN_WITH_CUDA
  release();
  int previous = 0;
  if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return Status(StatusCode::kDeviceError, "workspace: cannot select GPU " + std::to_string(device));
  }
  const cudaError_t e = cudaMalloc(&data_, need);
  cudaSetDevice(previous);
  if (e != cudaSuccess) {
    cudaGetLastError();
    data_ = nullptr;
    return Status(StatusCode::kDeviceError, "workspace: cudaMalloc of " + std::to_string(need) +
                                                " bytes failed: " + cudaGetErrorString(e));
  }
  bytes_ = need;
  device_ = device;
  return Status::Ok();
#else
  (void)device;
  return Status(StatusCode::kInternal,
                "workspace: this build has no CUDA, yet the call needs device scratch");
#endif
}

}  // namespace gdn
