// The float64 reference backend: the token recurrence, slow on purpose.
#include <algorithm>
#include <vector>

#include "cpu/backends.h"
#include "cpu/parallel.h"

namespace gdn::cpu {

std::vector<WorkItem> work_items_longest_first(const Call& c) {
  std::vector<WorkItem> items;
  items.reserve(static_cast<size_t>(c.N * c.HV));
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t hv = 0; hv < c.HV; ++hv) items.push_back({n, hv});
  std::stable_sort(items.begin(), items.end(), [&](const WorkItem& x, const WorkItem& y) {
    return c.seq_start[x.n + 1] - c.seq_start[x.n] > c.seq_start[y.n + 1] - c.seq_start[y.n];
  });
  return items;
}

Status run_reference(const Call& c, const Args& a, Float64Outputs* f64) {
  if (f64) {
    const int64_t kv = c.K * c.V;
    f64->out.assign(static_cast<size_t>(c.T * c.HV * c.V), 0.0);
    f64->final_state.assign(static_cast<size_t>(c.N * c.HV * kv), 0.0);
    f64->checkpoints.assign(a.checkpoints.defined() ? static_cast<size_t>(c.ckpt_start[c.N] * c.HV * kv) : 0,
                            0.0);
    f64->intermediate.assign(static_cast<size_t>(c.N * c.intermediate_slots * c.HV * kv), 0.0);
  }
  const std::vector<WorkItem> items = work_items_longest_first(c);
  const int threads = a.num_threads > 0 ? std::min(a.num_threads, hardware_threads()) : hardware_threads();
  std::vector<Recurrence<double>> workers;
  for (int w = 0; w < threads; ++w) workers.emplace_back(c, a, f64);
  parallel_for(static_cast<int64_t>(items.size()), threads,
               [&](int64_t i, int w) { workers[static_cast<size_t>(w)].run_item(items[i].n, items[i].hv); });
  return Status::Ok();
}

}  // namespace gdn::cpu
