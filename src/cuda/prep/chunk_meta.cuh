// Chunk metadata from cu_seqlens on the device (no host synchronisation):
//   chunk_offset[n] = sum_{m < n} ceil(L_m / 64),   chunk_offset[N] = chunks in all
//   ckpt_offset[n]  = sum_{m < n} floor(L_m / every)
// and the device-side checks of DESIGN section 6 (cu_seqlens non-decreasing from 0
// to T, pool indices below P and, without a host copy, unique, checkpoint rows); a failure sets its kBad*
// bit in *error_flag (written on every call) and every later kernel of the
// call returns without writing; prefill_device_status reads it back.
#pragma once

#include <cuda_runtime.h>

#include "cuda/sm80/params.h"

namespace gdn::cuda {

// One block; `checkpoint_rows` is the checkpoint tensor's row count (0 if none).
void launch_chunk_meta(const PrefillParams& p, int64_t checkpoint_rows, cudaStream_t stream);

}  // namespace gdn::cuda
