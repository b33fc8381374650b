// The correctness matrix on the cpu backend against the float64 reference.
#include <gtest/gtest.h>

#include "testing/harness.h"

namespace gdn::testing {
namespace {

class CpuMatrix : public ::testing::TestWithParam<Case> {};

TEST_P(CpuMatrix, MatchesReference) {
  const Case& c = GetParam();
  const CaseResult r = run_case(c, Backend::kCpu);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  RecordProperty("out_rel_rms", std::to_string(r.out.rel_rms));
  RecordProperty("state_rel_rms", std::to_string(r.state.rel_rms));
  std::cout << "  out: " << describe(r.out) << "\n  state: " << describe(r.state);
  if (r.checkpoints.count) std::cout << "\n  checkpoints: " << describe(r.checkpoints);
  if (r.intermediate.count) std::cout << "\n  intermediate: " << describe(r.intermediate);
  std::cout << std::endl;
  EXPECT_TRUE(r.all_written);
  EXPECT_TRUE(r.untouched);
  EXPECT_EQ(r.out.non_finite, 0);
  EXPECT_EQ(r.state.non_finite, 0);
  EXPECT_LE(r.out.rel_rms, c.tol_o);
  if (r.state.count) {
    EXPECT_LE(r.state.rel_rms, c.tol_state);
  }
  if (r.checkpoints.count) {
    EXPECT_LE(r.checkpoints.rel_rms, c.tol_state);
  }
  if (r.intermediate.count) {
    EXPECT_LE(r.intermediate.rel_rms, c.tol_state);
  }
  EXPECT_TRUE(r.passed) << r.failure;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return test_name(info.param, info.index);
}

INSTANTIATE_TEST_SUITE_P(Matrix, CpuMatrix, ::testing::ValuesIn(correctness_matrix()), case_name);

// The harness must be able to fail: a tolerance below fp32 rounding on a
// bf16 case is missed.
TEST(Harness, CanFail) {
  Case c = correctness_matrix()[9];
  c.tol_o = 1e-9;
  const CaseResult r = run_case(c, Backend::kCpu);
  ASSERT_TRUE(r.status.ok());
  EXPECT_FALSE(r.passed);
}

}  // namespace
}  // namespace gdn::testing
