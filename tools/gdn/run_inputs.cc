#include "gdn/commands.h"

namespace gdn::cli {
int run_with_inputs(const Flags& flags) {
  (void)flags;
  return usage_error("run", "--inputs: not built yet");
}
}  // namespace gdn::cli
