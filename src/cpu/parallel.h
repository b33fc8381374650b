// A small persistent thread pool for the CPU backends.
#pragma once

#include <cstdint>
#include <functional>

namespace gdn::cpu {

// Hardware threads available to the CPU backends.
int hardware_threads();

// Runs body(i, worker) for i in [0, n) on up to `threads` workers (0 = all),
// handing out indices in order: sort work longest-first for balance. Worker
// ids are in [0, threads). Returns when every call has finished.
void parallel_for(int64_t n, int threads, const std::function<void(int64_t i, int worker)>& body);

}  // namespace gdn::cpu
