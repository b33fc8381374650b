// gdn verify: the correctness matrix on one backend.
#include <cstdio>
#include <iostream>
#include <string>

#include "gdn/commands.h"
#include "testing/harness.h"

namespace gdn::cli {

int cmd_verify(int argc, char** argv) {
  Flags flags(argc, argv, {"backend", "threads", "filter"}, {});
  if (flags.help()) {
    std::cout << "usage: gdn verify --backend B [--filter TEXT] [--threads N]\n\n"
                 "Runs the correctness matrix (packed lengths 1..1000, GVA 1/2/4, K = V = 64, 128, 96,\n"
                 "both layouts, pools with padding, bf16 state, fused and adversarial gates, decode,\n"
                 "verify, checkpoints) on backend B against the float64 reference, and ends with\n"
                 "'N passed, M failed'. Exit 1 when any case fails.\n"
                 "  --filter TEXT  only cases whose name contains TEXT\n";
    return kExitOk;
  }
  if (!flags.ok()) return usage_error("verify", flags.error());
  std::string err;
  Backend backend;
  if (!backend_flag(flags, &backend, &err)) return usage_error("verify", err);
  int64_t threads = 0;
  if (!flags.get_int("threads", 0, &threads, &err)) return usage_error("verify", err);
  const std::string filter = flags.get("filter");
  int passed = 0, failed = 0;
  for (const testing::Case& c : testing::correctness_matrix()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    const testing::CaseResult r = testing::run_case(c, backend, static_cast<int>(threads));
    std::printf("%s  %-62s out %s", r.passed ? "PASS" : "FAIL", c.name.c_str(),
                testing::describe(r.out).c_str());
    if (r.state.count) std::printf("; state %s", testing::describe(r.state).c_str());
    if (r.checkpoints.count) std::printf("; checkpoints %s", testing::describe(r.checkpoints).c_str());
    if (r.intermediate.count) std::printf("; intermediate %s", testing::describe(r.intermediate).c_str());
    if (!r.passed) std::printf("\n      %s", r.failure.c_str());
    std::printf("\n");
    std::fflush(stdout);
    (r.passed ? passed : failed)++;
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? kExitOk : kExitFail;
}

}  // namespace gdn::cli
