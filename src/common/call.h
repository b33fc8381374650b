// A validated call, as the backends receive it: the caller's Args plus the
// sizes and host-side indexing that validation derived from them.
#pragma once

#include <cstdint>
#include <vector>

#include "gdn/gdn.h"

namespace gdn {

struct Call {
  Op op = Op::kPrefill;
  int64_t T = 0, N = 0, H = 0, HV = 0, K = 0, V = 0;
  int64_t pool_rows = 0;           // P when state_indices is given
  int64_t intermediate_slots = 0;  // verify: shape[1] of intermediate_states
  bool pool = false;
  float scale = 1.0f;  // resolved (never 0)
  DType io_dtype = DType::kInvalid;
  DType state_dtype = DType::kF32;
  bool on_device = false;
  int device_ordinal = -1;
  // Host-side copies, filled when the values are readable on the host
  // (always for host data; for device data when a *_host pointer was given).
  bool host_indexing = false;
  bool host_seqlens = false;        // seq_start checked on the host (host_indexing implies it)
  std::vector<int64_t> seq_start;   // [N + 1] token offsets
  std::vector<int64_t> state_row;   // [N] pool row, or n for dense; < 0: none
  std::vector<int64_t> ckpt_start;  // [N + 1] first checkpoint row of sequence n
};

// A validated commit_states call: sizes, where the data lives and, when
// readable on the host, each sequence's slot and pool row (< 0: skip).
struct CommitCall {
  int64_t N = 0, slots = 0, HV = 0, pool_rows = 0;
  DType state_dtype = DType::kF32;
  bool on_device = false;
  int device_ordinal = -1;
  bool host_indexing = false;
  std::vector<int64_t> slot, row;  // [N] when host_indexing
};

// Offsets (in elements) into the caller's strided tensors.
inline int64_t offset2(const Tensor& t, int64_t i, int64_t j) {
  return i * t.stride[0] + j * t.stride[1];
}
inline int64_t offset3(const Tensor& t, int64_t i, int64_t j, int64_t l) {
  return i * t.stride[0] + j * t.stride[1] + l * t.stride[2];
}

// Addresses one [K, V] state matrix of a state tensor ([rows, HV, K, V],
// [rows, HV, V, K] for kVK, or [N, L, HV, ., .] for intermediate states):
// element (ki, vi) lives at base + ki * k_stride + vi * v_stride.
struct StateRef {
  void* base = nullptr;  // already offset to the (row, head) matrix
  DType dtype = DType::kF32;
  int64_t k_stride = 0, v_stride = 0;

  int64_t at(int64_t ki, int64_t vi) const { return ki * k_stride + vi * v_stride; }
  bool valid() const { return base != nullptr; }
};

inline size_t element_bytes(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    default:
      return 0;
  }
}

// The matrix of head `hv` at leading index `lead` (a 4-D state tensor) or
// leading indices (lead, lead2) (a 5-D intermediate tensor).
inline StateRef state_ref(const Tensor& t, StateLayout layout, int64_t lead, int64_t hv, int64_t lead2 = -1) {
  StateRef r;
  r.dtype = t.dtype;
  int64_t off = lead * t.stride[0];
  int d = 1;
  if (lead2 >= 0) off += lead2 * t.stride[d++];
  off += hv * t.stride[d];
  const int64_t s_a = t.stride[d + 1], s_b = t.stride[d + 2];
  r.k_stride = layout == StateLayout::kKV ? s_a : s_b;
  r.v_stride = layout == StateLayout::kKV ? s_b : s_a;
  r.base = static_cast<char*>(t.data) + off * static_cast<int64_t>(element_bytes(t.dtype));
  return r;
}

}  // namespace gdn
