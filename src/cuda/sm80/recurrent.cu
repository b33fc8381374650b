// Decode and speculative verify on the GPU (sm_80+): the token recurrence of
// DESIGN section 1 in fp32, one warp per (sequence, value head, 16 value
// columns of the state), the warp's part of the state in registers across
// all of the sequence's tokens.
//
// Per token, from the state S entering it:
//   sk = S^T k,  sq = S^T q              (one pass over the registers)
//   u  = beta (v - exp(g) sk)
//   o  = exp(g) sq + (k . q) u           (= S'^T q)
//   S' = exp(g) S + k u^T
// Columns of S are independent, so splitting V over warps needs no
// communication, and a batch-1 decode still has HV * V / 16 warps to spread
// its state reads over the GPU.
//
// A warp's tile is 16 value columns by all K rows, 4 consecutive elements
// of R = K / 8 rows per lane (64 registers at K = 128), read and written
// with one 16-byte access per row (8 bytes for a bf16 state):
//   layout kv ([K, V], V contiguous): lane = 4 rg + cg holds K rows
//     R rg .. R rg + R - 1, value columns v0 + 4 cg .. + 3. A warp access
//     covers 8 rows x 64 contiguous bytes.
//   layout vk ([V, K], K contiguous): lane = (K / 4) rv + kl holds value
//     rows v0 + R rv .. + R - 1, K elements 4 kl .. 4 kl + 3. A warp access
//     covers whole rows of K contiguous elements.
// The sums over K finish inside the warp: each lane forms its partial sums
// (kv: 4 columns x {k, q} over its R rows; vk: R rows x {k, q} over its 4
// elements), a reduce-scatter across the lanes sharing those columns
// leaves every lane one finished sum, lane pairs swap to hold (sk, sq) of
// one column, compute u and o for it, and u is gathered back for the
// update: no block barrier, and the state never leaves the registers.
//
// Latency (a batch-1 decode is a chain of dependent memory round trips):
// every global load is issued before any math that waits on one: the pool
// row's index, the token inputs (gates into registers; q, k and the tile's
// v of all of the sequence's tokens into the warp's slice of shared memory
// with cp.async), the state; the gate math and the device-side row checks
// come after, and a verify's later tokens wait on no memory in the token
// loop. The per-token scalars (exp(g), beta, the q and k norms, q . k) of
// all tokens are formed before the loop, eight lanes per token, and the
// loop fetches each with a shuffle, so it holds only the state's chain:
// sums, reduce-scatter, u, gather, update. The one-token decode in layout kv
// (kOne, its own instantiation) stages nothing: it loads its token's q, k
// and v straight into registers (raw, converted once every load has issued)
// and every lane forms the token's scalars itself; on grids of at most
// kLateTiles warps it checks the pool row only after its gate and norm math
// (kLate, a second instantiation).
// On sm_90+ a small grid (batch-1 decode and verify), a one-token decode, or
// one that writes every intermediate state (launch() says why only those) is launched
// programmatically (ptx/griddep.cuh): the grid lets the
// next kernel launch at once, and before it waits for the kernel before to
// complete (any input may be that kernel's output) it reads the pool index
// and cu_seqlens as they are then and prefetches the state tile and the
// token inputs to L2 there. After the wait it reads the state at that
// guessed row first, beside the real index read, and again only if the
// index names another row; what is read after the wait is final either
// way. The launch and the DRAM round trips overlap the kernel before, and
// the index's and the state's round trips overlap each other.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cuda/backend.h"
#include "cuda/ptx/cp_async.cuh"
#include "cuda/ptx/griddep.cuh"
#include "cuda/sm80/recurrent.h"

namespace gdn::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
// Warps (tiles) per CTA: one while the grid is small, so that a batch-1
// decode spreads over as many SMs as it has warps; four on large grids
// (fewer, larger CTAs to schedule).
constexpr int kMaxWarpsPerCta = 4;
constexpr int64_t kManyTiles = 2048;
// Registers: at most 170 per thread, 12 warps (3 CTAs of 4) per SM. A warp
// issues all of its 8 KB of state reads at once, and an SM's share of the
// copy bandwidth (~23 B/ns on an H100) times the loaded memory latency
// (~2 us) is ~45 KB, so about 6 warps waiting on their reads keep the
// memory busy. The batch-256 decode reaches 86% of the copy bandwidth
// (H200) with 12; -DGDN_DECODE_MIN_CTAS=4 (a measurement build) asks for 16
// warps, which ptxas (nvcc 13.0, sm_90) fits in 128 registers without
// spills at K = 128 (138-165 registers at 3 CTAs).
#ifdef GDN_DECODE_MIN_CTAS
constexpr int kMinCtasPerSm = GDN_DECODE_MIN_CTAS;
#else
constexpr int kMinCtasPerSm = 3;
#endif
// Dynamic shared memory per CTA that needs no opt-in.
constexpr int64_t kMaxStageBytes = 48 * 1024;
// The one-token path checks the pool row after its gate and norm math
// (kLate) on grids up to this many warps, where that overlap shortens the
// call; on larger grids it costs throughput. H100 graph medians, late /
// early, the same machine code as these two instantiations (bench/results/
// h100-2026-12-07-342e57c-checks.txt and -decode-ab.txt): batch 1 (256 warps) 3.34-3.51 /
// 3.49-3.5 us, batch 32 (8192 warps) 54.6-55.3 / 55.4-55.9, batch 256
// (65536 warps) 388.7-390.0 / 381.9-383.6.
constexpr int64_t kLateTiles = 8192;

