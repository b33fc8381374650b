// The gdn CLI's subcommands. Each takes the arguments after its name and
// returns the process exit code: 0 success, 1 a check failed (FAIL), 2 bad
// arguments or a library error.
#pragma once

#include <string>

#include "gdn/flags.h"
#include "gdn/gdn.h"

namespace gdn::cli {

constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

int cmd_run(int argc, char** argv);
int cmd_bench(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_verify(int argc, char** argv);

// `gdn run --inputs FILE`: the main job on a user's safetensors file.
int run_with_inputs(const Flags& flags);

// Prints "gdn <cmd>: <message>" to stderr and returns kExitUsage.
int usage_error(const char* cmd, const std::string& message);

// A backend name from --backend (default auto); false with a message.
bool backend_flag(const Flags& flags, Backend* backend, std::string* error);

}  // namespace gdn::cli
