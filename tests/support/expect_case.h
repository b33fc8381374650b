// The assertions every backend's correctness-matrix test makes on a case.
#pragma once

#include <gtest/gtest.h>

#include <iostream>

#include "testing/harness.h"

namespace gdn::testing {

inline void print_errors(const CaseResult& r) {
  std::cout << "  out: " << describe(r.out) << "\n  state: " << describe(r.state);
  if (r.checkpoints.count) std::cout << "\n  checkpoints: " << describe(r.checkpoints);
  if (r.intermediate.count) std::cout << "\n  intermediate: " << describe(r.intermediate);
  std::cout << std::endl;
}

// Every output written and finite, nothing else touched, each error within
// the case's bounds (relative RMS; the elementwise bound is in r.passed).
inline void expect_case_passes(const Case& c, const CaseResult& r) {
  print_errors(r);
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

inline std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  return test_name(info.param, info.index);
}

}  // namespace gdn::testing
