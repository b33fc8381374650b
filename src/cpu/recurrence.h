// The token recurrence of DESIGN section 1, one (sequence, value head) work
// item at a time:
//   S <- exp(g_t) S;  u = beta_t (v_t - S^T k_t);  S <- S + k_t u^T;  o_t = S^T (scale q_t)
// Instantiated in float64 (the reference oracle) and fp32 (the cpu backend's
// decode and verify).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/call.h"
#include "cpu/token_io.h"

namespace gdn::cpu {

// Optional float64 copies of every output (the oracle's unrounded results),
// row-major: out [T, HV, V]; final/checkpoint/intermediate states as [K, V].
struct Float64Outputs {
  std::vector<double> out;           // T * HV * V
  std::vector<double> final_state;   // N * HV * K * V (every sequence, written or not)
  std::vector<double> checkpoints;   // rows * HV * K * V
  std::vector<double> intermediate;  // N * slots * HV * K * V
};

template <typename Real>
class Recurrence {
 public:
  Recurrence(const Call& c, const Args& a, Float64Outputs* f64)
      : c_(c),
        a_(a),
        rd_(c, a),
        f64_(f64),
        S_(static_cast<size_t>(c.K * c.V)),
        q_(static_cast<size_t>(c.K)),
        k_(static_cast<size_t>(c.K)),
        v_(static_cast<size_t>(c.V)),
        u_(static_cast<size_t>(c.V)) {}

  void run_item(int64_t n, int64_t hv) {
    const int64_t K = c_.K, V = c_.V;
    load_state(initial_state_ref(c_, a_, n, hv), K, V, S_.data());
    const int64_t h = rd_.qk_head(hv);
    const int64_t start = c_.seq_start[n], end = c_.seq_start[n + 1];
    for (int64_t t = start; t < end; ++t) {
      Real g, beta;
      rd_.gate(t, hv, &g, &beta);
      rd_.qk(t, h, q_.data(), k_.data());
      rd_.v(t, hv, v_.data());
      const Real decay = std::exp(g);
      for (int64_t j = 0; j < V; ++j) u_[j] = 0;
      for (int64_t i = 0; i < K; ++i) {
        Real* row = &S_[i * V];
        for (int64_t j = 0; j < V; ++j) {
          row[j] *= decay;
          u_[j] += row[j] * k_[i];
        }
      }
      for (int64_t j = 0; j < V; ++j) u_[j] = beta * (v_[j] - u_[j]);
      for (int64_t j = 0; j < V; ++j) v_[j] = 0;  // reused as o_t
      for (int64_t i = 0; i < K; ++i) {
        Real* row = &S_[i * V];
        for (int64_t j = 0; j < V; ++j) {
          row[j] += k_[i] * u_[j];
          v_[j] += row[j] * q_[i];
        }
      }
      const int64_t o_off = offset3(a_.out, t, hv, 0);
      for (int64_t j = 0; j < V; ++j)
        store_float(a_.out.data, a_.out.dtype, o_off + j, static_cast<float>(v_[j]));
      if (f64_) {
        double* o = &f64_->out[static_cast<size_t>((t * c_.HV + hv) * V)];
        for (int64_t j = 0; j < V; ++j) o[j] = static_cast<double>(v_[j]);
      }
      const int64_t done = t + 1 - start;
      if (a_.checkpoint_every > 0 && done % a_.checkpoint_every == 0) {
        const int64_t row = c_.ckpt_start[n] + done / a_.checkpoint_every - 1;
        store_state(state_ref(a_.checkpoints, a_.state_layout, row, hv), K, V, S_.data());
        if (f64_) copy64(&f64_->checkpoints[static_cast<size_t>((row * c_.HV + hv) * K * V)]);
      }
      if (a_.intermediate_states.defined()) {
        store_state(state_ref(a_.intermediate_states, a_.state_layout, n, hv, done - 1), K, V, S_.data());
        if (f64_)
          copy64(&f64_->intermediate[static_cast<size_t>(
              ((n * c_.intermediate_slots + done - 1) * c_.HV + hv) * K * V)]);
      }
    }
    store_state(final_state_ref(c_, a_, n, hv), K, V, S_.data());
    if (f64_) copy64(&f64_->final_state[static_cast<size_t>((n * c_.HV + hv) * K * V)]);
  }

 private:
  void copy64(double* dst) const {
    for (size_t i = 0; i < S_.size(); ++i) dst[i] = static_cast<double>(S_[i]);
  }

  const Call& c_;
  const Args& a_;
  TokenReader rd_;
  Float64Outputs* f64_;
  std::vector<Real> S_, q_, k_, v_, u_;
};

}  // namespace gdn::cpu
