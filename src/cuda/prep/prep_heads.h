// How many value heads one CTA of the prep for the sm90 tiles takes
// (prefill_prep.cu, kShared), and how many prep units a CTA of the
// overlapped prep runs: host code without CUDA headers, so that the tests
// can check the settings they make are the ones the launch reads.
#pragma once

#include <cstdint>

namespace gdn::cuda {

// Value heads of one q/k head a prep CTA takes at most.
constexpr int kMaxPrepHeads = 4;

// Prep units (warpgroups) a CTA of the overlapped prep runs (prefill_prep.cu,
// prefill_prep_overlap_kernel): three, so that each may take 168 registers
// (with four, 128 at most, ptxas spilled 32 bytes at K = 64).
constexpr int kOverlapPrepUnits = 3;

// For `group` value heads per q/k head: 1, unless GDN_PREP_HEADS=n asks for
// n (2 to kMaxPrepHeads) and n divides the group, or GDN_PREP_HEADS=max for
// the most that do. A candidate not yet timed on a GPU (docs/design.md), so
// not the default.
int prep_heads_for_group(int64_t group);

}  // namespace gdn::cuda
