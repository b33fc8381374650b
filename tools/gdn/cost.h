// The cost model of DESIGN section 7: the work and the fewest bytes of a
// call, for GFLOP/s, GB/s and the roofline floor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gdn/gdn.h"

namespace gdn::cli {

struct Shape {
  Op op = Op::kPrefill;
  std::vector<int64_t> seq_lens;
  int64_t H = 0, HV = 0, K = 0, V = 0;
  size_t io_bytes = 2;     // per element of q, k, v, o
  size_t state_bytes = 4;  // per state element
  size_t beta_bytes = 4;
  bool read_state = true, write_state = true;
  bool intermediate_states = false;  // verify: the state after every token written too
};

inline int64_t total_tokens(const Shape& s) {
  int64_t t = 0;
  for (int64_t l : s.seq_lens) t += l;
  return t;
}

// Prefill: 2 (3 C K + 2 C V + 3 K V) FLOP per token and value head (C = 64),
// the tensor-core work of the chunked algorithm. Decode and verify run the
// token recurrence: decay, S^T k, the rank-1 update and S^T q, 7 K V FLOP.
inline double flops(const Shape& s) {
  const double per = s.op == Op::kPrefill
                         ? 2.0 * (3.0 * kChunkSize * s.K + 2.0 * kChunkSize * s.V + 3.0 * s.K * s.V)
                         : 7.0 * s.K * s.V;
  return per * static_cast<double>(total_tokens(s)) * static_cast<double>(s.HV);
}

// q and k, v and o, g and beta, plus each sequence's state read and written
// once, plus (verify) the state after every token.
inline double bytes(const Shape& s) {
  const double T = static_cast<double>(total_tokens(s));
  const double N = static_cast<double>(s.seq_lens.size());
  double b = T * 2.0 * s.H * s.K * s.io_bytes;
  b += T * 2.0 * s.HV * s.V * s.io_bytes;
  b += T * s.HV * (4.0 + s.beta_bytes);
  b += N * s.HV * s.K * s.V * s.state_bytes * ((s.read_state ? 1.0 : 0.0) + (s.write_state ? 1.0 : 0.0));
  if (s.intermediate_states) b += T * s.HV * s.K * s.V * s.state_bytes;
  return b;
}

// Measured ceilings of the machine the benchmark runs on.
struct Ceilings {
  double copy_gbps = 0.0;      // bytes read + written per second / 1e9
  double matmul_gflops = 0.0;  // dense matrix product rate / 1e9
  std::string what;            // how they were measured
};

// Host ceilings: a large memcpy and fp32 matrix products on every thread.
Ceilings measure_host_ceilings(int threads);

inline double floor_ms(const Shape& s, const Ceilings& c) {
  const double t_flop = c.matmul_gflops > 0 ? flops(s) / (c.matmul_gflops * 1e9) : 0.0;
  const double t_byte = c.copy_gbps > 0 ? bytes(s) / (c.copy_gbps * 1e9) : 0.0;
  return 1e3 * (t_flop > t_byte ? t_flop : t_byte);
}

}  // namespace gdn::cli
