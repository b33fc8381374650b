// commit_states on the GPU: copies intermediate state accepted[n] of each
// sequence into its pool row. One CTA per (sequence, value head, share of
// the matrix's rows); threads move the widest unit (16 bytes where the
// addresses allow) over the rows, so consecutive threads touch consecutive
// bytes. No allocation and no host synchronisation: capturable in a graph.
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/backend.h"
#include "cuda/sm80/recurrent.h"

namespace gdn::cuda {
namespace {

constexpr int kCommitThreads = 256;
// A small batch's matrices are split into row ranges until the launch has
// about this many CTAs, enough to spread the copy over every SM.
constexpr int64_t kTargetCtas = 1024;

template <typename Unit>
__device__ __forceinline__ void copy_rows(const CommitParams& p, const char* src, char* dst, int64_t r0,
                                          int64_t r1) {
  const int64_t per_row = p.row_bytes / static_cast<int64_t>(sizeof(Unit));
  const int64_t count = (r1 - r0) * per_row;
  for (int64_t i = threadIdx.x; i < count; i += kCommitThreads) {
    const int64_t r = r0 + i / per_row, e = i % per_row;
    *reinterpret_cast<Unit*>(dst + r * p.dst_r + e * static_cast<int64_t>(sizeof(Unit))) =
        *reinterpret_cast<const Unit*>(src + r * p.src_r + e * static_cast<int64_t>(sizeof(Unit)));
  }
}

__global__ void __launch_bounds__(kCommitThreads) commit_kernel(const __grid_constant__ CommitParams p) {
  const int64_t item = blockIdx.x;  // n * HV + hv
  const int64_t n = item / p.HV, hv = item - n * p.HV;
  const int64_t j = load_index(p.accepted, p.acc64, n * p.acc_s);
  const int64_t row = load_index(p.indices, p.idx64, n * p.idx_s);
  if (j < 0 || row < 0) return;
  // Values without a host copy: a sequence whose slot or row is out of
  // range, or whose row another sequence also names, commits nothing.
  if ((p.check_slots && j >= p.slots) || (p.check_rows && row >= p.pool_rows)) return;
  if (p.check_rows) {
    int dup = 0;
    for (int64_t m = threadIdx.x; m < p.N; m += kCommitThreads)
      dup |= m != n && load_index(p.indices, p.idx64, m * p.idx_s) == row;
    if (__syncthreads_or(dup)) return;
  }
  const int64_t r0 = p.rows * blockIdx.y / p.splits, r1 = p.rows * (blockIdx.y + 1) / p.splits;
  const char* src = p.src + n * p.src_n + j * p.src_slot + hv * p.src_head;
  char* dst = p.dst + row * p.dst_row + hv * p.dst_head;
  switch (p.unit) {
    case 16:
      copy_rows<uint4>(p, src, dst, r0, r1);
      break;
    case 8:
      copy_rows<uint2>(p, src, dst, r0, r1);
      break;
    case 4:
      copy_rows<uint32_t>(p, src, dst, r0, r1);
      break;
    default:
      copy_rows<uint16_t>(p, src, dst, r0, r1);
      break;
  }
}

}  // namespace

Status launch_commit(const CommitParams& p, cudaStream_t stream) {
  if (p.N * p.HV == 0 || p.rows == 0) return Status::Ok();
  if (p.N * p.HV > 0x7fffffff || p.splits > 65535)
    return Status::Unsupported("cuda: too many sequences and heads for one commit launch");
  const dim3 grid(static_cast<unsigned>(p.N * p.HV), static_cast<unsigned>(p.splits));
  commit_kernel<<<grid, kCommitThreads, 0, stream>>>(p);
  return cuda_status(cudaGetLastError(), "commit_kernel launch");
}

Status run_cuda_commit(const CommitCall& c, const CommitArgs& a) {
  const Tensor& src = a.intermediate_states;
  const Tensor& dst = a.pool;
  const int64_t es = static_cast<int64_t>(dtype_size(src.dtype));
  CommitParams p;
  p.N = c.N, p.HV = c.HV, p.slots = c.slots, p.pool_rows = c.pool_rows;
  p.accepted = a.accepted.data, p.acc64 = a.accepted.dtype == DType::kI64, p.acc_s = a.accepted.stride[0];
  p.check_slots = a.accepted_host == nullptr;
  p.indices = a.state_indices.data, p.idx64 = a.state_indices.dtype == DType::kI64;
  p.idx_s = a.state_indices.stride[0];
  p.check_rows = a.state_indices_host == nullptr;
  p.src = static_cast<const char*>(src.data);
  p.src_n = src.stride[0] * es, p.src_slot = src.stride[1] * es, p.src_head = src.stride[2] * es;
  p.src_r = src.stride[3] * es;
  p.dst = static_cast<char*>(dst.data);
  p.dst_row = dst.stride[0] * es, p.dst_head = dst.stride[1] * es, p.dst_r = dst.stride[2] * es;
  p.rows = src.shape[3], p.row_bytes = src.shape[4] * es;
  // The widest unit that divides both base addresses, every byte stride a
  // copied address can step by, and the row length.
  uint64_t all = reinterpret_cast<uintptr_t>(p.src) | reinterpret_cast<uintptr_t>(p.dst) |
                 static_cast<uint64_t>(p.row_bytes);
  for (int64_t b : {p.src_n, p.src_slot, p.src_head, p.src_r, p.dst_row, p.dst_head, p.dst_r})
    all |= static_cast<uint64_t>(b);
  p.unit = (all & 15) == 0 ? 16 : (all & 7) == 0 ? 8 : (all & 3) == 0 ? 4 : 2;
  p.splits = static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(p.rows, kTargetCtas / std::max<int64_t>(1, c.N * c.HV))));

  DeviceGuard guard;
  GDN_CUDA_RETURN(guard.set(c.device_ordinal));
  return launch_commit(p, static_cast<cudaStream_t>(a.stream));
}

}  // namespace gdn::cuda
