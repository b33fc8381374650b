// Runs one small prefill through the C++ API (gdn::prefill) and the C ABI
// (gdn_prefill) of an installed gdn and checks that both succeed and agree.
#include <gdn/gdn.h>
#include <gdn/gdn_c.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#ifndef GDN_CONSUMER_LINKAGE
#define GDN_CONSUMER_LINKAGE "?"
#endif

namespace {

constexpr int64_t kH = 1, kHV = 2, kK = 16, kV = 16;

std::vector<float> zeros(int64_t n) {
  return std::vector<float>(static_cast<size_t>(n));
}

// A deterministic fill in [-1, 1).
void fill(std::vector<float>& x, uint32_t seed) {
  for (float& v : x) {
    seed = seed * 1664525u + 1013904223u;
    v = static_cast<float>(seed >> 8) / 8388608.0f - 1.0f;
  }
}

gdn_tensor_t c_tensor(void* data, gdn_dtype_t dtype, std::initializer_list<int64_t> shape) {
  gdn_tensor_t t{};
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) t.shape[i++] = s;
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::fmax(m, std::fabs(a[i] - b[i]));
  return m;
}

bool all_finite(const std::vector<float>& x) {
  for (float v : x)
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

int main() {
  // Two sequences of 5 and 11 tokens.
  std::vector<int32_t> cu = {0, 5, 16};
  const int64_t T = cu.back(), N = static_cast<int64_t>(cu.size()) - 1;
  std::vector<float> q = zeros(T * kH * kK), k = zeros(T * kH * kK), v = zeros(T * kHV * kV),
                     g = zeros(T * kHV), beta = zeros(T * kHV);
  fill(q, 1);
  fill(k, 2);
  fill(v, 3);
  fill(g, 4);
  fill(beta, 5);
  for (float& x : g) x = -0.5f * std::fabs(x);  // log-space decay <= 0
  for (float& x : beta) x = 0.5f + 0.5f * x;    // in [0, 1)

  // The C++ API.
  std::vector<float> out_cpp = zeros(T * kHV * kV), state_cpp = zeros(N * kHV * kK * kV);
  gdn::Args a;
  a.q = gdn::make_tensor(q.data(), gdn::DType::kF32, {T, kH, kK});
  a.k = gdn::make_tensor(k.data(), gdn::DType::kF32, {T, kH, kK});
  a.v = gdn::make_tensor(v.data(), gdn::DType::kF32, {T, kHV, kV});
  a.g = gdn::make_tensor(g.data(), gdn::DType::kF32, {T, kHV});
  a.beta = gdn::make_tensor(beta.data(), gdn::DType::kF32, {T, kHV});
  a.cu_seqlens = gdn::make_tensor(cu.data(), gdn::DType::kI32, {N + 1});
  a.final_state = gdn::make_tensor(state_cpp.data(), gdn::DType::kF32, {N, kHV, kK, kV});
  a.out = gdn::make_tensor(out_cpp.data(), gdn::DType::kF32, {T, kHV, kV});
  a.l2norm_qk = true;
  a.backend = gdn::Backend::kCpu;
  a.strict = true;
  const gdn::Status s = gdn::prefill(a);
  if (!s.ok()) {
    std::fprintf(stderr, "consumer (%s): gdn::prefill failed: %s\n", GDN_CONSUMER_LINKAGE,
                 s.message().c_str());
    return 1;
  }

  // The C ABI, same data.
  std::vector<float> out_c(out_cpp.size()), state_c(state_cpp.size());
  gdn_args_t c;
  gdn_args_init(&c);
  c.q = c_tensor(q.data(), GDN_F32, {T, kH, kK});
  c.k = c_tensor(k.data(), GDN_F32, {T, kH, kK});
  c.v = c_tensor(v.data(), GDN_F32, {T, kHV, kV});
  c.g = c_tensor(g.data(), GDN_F32, {T, kHV});
  c.beta = c_tensor(beta.data(), GDN_F32, {T, kHV});
  c.cu_seqlens = c_tensor(cu.data(), GDN_I32, {N + 1});
  c.final_state = c_tensor(state_c.data(), GDN_F32, {N, kHV, kK, kV});
  c.out = c_tensor(out_c.data(), GDN_F32, {T, kHV, kV});
  c.l2norm_qk = 1;
  c.backend = GDN_BACKEND_CPU;
  c.strict = 1;
  const gdn_status_t cs = gdn_prefill(&c);
  if (cs != GDN_OK) {
    std::fprintf(stderr, "consumer (%s): gdn_prefill failed (%d): %s\n", GDN_CONSUMER_LINKAGE,
                 static_cast<int>(cs), gdn_last_error());
    return 1;
  }

  const float d_out = max_abs_diff(out_cpp, out_c), d_state = max_abs_diff(state_cpp, state_c);
  if (!all_finite(out_cpp) || !all_finite(state_cpp) || d_out > 1e-5f || d_state > 1e-5f) {
    std::fprintf(stderr, "consumer (%s): the C++ and C results differ (out %g, state %g) or are not finite\n",
                 GDN_CONSUMER_LINKAGE, static_cast<double>(d_out), static_cast<double>(d_state));
    return 1;
  }
  // A rejected call is reported, not fatal.
  c.v.shape[1] = 3;
  if (gdn_prefill(&c) != GDN_INVALID_ARGUMENT || gdn_last_error()[0] == '\0') {
    std::fprintf(stderr, "consumer (%s): an invalid call was not rejected\n", GDN_CONSUMER_LINKAGE);
    return 1;
  }
  std::printf("consumer: ok (%s library, gdn %s)\n", GDN_CONSUMER_LINKAGE, gdn_version());
  return 0;
}
