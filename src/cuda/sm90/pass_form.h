// The forms of the sm90 state pass and the rule that picks one: host code
// without CUDA headers (state_pass.cu defines it; the tests call it too).
#pragma once

#include <cstdint>

namespace gdn::cuda::sm90 {

// Where a chunk's Au, L and factors come from. kTwoKernel: the prep kernel
// writes all three to the workspace and the pass copies them in. kFused: a
// prep warpgroup of the pass forms them in the CTA (no prep kernel runs
// before it). kSplitL: the prep kernel writes Au and the factors but s_q
// (it reads k and the gates only), the pass's prep warpgroup forms L and
// s_q from the slot's q and k, so neither L nor a second read of q crosses
// memory.
enum class PassForm { kTwoKernel, kFused, kSplitL };

// The form for n sequences of hv value heads, tiles_per_item column tiles
// each, split into `segments`, on a device of `sms` multiprocessors;
// one_chunk: every sequence is at most one chunk long; long_tail: one
// sequence outlasts the others by far (state_pass.cu says when and why).
// GDN_SM90_FUSED=0, 1 or 2 forces it.
PassForm pass_form_for_shape(int64_t n, int64_t hv, int64_t tiles_per_item, int segments, int sms,
                             bool one_chunk, bool long_tail);

// GDN_SM90_PFIRST=1: the two-kernel pass over whole sequences (and the final
// pass of a split) issues P before R (state_pass.cu, kPFirst). A candidate
// not yet timed on a GPU (docs/design.md), so not the default.
bool p_first_requested();

// GDN_SM90_LOCAL_SKIP=1: the two-kernel local pass of a split skips the
// copies of q and L, which it does not read (no bit changes). A candidate
// not yet timed on a GPU (docs/design.md), so not the default.
bool local_skip_requested();

// GDN_SM90_OVERLAP=1: the two-kernel pass over whole sequences runs beside
// the prep (prefill_prep_overlap_kernel on the SMs it leaves idle) instead
// of after it, where its CTAs leave at least half the SMs idle. A candidate
// not yet timed on a GPU (docs/design.md), so not the default.
bool overlap_requested();

// The overlapped prep's CTAs for a pass of that shape when it is asked for
// (the SMs the state pass's CTAs leave, in the pairing the launch picks),
// or 0 where it does not apply: a split, another form, P first, or state
// CTAs past half the SMs.
int overlap_prep_ctas_for_shape(int64_t n, int64_t hv, int tiles_per_item, int segments, PassForm form,
                                int sms, bool long_tail);

// GDN_SM90_PERSIST=1: the two-kernel and kSplitL passes over whole sequences
// run one CTA an SM taking items from a ticket counter where the items
// outnumber the SMs (state_pass.cu, kPersist). A candidate not yet timed on
// a GPU as built (docs/design.md), so not the default.
bool persist_requested();

// Whether a pass of n sequences of hv value heads, tiles_per_item column
// tiles each, in `segments` and `form`, runs persistent when that is asked
// for: whole sequences, a form with a prep kernel before it (which zeroes
// the ticket counter), the P-first build not asked for (it has no
// persistent one), and more CTAs, in the pairing of tiles the launch
// picks, than the device's `sms` multiprocessors.
bool persistent_shape(int64_t n, int64_t hv, int tiles_per_item, int segments, PassForm form, int sms,
                      bool long_tail);

}  // namespace gdn::cuda::sm90
