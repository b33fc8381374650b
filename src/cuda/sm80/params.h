// Launch parameters of the portable (sm_80+) chunked prefill. Built on the
// host from a validated call; passed by value to every kernel.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace gdn::cuda {

constexpr int kChunk = 64;  // tokens per chunk (DESIGN section 2)

// Bits of PrefillParams::error_flag: which device-side check failed.
constexpr int32_t kBadSeqlens = 1;  // cu_seqlens not non-decreasing from 0 to T
constexpr int32_t kBadIndex = 2;    // a state_indices value >= the pool's rows
// More checkpoints than the tensor has rows: the host checks the rows against
// what valid cu_seqlens can need, so this comes only beside kBadSeqlens.
constexpr int32_t kBadCheckpoints = 4;
constexpr int32_t kBadDuplicate = 8;  // two sequences name one pool row (checked without a host copy)

// A call the host validated (host copies of cu_seqlens and, with a pool, of
// state_indices) with at most kInlineSeqs sequences carries its token
// starts, chunk and checkpoint offsets in these parameters instead of
// having chunk_meta write them to the workspace: one launch fewer on the
// call's critical path. So does one sequence without host copies, whose
// only valid cu_seqlens is [0, T]: the prep checks that (and its pool row).
constexpr int kInlineSeqs = 64;
// The state passes run sequences longest first (most chunks first, ties in
// index order) so that a mixed-length batch's long sequences start at once
// and finish with the short ones instead of after them: the grid's item order
// (state_item) goes through a rank -> sequence table, inline_order for inline
// offsets (the host sorts), seq_order in the workspace for chunk_meta calls of
// at most kOrderedSeqs sequences (chunk_meta sorts); larger calls run in index
// order. GDN_CUDA_ORDER=0 keeps index order (tests, measurements). Items are
// independent, so the order changes no result bit.
constexpr int kOrderedSeqs = 2048;

struct PrefillParams : TokenInputs {  // q, k, v and the gates
  int64_t T = 0, N = 0, H = 0, HV = 0;
  int64_t group = 1;  // HV / H: value heads per q/k head
  // Sequences.
  const void* cu_seqlens = nullptr;
  bool cu64 = false;
  // States: initial (pool or dense; data == nullptr: zero), final (dense, or
  // the pool itself), checkpoints.
  StateTensor init, fin, ckpt;
  const void* indices = nullptr;  // pool rows per sequence (nullptr: dense)
  bool idx64 = false;
  int64_t idx_s = 0;
  int64_t pool_rows = 0;
  bool check_unique = false;  // no host copy of indices: chunk_meta checks that rows are unique
  int64_t ckpt_every = 0;
  // Output.
  void* out = nullptr;
  int64_t o_s0 = 0, o_s1 = 0;
  float scale = 1.0f;
  bool l2norm = false;
  // Workspace.
  int64_t max_chunks = 0;           // upper bound on sum_n ceil(L_n / 64)
  int32_t* chunk_offset = nullptr;  // [N + 1] first chunk of sequence n
  int32_t* ckpt_offset = nullptr;   // [N + 1] first checkpoint row of sequence n
  int32_t* seq_order = nullptr;     // [N] rank -> sequence, written by chunk_meta (nullptr: index order)
  int32_t* error_flag = nullptr;    // non-zero: the device-side checks failed (kBad* bits); nullptr: none ran
  // Inline offsets (kInlineSeqs): token starts, chunk_offset and
  // ckpt_offset in the parameters, and the workspace's flag (clear_flag)
  // written by the prep so that prefill_device_status reports this call:
  // cleared after host checks (error_flag nullptr: no later kernel reads
  // it), or the result of the prep's own checks (inline_check: one sequence
  // without host copies; error_flag stays, and the later kernels read it).
  bool inline_offsets = false;
  bool inline_check = false;
  int64_t inline_start[kInlineSeqs + 1] = {};
  int32_t inline_chunk[kInlineSeqs + 1] = {};
  int32_t inline_ckpt[kInlineSeqs + 1] = {};
  uint8_t inline_order[kInlineSeqs] = {};  // rank -> sequence (inline offsets)
  int32_t* clear_flag = nullptr;
  float* Au = nullptr;      // [max_chunks, HV, 64, 64]: A diag(beta)
  float* L = nullptr;       // [max_chunks, HV, 64, 64]: lower_incl((scale Q) K^T .* Gamma)
  float* F = nullptr;       // [max_chunks, HV, kFactorStride]: row factors and decay
  bool sm90_tiles = false;  // Au and L in the sm90 tile layout (prep/tile_layout.cuh)
  uint8_t prep_heads = 1;   // value heads of one q/k head per prep CTA (sm90 tiles; prefill_prep.cu)
  int stages = 1;           // depth of the state pass's shared-memory ring (1 or 2)
  // Segments (prefill.cu, segments_for): each sequence's chunks split into
  // `segments` runs, passed three times: a local pass from a zero state that
  // also carries the state map of each segment, a combine over segments, and
  // the final pass from each segment's true entering state.
  int segments = 1;
  int seg_phase = 0;           // kSegWhole, kSegLocal or kSegFinal
  float* seg_state = nullptr;  // [N * segments, HV, K, V]: local end states, then entering states
  float* seg_map = nullptr;    // [N * segments, HV, K, K]: each segment's state map
  // The workspace's last region (prefill.cu, layout): a ticket counter, then
  // [max_chunks, HV] ready marks. tickets (nullptr: no candidate takes
  // tickets) is the counter of the persistent sm90 state pass
  // (sm90/state_pass.cu, kPersist; ready nullptr: the prep kernel zeroes it)
  // or of the overlapped prep's units (prefill_prep.cu,
  // prefill_prep_overlap_kernel; ready set, each mark set once its chunk's
  // Au, L and factors are out; the host zeroes counter and marks first).
  int32_t* tickets = nullptr;
  int32_t* ready = nullptr;
};

