// commit_states on the host: copies exactly the accepted slot of each
// sequence into its pool row and nothing else; verify followed by commit
// equals verify of the accepted prefixes; every validation rule rejects
// with a message and writes nothing; the C ABI mirrors the call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/convert.h"
#include "gdn/gdn.h"
#include "gdn/gdn_c.h"
#include "testing/harness.h"

namespace gdn::testing {
namespace {

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  return {p, p + t.numel() * static_cast<int64_t>(dtype_size(t.dtype))};
}

// Intermediate states [N, L, HV, A, B] and a pool [P, HV, A, B] filled with
// distinct non-zero values, slots and rows as int32 or int64.
struct CommitData {
  int64_t N = 5, L = 4, HV = 3, A = 8, B = 12, P = 9;
  DType state = DType::kF32, index = DType::kI32;
  std::vector<uint64_t> inter, pool, slots, rows;  // 8-byte aligned storage
  std::vector<int64_t> slot_values = {2, -1, 0, 3, 1};
  std::vector<int64_t> row_values = {6, 0, -1, 2, 8};

  CommitData(DType s, DType i) : state(s), index(i) {
    const int64_t mat = HV * A * B;
    inter.assign(static_cast<size_t>(N * L * mat * 4 / 8 + 1), 0);
    pool.assign(static_cast<size_t>(P * mat * 4 / 8 + 1), 0);
    for (int64_t e = 0; e < N * L * mat; ++e) store_float(inter.data(), state, e, 1.0f + 0.001f * float(e));
    for (int64_t e = 0; e < P * mat; ++e) store_float(pool.data(), state, e, -1.0f - 0.001f * float(e));
    slots.assign(static_cast<size_t>(N), 0);
    rows.assign(static_cast<size_t>(N), 0);
    for (int64_t n = 0; n < N; ++n) {
      set_index(slots.data(), n, slot_values[static_cast<size_t>(n)]);
      set_index(rows.data(), n, row_values[static_cast<size_t>(n)]);
    }
  }
  void set_index(void* base, int64_t n, int64_t value) const {
    if (index == DType::kI64)
      static_cast<int64_t*>(base)[n] = value;
    else
      static_cast<int32_t*>(base)[n] = static_cast<int32_t>(value);
  }
  CommitArgs args() {
    CommitArgs a;
    a.intermediate_states = make_tensor(inter.data(), state, {N, L, HV, A, B});
    a.pool = make_tensor(pool.data(), state, {P, HV, A, B});
    a.accepted = make_tensor(slots.data(), index, {N});
    a.state_indices = make_tensor(rows.data(), index, {N});
    a.backend = Backend::kCpu;
    a.strict = true;
    return a;
  }
};

class CommitCopies : public ::testing::TestWithParam<std::pair<DType, DType>> {};

TEST_P(CommitCopies, TheAcceptedSlotAndNothingElse) {
  CommitData d(GetParam().first, GetParam().second);
  const CommitArgs a = d.args();
  const std::vector<uint8_t> inter0 = bytes_of(a.intermediate_states), pool0 = bytes_of(a.pool);
  const Status s = commit_states(a);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(inter0, bytes_of(a.intermediate_states)) << "the source changed";
  const size_t mat = static_cast<size_t>(d.HV * d.A * d.B) * dtype_size(d.state);
  std::vector<uint8_t> expect = pool0;
  for (int64_t n = 0; n < d.N; ++n) {
    const int64_t j = d.slot_values[static_cast<size_t>(n)], row = d.row_values[static_cast<size_t>(n)];
    if (j >= 0 && row >= 0) std::memcpy(&expect[row * mat], &inter0[(n * d.L + j) * mat], mat);
  }
  const std::vector<uint8_t> pool1 = bytes_of(a.pool);
  EXPECT_EQ(expect, pool1);
  // The expectation is not the starting pool: rows 6, 2 and 8 were written.
  EXPECT_NE(pool0, pool1);
  // The reference backend runs the same copy.
  CommitData r(GetParam().first, GetParam().second);
  CommitArgs ra = r.args();
  ra.backend = Backend::kReference;
  ASSERT_TRUE(commit_states(ra).ok());
  EXPECT_EQ(pool1, bytes_of(ra.pool));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CommitCopies,
                         ::testing::Values(std::make_pair(DType::kF32, DType::kI32),
                                           std::make_pair(DType::kBF16, DType::kI64)),
                         [](const ::testing::TestParamInfo<std::pair<DType, DType>>& i) {
                           return std::string(dtype_name(i.param.first)) + "_" + dtype_name(i.param.second);
                         });

TEST(Commit, AfterVerifyEqualsVerifyOfTheAcceptedPrefixes) {
  const int64_t N = 5, L = 6;
  Case c;
  c.op = Op::kVerify;
  c.seq_lens.assign(static_cast<size_t>(N), L);
  c.fixed_len = true;
  c.H = 2, c.HV = 4, c.K = 32, c.V = 48;
  c.io = DType::kF32;
  c.pool = true;  // sequence 2 is padding (negative row)
  c.write_final = false;
  c.intermediate = true;
  c.layout = StateLayout::kVK;
  Workload w(c);
  Args& a = w.args();
  a.backend = Backend::kCpu;
  const std::vector<uint8_t> pool0 = bytes_of(a.initial_state);
  ASSERT_TRUE(verify(a).ok());
  ASSERT_EQ(pool0, bytes_of(a.initial_state)) << "verify with write_final_state clear wrote the pool";

  // Accept 3, 0 (skip), 2, 6 (all) and 1 tokens: slots 2, -1, 1, 5, 0.
  const std::vector<int32_t> accepted = {2, -1, 1, 5, 0};
  CommitArgs ca;
  ca.intermediate_states = a.intermediate_states;
  ca.accepted = make_tensor(const_cast<int32_t*>(accepted.data()), DType::kI32, {N});
  ca.state_indices = a.state_indices;
  ca.pool = a.initial_state;
  ca.backend = Backend::kCpu;
  ASSERT_TRUE(commit_states(ca).ok());
  const std::vector<uint8_t> committed = bytes_of(a.initial_state);
  EXPECT_NE(committed, pool0);

  // The same tokens as 2 N packed sequences: each accepted prefix on its
  // pool row, each rejected tail on no row (it writes nothing).
  std::vector<uint8_t> pool = pool0;
  std::vector<int32_t> cu = {0}, rows;
  const auto* idx = static_cast<const int32_t*>(a.state_indices.data);
  for (int64_t n = 0; n < N; ++n) {
    cu.push_back(static_cast<int32_t>(n * L + accepted[static_cast<size_t>(n)] + 1));
    cu.push_back(static_cast<int32_t>((n + 1) * L));
    rows.push_back(idx[n]);
    rows.push_back(-1);
  }
  std::vector<float> out(static_cast<size_t>(a.out.numel()));
  Args b = a;
  b.tokens_per_seq = 0;
  b.cu_seqlens = make_tensor(cu.data(), DType::kI32, {2 * N + 1});
  b.state_indices = make_tensor(rows.data(), DType::kI32, {2 * N});
  b.initial_state.data = pool.data();
  b.intermediate_states = Tensor{};
  b.write_final_state = true;
  b.out.data = out.data();
  const Status s = verify(b);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(committed, pool);
}

struct CommitRule {
  const char* name;
  std::function<void(CommitArgs&)> mutate;
  const char* expect;
  StatusCode code = StatusCode::kInvalidArgument;
};

const std::vector<CommitRule>& commit_rules() {
  static const std::vector<CommitRule> r = {
      {"inter missing", [](CommitArgs& a) { a.intermediate_states = Tensor{}; },
       "intermediate_states: required"},
      {"pool missing", [](CommitArgs& a) { a.pool = Tensor{}; }, "pool: required"},
      {"accepted missing", [](CommitArgs& a) { a.accepted = Tensor{}; }, "accepted: required"},
      {"inter rank",
       [](CommitArgs& a) {
         a.intermediate_states.rank = 4;
         a.intermediate_states.stride[3] = 1;
       },
       "intermediate_states: must have rank 5"},
      {"inter dtype", [](CommitArgs& a) { a.intermediate_states.dtype = DType::kF16; },
       "intermediate_states: state dtype must be fp32 or bf16"},
      {"pool heads", [](CommitArgs& a) { a.pool.shape[1] = 2; }, "pool: shape must be [P, 3, 8, 12]"},
      {"pool matrix", [](CommitArgs& a) { a.pool.shape[3] = 8; }, "pool: shape must be"},
      {"pool dtype", [](CommitArgs& a) { a.pool.dtype = DType::kBF16; },
       "pool: dtype must equal intermediate_states' (fp32)"},
      {"accepted length", [](CommitArgs& a) { a.accepted.shape[0] = 4; },
       "accepted: shape must be [N] = [5]"},
      {"indices dtype", [](CommitArgs& a) { a.state_indices.dtype = DType::kF32; },
       "state_indices: dtype must be int32 or int64"},
      {"slot range", [](CommitArgs& a) { static_cast<int32_t*>(a.accepted.data)[3] = 4; },
       "accepted: entry 3 is 4 but intermediate_states has 4 slots"},
      {"row range", [](CommitArgs& a) { static_cast<int32_t*>(a.state_indices.data)[1] = 9; },
       "state_indices: entry 1 is 9 but the pool has 9 rows"},
      {"row twice", [](CommitArgs& a) { static_cast<int32_t*>(a.state_indices.data)[4] = 6; },
       "state_indices: row 6 appears twice"},
      // Even where the sequence commits nothing: the rows of one call are unique.
      {"row twice, skipped slot", [](CommitArgs& a) { static_cast<int32_t*>(a.state_indices.data)[1] = 2; },
       "state_indices: row 2 appears twice"},
      {"pool overlaps inter", [](CommitArgs& a) { a.pool.data = a.intermediate_states.data; },
       "pool: overlaps the memory of intermediate_states"},
      {"pool rows alias", [](CommitArgs& a) { a.pool.stride[0] = 0; }, "pool: strides make elements overlap"},
      {"pool null", [](CommitArgs& a) { a.pool.data = nullptr; }, "pool: data is null"},
      {"strict cuda on host data",
       [](CommitArgs& a) {
         a.backend = Backend::kCuda;
         a.strict = true;
       },
       "backend cuda cannot run this commit (strict)", StatusCode::kUnsupported},
      {"unknown backend", [](CommitArgs& a) { a.backend = static_cast<Backend>(11); },
       "backend: unknown value 11"},
  };
  return r;
}

class CommitValidation : public ::testing::TestWithParam<size_t> {};

TEST_P(CommitValidation, RejectsAndWritesNothing) {
  const CommitRule& rule = commit_rules()[GetParam()];
  CommitData good(DType::kF32, DType::kI32);
  {
    CommitData probe(DType::kF32, DType::kI32);  // the unmodified call is valid
    const Status s = commit_states(probe.args());
    ASSERT_TRUE(s.ok()) << s.message();
  }
  CommitArgs a = good.args();
  const std::vector<uint8_t> pool0 = bytes_of(a.pool), inter0 = bytes_of(a.intermediate_states);
  const Tensor pool_view = a.pool;
  rule.mutate(a);
  const Status s = commit_states(a);
  EXPECT_EQ(s.code(), rule.code) << s.message();
  EXPECT_NE(s.message().find(rule.expect), std::string::npos)
      << "message: " << s.message() << "\nexpected to contain: " << rule.expect;
  EXPECT_EQ(pool0, bytes_of(pool_view)) << "the pool changed";
  EXPECT_EQ(inter0,
            std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(good.inter.data()),
                                 reinterpret_cast<const uint8_t*>(good.inter.data()) + inter0.size()));
}

