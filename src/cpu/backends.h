// Entry points of the host backends. Each receives a validated call whose
// data is in host memory.
#pragma once

#include "common/call.h"
#include "cpu/recurrence.h"
#include "gdn/gdn.h"

namespace gdn::cpu {

// The float64 token recurrence (the oracle). With `f64`, also keeps every
// output unrounded, for tests.
Status run_reference(const Call& call, const Args& args, Float64Outputs* f64 = nullptr);

// The fp32 backend: chunked prefill (DESIGN section 2), token recurrence for
// decode and verify.
Status run_cpu(const Call& call, const Args& args);

// commit_states on host memory (both host backends: a copy is exact).
Status run_commit(const CommitCall& call, const CommitArgs& args);

}  // namespace gdn::cpu
