// Every rule of DESIGN section 6: a rejected call names the argument and the
// rule, and leaves out and every state buffer byte-for-byte unchanged.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gdn/gdn.h"
#include "gdn/gdn_c.h"
#include "support/scoped_env.h"
#include "testing/harness.h"

namespace gdn::testing {
namespace {

std::vector<uint8_t> snapshot(const Tensor& t) {
  if (!t.defined() || t.data == nullptr) return {};
  const auto* p = static_cast<const uint8_t*>(t.data);
  return {p, p + t.numel() * static_cast<int64_t>(dtype_size(t.dtype))};
}

struct Rule {
  const char* name;
  Op op;
  bool pool;
  std::function<void(Args&)> mutate;
  const char* expect;  // substring of the message
  StatusCode code = StatusCode::kInvalidArgument;
};

Case base_case(Op op, bool pool) {
  Case c;
  c.op = op;
  c.seq_lens = op == Op::kPrefill ? std::vector<int64_t>{5, 70, 3} : std::vector<int64_t>{3, 4, 2};
  c.H = 2, c.HV = 4, c.K = 16, c.V = 32;
  c.pool = pool;
  c.intermediate = op == Op::kVerify;
  return c;
}

// A view into the middle of `base`'s buffer, shifted by one byte.
Tensor misaligned(Tensor t) {
  t.data = static_cast<char*>(t.data) + 1;
  return t;
}

const std::vector<Rule>& rules() {
  static const std::vector<Rule> r = {
      {"q rank", Op::kPrefill, false,
       [](Args& a) {
         a.q.rank = 4;
         a.q.shape[3] = a.q.stride[3] = 1;
       },
       "q: must have rank 3"},
      {"k shape", Op::kPrefill, false, [](Args& a) { a.k.shape[2] = 8; }, "k: shape must be [78, 2, 16]"},
      {"v tokens", Op::kPrefill, false, [](Args& a) { a.v.shape[0] = 77; }, "v: has 77 tokens"},
      {"hv multiple of h", Op::kPrefill, false, [](Args& a) { a.q.shape[1] = a.k.shape[1] = 3; },
       "must be a multiple of q/k heads H (3)"},
      {"k dtype", Op::kPrefill, false, [](Args& a) { a.k.dtype = DType::kF32; }, "k: dtype must equal q's"},
      {"g dtype", Op::kPrefill, false, [](Args& a) { a.g.dtype = DType::kBF16; }, "g: dtype must be fp32"},
      {"beta missing", Op::kPrefill, false, [](Args& a) { a.beta = Tensor{}; }, "beta: required"},
      {"fused with g", Op::kPrefill, false, [](Args& a) { a.gate_mode = GateMode::kFused; },
       "g, beta: not with gate_mode kFused"},
      {"cu_seqlens decreasing", Op::kPrefill, false,
       [](Args& a) { static_cast<int32_t*>(a.cu_seqlens.data)[1] = 76; },
       "cu_seqlens: must be non-decreasing"},
      {"cu_seqlens end", Op::kPrefill, false,
       [](Args& a) { static_cast<int32_t*>(a.cu_seqlens.data)[3] = 77; }, "cu_seqlens: must end at T = 78"},
      {"cu_seqlens start", Op::kPrefill, false,
       [](Args& a) { static_cast<int32_t*>(a.cu_seqlens.data)[0] = 1; }, "cu_seqlens: must start at 0"},
      {"cu_seqlens missing", Op::kPrefill, false, [](Args& a) { a.cu_seqlens = Tensor{}; },
       "cu_seqlens: required by prefill"},
      {"cu_seqlens dtype", Op::kPrefill, false, [](Args& a) { a.cu_seqlens.dtype = DType::kF32; },
       "cu_seqlens: dtype must be int32 or int64"},
      {"inner stride", Op::kPrefill, false, [](Args& a) { a.out.stride[2] = 2; },
       "out: the last dimension must be contiguous"},
      {"negative stride", Op::kPrefill, false, [](Args& a) { a.q.stride[0] = -1; },
       "q: stride 0 is -1; strides must be non-negative"},
      {"misaligned", Op::kPrefill, false, [](Args& a) { a.g = misaligned(a.g); }, "g: data is not aligned"},
      {"null data", Op::kPrefill, false, [](Args& a) { a.v.data = nullptr; }, "v: data is null"},
      {"unknown dtype", Op::kPrefill, false, [](Args& a) { a.beta.dtype = static_cast<DType>(42); },
       "beta: dtype is not set"},
      {"huge extent", Op::kPrefill, false, [](Args& a) { a.q.shape[0] = int64_t{1} << 50; },
       "q: dimension 0 has extent"},
      {"out overlaps q", Op::kPrefill, false, [](Args& a) { a.out.data = a.q.data; },
       "out: overlaps the memory of q"},
      {"out self overlap", Op::kPrefill, false, [](Args& a) { a.out.stride[0] = 1; },
       "out: strides make elements overlap"},
      {"final overlaps out", Op::kPrefill, false, [](Args& a) { a.final_state.data = a.out.data; },
       "overlaps the memory of"},
      {"state shape", Op::kPrefill, false, [](Args& a) { a.initial_state.shape[2] = 15; },
       "initial_state: shape must be"},
      {"state dtype", Op::kPrefill, false, [](Args& a) { a.final_state.dtype = DType::kF16; },
       "final_state: state dtype must be fp32 or bf16"},
      {"final missing", Op::kPrefill, false, [](Args& a) { a.final_state = Tensor{}; },
       "final_state: required when write_final_state is set"},
      {"checkpoint every", Op::kPrefill, false,
       [](Args& a) {
         a.checkpoint_every = 32;
         a.checkpoints = a.final_state;
       },
       "checkpoint_every: must be a positive multiple of 64"},
      {"checkpoint rows", Op::kPrefill, false,
       [](Args& a) {
         a.checkpoint_every = 64;
         a.checkpoints = a.final_state;
         a.checkpoints.shape[0] = 0;
         a.final_state = Tensor{};
         a.write_final_state = false;
       },
       "checkpoints: shape must be"},
      {"scale", Op::kPrefill, false, [](Args& a) { a.scale = std::numeric_limits<float>::quiet_NaN(); },
       "scale: must be finite"},
      {"gate mode", Op::kPrefill, false, [](Args& a) { a.gate_mode = static_cast<GateMode>(7); },
       "gate_mode: unknown value"},
      {"intermediate on prefill", Op::kPrefill, false, [](Args& a) { a.intermediate_states = a.final_state; },
       "intermediate_states: only verify"},
      {"strict backend", Op::kPrefill, false,
       [](Args& a) {
         a.backend = Backend::kCuda;
         a.strict = true;
       },
       "backend cuda cannot run this prefill (strict)", StatusCode::kUnsupported},
      {"pool index range", Op::kPrefill, true,
       [](Args& a) { static_cast<int32_t*>(a.state_indices.data)[0] = 6; },
       "state_indices: entry 0 is 6 but the pool has 6 rows"},
      {"pool duplicate", Op::kPrefill, true,
       [](Args& a) {
         auto* idx = static_cast<int32_t*>(a.state_indices.data);
         idx[1] = idx[0];
       },
       "appears twice"},
      {"pool duplicate, first and last", Op::kDecode, true,
       [](Args& a) {
         auto* idx = static_cast<int32_t*>(a.state_indices.data);
         idx[0] = idx[a.state_indices.shape[0] - 1] = 5;
       },
       "state_indices: row 5 appears twice"},
      {"pool with final_state", Op::kPrefill, true, [](Args& a) { a.final_state = a.initial_state; },
       "final_state: not with state_indices"},
      {"pool overlaps v", Op::kPrefill, true, [](Args& a) { a.initial_state.data = a.v.data; },
       "overlaps the memory of"},
      {"decode with cu_seqlens", Op::kDecode, true, [](Args& a) { a.cu_seqlens = a.state_indices; },
       "cu_seqlens: not used by decode"},
      {"verify too long", Op::kVerify, true, [](Args& a) { static_cast<int32_t*>(a.cu_seqlens.data)[1] = 0; },
       "verify takes at most 16 tokens per sequence"},
      // Found by the fuzzer: extents whose product overflows int64 (with
      // broadcast strides the span check alone passes them).
      {"element count overflow", Op::kPrefill, false,
       [](Args& a) {
         a.k.rank = 5;
         for (int i = 0; i < 5; ++i) a.k.shape[i] = int64_t{1} << 40;
         a.k.stride[0] = 6, a.k.stride[1] = 2, a.k.stride[2] = 1, a.k.stride[3] = 0, a.k.stride[4] = 1;
       },
       "k: has more than 2^56 elements"},
      // Found by the fuzzer: a pool written in place whose rows alias.
      {"pool rows alias", Op::kDecode, true, [](Args& a) { a.initial_state.stride[0] = 0; },
       "initial_state: strides make elements overlap"},
      {"verify slots", Op::kVerify, true, [](Args& a) { a.intermediate_states.shape[1] = 3; },
       "intermediate_states: shape must be [N, L, HV, K, V] with N = 3, L >= 4"},
  };
  return r;
}

class Validation : public ::testing::TestWithParam<size_t> {};

TEST_P(Validation, RejectsAndWritesNothing) {
  const Rule& rule = rules()[GetParam()];
  Case c = base_case(rule.op, rule.pool);
  if (std::string(rule.name) == "verify too long") c.seq_lens = {3, 14, 2};  // cu = 0, 3, 17, 19
  Workload w(c);
  Args& a = w.args();
  a.backend = Backend::kCpu;
  const Args good = a;
  // The unmodified call is valid (so the rule is what rejects it).
  const Status good_status = run(rule.op, good);
  ASSERT_TRUE(good_status.ok()) << good_status.message();

  const std::vector<uint8_t> out0 = snapshot(good.out), final0 = snapshot(good.final_state),
                             pool0 = snapshot(good.initial_state),
                             inter0 = snapshot(good.intermediate_states);
  Args bad = a;
  rule.mutate(bad);
  const Status s = run(rule.op, bad);
  EXPECT_EQ(s.code(), rule.code) << s.message();
  EXPECT_NE(s.message().find(rule.expect), std::string::npos)
      << "message: " << s.message() << "\nexpected to contain: " << rule.expect;
  EXPECT_EQ(out0, snapshot(good.out)) << "out changed";
  EXPECT_EQ(final0, snapshot(good.final_state)) << "final_state changed";
  EXPECT_EQ(pool0, snapshot(good.initial_state)) << "state pool changed";
  EXPECT_EQ(inter0, snapshot(good.intermediate_states)) << "intermediate_states changed";
}

INSTANTIATE_TEST_SUITE_P(Rules, Validation, ::testing::Range<size_t>(0, rules().size()),
                         [](const ::testing::TestParamInfo<size_t>& param_info) {
                           std::string s;
                           for (char ch : std::string(rules()[param_info.param].name))
                             s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

TEST(Validation, EnvironmentOverrideMustNameABackend) {
  Workload w(base_case(Op::kPrefill, false));
  const Status s = [&] {
    const ScopedEnv env("GDN_PREFILL_BACKEND", "fastest");
    return prefill(w.args());
  }();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("GDN_PREFILL_BACKEND: unknown backend 'fastest'"), std::string::npos)
      << s.message();
}

TEST(Validation, CAbiReportsTheMessage) {
  gdn_args_t args;
  gdn_args_init(&args);
  EXPECT_EQ(gdn_prefill(&args), GDN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gdn_last_error()).find("q: required"), std::string::npos) << gdn_last_error();
  EXPECT_EQ(gdn_prefill(nullptr), GDN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gdn_last_error()).find("args: null"), std::string::npos);
}

// On a CPU backend a prefill's checks fail the call itself, so its device
// status is Ok; arguments that would not validate are still named.
TEST(Validation, PrefillDeviceStatusOfAHostPrefillIsOk) {
  Workload w(base_case(Op::kPrefill, false));
  ASSERT_TRUE(prefill(w.args()).ok());
  const Status s = prefill_device_status(w.args());
  EXPECT_TRUE(s.ok()) << s.message();
  Args bad = w.args();
  bad.q = Tensor{};
  const Status rejected = prefill_device_status(bad);
  EXPECT_EQ(rejected.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rejected.message().find("q: required"), std::string::npos) << rejected.message();
  gdn_args_t args;
  gdn_args_init(&args);
  EXPECT_EQ(gdn_prefill_device_status(&args), GDN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gdn_last_error()).find("q: required"), std::string::npos) << gdn_last_error();
}

}  // namespace
}  // namespace gdn::testing