INSTANTIATE_TEST_SUITE_P(Rules, CommitValidation, ::testing::Range<size_t>(0, commit_rules().size()),
                         [](const ::testing::TestParamInfo<size_t>& param_info) {
                           std::string s;
                           for (char ch : std::string(commit_rules()[param_info.param].name))
                             s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

gdn_tensor_t to_c(const Tensor& t) {
  gdn_tensor_t c{};
  c.data = t.data;
  c.dtype = static_cast<int32_t>(t.dtype);
  c.rank = t.rank;
  for (int i = 0; i < kMaxRank; ++i) {
    c.shape[i] = t.shape[i];
    c.stride[i] = t.stride[i];
  }
  return c;
}

TEST(Commit, CAbiMirrorsTheCall) {
  CommitData d(DType::kBF16, DType::kI64), e(DType::kBF16, DType::kI64);
  const CommitArgs a = d.args();
  gdn_commit_args_t c;
  gdn_commit_args_init(&c);
  EXPECT_EQ(c.backend, GDN_BACKEND_AUTO);
  EXPECT_EQ(gdn_commit_states(&c), GDN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gdn_last_error()).find("intermediate_states: required"), std::string::npos)
      << gdn_last_error();
  c.intermediate_states = to_c(a.intermediate_states);
  c.accepted = to_c(a.accepted);
  c.state_indices = to_c(a.state_indices);
  c.pool = to_c(a.pool);
  ASSERT_EQ(gdn_commit_states(&c), GDN_OK) << gdn_last_error();
  EXPECT_STREQ(gdn_last_error(), "");
  ASSERT_TRUE(commit_states(e.args()).ok());
  EXPECT_EQ(bytes_of(e.args().pool), bytes_of(a.pool));
  EXPECT_EQ(gdn_commit_states(nullptr), GDN_INVALID_ARGUMENT);
  EXPECT_NE(std::string(gdn_last_error()).find("args: null"), std::string::npos);
}

}  // namespace
}  // namespace gdn::testing
