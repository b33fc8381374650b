// Launchers of the portable prefill's kernels (instantiated for the io
// dtypes bf16, fp16, fp32 and K = V in {64, 128}).
#pragma once

#include <cuda_runtime.h>

#include "cuda/sm80/params.h"

namespace gdn::cuda {

// au_only (bf16, sm90 tiles; the sm90 pass's kSplitL form): only Au and the
// factors but s_q, from k and the gates (no read of q, no L).
template <typename T, int K, int V>
Status launch_prefill_prep(const PrefillParams& p, cudaStream_t stream, bool au_only = false);

// The overlapped prep (bf16, sm90 tiles with L; p.ready set and zeroed):
// `ctas` CTAs, one an SM, whose warpgroups take the chunks' prep units from
// a ticket counter and mark each (chunk, value head) ready, so that the sm90
// state pass, launched after it on the other SMs, starts on a chunk as soon
// as its mark is set (prefill_prep.cu).
template <typename T, int K, int V>
Status launch_prefill_prep_overlap(const PrefillParams& p, int ctas, cudaStream_t stream);

// The state pass for VT state columns per CTA (16 or 32), with p.stages
// ring slots; prefill_state_smem gives the shared memory that takes.
template <typename T, int K, int V, int VT>
Status launch_prefill_state(const PrefillParams& p, cudaStream_t stream);
template <typename T, int K, int V, int VT>
size_t prefill_state_smem(int stages);
// CTAs per SM the kernel's register budget allows (its launch bounds).
template <typename T, int K, int V, int VT>
int prefill_state_min_blocks();

// The state pass for bf16 io with one warp per 16 state columns
// (prefill_columns.cu): its shared memory for p.stages ring slots, its CTAs
// for `items` (sequence, value head) pairs, and its launch. Two CTAs fit an
// SM by registers.
template <int K, int V>
size_t prefill_columns_smem(int stages);
template <int K, int V>
int64_t prefill_columns_ctas(int64_t items);
template <int K, int V>
Status launch_prefill_columns(const PrefillParams& p, cudaStream_t stream);

// The combine between the local and the final pass over segments
// (prefill_segments.cu), on a device whose blocks may opt in to smem_optin
// bytes of shared memory.
template <int K, int V>
Status launch_combine_segments(const PrefillParams& p, size_t smem_optin, cudaStream_t stream);

}  // namespace gdn::cuda
