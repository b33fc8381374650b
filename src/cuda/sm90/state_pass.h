// Launchers of the sm90 (H100, H200) state pass (state_pass.cu, compiled for
// sm_90a only), called by the host side of the prefill (sm80/prefill.cu),
// which runs the chunk metadata, the prep kernel, the segment combine and
// the launches' order for both GPU backends.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include "cuda/sm80/params.h"
#include "cuda/sm90/pass_form.h"

namespace gdn::cuda::sm90 {

// The kernel's parameters: the portable prefill's (p.sm90_tiles set: the
// prep kernel wrote Au and L in the tile layout), and bulk-copy tensor maps
// of q, k ([T, H, K]) and v ([T, HV, V]) in boxes of 64 tokens x 64 columns.
struct StateParams {
  CUtensorMap q_map, k_map, v_map;
  PrefillParams p;
  int groups = 1;  // state warpgroups per CTA (column tiles of one item), set by the launcher
  // Set by the launcher: the launch's CTA items (the persistent pass's
  // tickets run to it).
  int64_t items = 0;
  // The two-kernel local pass skips the copies of q and L, which it does not
  // read (GDN_SM90_LOCAL_SKIP=1; a candidate not yet timed on a GPU).
  bool local_skip = false;
};

// Encodes the tensor maps of p's q, k and v (bf16 io).
Status encode_token_maps(const PrefillParams& p, int64_t K, int64_t V, StateParams* fp);

// The form a prefill of p's shape (p.segments set) runs (pass_form.h).
template <int K>
PassForm pass_form_for(const PrefillParams& p, int sms, bool one_chunk, bool long_tail);

// Whether the whole-sequence pass of p in `form` runs persistent (state_pass.cu,
// kPersist): then the caller points p.tickets at the workspace's ticket
// counter before the prep kernel launches (it zeroes the word).
template <int K>
bool persistent_pass(const PrefillParams& p, PassForm form, int sms, bool long_tail);

// The overlapped prep's CTAs for p in `form` (pass_form.h), 0 where it does
// not run; also 0 unless the call's offsets are its parameters and were
// checked on the host. Where it runs, the caller points p.ready at the
// workspace's marks, zeroes them and launches that prep before the pass.
template <int K>
int overlap_prep_ctas(const PrefillParams& p, PassForm form, int sms, bool long_tail);

// One launch for fp.p.seg_phase (kSegWhole, kSegLocal, kSegFinal) over every
// (sequence or segment, value head, 64 value columns), on a device of `sms`
// multiprocessors; long_tail: one sequence outlasts the others by far
// (sm80/prefill.cu, long_tail_of).
template <int K>
Status launch_state_sm90(const StateParams& fp, PassForm form, int sms, bool long_tail, cudaStream_t stream);

}  // namespace gdn::cuda::sm90