// GDN_DECODE_PROBE (a measurement build, -DCMAKE_CUDA_FLAGS=-DGDN_DECODE_PROBE=N):
// 1 reads and writes the state with streaming (evict-first) accesses, 2 only
// writes it so; 0 (the default) uses plain accesses. Measured on the H200
// (bench/results/h200-2026-12-04-7552ab4-probes.txt, graph us, default / 1 /
// 2): b256 t1 295.7 / 309.6 / 299.9, verify b256 t4 states 752.1 / 777.1 /
// 754.0: no gain, so plain accesses stay.
#ifndef GDN_DECODE_PROBE
#define GDN_DECODE_PROBE 0
#endif
template <typename T>
__device__ __forceinline__ T load_state_unit(const T* p) {
#if GDN_DECODE_PROBE == 1
  return __ldcs(p);
#else
  return *p;
#endif
}
template <typename T>
__device__ __forceinline__ void store_state_unit(T* p, T x) {
#if GDN_DECODE_PROBE == 1 || GDN_DECODE_PROBE == 2
  __stcs(p, x);
#else
  *p = x;
#endif
}

// Four consecutive state elements as fp32.
template <bool kBF16>
__device__ __forceinline__ void load4(const void* base, int64_t i, float (&x)[4]) {
  if constexpr (kBF16) {
    const uint2 raw =
        load_state_unit(reinterpret_cast<const uint2*>(static_cast<const __nv_bfloat16*>(base) + i));
    const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
    const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
    x[0] = lo.x, x[1] = lo.y, x[2] = hi.x, x[3] = hi.y;
  } else {
    const float4 f = load_state_unit(reinterpret_cast<const float4*>(static_cast<const float*>(base) + i));
    x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
  }
}

template <bool kBF16>
__device__ __forceinline__ void store4(void* base, int64_t i, const float (&x)[4]) {
  if constexpr (kBF16) {
    const __nv_bfloat162 lo = __floats2bfloat162_rn(x[0], x[1]), hi = __floats2bfloat162_rn(x[2], x[3]);
    uint2 raw;
    raw.x = *reinterpret_cast<const uint32_t*>(&lo);
    raw.y = *reinterpret_cast<const uint32_t*>(&hi);
    store_state_unit(reinterpret_cast<uint2*>(static_cast<__nv_bfloat16*>(base) + i), raw);
  } else {
    store_state_unit(reinterpret_cast<float4*>(static_cast<float*>(base) + i),
                     make_float4(x[0], x[1], x[2], x[3]));
  }
}

// The lane's R rows of four: the first at element `first`, the next ones
// `rs` elements apart (the pointer steps, so no per-row offset stays live).
template <bool kBF16, int R>
__device__ __forceinline__ void load_rows(const void* data, int64_t first, int64_t rs, float (&s)[R][4]) {
  using T = std::conditional_t<kBF16, __nv_bfloat16, float>;
  const T* ptr = static_cast<const T*>(data) + first;
#pragma unroll
  for (int r = 0; r < R; ++r, ptr += rs) load4<kBF16>(ptr, 0, s[r]);
}

template <bool kBF16, int R>
__device__ __forceinline__ void store_rows(void* data, int64_t first, int64_t rs, const float (&s)[R][4]) {
  using T = std::conditional_t<kBF16, __nv_bfloat16, float>;
  T* ptr = static_cast<T*>(data) + first;
#pragma unroll
  for (int r = 0; r < R; ++r, ptr += rs) store4<kBF16>(ptr, 0, s[r]);
}

__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// L2 prefetches of the 128-byte lines of bytes [p, p + bytes).
__device__ __forceinline__ void prefetch_span(const char* p, int bytes) {
  for (int off = 0; off < bytes; off += 128) prefetch_l2(p + off);
  prefetch_l2(p + bytes - 1);
}

// L2 prefetches of the rows load_rows would read.
template <bool kBF16, int R>
__device__ __forceinline__ void prefetch_rows(const void* data, int64_t first, int64_t rs) {
  using T = std::conditional_t<kBF16, __nv_bfloat16, float>;
  const T* ptr = static_cast<const T*>(data) + first;
#pragma unroll
  for (int r = 0; r < R; ++r, ptr += rs) prefetch_l2(ptr);
}

