// Backend selection as a pure function of (problem, device, build), so that
// every routing decision can be tested with injected devices.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gdn/gdn.h"

namespace gdn {

// What a call asks for, without its pointers.
struct Problem {
  Op op = Op::kPrefill;
  int64_t T = 0, N = 0, H = 0, HV = 0, K = 0, V = 0;
  int64_t max_tokens_per_seq = 0;  // verify: L (known bound); 0 if unknown
  DType io_dtype = DType::kBF16;   // q, k, v, out
  DType state_dtype = DType::kF32;
  StateLayout state_layout = StateLayout::kKV;
  GateMode gate_mode = GateMode::kLogSpace;
  bool l2norm_qk = false;
  bool pool = false;  // state_indices given
  bool has_checkpoints = false;
  bool has_intermediate_states = false;
  bool on_device = false;  // the tensors are in GPU memory
  int device_ordinal = -1;
  // Every base and non-unit stride of q, k, v, out and the state tensors is
  // 16-byte aligned (GPU kernels copy their rows in 16-byte units; they read
  // the gates one element at a time); else `unaligned` names the first that is not.
  bool aligned16 = true;
  const char* unaligned = nullptr;
};

// The GPU that holds the data (or none).
struct DeviceInfo {
  bool present = false;
  int ordinal = -1;
  int cc_major = 0, cc_minor = 0;
  int num_sms = 0;
  int64_t smem_per_block_optin = 0;
  std::string name;
};

// Which backends this library was compiled with.
struct BuildInfo {
  bool cuda = false;
  bool sm90 = false;
};

BuildInfo build_info();
// Number of CUDA devices the runtime sees (0 without CUDA or a driver).
int device_count();
DeviceInfo device_info(int ordinal);

// The capability check the dispatcher and the tests share: Ok, or why not.
Status backend_supports(Backend backend, const Problem& problem, const DeviceInfo& device,
                        const BuildInfo& build);

struct Route {
  Status status;  // not ok: nothing can run the problem as asked
  Backend backend = Backend::kAuto;
  bool fell_back = false;
  std::string reason;  // why this backend (and, on fallback, why not the one asked)
};

// `requested` is the caller's choice after environment overrides.
Route route(Backend requested, bool strict, const Problem& problem, const DeviceInfo& device,
            const BuildInfo& build);

// The backends auto tries for a problem, fastest first.
std::vector<Backend> auto_order(const Problem& problem);

// commit_states as a routing problem: a copy of states, so only where the
// data lives matters. Host data: cpu (reference runs the same copy); GPU
// data: cuda.
struct CommitProblem {
  bool on_device = false;
  int device_ordinal = -1;
};
Status commit_supports(Backend backend, const CommitProblem& problem, const DeviceInfo& device,
                       const BuildInfo& build);
Route route_commit(Backend requested, bool strict, const CommitProblem& problem, const DeviceInfo& device,
                   const BuildInfo& build);

// Builds the Problem of a call (no validation beyond what is needed to read
// sizes; run validation first for a trustworthy answer).
Problem describe(Op op, const Args& args);

}  // namespace gdn
