// The correctness matrix on the cpu backend against the float64 reference.
#include <gtest/gtest.h>

#include "support/expect_case.h"
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
  expect_case_passes(c, r);
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