// An index read before the grid dependency wait, as a hint only (the kernel
// before may still be writing it): relaxed at GPU scope, so it is served
// from L2 and leaves no L1 line that the real read after the wait could hit.
__device__ __forceinline__ int64_t peek_index(const void* p, bool is64, int64_t i) {
  if (is64) {
    long long x;
    asm volatile("ld.relaxed.gpu.global.s64 %0, [%1];" : "=l"(x) : "l"(static_cast<const long long*>(p) + i));
    return x;
  }
  int x;
  asm volatile("ld.relaxed.gpu.global.s32 %0, [%1];" : "=r"(x) : "l"(static_cast<const int*>(p) + i));
  return x;
}

// Reduce-scatter over the lanes that differ in the bits kOff, kOff / 2, ...,
// kLast of the lane index. Each step halves the live sums x[0, kActive):
// a lane keeps the half its bit selects (the upper half moving down), adds
// its partner's copy of that half, and sends the other half. At the end x[0]
// of a lane holds the complete sum of element sum_b bit_b(lane) * (step's
// kActive / 2), i.e. the element whose index spells the lane's bits.
template <int kActive, int kOff, int kLast, int N>
__device__ __forceinline__ void reduce_scatter(float (&x)[N], int lane) {
  static_assert(kActive <= N && kActive >= 2, "live sums fit the array");
  const bool upper = (lane & kOff) != 0;
#pragma unroll
  for (int i = 0; i < kActive / 2; ++i) {
    const float send = upper ? x[i] : x[i + kActive / 2];
    const float keep = upper ? x[i + kActive / 2] : x[i];
    x[i] = keep + __shfl_xor_sync(kFull, send, kOff);
  }
  if constexpr (kOff > kLast) reduce_scatter<kActive / 2, kOff / 2, kLast>(x, lane);
}

// Sum over the lanes that differ in bits kOff .. kLast; every lane gets the
// same bits (each step adds two equal pairs in either order).
template <int kOff, int kLast>
__device__ __forceinline__ float sum_lanes(float x) {
#pragma unroll
  for (int off = kOff; off >= kLast; off >>= 1) x += __shfl_xor_sync(kFull, x, off);
  return x;
}

// kOne: the one-token decode in layout kv (no cu_seqlens, one token per
// sequence), compiled apart so that it carries no staging, token loop or
// per-token shuffles: every lane computes the token's scalars itself.
// q . q, k . k and q . k over a lane's n elements of one token, in order:
// the prelude and the one-token path share it, so their sums agree bitwise.
template <int n>
__device__ __forceinline__ void partial_dots(const float (&q)[n], const float (&k)[n], float* qq, float* kk,
                                             float* qk) {
  *qq = *kk = *qk = 0.f;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    *qq = fmaf(q[i], q[i], *qq);
    *kk = fmaf(k[i], k[i], *kk);
    *qk = fmaf(q[i], k[i], *qk);
  }
}

