#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include "cuda/prep/chunk_meta.cuh"
#include "cuda/ptx/griddep.cuh"

namespace gdn::cuda {
namespace {

constexpr int kMetaThreads = 256;  // a 1024-thread block caps registers at 64 and spills the scan
// Pool rows a shared-memory bitmap covers when the call has no host copy of
// state_indices (32 KB; only a pool's ceil(P / 32) words are cleared); a
// larger pool compares each index with every other one instead (N loads per
// index, N^2 / 256 per thread: give such calls the host copy).
constexpr int64_t kSeenRows = 262144;

// Whether pool row `row` of sequence n is named by another sequence too:
// its bit in `seen` was set already (pools of at most kSeenRows rows; one
// of the two sequences finds the other's bit), else a scan over the others.
__device__ bool named_twice(const PrefillParams& p, uint32_t* seen, int64_t n, int64_t row) {
  if (p.pool_rows <= kSeenRows) {
    const uint32_t bit = 1u << (row & 31);
    return (atomicOr(&seen[row >> 5], bit) & bit) != 0;
  }
  for (int64_t m = 0; m < p.N; ++m)
    if (m != n && load_index(p.indices, p.idx64, m * p.idx_s) == row) return true;
  return false;
}

// seq_order (params.h, kOrderedSeqs): the sequences by descending chunk
// count, ties in index order (the radix sort is stable), over only the key
// bits the longest sequence needs. Keys are chunks + 1 so that the slots
// past N (key 0) sort last; a sequence that failed its checks sorts as
// empty (the later kernels write nothing then anyway).
constexpr int kOrderPerThread = kOrderedSeqs / kMetaThreads;
static_assert(kOrderPerThread * kMetaThreads == kOrderedSeqs, "whole items per thread");
using OrderSort = cub::BlockRadixSort<uint32_t, kMetaThreads, kOrderPerThread, int32_t>;

__device__ void write_order(const PrefillParams& p, typename OrderSort::TempStorage& storage) {
  uint32_t key[kOrderPerThread];
  int32_t seq[kOrderPerThread];
  uint32_t longest = 0;
  for (int i = 0; i < kOrderPerThread; ++i) {
    const int n = threadIdx.x * kOrderPerThread + i;  // blocked arrangement
    seq[i] = n;
    key[i] = 0;
    if (n < p.N) {
      const int64_t s = load_index(p.cu_seqlens, p.cu64, n), e = load_index(p.cu_seqlens, p.cu64, n + 1);
      key[i] = sequence_flags(p, n, s, e) == 0 ? static_cast<uint32_t>((e - s + kChunk - 1) / kChunk) + 1 : 1;
    }
    longest = max(longest, key[i]);
  }
  longest = __reduce_max_sync(0xffffffffu, longest);
  __shared__ uint32_t warp_longest[kMetaThreads / 32];
  if (threadIdx.x % 32 == 0) warp_longest[threadIdx.x / 32] = longest;
  __syncthreads();
  for (int w = 0; w < kMetaThreads / 32; ++w) longest = max(longest, warp_longest[w]);
  const int bits = 32 - __clz(static_cast<int>(longest));
  OrderSort(storage).SortDescending(key, seq, 0, bits);
  for (int i = 0; i < kOrderPerThread; ++i) {
    const int r = threadIdx.x * kOrderPerThread + i;
    if (r < p.N) p.seq_order[r] = seq[i];
  }
}

__global__ void __launch_bounds__(kMetaThreads) chunk_meta_kernel(PrefillParams p, int64_t checkpoint_rows) {
  using Scan = cub::BlockScan<int64_t, kMetaThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename OrderSort::TempStorage sort;
  } storage;
  __shared__ int64_t carry_chunks, carry_ckpts;
  __shared__ uint32_t seen[kSeenRows / 32];  // pool rows named so far (check_unique)
  launch_dependents();                       // the prep stage may launch; it waits for this kernel's results
  if (threadIdx.x == 0) carry_chunks = carry_ckpts = 0;
  if (p.check_unique && p.pool_rows <= kSeenRows)
    for (int64_t w = threadIdx.x; w < (p.pool_rows + 31) / 32; w += kMetaThreads) seen[w] = 0;
  __syncthreads();
  int bad = 0;
  for (int64_t base = 0; base < p.N; base += kMetaThreads) {
    const int64_t n = base + threadIdx.x;
    int64_t chunks = 0, ckpts = 0;
    if (n < p.N) {
      const int64_t s = load_index(p.cu_seqlens, p.cu64, n), e = load_index(p.cu_seqlens, p.cu64, n + 1);
      if (const int32_t flags = sequence_flags(p, n, s, e); flags != 0) {
        bad |= flags;
      } else {
        chunks = (e - s + kChunk - 1) / kChunk;
        ckpts = p.ckpt_every > 0 ? (e - s) / p.ckpt_every : 0;
      }
      if (p.indices != nullptr) {
        const int64_t row = load_index(p.indices, p.idx64, n * p.idx_s);
        if (const int32_t flags = row_flags(p, row); flags != 0)
          bad |= flags;
        else if (p.check_unique && row >= 0 && named_twice(p, seen, n, row))
          bad |= kBadDuplicate;
      }
    }
    int64_t chunk_excl, ckpt_excl, chunk_total, ckpt_total;
    Scan(storage.scan).ExclusiveSum(chunks, chunk_excl, chunk_total);
    __syncthreads();
    Scan(storage.scan).ExclusiveSum(ckpts, ckpt_excl, ckpt_total);
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
  if (p.seq_order != nullptr) write_order(p, storage.sort);  // after the scans' last barrier
  int32_t flags = 0;
  for (const int32_t bit : {kBadSeqlens, kBadIndex, kBadDuplicate})
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
