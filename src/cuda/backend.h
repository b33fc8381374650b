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
// Decode and verify; also a prefill of short sequences (prefill.cu), which
// passes the workspace's error flag to clear.
Status run_cuda_recurrent(const Call& call, const Args& args, int32_t* prefill_error_flag = nullptr);
Status run_cuda_commit(const CommitCall& call, const CommitArgs& args);
// What the device-side checks of the last prefill on args.workspace found
// (either GPU backend; waits for args.stream).
Status prefill_device_status(const Call& call, const Args& args);
// The bytes of a prefill workspace's last region, of T tokens in N
// sequences of HV value heads: the sm90 candidates' ticket counter (int32),
// then the overlapped prep's ready marks ([max_chunks, HV] int32,
// chunk-major); tests read them there.
size_t prefill_ready_bytes(int64_t T, int64_t N, int64_t HV);

// The Hopper backend (sm_90a): prefill only, the prep kernel and the sm90
// state pass (sm90/state_pass.cu), with the host side of sm80/prefill.cu.
Status run_sm90(const Call& call, const Args& args);
size_t sm90_workspace_size(const Call& call, const Args& args);

}  // namespace gdn::cuda