template <int K, bool kVK, bool kBF16, bool kOne, bool kLate>
__global__ void __launch_bounds__(kMaxWarpsPerCta * 32, kMinCtasPerSm)
    recurrent_kernel(const __grid_constant__ RecurrentParams p) {
  static_assert(K == 64 || K == 128, "K / 8 rows per lane, K / 4 lanes per vk row");
  static_assert(!(kOne && kVK), "the one-token path is layout kv's");
  static_assert(kOne || !kLate, "only the one-token path checks the pool row late");
  constexpr int R = K / 8;          // state rows per lane
  constexpr int kRowLanes = K / 4;  // vk: lanes along one row of K elements
  constexpr int kIn = kVK ? 4 : R;  // q and k elements per lane
  constexpr int kSums = kVK ? 2 * R : 8;
  // The next kernel in the stream may launch now (programmatic launch): it
  // waits for this grid's completion before it reads what this one writes.
  launch_dependents();
  const int lane = threadIdx.x & 31;
  // 32-bit index arithmetic (the host keeps tiles below 2^31): 64-bit
  // division is a long software sequence, on the path to the first load.
  const uint32_t tile = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (tile >= static_cast<uint32_t>(p.tiles)) return;
  const uint32_t slices = static_cast<uint32_t>(p.slices), heads = static_cast<uint32_t>(p.HV);
  const uint32_t item = tile / slices;
  const int v0 = static_cast<int>(tile - item * slices) * kTileColumns;
  const int64_t n = item / heads;
  const int hv = static_cast<int>(item - static_cast<uint32_t>(n) * heads);
  const int h = hv / static_cast<int>(p.group);

  // This lane's elements: rows a0 .. a0 + R - 1 of the state matrix, four
  // consecutive from b0 in each (kv: a = K row, b = value column; vk: the
  // reverse). `own` indexes the finished sum the reduce-scatter leaves on
  // the lane: 2 c + {0: sk, 1: sq} of the lane's column c (kv) or row (vk).
  int a0, b0, own;
  if constexpr (kVK) {
    a0 = v0 + R * (lane / kRowLanes), b0 = 4 * (lane % kRowLanes), own = lane % kRowLanes;
  } else {
    a0 = R * (lane >> 2), b0 = v0 + 4 * (lane & 3), own = lane >> 2;
  }
  const int kin0 = kVK ? b0 : a0;                  // the lane's first q, k element
  const int v_own = (kVK ? a0 : b0) + (own >> 1);  // the value column it finishes
  const bool own_k = (own & 1) == 0;
  auto mat_stride = [](const StateTensor& s) { return kVK ? s.v_stride : s.k_stride; };

  // Launched programmatically, this grid may start while the kernel before
  // it still runs, and nothing of the caller's may be read until that one
  // completes: any input may be its output. Until then, pull the token
  // inputs and the state tile toward L2 at the addresses the indices give
  // as they read now, and keep that pool row as a guess (the state rarely
  // comes from the kernel just before). A prefetch changes no value, so a
  // stale index costs only bandwidth; everything is read again after the
  // wait.
  int64_t guess = -1;
  if (p.programmatic) {
    // The reads first (one round trip for all), then the prefetches.
    if (p.init.data != nullptr)
      guess = p.indices != nullptr ? peek_index(p.indices, p.idx64, n * p.idx_s) : n;
    int64_t t0 = n * p.tokens_per_seq, len = p.tokens_per_seq;
    if (!kOne && p.cu_seqlens != nullptr) {
      t0 = peek_index(p.cu_seqlens, p.cu64, n * p.cu_s);
      const int64_t end = peek_index(p.cu_seqlens, p.cu64, (n + 1) * p.cu_s);
      len = t0 >= 0 && end >= t0 && end <= p.T && end - t0 <= p.max_len ? end - t0 : 0;
    }
    if (p.indices != nullptr && guess >= p.pool_rows) guess = -1;
    if (guess >= 0) {
      const int64_t rs = mat_stride(p.init);
      prefetch_rows<kBF16, R>(p.init.data, guess * p.init.row_stride + hv * p.init.head_stride + a0 * rs + b0,
                              rs);
    }
    if (lane < len) {
      const int64_t t = t0 + lane;
      const int es = p.io == DType::kF32 ? 4 : 2;
      prefetch_span(static_cast<const char*>(p.q) + (t * p.q_s0 + h * p.q_s1) * es, K * es);
      prefetch_span(static_cast<const char*>(p.k) + (t * p.k_s0 + h * p.k_s1) * es, K * es);
      prefetch_span(static_cast<const char*>(p.v) + (t * p.v_s0 + hv * p.v_s1 + v0) * es, kTileColumns * es);
      prefetch_span(
          static_cast<const char*>(p.gate_a) + (t * p.ga_s0 + hv * p.ga_s1) * (p.gate_a_bf16 ? 2 : 4), 1);
      prefetch_span(
          static_cast<const char*>(p.gate_b) + (t * p.gb_s0 + hv * p.gb_s1) * (p.gate_b_bf16 ? 2 : 4), 1);
    }
  }
  wait_for_prerequisites();
  if (p.error_flag != nullptr && tile == 0 && lane == 0) *p.error_flag = 0;

  // Every global load of the warp is issued before any math that waits on
  // one: the pool row's index; the state, where its row is known without
  // the index (dense, or the guess); the sequence bounds; the token inputs
  // (the gates into registers, q, k and v of all of the sequence's tokens
  // into shared memory); then the state at the row the index names, unless
  // read already. Reading at the guess (after the wait, so the data are
  // final) lets the state's round trip overlap the index's instead of
  // following it. Bounds and rows without a host copy are checked on the
  // way (before the load they guard, or before any store); a sequence that
  // fails writes nothing.
  int64_t row = n;
  if (p.indices != nullptr) row = load_index(p.indices, p.idx64, n * p.idx_s);

  // The state of pool row r (r < 0 or no initial state: zero).
  float s[R][4];
  auto read_state = [&](int64_t r) {
    if (p.init.data != nullptr && r >= 0) {
      const int64_t rs = mat_stride(p.init);
      load_rows<kBF16>(p.init.data, r * p.init.row_stride + hv * p.init.head_stride + a0 * rs + b0, rs, s);
    } else {
#pragma unroll
      for (int i = 0; i < R; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.f;
    }
  };
  const bool early = p.indices == nullptr || p.programmatic;
  const int64_t first = p.indices == nullptr ? n : guess;
  if (early) read_state(first);

  int64_t t0 = kOne ? n : n * p.tokens_per_seq;
  int len = kOne ? 1 : static_cast<int>(p.tokens_per_seq);
  if (!kOne && p.cu_seqlens != nullptr) {
    t0 = load_index(p.cu_seqlens, p.cu64, n * p.cu_s);
    const int64_t end = load_index(p.cu_seqlens, p.cu64, (n + 1) * p.cu_s);
    if (p.check_seqs && (t0 < 0 || end < t0 || end > p.T)) return;
    if (end - t0 > p.max_len) return;  // validated on the host unless check_seqs
    len = static_cast<int>(end - t0);
  }

  // Gates of every token, token j's on lane j (verify's at most 16 tokens
  // fit a warp); the loop fetches them with one shuffle each. kOne: every
  // lane reads the token's.
  static_assert(kMaxVerifyTokens <= 32, "one token's gates per lane");
  float gate_a = 0.f, gate_b = 0.f, a_log = 0.f, dt_bias = 0.f;
  if (kOne || lane < len) {
    const int64_t t = kOne ? t0 : t0 + lane;
    gate_a = load_gate_input(p.gate_a, p.gate_a_bf16, t * p.ga_s0 + hv * p.ga_s1);
    gate_b = load_gate_input(p.gate_b, p.gate_b_bf16, t * p.gb_s0 + hv * p.gb_s1);
    if (p.fused) a_log = p.a_log[hv * p.a_log_s], dt_bias = p.dt_bias[hv * p.dt_bias_s];
  }

  // q, k and the tile's 16 values of v of each token, in 16-byte copies:
  // token j at stage + j * tok_bytes as [q: K][k: K][v: 16] io elements.
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int es_log = p.io == DType::kF32 ? 2 : 1, es = 1 << es_log;  // bytes per io element
  const int row_units = K * es / 16, tok_bytes = (2 * K + kTileColumns) * es;
  unsigned char* stage = smem_raw + (threadIdx.x >> 5) * static_cast<int>(p.max_len) * tok_bytes;
  // The one-token decode in layout kv (kOne) reads its token straight into
  // the registers the token loop uses (when launched programmatically, the
  // lines were pulled to L2 before the wait): nothing staged, no copies to
  // wait for; raw loads now, conversions once every load has issued. Its
  // norms come from those registers: a lane's K / 8 rows are the prelude's
  // part number rg = lane / 4, and summing over lane bits 4, 3, 2 adds the
  // parts in the prelude's order, so the values are bitwise those of a
  // verify (layout vk's lanes hold other parts: it stages).
  IoUnits<kOne ? kIn : 8> k_raw, q_raw;
  uint32_t v_raw = 0;
  if constexpr (kOne) {
    load_io_units(static_cast<const char*>(p.k) + (t0 * p.k_s0 + h * p.k_s1) * es, p.io, kin0, k_raw);
    load_io_units(static_cast<const char*>(p.q) + (t0 * p.q_s0 + h * p.q_s1) * es, p.io, kin0, q_raw);
    v_raw = load_io_bits(p.v, p.io, t0 * p.v_s0 + hv * p.v_s1 + v_own);
  }
  for (int j = 0; j < (kOne ? 0 : len); ++j) {
    const int64_t t = t0 + j;
    const char* q = static_cast<const char*>(p.q) + (t * p.q_s0 + h * p.q_s1) * es;
    const char* k = static_cast<const char*>(p.k) + (t * p.k_s0 + h * p.k_s1) * es;
    for (int u = lane; u < 2 * row_units; u += 32)
      cp_async_16(stage + j * tok_bytes + 16 * u, u < row_units ? q + 16 * u : k + 16 * (u - row_units),
                  true);
  }
  for (int c = lane; c < (kOne ? 0 : len << es_log); c += 32) {  // es 16-byte units of v per token
    const int j = c >> es_log, u = c & (es - 1);
    const char* v = static_cast<const char*>(p.v) + ((t0 + j) * p.v_s0 + hv * p.v_s1 + v0) * es;
    cp_async_16(stage + j * tok_bytes + 2 * K * es + 16 * u, v + 16 * u, true);
  }
  if constexpr (!kOne) cp_async_commit();

  // The pool row's checks and, unless read already, its state: the first
  // use of the index, so the warp issues nothing after it until the index
  // arrives. kLate (the one-token path on grids of at most kLateTiles warps)
  // makes it after the token's gate and norm math, whose inputs were issued
  // beside the index: their round trips overlap.
  bool bad = false;
  const auto check_row = [&] {
    bad = p.check_rows && row >= p.pool_rows;  // not read
    if (!early || row != first) read_state(bad ? -1 : row);
    // A row named by another sequence: the state is read, nothing written.
    if (p.check_rows && row >= 0)
      for (int64_t m = lane; m < p.N && !bad; m += 32)
        bad = m != n && load_index(p.indices, p.idx64, m * p.idx_s) == row;
  };
  if constexpr (!kLate) check_row();

  float lane_decay = 1.f, lane_beta = 0.f;
  if (kOne || lane < len) {
    float g = gate_a;
    lane_beta = gate_b;
    if (p.fused) fused_gate(g, lane_beta, a_log, dt_bias, &g, &lane_beta);
    lane_decay = expf(g);
  }
  if constexpr (!kOne) {
    cp_async_wait<0>();
    __syncwarp();
  }
  if constexpr (!kLate)
    if (__any_sync(kFull, bad)) return;

  // The per-token scalars of all tokens before the token loop (they wait
  // only on the inputs, not on the state): eight lanes per token, four
  // tokens per round, each lane over K / 8 elements, then on lane j token
  // j's q scale (scale / |q|), k scale (1 / |k|) and output coefficient
  // (q . k)(q scale)(k scale). Out of the loop they leave it only the
  // state's dependency chain.
  float lane_qs = 1.f, lane_ks = 1.f, lane_qk = 0.f;
  // One token's scalars from its sums over K: q scaled by scale / |q|, k by
  // 1 / |k| (CPU: token_io.h), and (q . k)(q scale)(k scale).
  const auto token_scalars = [&](float qq, float kk, float qk, float* qs, float* ks, float* c) {
    *qs = (p.l2norm ? 1.f / sqrtf(qq + 1e-6f) : 1.f) * p.scale;
    *ks = p.l2norm ? 1.f / sqrtf(kk + 1e-6f) : 1.f;
    *c = qk * *qs * *ks;
  };
  float kx1[kIn] = {}, qx1[kIn] = {}, vx1 = 0.f;
  if constexpr (kOne) {
    convert_io(k_raw, p.io, kx1);
    convert_io(q_raw, p.io, qx1);
    vx1 = convert_io_bits(v_raw, p.io);
    float qq, kk, qk;
    partial_dots(qx1, kx1, &qq, &kk, &qk);
    token_scalars(sum_lanes<16, 4>(qq), sum_lanes<16, 4>(kk), sum_lanes<16, 4>(qk), &lane_qs, &lane_ks,
                  &lane_qk);
  } else {
    constexpr int kPart = K / 8;
    const int group = lane >> 3, part = (lane & 7) * kPart;
    for (int j0 = 0; j0 < len; j0 += 4) {
      const int j = j0 + group;
      float qv[kPart], kv[kPart];
      if (j < len) {
        load_io<kPart>(stage + j * tok_bytes, p.io, part, qv);
        load_io<kPart>(stage + j * tok_bytes + K * es, p.io, part, kv);
      } else {
#pragma unroll
        for (int i = 0; i < kPart; ++i) qv[i] = kv[i] = 0.f;
      }
      float qq, kk, qk;
      partial_dots(qv, kv, &qq, &kk, &qk);
      qq = sum_lanes<4, 1>(qq);
      kk = sum_lanes<4, 1>(kk);
      qk = sum_lanes<4, 1>(qk);
      float qs, ks, c;
      token_scalars(qq, kk, qk, &qs, &ks, &c);
      // Token j0 + l sits on lane 8 l; lane j takes token j's.
      const int src = 8 * (lane - j0);
      const float got_qs = __shfl_sync(kFull, qs, src & 31), got_ks = __shfl_sync(kFull, ks, src & 31);
      const float got_qk = __shfl_sync(kFull, c, src & 31);
      if (lane >= j0 && lane < j0 + 4) lane_qs = got_qs, lane_ks = got_ks, lane_qk = got_qk;
    }
  }

  if constexpr (kLate) {
    check_row();
    if (__any_sync(kFull, bad)) return;
  }

  // kOne: every lane holds the token's scalars; no shuffles.
  const auto token_scalar = [&](float x, int j) { return kOne ? x : __shfl_sync(kFull, x, j); };
  for (int j = 0; j < (kOne ? 1 : len); ++j) {
    const int64_t t = t0 + j;
    const unsigned char* tok = stage + j * tok_bytes;
    float kx[kIn], qx[kIn], vx = vx1;
    if constexpr (kOne) {
#pragma unroll
      for (int i = 0; i < kIn; ++i) kx[i] = kx1[i], qx[i] = qx1[i];
    } else {
      load_io<kIn>(tok + K * es, p.io, kin0, kx);
      load_io<kIn>(tok, p.io, kin0, qx);
      vx = load_io(tok + 2 * K * es, p.io, v_own - v0);
    }
    const float decay = token_scalar(lane_decay, j), beta = token_scalar(lane_beta, j);
    const float qs = token_scalar(lane_qs, j), ks = token_scalar(lane_ks, j);
    const float qkc = token_scalar(lane_qk, j);

    // The partial sums of S^T k and S^T q over the lane's elements (raw q
    // and k: the norms scale the finished sums), then their reduce-scatter.
    float x[kSums];
    if constexpr (kVK) {
      // The reduce-scatter's first step pairs rows r and r + R / 2; taking
      // it as each pair is formed keeps R live sums instead of 2 R.
      const bool upper = (lane & (kRowLanes / 2)) != 0;
#pragma unroll
      for (int r = 0; r < R / 2; ++r) {
        float sum[2][2] = {};
#pragma unroll
        for (int half = 0; half < 2; ++half)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            sum[half][0] = fmaf(s[r + half * R / 2][c], kx[c], sum[half][0]);
            sum[half][1] = fmaf(s[r + half * R / 2][c], qx[c], sum[half][1]);
          }
#pragma unroll
        for (int w = 0; w < 2; ++w) {
          const float keep = upper ? sum[1][w] : sum[0][w], send = upper ? sum[0][w] : sum[1][w];
          x[2 * r + w] = keep + __shfl_xor_sync(kFull, send, kRowLanes / 2);
        }
      }
      reduce_scatter<R, kRowLanes / 4, 1>(x, lane);
    } else {
#pragma unroll
      for (int c = 0; c < 4; ++c) x[2 * c] = x[2 * c + 1] = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          x[2 * c] = fmaf(s[r][c], kx[r], x[2 * c]);
          x[2 * c + 1] = fmaf(s[r][c], qx[r], x[2 * c + 1]);
        }
      reduce_scatter<8, 16, 4>(x, lane);
    }
    const float other = __shfl_xor_sync(kFull, x[0], kVK ? 1 : 4);
    const float sk = ks * (own_k ? x[0] : other), sq = qs * (own_k ? other : x[0]);
    const float u = beta * (vx - decay * sk);
    if (own_k) store_io(p.out, p.io, t * p.o_s0 + hv * p.o_s1 + v_own, fmaf(qkc, u, decay * sq));
    const float uk = u * ks;  // k u^T with raw k

    // S' = exp(g) S + k u^T, with u gathered from the lanes that own it.
    if constexpr (kVK) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        // Lane 2 r of the row's kRowLanes-wide segment (a constant source lane).
        const float ur = __shfl_sync(kFull, uk, 2 * r, kRowLanes);
#pragma unroll
        for (int c = 0; c < 4; ++c) s[r][c] = fmaf(kx[c], ur, decay * s[r][c]);
      }
    } else {
      float uc[4];
#pragma unroll
      for (int c = 0; c < 4; ++c) uc[c] = __shfl_sync(kFull, uk, 8 * c + (lane & 3));
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c) s[r][c] = fmaf(kx[r], uc[c], decay * s[r][c]);
    }
    if (p.inter.data != nullptr) {
      const int64_t rs = mat_stride(p.inter);
      store_rows<kBF16>(
          p.inter.data,
          n * p.inter.row_stride + j * p.inter_slot_stride + hv * p.inter.head_stride + a0 * rs + b0, rs, s);
    }
  }

  if (p.fin.data != nullptr && row >= 0) {
    const int64_t rs = mat_stride(p.fin);
    store_rows<kBF16>(p.fin.data, row * p.fin.row_stride + hv * p.fin.head_stride + a0 * rs + b0, rs, s);
  }
}

