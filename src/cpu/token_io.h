// Reading one token's inputs (with the fused l2norm and gate activation) and
// moving [K, V] states between the caller's tensors and row-major arrays.
// Shared by the float64 reference and the fp32 cpu backend.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/call.h"
#include "common/convert.h"
#include "gdn/gdn.h"

namespace gdn::cpu {

class TokenReader {
 public:
  TokenReader(const Call& call, const Args& args) : c_(call), a_(args) {}

  int64_t qk_head(int64_t hv) const { return hv / (c_.HV / c_.H); }

  // q and k of token t for q/k head h, l2-normalised when asked; q is also
  // multiplied by the scale.
  template <typename Real>
  void qk(int64_t t, int64_t h, Real* q, Real* k) const {
    read_row(a_.q, offset3(a_.q, t, h, 0), c_.K, q);
    read_row(a_.k, offset3(a_.k, t, h, 0), c_.K, k);
    Real q_norm = 1, k_norm = 1;
    if (a_.l2norm_qk) {
      Real sq = 0, sk = 0;
      for (int64_t i = 0; i < c_.K; ++i) {
        sq += q[i] * q[i];
        sk += k[i] * k[i];
      }
      q_norm = Real(1) / std::sqrt(sq + Real(1e-6));
      k_norm = Real(1) / std::sqrt(sk + Real(1e-6));
    }
    const Real qs = q_norm * static_cast<Real>(c_.scale);
    for (int64_t i = 0; i < c_.K; ++i) {
      q[i] *= qs;
      k[i] *= k_norm;
    }
  }

  template <typename Real>
  void v(int64_t t, int64_t hv, Real* out) const {
    read_row(a_.v, offset3(a_.v, t, hv, 0), c_.V, out);
  }

  // Log-space decay g (<= 0) and beta of token t, value head hv.
  template <typename Real>
  void gate(int64_t t, int64_t hv, Real* g, Real* beta) const {
    if (a_.gate_mode == GateMode::kLogSpace) {
      *g = load_float(a_.g.data, a_.g.dtype, offset2(a_.g, t, hv));
      *beta = load_float(a_.beta.data, a_.beta.dtype, offset2(a_.beta, t, hv));
      return;
    }
    const Real x = Real(load_float(a_.a.data, a_.a.dtype, offset2(a_.a, t, hv))) +
                   Real(load_float(a_.dt_bias.data, a_.dt_bias.dtype, hv * a_.dt_bias.stride[0]));
    const Real softplus = x > Real(20) ? x : std::log1p(std::exp(x));
    const Real a_log = load_float(a_.a_log.data, a_.a_log.dtype, hv * a_.a_log.stride[0]);
    *g = -std::exp(a_log) * softplus;
    const Real b = load_float(a_.b.data, a_.b.dtype, offset2(a_.b, t, hv));
    *beta = Real(1) / (Real(1) + std::exp(-b));
  }

 private:
  template <typename Real>
  static void read_row(const Tensor& t, int64_t off, int64_t n, Real* out) {
    const char* base = static_cast<const char*>(t.data);
    switch (t.dtype) {
      case DType::kF32: {
        const float* p = reinterpret_cast<const float*>(base) + off;
        for (int64_t i = 0; i < n; ++i) out[i] = p[i];
        break;
      }
      case DType::kBF16: {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(base) + off;
        for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(p[i]);
        break;
      }
      default: {
        const uint16_t* p = reinterpret_cast<const uint16_t*>(base) + off;
        for (int64_t i = 0; i < n; ++i) out[i] = half_to_float(p[i]);
        break;
      }
    }
  }

  const Call& c_;
  const Args& a_;
};

// Where sequence n's initial state comes from (invalid ref: zero) and where
// its final state goes (invalid ref: nowhere).
inline StateRef initial_state_ref(const Call& c, const Args& a, int64_t n, int64_t hv) {
  const int64_t row = c.state_row[static_cast<size_t>(n)];
  if (!a.initial_state.defined() || row < 0) return {};
  return state_ref(a.initial_state, a.state_layout, row, hv);
}

inline StateRef final_state_ref(const Call& c, const Args& a, int64_t n, int64_t hv) {
  if (!a.write_final_state) return {};
  if (c.pool) {
    const int64_t row = c.state_row[static_cast<size_t>(n)];
    return row < 0 ? StateRef{} : state_ref(a.initial_state, a.state_layout, row, hv);
  }
  return state_ref(a.final_state, a.state_layout, n, hv);
}

// S is row-major [K, V]. States whose rows are contiguous (fp32 or bf16 in
// layout kv, fp32 in layout vk) move without a per-element dtype dispatch;
// anything else takes the general path.
template <typename Real>
void load_state(const StateRef& r, int64_t K, int64_t V, Real* S) {
  if (!r.valid()) {
    for (int64_t i = 0; i < K * V; ++i) S[i] = Real(0);
  } else if (r.v_stride == 1 && r.dtype == DType::kF32) {
    for (int64_t i = 0; i < K; ++i) {
      const float* row = static_cast<const float*>(r.base) + i * r.k_stride;
      for (int64_t j = 0; j < V; ++j) S[i * V + j] = Real(row[j]);
    }
  } else if (r.v_stride == 1 && r.dtype == DType::kBF16) {
    for (int64_t i = 0; i < K; ++i) {
      const uint16_t* row = static_cast<const uint16_t*>(r.base) + i * r.k_stride;
      for (int64_t j = 0; j < V; ++j) S[i * V + j] = Real(bf16_to_float(row[j]));
    }
  } else if (r.k_stride == 1 && r.dtype == DType::kF32) {  // layout vk: rows contiguous in K
    for (int64_t j = 0; j < V; ++j) {
      const float* row = static_cast<const float*>(r.base) + j * r.v_stride;
      for (int64_t i = 0; i < K; ++i) S[i * V + j] = Real(row[i]);
    }
  } else {
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < V; ++j) S[i * V + j] = Real(load_float(r.base, r.dtype, r.at(i, j)));
  }
}

template <typename Real>
void store_state(const StateRef& r, int64_t K, int64_t V, const Real* S) {
  if (!r.valid()) return;
  if (r.v_stride == 1 && r.dtype == DType::kF32) {
    for (int64_t i = 0; i < K; ++i) {
      float* row = static_cast<float*>(r.base) + i * r.k_stride;
      for (int64_t j = 0; j < V; ++j) row[j] = static_cast<float>(S[i * V + j]);
    }
  } else if (r.v_stride == 1 && r.dtype == DType::kBF16) {
    for (int64_t i = 0; i < K; ++i) {
      uint16_t* row = static_cast<uint16_t*>(r.base) + i * r.k_stride;
      for (int64_t j = 0; j < V; ++j) row[j] = float_to_bf16(static_cast<float>(S[i * V + j]));
    }
  } else if (r.k_stride == 1 && r.dtype == DType::kF32) {
    for (int64_t j = 0; j < V; ++j) {
      float* row = static_cast<float*>(r.base) + j * r.v_stride;
      for (int64_t i = 0; i < K; ++i) row[i] = static_cast<float>(S[i * V + j]);
    }
  } else {
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < V; ++j)
        store_float(r.base, r.dtype, r.at(i, j), static_cast<float>(S[i * V + j]));
  }
}

// Work items (sequence, value head), longest sequence first.
struct WorkItem {
  int64_t n, hv;
};
std::vector<WorkItem> work_items_longest_first(const Call& c);

}  // namespace gdn::cpu
