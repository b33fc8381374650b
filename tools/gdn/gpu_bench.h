// GPU timing for gdn bench: CUDA events after warm-up, plain calls and
// CUDA-graph replay, and the device's copy and matrix-product ceilings.
#pragma once

#include <string>
#include <vector>

#include "gdn/cost.h"
#include "gdn/gdn.h"

namespace gdn::cli {

struct GpuTiming {
  double ms_eager = 0.0;  // median end-to-end wall time of a plain call (launch to completion)
  double ms_graph = 0.0;  // median GPU time per call, replaying a captured graph
  double us_host = 0.0;   // median host time of a plain call until it returns (stream idle before)
  double us_check = 0.0;  // median time of choose_backend() on the same arguments: validation and routing
};

// Times `op` over `sets` (copies of the inputs; rotating through them keeps
// the L2 cache from holding the inputs between calls).
Status time_on_gpu(Op op, const std::vector<Args*>& sets, int reps, GpuTiming* out);

// Copy bandwidth (device-to-device memcpy of 1 GiB, bytes read + written)
// and bf16 matrix-product rate (cuBLAS, 8192^3, random data).
Status measure_gpu_ceilings(Ceilings* out);

std::string gpu_name(int ordinal);
size_t gpu_l2_bytes(int ordinal);

}  // namespace gdn::cli