// The launch shape: warps per CTA and the shared memory that stages the
// token inputs (max_len tokens of q, k and 16 values of v per warp). One
// warp per CTA while the grid is small, so that a batch-1 decode spreads
// over as many SMs as it has warps; four from kManyTiles warps up (fewer,
// larger CTAs to schedule), fewer where the staging would pass the 48 KB a
// launch gets without opting in (only 16-token fp32 verifies).
// Not done: splitting a tile's K rows over 2-4 warps of a CTA on small
// grids (partial sums reduced through shared memory). A batch-1 decode's
// time is its round trips (index, state) plus the state's bytes over the
// memory bandwidth, the same however the tiles are cut; a split shortens
// only the math after the last state row arrives (~350 -> ~200 cycles, about
// 0.1 us), for a second code path and a block barrier.
struct Shape {
  int warps;
  size_t smem;
};
Shape launch_shape(const RecurrentParams& p, int64_t K, bool staged) {
  const int64_t es = p.io == DType::kF32 ? 4 : 2;
  const int64_t warp_bytes = staged ? p.max_len * (2 * K + kTileColumns) * es : 0;
  int warps = p.tiles >= kManyTiles ? kMaxWarpsPerCta : 1;
  while (warps > 1 && warps * warp_bytes > kMaxStageBytes) warps /= 2;
  return {warps, static_cast<size_t>(warps * warp_bytes)};
}

