#include "api/backend_registry.h"

#include "cpu/backends.h"
#if GDN_WITH_CUDA_BACKEND
#include "cuda/backend.h"
#endif

namespace gdn {

Status run_backend(Backend backend, const Call& call, const Args& args) {
  switch (backend) {
    case Backend::kReference:
      return cpu::run_reference(call, args);
    case Backend::kCpu:
      return cpu::run_cpu(call, args);
#if GDN_WITH_CUDA_BACKEND
    case Backend::kCuda:
      return call.op == Op::kPrefill ? cuda::run_cuda(call, args) : cuda::run_cuda_recurrent(call, args);
#endif
#if GDN_WITH_SM90_BACKEND
    case Backend::kSm90:
      return cuda::run_sm90(call, args);
#endif
    default:
      return Status(StatusCode::kInternal,
                    std::string("backend ") + backend_name(backend) + " is not compiled in");
  }
}

Status run_commit_backend(Backend backend, const CommitCall& call, const CommitArgs& args) {
  switch (backend) {
    case Backend::kReference:  // a copy is exact: the oracle runs the same one
    case Backend::kCpu:
      return cpu::run_commit(call, args);
#if GDN_WITH_CUDA_BACKEND
    case Backend::kCuda:
      return cuda::run_cuda_commit(call, args);
#endif
    default:
      return Status(StatusCode::kInternal,
                    std::string("backend ") + backend_name(backend) + " is not compiled in");
  }
}

size_t backend_workspace_size(Backend backend, const Call& call, const Args& args) {
#if GDN_WITH_CUDA_BACKEND
  if (backend == Backend::kCuda) return cuda::cuda_workspace_size(call, args);
#endif
#if GDN_WITH_SM90_BACKEND
  if (backend == Backend::kSm90) return cuda::sm90_workspace_size(call, args);
#endif
  (void)backend;
  (void)call;
  (void)args;
  return 0;  // the host backends allocate their own scratch
}

Status backend_prefill_device_status(Backend backend, const Call& call, const Args& args) {
#if GDN_WITH_CUDA_BACKEND
  if (backend == Backend::kCuda || backend == Backend::kSm90) return cuda::prefill_device_status(call, args);
#endif
  (void)backend;
  (void)call;
  (void)args;
  return Status::Ok();  // the host backends' checks fail the call itself
}

}  // namespace gdn
