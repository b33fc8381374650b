// Argument validation (DESIGN section 6): every rule is checked before a
// backend runs, and a rejection names the argument and the rule.
#pragma once

#include "common/call.h"
#include "gdn/gdn.h"

namespace gdn {

// Checks `args` for `op` and fills `call`. Nothing is written to any tensor.
Status validate(Op op, const Args& args, Call* call);
// The same for commit_states.
Status validate_commit(const CommitArgs& args, CommitCall* call);

}  // namespace gdn
