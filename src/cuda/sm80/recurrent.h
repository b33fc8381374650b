// Launch parameters of the portable (sm_80+) decode, verify and commit
// kernels. Built on the host from a validated call; passed by value.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace gdn::cuda {

// Value columns of the state one warp owns (DESIGN section 9, recurrent.cu).
constexpr int kTileColumns = 16;

struct RecurrentParams : TokenInputs {  // q, k, v and the gates
  int64_t N = 0, T = 0, HV = 0;
  int64_t group = 1;        // HV / H
  int64_t slices = 0;       // V / kTileColumns: warps per (sequence, value head)
  int64_t tiles = 0;        // N * HV * slices: warps in the launch
  DType io = DType::kBF16;  // q, k, v and out
  // Sequences: cu_seqlens (verify), else tokens_per_seq tokens each (1 for
  // decode). check_seqs: cu_seqlens had no host copy, so each sequence's
  // bounds are checked on the device (0 <= start <= end <= T); a sequence
  // that fails writes nothing. max_len: the most tokens of one sequence
  // (the shared memory stages this many per warp); a longer one, possible
  // only under check_seqs, also writes nothing.
  const void* cu_seqlens = nullptr;
  bool cu64 = false;
  int64_t cu_s = 0;
  int64_t tokens_per_seq = 1;
  bool check_seqs = false;
  int64_t max_len = 0;
  // States: init (pool or dense; data == nullptr: zero), fin (dense final
  // state, or the pool itself; data == nullptr: not written), inter
  // (intermediate states [N, slots, HV, ., .]; data == nullptr: none).
  StateTensor init, fin, inter;
  int64_t inter_slot_stride = 0;
  // Pool rows per sequence (nullptr: dense). check_rows: state_indices had
  // no host copy, so each sequence checks on the device that its row is
  // below pool_rows and named by no other sequence; one that fails writes
  // nothing.
  const void* indices = nullptr;
  bool idx64 = false;
  int64_t idx_s = 0;
  int64_t pool_rows = 0;
  bool check_rows = false;
  // Output.
  void* out = nullptr;
  int64_t o_s0 = 0, o_s1 = 0;
  float scale = 1.0f;
  bool l2norm = false;
  // A prefill run by this kernel (short_prefill in prefill.cu): the
  // workspace's device-check flag, cleared by one lane after the grid
  // dependency wait (the host checked everything; the flag is written on
  // every prefill). nullptr otherwise.
  int32_t* error_flag = nullptr;
  // Set by the launcher under a programmatic launch: prefetch the inputs
  // and the state tile before the grid dependency wait, and read the state
  // at the pool row the index named then (recurrent.cu).
  bool programmatic = false;
};

// Launches decode or verify: K in {64, 128}, V a multiple of kTileColumns,
// the state layout and dtype (fp32 or bf16) as given.
Status launch_recurrent(const RecurrentParams& p, int64_t K, StateLayout layout, DType state,
                        cudaStream_t stream);

struct CommitParams {
  int64_t N = 0, HV = 0;
  int64_t slots = 0, pool_rows = 0;
  // accepted[n]: the intermediate slot of sequence n to commit; indices[n]:
  // its pool row. Negative: skip. check_*: no host copy, so the device
  // checks slot < slots, row < pool_rows and rows unique; a sequence that
  // fails is skipped.
  const void* accepted = nullptr;
  bool acc64 = false, check_slots = false;
  int64_t acc_s = 0;
  const void* indices = nullptr;
  bool idx64 = false, check_rows = false;
  int64_t idx_s = 0;
  // Byte strides: source matrix (n, slot, head), destination (row, head);
  // each matrix has `rows` rows of `row_bytes` bytes, `src_r`/`dst_r` apart.
  const char* src = nullptr;
  int64_t src_n = 0, src_slot = 0, src_head = 0, src_r = 0;
  char* dst = nullptr;
  int64_t dst_row = 0, dst_head = 0, dst_r = 0;
  int64_t rows = 0, row_bytes = 0;
  int unit = 16;   // bytes per copy: 16, 8, 4 or 2 (divides every address, stride and row_bytes)
  int splits = 1;  // CTAs per (sequence, head) matrix
};

Status launch_commit(const CommitParams& p, cudaStream_t stream);

}  // namespace gdn::cuda
