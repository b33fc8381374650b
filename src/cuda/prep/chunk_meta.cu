#include <cub/block/block_scan.cuh>

#include "cuda/prep/chunk_meta.cuh"
#include "cuda/ptx/griddep.cuh"

namespace gdn::cuda {
namespace {

constexpr int kMetaThreads = 256;  // a 1024-thread block caps registers at 64 and spills the scan

__global__ void __launch_bounds__(kMetaThreads) chunk_meta_kernel(PrefillParams p, int64_t checkpoint_rows) {
  using Scan = cub::BlockScan<int64_t, kMetaThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int64_t carry_chunks, carry_ckpts;
  launch_dependents();  // the prep stage may launch; it waits for this kernel's results
  if (threadIdx.x == 0) carry_chunks = carry_ckpts = 0;
  __syncthreads();
  int bad = 0;
  for (int64_t base = 0; base < p.N; base += kMetaThreads) {
    const int64_t n = base + threadIdx.x;
    int64_t chunks = 0, ckpts = 0;
    if (n < p.N) {
      const int64_t s = load_index(p.cu_seqlens, p.cu64, n), e = load_index(p.cu_seqlens, p.cu64, n + 1);
      if (s < 0 || e < s || e > p.T || (n == 0 && s != 0) || (n == p.N - 1 && e != p.T)) {
        bad |= kBadSeqlens;
      } else {
        chunks = (e - s + kChunk - 1) / kChunk;
        ckpts = p.ckpt_every > 0 ? (e - s) / p.ckpt_every : 0;
      }
      if (p.indices != nullptr && load_index(p.indices, p.idx64, n * p.idx_s) >= p.pool_rows)
        bad |= kBadIndex;
    }
    int64_t chunk_excl, ckpt_excl, chunk_total, ckpt_total;
    Scan(scan_storage).ExclusiveSum(chunks, chunk_excl, chunk_total);
    __syncthreads();
    Scan(scan_storage).ExclusiveSum(ckpts, ckpt_excl, ckpt_total);
    if (n < p.N) {
      p.chunk_offset[n] = static_cast<int32_t>(carry_chunks + chunk_excl);
      p.ckpt_offset[n] = static_cast<int32_t>(carry_ckpts + ckpt_excl);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      carry_chunks += chunk_total;
      carry_ckpts += ckpt_total;
    }
    __syncthreads();
  }
  int32_t flags = 0;
  for (const int32_t bit : {kBadSeqlens, kBadIndex})
    if (__syncthreads_or(bad & bit)) flags |= bit;
  if (threadIdx.x == 0) {
    p.chunk_offset[p.N] = static_cast<int32_t>(carry_chunks);
    p.ckpt_offset[p.N] = static_cast<int32_t>(carry_ckpts);
    if (carry_chunks > p.max_chunks) flags |= kBadSeqlens;  // only reachable with bad cu_seqlens
    if (p.ckpt_every > 0 && carry_ckpts > checkpoint_rows) flags |= kBadCheckpoints;
    *p.error_flag = flags;
  }
}

}  // namespace

void launch_chunk_meta(const PrefillParams& p, int64_t checkpoint_rows, cudaStream_t stream) {
  chunk_meta_kernel<<<1, kMetaThreads, 0, stream>>>(p, checkpoint_rows);
}

}  // namespace gdn::cuda
