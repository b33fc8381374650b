// gdn: the command-line front end (run, bench, info, verify).
#include <cstring>
#include <iostream>
#include <string>

#include "gdn/commands.h"

namespace {

constexpr const char* kUsage =
    "usage: gdn <command> [flags]\n"
    "\n"
    "commands:\n"
    "  run      run a prefill on built-in (or your safetensors) inputs, verified against the\n"
    "           float64 reference, on the best backend present\n"
    "  bench    time the rows of a benchmark suite (bench/suite.json)\n"
    "  info     devices, backends built, and the routing table for this machine\n"
    "  verify   run the correctness matrix on a backend\n"
    "\n"
    "gdn <command> --help describes each command's flags.\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") ||
      !std::strcmp(argv[1], "help")) {
    std::cout << kUsage;
    return argc < 2 ? gdn::cli::kExitUsage : gdn::cli::kExitOk;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::cout << "gdn " << gdn::version() << "\n";
    return gdn::cli::kExitOk;
  }
  const std::string cmd = argv[1];
  if (cmd == "run") return gdn::cli::cmd_run(argc - 2, argv + 2);
  if (cmd == "bench") return gdn::cli::cmd_bench(argc - 2, argv + 2);
  if (cmd == "info") return gdn::cli::cmd_info(argc - 2, argv + 2);
  if (cmd == "verify") return gdn::cli::cmd_verify(argc - 2, argv + 2);
  std::cerr << "gdn: unknown command '" << cmd << "'\n\n" << kUsage;
  return gdn::cli::kExitUsage;
}
