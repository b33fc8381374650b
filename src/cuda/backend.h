// Entry points of the GPU backends, callable from host-only code.
#pragma once

#include <cstddef>

#include "common/call.h"
#include "gdn/gdn.h"

namespace gdn::cuda {

// The portable (sm_80+) backend. Prefill only for now.
Status run_cuda(const Call& call, const Args& args);
size_t cuda_workspace_size(const Call& call, const Args& args);

}  // namespace gdn::cuda