// GDN_DECODE_PDL_TILES=N (a measurement knob, read once) moves the
// programmatic-launch threshold below for grids of several tokens per
// sequence from kManyTiles to N tiles. (A knob that let the next kernel
// launch only once this one's loads had landed gained nothing on the H100,
// batch 1 one token 4.3 against 4.1 us, h100-2026-12-07-9e67858-checks.txt,
// and is gone.)
int64_t pdl_tiles() {
  static const int64_t tiles = [] {
    const char* env = std::getenv("GDN_DECODE_PDL_TILES");
    return env != nullptr && *env != '\0' ? static_cast<int64_t>(std::atoll(env)) : kManyTiles;
  }();
  return tiles;
}

template <int K, bool kVK, bool kBF16, bool kOne, bool kLate>
Status launch(const RecurrentParams& p, cudaStream_t stream) {
  if (p.tiles > 0x7fffffff)
    return Status::Unsupported("cuda: N * HV * V / 16 (" + std::to_string(p.tiles) +
                               ") exceeds 2^31 - 1 warps for one decode or verify launch");
  // Programmatic launch where the machine code has the grid dependency wait
  // (sm_90+) and the grid is small, runs one token per sequence, or writes
  // every intermediate state: the launch latency and the state prefetch
  // overlap the kernel before in the stream. On other large grids (several
  // tokens per sequence) the early CTAs and their prefetches only compete
  // with that kernel's memory traffic. Measured on the H100 (graph us,
  // programmatic / plain, one warm machine; bench/results
  // h100-2026-12-07-9e67858-checks.txt): decode b32 t1 (8192 warps) 56.2 /
  // 57.5, b256 t1 387.4 / 407.0, b32 t4 65.6 / 60.2, b256 t4 438.7 / 419.8.
  // The H200 at bc5be16 lost with it on the large one-token rows
  // (bench/results/cuda-h200-2026-12-02-bc5be16*.json): b32 t1 46.9 / 43.2,
  // b256 t1 308 / 296 (and b1 t1 3.9 / 4.4, b32 t4 60.6 / 50.7, b256 t4 379 /
  // 333); the H100, the card the targets are set on, decides.
  static const bool can_wait = kernel_waits_for_prerequisites(recurrent_kernel<K, kVK, kBF16, kOne, kLate>);
  RecurrentParams q = p;
  q.programmatic = can_wait && (p.tiles < pdl_tiles() || p.max_len == 1 || p.inter.data != nullptr);
  const Shape shape = launch_shape(q, K, !kOne);
  const int64_t ctas = (q.tiles + shape.warps - 1) / shape.warps;
  return cuda_status(
      launch_kernel(recurrent_kernel<K, kVK, kBF16, kOne, kLate>, dim3(static_cast<unsigned>(ctas)),
                    dim3(32 * shape.warps), shape.smem, stream, q.programmatic, q),
      "recurrent_kernel launch");
}

