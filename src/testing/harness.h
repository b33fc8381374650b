// Correctness harness shared by the tests and `gdn verify`: generates
// deterministic inputs for a case, runs a backend on poisoned outputs, runs
// the float64 reference on the same values, and checks the error model.
// Uses only the public API.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gdn/gdn.h"

namespace gdn::testing {

struct Case {
  std::string name;
  Op op = Op::kPrefill;
  std::vector<int64_t> seq_lens;  // prefill/verify; decode: N = seq_lens.size(), each 1
  int64_t H = 2, HV = 4, K = 64, V = 64;
  DType io = DType::kBF16;
  DType state = DType::kF32;
  StateLayout layout = StateLayout::kKV;
  GateMode gate = GateMode::kLogSpace;
  bool l2norm = true;
  bool initial_state = true;
  bool pool = false;         // a pool with spare rows and negative (padding) indices
  int64_t pool_rows = 0;     // 0: N + 3
  bool pool_padding = true;  // every third sequence gets a negative index
  bool write_final = true;
  int64_t checkpoint_every = 0;
  bool intermediate = false;       // verify: keep every intermediate state
  bool fixed_len = false;          // verify: tokens_per_seq instead of cu_seqlens
  bool adversarial_gates = false;  // g down to -60 per token, chunk sums below -3000
  bool int64_indices = false;      // cu_seqlens and state_indices as int64 (else int32)
  uint64_t seed = 1;
  double tol_o = 4e-3;      // relative RMS bound on out
  double tol_state = 4e-3;  // relative RMS bound on every state output
};

// Relative RMS error sqrt(sum (x - r)^2 / sum r^2) and the largest absolute
// error over the reference's RMS.
struct ErrorStats {
  double rel_rms = 0.0;
  double max_abs_over_rms = 0.0;
  int64_t count = 0;
  int64_t non_finite = 0;
};

// Relative RMS error of x against r, sqrt(sum (x - r)^2 / sum r^2); NaN or
// infinite when either holds a non-finite value (so a bound on it fails).
double rel_rms(const std::vector<float>& x, const std::vector<float>& r);

// Accumulates the error model's statistics over elements (x, reference).
class ErrorAccumulator {
 public:
  void add(double x, double ref);
  ErrorStats stats() const;

 private:
  double num_ = 0, den_ = 0, max_abs_ = 0;
  int64_t count_ = 0, non_finite_ = 0;
};

struct CaseResult {
  Status status;  // of the backend call
  ErrorStats out, state, checkpoints, intermediate;
  bool all_written = true;  // no poisoned element left in any output it must write
  bool untouched = true;    // rows and slots it must not write are bytewise unchanged
  bool passed = false;
  double ms = 0.0;      // wall time of the backend call
  std::string failure;  // why not, when !passed
};

// A case's inputs and (poisoned) outputs in the case's dtypes, ready to run:
// for timing without the reference.
class Workload {
 public:
  // With `on_device`, the Args point at GPU copies (check status()).
  // `copies` > 1: that many GPU copies of the same inputs (args(i)), so a
  // benchmark can rotate through more data than the L2 cache holds.
  explicit Workload(const Case& c, bool on_device = false, int copies = 1);
  ~Workload();
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;
  Args& args(int copy = 0);
  int copies() const;
  const Case& spec() const;
  int64_t tokens() const;
  const Status& status() const;
  // Device workloads: copies the outputs back; host_* then show them.
  Status download();
  Tensor host_out();
  Tensor host_final_state();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Token j of every sequence of a [N * L, ...] tensor, as an [N, ...] view.
Tensor token_slice(Tensor t, int64_t j, int64_t L);

// The decode of token j of every sequence of `whole`, a call over N
// sequences of L tokens each: its token inputs and out as [N, ...] views,
// without cu_seqlens, tokens_per_seq or intermediate states; states and
// options as in `whole`.
Args decode_step(const Args& whole, int64_t j, int64_t L);

// Whether run_case runs `backend` on GPU copies of the data (GPU backends,
// and auto when a CUDA device is present).
bool runs_on_device(Backend backend);

// Draws inputs for `c`, runs `backend` on them and checks against the
// float64 reference. `num_threads` is passed to host backends.
// With `strict` clear, a backend that cannot serve the case falls back.
CaseResult run_case(const Case& c, Backend backend, int num_threads = 0, bool strict = true);

// The correctness matrix of the foundation issue (lengths 1..1000 in one
// packed batch, GVA 1/2/4, K = V = 64, 128, 96, both layouts, pools with
// padding, bf16 state, fused and adversarial gates, decode, verify,
// checkpoints).
std::vector<Case> correctness_matrix();

std::string describe(const ErrorStats& e);

// A test name for case `index` (letters, digits and underscores).
std::string test_name(const Case& c, size_t index);

// GoogleTest prints parameterised cases by name.
inline void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

}  // namespace gdn::testing
