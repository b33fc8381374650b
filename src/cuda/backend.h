// Entry points of the GPU backends, callable from host-only code.
#pragma once

#include <cstddef>

#include "common/call.h"
#include "gdn/gdn.h"

namespace gdn::cuda {

// The portable (sm_80+) backend: prefill (sm80/prefill.cu), decode and
// verify (sm80/recurrent.cu, no workspace), commit_states (sm80/commit.cu).
Status run_cuda(const Call& call, const Args& args);
size_t cuda_workspace_size(const Call& call, const Args& args);
Status run_cuda_recurrent(const Call& call, const Args& args);
Status run_cuda_commit(const CommitCall& call, const CommitArgs& args);

}  // namespace gdn::cuda
