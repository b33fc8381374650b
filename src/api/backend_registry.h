// The one place that knows every compiled backend's entry points.
#pragma once

#include <cstddef>

#include "common/call.h"
#include "gdn/gdn.h"

namespace gdn {

Status run_backend(Backend backend, const Call& call, const Args& args);
Status run_commit_backend(Backend backend, const CommitCall& call, const CommitArgs& args);
size_t backend_workspace_size(Backend backend, const Call& call, const Args& args);
// The device-side check result a GPU prefill left in args.workspace (waits
// for args.stream); Ok for the host backends.
Status backend_prefill_device_status(Backend backend, const Call& call, const Args& args);

}  // namespace gdn