// First chunk and first checkpoint row of sequence n (n == N: the totals).
// Read where the params are a kernel's __grid_constant__ argument, so the
// inline arrays are indexed in place.
__host__ __device__ inline int32_t first_chunk(const PrefillParams& p, int64_t n) {
  return p.inline_offsets ? p.inline_chunk[n] : p.chunk_offset[n];
}
__host__ __device__ inline int32_t first_ckpt(const PrefillParams& p, int64_t n) {
  return p.inline_offsets ? p.inline_ckpt[n] : p.ckpt_offset[n];
}
// First token of sequence n (n == N: T).
__device__ __forceinline__ int64_t seq_start(const PrefillParams& p, int64_t n) {
  return p.inline_offsets ? p.inline_start[n] : load_index(p.cu_seqlens, p.cu64, n);
}
// The device-side rules for sequence n's bounds [s, e) and pool row (the
// bits chunk_meta sets, except duplicates, which need every sequence).
__device__ __forceinline__ int32_t sequence_flags(const PrefillParams& p, int64_t n, int64_t s, int64_t e) {
  return s < 0 || e < s || e > p.T || (n == 0 && s != 0) || (n == p.N - 1 && e != p.T) ? kBadSeqlens : 0;
}
__device__ __forceinline__ int32_t row_flags(const PrefillParams& p, int64_t row) {
  return row >= p.pool_rows ? kBadIndex : 0;
}
// Those flags for the one sequence of an inline_check call.
__device__ __forceinline__ int32_t one_sequence_checks(const PrefillParams& p) {
  const int32_t bad =
      sequence_flags(p, 0, load_index(p.cu_seqlens, p.cu64, 0), load_index(p.cu_seqlens, p.cu64, 1));
  return p.indices != nullptr ? bad | row_flags(p, load_index(p.indices, p.idx64, 0)) : bad;
}
// The overlapped prep's ready marks (PrefillParams::ready), one per (chunk,
// value head), after the ticket counter.
__host__ __device__ inline int64_t ready_marks(const PrefillParams& p) {
  return p.max_chunks * p.HV;
}
// Whether chunk_meta's checks failed (every later kernel then writes nothing).
__host__ __device__ inline bool device_checks_failed(const PrefillParams& p) {
  return p.error_flag != nullptr && *p.error_flag != 0;
}

// What a launch of the column-owner state pass computes.
constexpr int kSegWhole = 0;  // whole sequences (one segment)
constexpr int kSegLocal = 1;  // each segment from a zero state: its end state and its map
constexpr int kSegFinal = 2;  // each segment from its entering state: outputs, checkpoints, final state

// Row factors of a chunk (rows past the chunk's end are 0), for raw q and k:
//   s_q = scale exp(G) / |q|   s_x = exp(G) / |k|   s_k = exp(G_C - G) / |k|
constexpr int kFactorSq = 0, kFactorSx = 64, kFactorSk = 128, kFactorDecay = 192;
constexpr int kFactorStride = 200;  // floats; 800 bytes, a multiple of 16

}  // namespace gdn::cuda