// The one-token path, checking the pool row late on grids of at most
// kLateTiles warps.
template <int K, bool kBF16>
Status launch_one(const RecurrentParams& p, cudaStream_t stream) {
  return p.tiles <= kLateTiles ? launch<K, false, kBF16, true, true>(p, stream)
                               : launch<K, false, kBF16, true, false>(p, stream);
}

template <int K>
Status launch_k(const RecurrentParams& p, StateLayout layout, bool bf16, cudaStream_t stream) {
  if (layout == StateLayout::kVK)
    return bf16 ? launch<K, true, true, false, false>(p, stream)
                : launch<K, true, false, false, false>(p, stream);
  if (p.cu_seqlens == nullptr && p.tokens_per_seq == 1)
    return bf16 ? launch_one<K, true>(p, stream) : launch_one<K, false>(p, stream);
  return bf16 ? launch<K, false, true, false, false>(p, stream)
              : launch<K, false, false, false, false>(p, stream);
}

}  // namespace

Status launch_recurrent(const RecurrentParams& p, int64_t K, StateLayout layout, DType state,
                        cudaStream_t stream) {
  if (p.tiles == 0) return Status::Ok();
  const bool bf16 = state == DType::kBF16;
  switch (K) {
    case 64:
      return launch_k<64>(p, layout, bf16, stream);
    case 128:
      return launch_k<128>(p, layout, bf16, stream);
    default:
      return Status::Unsupported("cuda: decode and verify support K in {64, 128}, got K = " +
                                 std::to_string(K));
  }
}

Status run_cuda_recurrent(const Call& c, const Args& a, int32_t* prefill_error_flag) {
  if (c.V % kTileColumns != 0)
    return Status::Unsupported("cuda: decode and verify need V to be a multiple of " +
                               std::to_string(kTileColumns) + ", got V = " + std::to_string(c.V));
  RecurrentParams p;
  p.N = c.N, p.T = c.T, p.HV = c.HV, p.group = c.HV / c.H;
  p.slices = c.V / kTileColumns;
  p.tiles = c.N * c.HV * p.slices;
  set_token_inputs(a, &p);
  p.io = c.io_dtype;
  if (a.cu_seqlens.defined()) {
    p.cu_seqlens = a.cu_seqlens.data;
    p.cu64 = a.cu_seqlens.dtype == DType::kI64;
    p.cu_s = a.cu_seqlens.stride[0];
    p.check_seqs = a.cu_seqlens_host == nullptr;
  }
  p.tokens_per_seq = c.op == Op::kDecode ? 1 : a.tokens_per_seq;
  if (a.cu_seqlens.defined()) {
    // The staging area holds max_len tokens: the longest sequence when the
    // host has cu_seqlens, else the most the device check lets through.
    p.max_len = 0;
    if (!c.seq_start.empty()) {
      for (int64_t n = 0; n < c.N; ++n) p.max_len = std::max(p.max_len, c.seq_start[n + 1] - c.seq_start[n]);
    } else {
      p.max_len = kMaxVerifyTokens;
      if (a.intermediate_states.defined()) p.max_len = std::min(p.max_len, c.intermediate_slots);
    }
  } else {
    p.max_len = p.tokens_per_seq;
  }
  set_state_inputs(a, c.pool, c.pool_rows, &p);
  p.check_rows = c.pool && a.state_indices_host == nullptr;
  p.inter = state_view(a.intermediate_states, a.state_layout, &p.inter_slot_stride);
  p.out = a.out.data, p.o_s0 = a.out.stride[0], p.o_s1 = a.out.stride[1];
  p.scale = c.scale;
  p.l2norm = a.l2norm_qk;
  p.error_flag = prefill_error_flag;

  DeviceGuard guard;
  GDN_CUDA_RETURN(guard.set(c.device_ordinal));
  return launch_recurrent(p, c.K, a.state_layout, c.state_dtype, static_cast<cudaStream_t>(a.stream));
}

}  // namespace gdn::cuda
