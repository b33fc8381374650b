// The sm90 (H100, H200) state pass of the prefill for bf16 io: one CTA per
// (sequence or segment, value head, one or two tiles of 64 value columns),
// in two forms. The two-kernel pass is fed by the prep kernel
// (sm80/prefill_prep.cu, which writes each chunk's Au, L and row factors to
// the workspace in this kernel's shared-memory layout); the fused pass
// (kFused) forms them itself in a prep warpgroup (prep_role), one chunk
// ahead of the state warpgroups, so nothing but q, k, v, the gates and the
// states crosses memory. A third form (kSplitL) splits the work: the prep
// kernel writes Au and the factors but s_q from k and the gates alone, the
// pass's prep warpgroup forms L and s_q, so L and the prep's read of q stay
// off memory while the prep warpgroup keeps only Q K^T and L's masks per
// chunk; its k and q come through a deeper ring of their own (kKqStages).
// pass_form_for picks the form. Where the CTA items of a whole-sequence
// pass outnumber the SMs, the two-kernel and kSplitL forms can run
// persistent (kPersist, GDN_SM90_PERSIST=1; ItemRing below says how); where
// they leave half the SMs idle, the two-kernel pass can run beside the prep
// (kOverlap, GDN_SM90_OVERLAP=1; sm80/prefill_prep.cu's overlapped prep).
//
// Roles (384 threads, 512 fused; one CTA per SM by shared memory; the load
// warpgroup gives its registers to the state warpgroups, Config::kStateRegs
// each):
//   kState (warpgroups 0, 1)  warpgroup g owns column tile g of the CTA;
//                         its warp w owns value columns 16 w .. of the tile
//                         as S^T [64, K] in wgmma accumulator registers for
//                         the whole sequence. With one tile per CTA
//                         (StateParams::groups == 1) warpgroup 1 idles.
//   kLoad  (warpgroup 2)  one thread issues each chunk's copies into a
//                         kStages-slot ring completed on mbarriers: bulk
//                         tensor copies of k, q (64 x K) and v (64 x 64 per
//                         tile), bulk copies of Au, L and the factors
//                         (two-kernel pass; kSplitL: Au and the factors,
//                         with k and q in a kKqStages-slot ring of their
//                         own, issued a slot ahead)
//   kPrep  (warpgroup 3, fused and kSplitL passes)  per chunk, once its
//                         k, q and v are in: the rows past the chunk's end
//                         cleared, Au, L and the factors (kSplitL: L and
//                         s_q) into the slot, then the slot's `ready`
//                         barrier (the state warpgroups wait on it as well
//                         as on `full`); 104 registers (96 persistent), so
//                         the state warpgroups get 192 (O completes before
//                         the update is issued to fit them)
// The two tiles of a CTA belong to the same (sequence, value head): they
// share the slot's k, q, Au, L and factors, so a head's chunk crosses from
// L2 once instead of once per tile, and the SM interleaves two chains of
// dependent products instead of running one.
// Per chunk, with the state entering it:
//   [P | R] = S^T [K | Q]^T                 [64, 128]  bf16 (S^T rounded, below)
//   X   = V^T - P diag(s_x)
//   Vn  = X Au^T                            [64, 64]   tf32
//   O^T = R diag(s_q) + Vn L^T                         tf32
//   S^T = decay S^T + (Vn diag(s_k)) K       [64, K]    bf16, Vn split hi + lo
// Rows of a chunk past its sequence's end hold the next sequence's tokens
// (or zeros past T, the copies' out-of-bounds fill). Au, L and the factors
// are zero there, but a zero factor times an Inf or NaN of the neighbour's
// k or v is NaN, so the state warpgroup (the prep warpgroup in the fused
// pass, q's rows too) zeroes those rows of the k and v tiles before the
// first product reads them (q's rows reach only outputs that are not
// stored).
// k and q tiles are 128-byte swizzled as the bulk copies write them
// (K-major for [K | Q]^T, MN-major for the update); Au and L come in the
// tile layout of prep/tile_layout.cuh.
//
// Measured and not kept (H200, GDN_SM90_PROBE=3, q3n-tp1 1x8192): an
// earlier kernel with the prep done in the CTA by a third warpgroup took
// about 10,000 cycles a chunk in the prep (one warp per scheduler running
// about 3,000 dependent instructions), twice the state pass's, and ran
// slower than the cuda backend on 18 of 19 suite rows as first built, 7 of
// the 8 rows timed after its norms and inverse were sped up. Forming only L
// here (Q K^T on wgmma behind Vn, masked into the slot during the update,
// a panel per warpgroup, so the prep writes no L) was slower on every row,
// 0.84x in geometric mean and 0.68x where one warpgroup runs a CTA
// (bench/results/sm90-h200-2026-12-03-inkernel-l.txt): the chain, not the
// 16 KB per chunk of L, bounds this pass.
#include <cuda.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "cuda/prep/chunk_prep.cuh"
#include "cuda/ptx/griddep.cuh"
#include "cuda/ptx/sm90.cuh"
#include "cuda/sm80/state_pass.cuh"
#include "cuda/sm90/state_pass.h"

namespace gdn::cuda::sm90 {
namespace {

// GDN_SM90_PROBE=3 (a measurement build, -DCMAKE_CUDA_FLAGS=-DGDN_SM90_PROBE=3):
// every warp of the state (and, fused, the prep) warpgroups in CTA (0, 0, 0)
// prints the cycles each step of its chunk loop took, averaged over the
// chunks, and the cycles from the load thread's issue of a slot's copies to
// the warp's passing the slot's `full` barrier (the copies' latency where
// the warp waited there).
#if GDN_SM90_PROBE == 3
__shared__ long long probe_issued[2];  // per ring slot: when its copies went out (kStages)
#define GDN_PROBE_BEGIN()     \
  long long probe_t[6] = {};  \
  long long probe_copies = 0; \
  long long probe_last = clock64()
#define GDN_PROBE_ISSUED(st) (*static_cast<volatile long long*>(&probe_issued[st]) = clock64())
#define GDN_PROBE_LANDED(st) \
  (probe_copies += clock64() - *static_cast<volatile long long*>(&probe_issued[st]))
#define GDN_PROBE_MARK(i)             \
  do {                                \
    const long long now_ = clock64(); \
    probe_t[i] += now_ - probe_last;  \
    probe_last = now_;                \
  } while (0)
// (Lane 0 of every warp: the warps of a warpgroup wait for each other at
// its barriers, so where one spends a step the others spend it waiting.)
#define GDN_PROBE_REPORT(who, chunks)                                                                    \
  if (blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0 && threadIdx.x % 32 == 0)                    \
  printf("probe %s warp %d chunks %d cycles/chunk: %lld %lld %lld %lld %lld %lld copies-to-pass %lld\n", \
         who, static_cast<int>(threadIdx.x / 32), chunks, probe_t[0] / chunks, probe_t[1] / chunks,      \
         probe_t[2] / chunks, probe_t[3] / chunks, probe_t[4] / chunks, probe_t[5] / chunks,             \
         probe_copies / chunks)
#else
#define GDN_PROBE_ISSUED(st) (void)0
#define GDN_PROBE_LANDED(st) (void)0
#define GDN_PROBE_BEGIN() (void)0
#define GDN_PROBE_MARK(i) (void)0
#define GDN_PROBE_REPORT(who, chunks) (void)0
#endif

using Bf16 = __nv_bfloat16;

// S^T enters [P | R] as bf16 (its hi half only); Vn enters the update split
// hi + lo. Measured on the H200 (GDN_SM90_PROBE builds,
// bench/results/sm90-h200-2026-12-04-split-probes.txt): splitting S^T too
// cost 1.11x in geometric mean over the suite's prefill rows and bought
// nothing in the final state (rel RMS 2.27e-4 either way at q3n-tp1 1x8192)
// and 2% in o (1.70e-3 split, 1.74e-3 not); dropping Vn's lo half as well
// gained 1.06x more but took the state's error to 1.69e-3 (7x).
// Measurement builds: GDN_SM90_PROBE=4 drops Vn's split too, =7 splits S^T.
#if GDN_SM90_PROBE == 7
constexpr bool kSplitState = true;
#else
constexpr bool kSplitState = false;
#endif
#if GDN_SM90_PROBE == 4
constexpr bool kSplitVn = false;
#else
constexpr bool kSplitVn = true;
#endif

enum class Role { kState, kLoad, kPrep };
constexpr int kGroupThreads = 128;  // one warpgroup
constexpr int kMaxGroups = 2;       // state warpgroups per CTA
constexpr int kStateBarrier = 1;    // named barrier of the state warpgroups alone (0 is __syncthreads)
constexpr int kPrepBarrier = 2;     // ... of the prep warpgroup alone
constexpr int kStateWarps = 4 * kMaxGroups;
// Per variant: the two-kernel pass (prep results copied in) has the state
// warpgroups and the load warpgroup; the fused pass adds a prep warpgroup,
// and its state warpgroups fit 192 registers because O completes before the
// update is issued (state_role).
// Whether a form's CTA holds a prep warpgroup (kFused, kSplitL).
constexpr bool has_prep(PassForm f) {
  return f != PassForm::kTwoKernel;
}
// The persistent pass (kPersist) takes registers from the state (or prep)
// warpgroups for its load thread, which decodes items and hands them out
// (ptxas, nvcc 13.0: the load thread spills at 24; nothing spills at 32
// with the state warpgroups at 232 or the prep warpgroup at 96).
template <PassForm kForm, bool kPersist = false>
struct Config {
  static constexpr bool kPrep = has_prep(kForm);
  static constexpr int kThreads = (kMaxGroups + (kPrep ? 2 : 1)) * kGroupThreads;
  static constexpr int kStateRegs = kPrep ? 192 : kPersist ? 232 : 240;
  static constexpr int kPrepRegs = kPrep ? (kPersist ? 96 : 104) : 0;
  static constexpr int kLoadRegs = kPersist ? 32 : 24;  // setmaxnreg
  // setmaxnreg moves registers within the CTA's launch allocation: 65536
  // per SM over kThreads threads, rounded down to a multiple of 8 per thread.
  static_assert(kMaxGroups * kGroupThreads * kStateRegs + kGroupThreads * (kLoadRegs + kPrepRegs) <=
                    kThreads * ((65536 / kThreads) & ~7),
                "the warpgroups' registers fit the CTA's launch allocation");
};
constexpr int kTileColumns = 16 * 4;  // value columns of one warpgroup
constexpr int kStages = 2;            // ring slots
// Slots of the ring of k and q tiles: kSplitL's prep warpgroup forms Q K^T
// and L from a chunk's k and q while the state warpgroups still hold the
// two chunks before it, so they come a slot earlier than v, Au and the
// factors (which wait for the state warpgroups alone). The other forms
// stream k and q with the rest of the chunk.
template <PassForm kForm>
constexpr int kKqStages = kForm == PassForm::kSplitL ? 3 : kStages;
#if GDN_SM90_PROBE == 3
static_assert(kStages == sizeof(probe_issued) / sizeof(probe_issued[0]), "a probe time per ring slot");
#endif
constexpr uint32_t kTile = kChunk * 128;  // bytes of a 64-row tile of 128-byte rows
constexpr uint32_t kRowGroup = 8 * 128;   // bytes of an 8-row swizzle atom
constexpr int kOStride = 16 + 8;          // bf16 per row of a warp's output staging tile
static_assert(kTileColumns == 64, "one wgmma M of value columns per warpgroup");
static_assert(kF32TileBytes == 2 * kTile, "an fp32 64 x 64 matrix is two swizzled panels");

// A chunk's k and q tiles: kq[p] holds panel p (k columns 64 p ..) of its k
// rows, then its q rows: 128 rows, so [K | Q]^T is one N = 128 operand.
template <int K>
struct KqTiles {
  unsigned char kq[K / 64][2][kTile];
};
// One ring slot: a chunk's operands, its k and q too where they share the
// ring (kWithKq; else they come through their own, kKqStages).
template <int K>
struct SlotRest {
  unsigned char v[kMaxGroups][kTile];  // 64 tokens x a tile's 64 value columns
  unsigned char au[2][kTile];          // fp32 Au (tile_layout.cuh)
  unsigned char l[2][kTile];           // fp32 L
};
template <int K, bool kWithKq>
struct Slot : SlotRest<K> {};
template <int K>
struct Slot<K, true> {
  KqTiles<K> kq;  // first, as the tiles' 1024-byte alignment wants
  unsigned char v[kMaxGroups][kTile];
  unsigned char au[2][kTile];
  unsigned char l[2][kTile];
};

// The prep warpgroup's scratch (the S of prep/chunk_prep.cuh): the gates
// and norms (kSplitL), and for the fused pass's inverse M and the diagonal
// blocks before them (PrepScratch keeps the layout its kernels were
// measured with, M first, so it repeats the gates' fields rather than
// deriving from GateScratch, whose base would come first).
struct GateScratch {
  float G[kChunk], G2[kChunk], beta[kChunk], rnq[kChunk], rnk[kChunk];
};
struct PrepScratch {
  float m[kChunk][kPrepMatStride];
  float D[kPrepBlocks][kPrepBlk][kPrepDStride];
  float G[kChunk], G2[kChunk], beta[kChunk], rnq[kChunk], rnk[kChunk];
};
struct NoPrepScratch {};
template <PassForm kForm>
using PrepScratchOf = std::conditional_t<kForm == PassForm::kFused, PrepScratch, NoPrepScratch>;

template <PassForm kForm>
constexpr bool kKqRing = kKqStages<kForm> != kStages;  // k and q through a ring of their own

template <int K, PassForm kForm, bool kRing = kKqRing<kForm>>
struct SharedStorage {          // k and q in the slots
  Slot<K, true> slot[kStages];  // first: 1024-byte aligned
  float F[kStages][kFactorStride];
  Bf16 o[kStateWarps][kChunk][kOStride];
  uint64_t full[kStages], empty[kStages];
  uint64_t ready[kStages];  // prep warpgroup: the slot's Au, L and factors are formed
  PrepScratchOf<kForm> prep;
};
template <int K, PassForm kForm>
struct SharedStorage<K, kForm, true> {  // kSplitL: k and q through their own ring
  KqTiles<K> kq[kKqStages<kForm>];      // first: 1024-byte aligned
  Slot<K, false> slot[kStages];
  float F[kStages][kFactorStride];
  Bf16 o[kStateWarps][kChunk][kOStride];
  uint64_t full[kStages], empty[kStages];
  uint64_t ready[kStages];  // prep warpgroup: the slot's L and s_q are formed
  uint64_t kq_full[kKqStages<kForm>], kq_empty[kKqStages<kForm>];
  // s_q per slot: the prep warpgroup forms them before the slot's copies
  // land, so they cannot sit in F, which the copies fill.
  float sq[kStages][kChunk];
  alignas(16) GateScratch prep;  // (its float2 accesses)
};
static_assert(sizeof(KqTiles<128>) % 1024 == 0 && sizeof(KqTiles<64>) % 1024 == 0 &&
                  sizeof(Slot<128, true>) % 1024 == 0 && sizeof(Slot<64, true>) % 1024 == 0 &&
                  sizeof(Slot<128, false>) % 1024 == 0 && sizeof(Slot<64, false>) % 1024 == 0,
              "tiles and slots keep the 1024-byte alignment");

// Chunk i's k and q tiles: slot st's, or slot sk of their own ring.
template <int K, PassForm kForm, typename SlotT>
__device__ __forceinline__ KqTiles<K>& kq_tiles(SharedStorage<K, kForm>& s, SlotT& sl, int sk) {
  if constexpr (kKqRing<kForm>)
    return s.kq[sk];
  else
    return sl.kq;
}
static_assert((kFactorStride * sizeof(float)) % 16 == 0, "bulk copies move multiples of 16 bytes");

// Descriptors of the slot's operands. K-major: k-step ks of a 16-bit tile
// starts 32 ks bytes into the rows (a new panel every 4 steps), of a tf32
// tile 32 bytes per 8-wide step likewise.
template <int K>
__device__ __forceinline__ uint64_t kq_desc(const KqTiles<K>& s, int which, int ks) {
  return smem_desc(s.kq[ks / 4][which] + (ks % 4) * 32, 16, kRowGroup);
}
__device__ __forceinline__ uint64_t f32_desc(const unsigned char (&tile)[2][kTile], int kk) {
  return smem_desc(tile[kk / 4] + (kk % 4) * 32, 16, kRowGroup);
}
// k as the MN-major B of the update, tokens 16 js ..: panels of 64 k columns
// are 2 kTile apart (k and q alternate).
template <int K>
__device__ __forceinline__ uint64_t k_update_desc(const KqTiles<K>& s, int js) {
  return smem_desc(s.kq[0][0] + js * 2 * kRowGroup, 2 * kTile, kRowGroup);
}

// Zeroes rows len .. 63 of the slot's k tiles and (unless v is not loaded)
// the group's v tile, then makes the zeros visible to the wgmma reads of
// every state warpgroup. A row is 128 contiguous bytes whatever the swizzle.
// Called by the threads of all `groups` state warpgroups (tid among them):
// the k panels are shared, so their rows are split over all of them.
template <int K, typename SlotT>
__device__ __forceinline__ void clear_rows_past(KqTiles<K>& kq, SlotT& sl, int len, int groups, int group,
                                                bool map_cols, int tid) {
  constexpr int kUnitsPerRow = 128 / 16;
  const int from = len * kUnitsPerRow, units = (kChunk - len) * kUnitsPerRow;
  const int4 zero = make_int4(0, 0, 0, 0);
  for (int u = tid; u < units * (K / 64); u += groups * kGroupThreads)
    reinterpret_cast<int4*>(kq.kq[u / units][0])[from + u % units] = zero;
  if (!map_cols)
    for (int u = tid % kGroupThreads; u < units; u += kGroupThreads)
      reinterpret_cast<int4*>(sl.v[group])[from + u] = zero;
  fence_async_shared();
  named_barrier(kStateBarrier, groups * kGroupThreads);
}

// The column tiles of a CTA: state warpgroup g takes tile first + g of the
// (sequence or segment, value head). In the local pass, tiles past the value
// columns carry columns of the segment's state map (sm80/prefill_columns.cu).
struct CtaTiles {
  int first, v_tiles;
  bool local;
  __device__ __forceinline__ bool map_cols(int g) const { return local && first + g >= v_tiles; }
  __device__ __forceinline__ int v0(int g) const {
    return (map_cols(g) ? first + g - v_tiles : first + g) * kTileColumns;
  }
};

// Slot st's s_q (kSplitL: formed by the prep warpgroup beside F).
template <PassForm kForm, typename Storage>
__device__ __forceinline__ const float* q_factors(const Storage& s, int st) {
  if constexpr (kForm == PassForm::kSplitL)
    return s.sq[st];
  else
    return s.F[st] + kFactorSq;
}

// kPFirst (GDN_SM90_PFIRST=1, the two-kernel pass over whole sequences; a
// candidate not yet timed on a GPU): P is issued before R, each in a commit
// group of its own, and X forms once P alone is in, R completing meanwhile.
// The forms with a prep warpgroup (192 registers a state thread) cannot
// take it: ptxas (nvcc 13.0) then serialises their wgmmas or spills.
template <int K, bool kLocal, PassForm kForm, bool kPFirst = false>
__device__ __forceinline__ void state_role(const StateParams& fp, SharedStorage<K, kForm>& s, int64_t n,
                                           int seg, int64_t hv, int group, int v0, bool map_cols, int first,
                                           int last, const SeqChunks& seq, int warp, int lane,
                                           int64_t row_out, StateSlice<K>& S, int ring0) {
  constexpr int V = K;
  constexpr bool kFused = has_prep(kForm);  // (a prep warpgroup beside: `ready`, 192 registers)
  constexpr int kKq = kKqStages<kForm>;
  constexpr bool kRing = kKqRing<kForm>;  // k and q on their own barriers
  static_assert(!kPFirst || (!kFused && !kLocal), "P first: the two-kernel pass over whole sequences");
  const PrefillParams& p = fp.p;
  auto& St = S.St;
  const int t = lane & 3;
  // warp: the warp within the group. v^T fragments: ldmatrix.trans matrix mi = lane / 8 takes token rows
  // 8 (mi / 2) + lane % 8 (+ 16 per pair of 8-token tiles), 16-byte unit
  // 2 warp + mi % 2 of the swizzled v tile.
  const int mi = lane >> 3, mr = lane & 7;
  const uint32_t v_lane = swizzle128(8 * (mi >> 1) + mr, 2 * warp + (mi & 1));
  Bf16* out = static_cast<Bf16*>(p.out);
  Bf16* stage_o = &s.o[4 * group + warp][0][0];

  GDN_PROBE_BEGIN();
  for (int c = first, i = ring0; c < last; ++c, ++i) {
    const int st = i % kStages, sk = i % kKq;
    const uint32_t parity = (i / kStages) & 1;
    if constexpr (kRing) mbar_wait(&s.kq_full[sk], (i / kKq) & 1);
    mbar_wait(&s.full[st], parity);
    GDN_PROBE_LANDED(st);
    if constexpr (kFused) mbar_wait(&s.ready[st], parity);  // and the prep warpgroup's Au, L, factors
    GDN_PROBE_MARK(0);
    // The slot's address is opaque to the compiler, so the operand
    // descriptors are formed at their use instead of hoisted out of the loop
    // for every slot (64-bit values it then spilled).
    auto& sl = *opaque(&s.slot[st]);
    KqTiles<K>& kq = kRing ? *opaque(&kq_tiles(s, sl, sk)) : kq_tiles(s, sl, sk);
    const float* sf = s.F[st];
    const int64_t t0 = seq.t0(c);
    const int len = seq.len(c);
    if (!kFused && len < kChunk)  // (the fused pass's prep warpgroup clears them)
      clear_rows_past(kq, sl, len, fp.groups, group, map_cols, group * kGroupThreads + warp * 32 + lane);

    // [P | R] = S^T [K | Q]^T over 16-wide k-steps (S^T as bf16; split hi + lo when kSplitState).
    uint32_t fh[K / 16][4], fl[K / 16][4];
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks) bf16_a_from_acc(fh[ks], fl[ks], St[2 * ks], St[2 * ks + 1]);
    float P[kChunk / 8][4], R[kChunk / 8][4];
    zero_acc(P);
    zero_acc(R);
    wgmma_fence();
    if constexpr (kPFirst) {
      // P alone, then R in a commit group of its own: the chain (X, Vn, the
      // update) waits for P only, and R completes while X forms.
#pragma unroll
      for (int ks = 0; ks < K / 16; ++ks) {
        wgmma_bf16_rs_n64(P, fh[ks], kq_desc(kq, 0, ks));
        if constexpr (kSplitState) wgmma_bf16_rs_n64(P, fl[ks], kq_desc(kq, 0, ks));
      }
      wgmma_commit();
#pragma unroll
      for (int ks = 0; ks < K / 16; ++ks) {
        wgmma_bf16_rs_n64(R, fh[ks], kq_desc(kq, 1, ks));
        if constexpr (kSplitState) wgmma_bf16_rs_n64(R, fl[ks], kq_desc(kq, 1, ks));
      }
      wgmma_commit();
      wgmma_wait<1>();
    } else {
#pragma unroll
      for (int ks = 0; ks < K / 16; ++ks) {
        const uint64_t b = kq_desc(kq, 0, ks);
        if constexpr (kLocal) {
          wgmma_bf16_rs_n64(P, fh[ks], b);
          if constexpr (kSplitState) wgmma_bf16_rs_n64(P, fl[ks], b);
        } else {
          wgmma_bf16_rs_n128(P, R, fh[ks], b);
          if constexpr (kSplitState) wgmma_bf16_rs_n128(P, R, fl[ks], b);
        }
      }
      wgmma_commit();
      wgmma_wait<0>();
      wgmma_fence_operand(R);
    }
    wgmma_fence_operand(P);
    GDN_PROBE_MARK(1);

    // X = V^T - P diag(s_x), in place of P (map columns: v = 0).
#pragma unroll
    for (int jt = 0; jt < kChunk / 8; jt += 2) {
      uint32_t vb[4] = {0, 0, 0, 0};  // (jt, v 0-7), (jt, v 8-15), (jt + 1, v 0-7), (jt + 1, v 8-15)
      if (!map_cols) ldmatrix_x4_trans(vb, sl.v[group] + v_lane + jt * kRowGroup);
#pragma unroll
      for (int u = 0; u < 2; ++u)
        subtract_from_v(P[jt + u], vb[2 * u], vb[2 * u + 1],
                        *reinterpret_cast<const float2*>(sf + kFactorSx + (jt + u) * 8 + 2 * t));
    }

    // Vn = X Au^T in tf32.
    if constexpr (kPFirst) {  // R is in (its A operand dies before Vn's operands live)
      wgmma_wait<0>();
      wgmma_fence_operand(R);
    }
    uint32_t xa[kChunk / 8][4];
#pragma unroll
    for (int kk = 0; kk < kChunk / 8; ++kk) tf32_a_from_acc(xa[kk], P[kk]);
    float Vn[kChunk / 8][4] = {};
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kChunk / 8; ++kk) wgmma_tf32_rs_n64(Vn, xa[kk], f32_desc(sl.au, kk));
    wgmma_commit();
    wgmma_wait<0>();
    wgmma_fence_operand(Vn);
    GDN_PROBE_MARK(2);

    if constexpr (!kLocal) {
      // O^T = R diag(s_q) + Vn L^T, left running while the update starts.
#pragma unroll
      for (int it = 0; it < kChunk / 8; ++it) {
        const float2 sq2 = *reinterpret_cast<const float2*>(q_factors<kForm>(s, st) + it * 8 + 2 * t);
        R[it][0] *= sq2.x, R[it][1] *= sq2.y, R[it][2] *= sq2.x, R[it][3] *= sq2.y;
      }
      uint32_t va[kChunk / 8][4];
#pragma unroll
      for (int kk = 0; kk < kChunk / 8; ++kk) tf32_a_from_acc(va[kk], Vn[kk]);
      wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kChunk / 8; ++kk) wgmma_tf32_rs_n64(R, va[kk], f32_desc(sl.l, kk));
      wgmma_commit();
      if constexpr (kFused) {
        // O^T completes before the update is issued: R and va then die
        // before the update's operands live, which is what fits the state
        // warpgroups in kStateRegs = 192 (ptxas, nvcc 13.0: 144 bytes
        // spilled at 184; 224 at 184 with O left running).
        wgmma_wait<0>();
        wgmma_fence_operand(R);
        const int64_t o_s0 = opaque(p.o_s0);
        store_output_tile<kOStride>(out + t0 * o_s0 + hv * p.o_s1 + v0 + 16 * warp, o_s0, len,
                                    opaque(stage_o), R, lane);
      }
    }

    // S^T = decay S^T + (Vn diag(s_k)) K, over 16-token k-steps.
    const float decay = sf[kFactorDecay];
#pragma unroll
    for (int kt = 0; kt < K / 8; ++kt)
#pragma unroll
      for (int e = 0; e < 4; ++e) St[kt][e] *= decay;
    uint32_t uh[kChunk / 16][4], ul[kChunk / 16][4];
#pragma unroll
    for (int js = 0; js < kChunk / 16; ++js) update_a_from_vn(Vn, sf, js, t, uh[js], ul[js]);
    wgmma_fence();
#pragma unroll
    for (int js = 0; js < kChunk / 16; ++js) {
      const uint64_t b = k_update_desc(kq, js);
      if constexpr (K == 128) {
        wgmma_bf16_rs_n128_tb(St, uh[js], b);
        if constexpr (kSplitVn) wgmma_bf16_rs_n128_tb(St, ul[js], b);
      } else {
        wgmma_bf16_rs_n64_tb(St, uh[js], b);
        if constexpr (kSplitVn) wgmma_bf16_rs_n64_tb(St, ul[js], b);
      }
    }
    wgmma_commit();
    if constexpr (!kLocal && !kFused) {
      wgmma_wait<1>();  // O^T is complete
      wgmma_fence_operand(R);
      // Row offsets and staging addresses formed here, not held across the loop.
      const int64_t o_s0 = opaque(p.o_s0);
      store_output_tile<kOStride>(out + t0 * o_s0 + hv * p.o_s1 + v0 + 16 * warp, o_s0, len, opaque(stage_o),
                                  R, lane);
    }
    GDN_PROBE_MARK(3);
    wgmma_wait<0>();
    wgmma_fence_operand(St);
    mbar_arrive(&s.empty[st]);  // this slot's operands are read
    if constexpr (kRing) mbar_arrive(&s.kq_empty[sk]);
    GDN_PROBE_MARK(4);

    if (const int64_t ckpt_row = kLocal ? -1 : seq.checkpoint_row(p, n, c); ckpt_row >= 0) {
      StateTensor ckpt = p.ckpt;  // element offsets formed here, not held across the loop
      ckpt.k_stride = opaque(ckpt.k_stride);
      ckpt.v_stride = opaque(ckpt.v_stride);
      S.store(ckpt, ckpt_row, hv);
    }
  }

  GDN_PROBE_REPORT("state", max(1, last - first));
  if (kLocal) {  // this segment's local end state or its map columns
    const int64_t seg_item = (n * p.segments + seg) * p.HV + hv;
    S.store(map_cols ? p.seg_map + seg_item * K * K : p.seg_state + seg_item * K * V, map_cols ? K : V);
  } else if (row_out >= 0) {
    S.store(p.fin, row_out, hv);
  }
}

// kLocal: the local pass of a split, which forms no outputs: in the
// two-kernel form it reads neither q nor L, and fp.local_skip skips their
// copies (28 KB a chunk and CTA at K = 128 of about 73; the fused and
// kSplitL forms' prep warpgroups read q). kOverlap: the prep runs beside
// this pass (prefill_prep_overlap_kernel), so each chunk's Au, L and factors
// are copied once that kernel has marked them ready.
template <int K, PassForm kForm, bool kLocal = false, bool kOverlap = false>
__device__ __forceinline__ void load_role(const StateParams& fp, SharedStorage<K, kForm>& s, int64_t h,
                                          int64_t hv, const CtaTiles& tiles, int first, int last,
                                          const SeqChunks& seq, int ring0) {
  const PrefillParams& p = fp.p;
  constexpr uint32_t kTileBytes = kF32KeptHead + kF32KeptTail, kFBytes = kFactorStride * sizeof(float);
  const bool k_only = kLocal && kForm == PassForm::kTwoKernel && fp.local_skip;  // (no q, no L)
  const uint32_t kQkBytes = (k_only ? 1 : 2) * (K / 64) * kTile;
  const uint32_t kPrepBytes = kForm == PassForm::kFused    ? 0
                              : kForm == PassForm::kSplitL ? kTileBytes + kFBytes
                                                           : (k_only ? 1 : 2) * kTileBytes + kFBytes;
  constexpr int kKq = kKqStages<kForm>;
  constexpr bool kRing = kKqRing<kForm>;  // k and q on their own barriers, a slot ahead
  uint32_t v_bytes = 0;
  for (int g = 0; g < fp.groups; ++g) v_bytes += tiles.map_cols(g) ? 0 : kTile;
  for (int c = first, i = ring0; c < last; ++c, ++i) {
    const int st = i % kStages, sk = i % kKq;
    const int32_t t0 = static_cast<int32_t>(seq.t0(c));
    uint64_t* kq_full = &s.full[st];
    if constexpr (kRing) {
      if (i >= kKq) mbar_wait(&s.kq_empty[sk], ((i / kKq) - 1) & 1);
      kq_full = &s.kq_full[sk];
      mbar_arrive_expect_tx(kq_full, kQkBytes);
    }
    const auto copy_kq = [&] {
#pragma unroll
      for (int pp = 0; pp < K / 64; ++pp) {
        tma_load_3d(kq_tiles(s, s.slot[st], sk).kq[pp][0], &fp.k_map, 64 * pp, static_cast<int32_t>(h), t0,
                    kq_full);
        if (!k_only)
          tma_load_3d(kq_tiles(s, s.slot[st], sk).kq[pp][1], &fp.q_map, 64 * pp, static_cast<int32_t>(h), t0,
                      kq_full);
      }
    };
    if constexpr (kRing) copy_kq();
    if (i >= kStages) mbar_wait(&s.empty[st], ((i / kStages) - 1) & 1);
    auto& sl = s.slot[st];
    GDN_PROBE_ISSUED(st);  // (before the arrive, which releases it to the waiters)
    mbar_arrive_expect_tx(&s.full[st], (kRing ? 0 : kQkBytes) + kPrepBytes + v_bytes);
    if constexpr (!kRing) copy_kq();
    for (int g = 0; g < fp.groups; ++g)
      if (!tiles.map_cols(g))
        tma_load_3d(sl.v[g], &fp.v_map, tiles.v0(g), static_cast<int32_t>(hv), t0, &s.full[st]);
    if constexpr (kForm != PassForm::kFused) {  // (the fused pass's prep warpgroup forms them)
      const int64_t item = int64_t{c} * p.HV + hv;
      // Au and L without their zero quarter (tile_layout.cuh; the slots hold zeros there).
      const auto kept = [&](unsigned char(&tile)[2][kTile], const float* src) {
        bulk_load(tile, src, kF32KeptHead, &s.full[st]);
        bulk_load(&tile[0][0] + kF32KeptHead + kF32ZeroQuarter,
                  src + (kF32KeptHead + kF32ZeroQuarter) / sizeof(float), kF32KeptTail, &s.full[st]);
      };
      if constexpr (kOverlap) {  // acquire the chunk's mark, then copy through the async proxy
        while (acquire_mark(p.ready + item) == 0) __nanosleep(64);
        fence_async_global();
      }
      kept(sl.au, p.Au + item * kChunk * kChunk);
      if (kForm == PassForm::kTwoKernel && !k_only) kept(sl.l, p.L + item * kChunk * kChunk);
      bulk_load(s.F[st], p.F + item * kFactorStride, kFactorStride * sizeof(float), &s.full[st]);
    }
  }
}

// The fused pass's prep warpgroup (tid 0..127 within it): per chunk, once
// its k, q and v are in the slot, what the prep kernel (sm80/prefill_prep.cu)
// writes to the workspace, formed into the slot itself: Au and L in the tile
// layout, the row factors into F. It clears the rows past the chunk's end
// of the slot's k, q and v tiles first (the two-kernel pass's state
// warpgroups do that there), and its chunk runs while the state warpgroups
// work on the one before (the ring's other slot).
//   rnk, rnq  reciprocal norms of the raw rows, by one thread a row
//   K K^T, Q K^T  m64n64 wgmmas, A and B from the slot's k and q panels
//   M, L      masks (chunk_prep.cuh), L into the slot
//   Au        the blocked inverse (chunk_prep.cuh), into the slot
// kSplitL: Au and the factors but s_q came with the copies (the prep kernel
// formed them); Q K^T alone, L's masks and s_q (q_factor) into the slot.
template <int K, PassForm kForm>
__device__ __forceinline__ void prep_role(const StateParams& fp, SharedStorage<K, kForm>& s, int64_t hv,
                                          const CtaTiles& tiles, int first, int last, const SeqChunks& seq,
                                          int prep_tid, int ring0) {
  constexpr bool kAll = kForm == PassForm::kFused;  // Au and the factors too
  constexpr int kKq = kKqStages<kForm>;
  constexpr bool kRing = kKqRing<kForm>;  // k and q come a slot ahead of v and the slot's copies
  const PrefillParams& p = fp.p;
  auto& ps = s.prep;
  // Warp 0 holds the gates of rows 2 lane and 2 lane + 1 of the next chunk
  // (their loads go out a chunk ahead).
  const auto row_gates = [&](int c, int e) {
    return chunk_row_gates(p, seq.t0(c), seq.len(c), hv, 2 * (opaque(prep_tid) & 31) + e);
  };
  float2 gate0 = make_float2(0.f, 0.f), gate1 = gate0;
  if (prep_tid < 32 && first < last) gate0 = row_gates(first, 0), gate1 = row_gates(first, 1);
  GDN_PROBE_BEGIN();
  for (int c = first, i = ring0; c < last; ++c, ++i) {
    // The thread's index hidden anew each chunk: the shared-memory
    // addresses derived from it are formed at their use, not held across
    // the loop (ptxas spilled them).
    const int tid = opaque(prep_tid), warp = tid >> 5, lane = tid & 31;
    const int st = i % kStages, sk = i % kKq;
    const int len = seq.len(c);
    named_barrier(kPrepBarrier, kGroupThreads);  // the last chunk's scratch is read
    if (warp == 0) {                             // beta and the cumulative gates, then the next chunk's loads
      *reinterpret_cast<float2*>(&ps.beta[2 * lane]) = make_float2(gate0.y, gate1.y);
      cumsum_gate_pairs(gate0.x, gate1.x, lane, ps.G, ps.G2);
      if (c + 1 < last) gate0 = row_gates(c + 1, 0), gate1 = row_gates(c + 1, 1);
    }
    if constexpr (kRing) {
      mbar_wait(&s.kq_full[sk], (i / kKq) & 1);
    } else {
      mbar_wait(&s.full[st], (i / kStages) & 1);
      GDN_PROBE_LANDED(st);
    }
    GDN_PROBE_MARK(0);
    auto& sl = s.slot[st];  // (not opaque: its accesses stay shared-memory ones)
    KqTiles<K>& kq = kq_tiles(s, sl, sk);
    // Rows len.. of k and q (every panel) and of the CTA's v tiles (kRing:
    // v's once they are in, below).
    const auto clear_rows = [&](bool with_kq, bool with_v) {
      constexpr int kUnitsPerRow = 128 / 16;
      const int from = len * kUnitsPerRow, units = (kChunk - len) * kUnitsPerRow;
      const int tiles_kq = with_kq ? 2 * (K / 64) : 0;
      int v_tiles = 0;
      for (int g = 0; g < fp.groups; ++g) v_tiles += with_v && !tiles.map_cols(g) ? 1 : 0;
      for (int u = tid; u < units * (tiles_kq + v_tiles); u += kGroupThreads) {
        const int tile = u / units;
        unsigned char* base = tile < tiles_kq ? kq.kq[tile / 2][tile % 2] : sl.v[tile - tiles_kq];
        reinterpret_cast<int4*>(base)[from + u % units] = make_int4(0, 0, 0, 0);
      }
    };
    if (len < kChunk) {
      clear_rows(true, !kRing);
      fence_async_shared();                        // the cleared rows, before the wgmma reads
      named_barrier(kPrepBarrier, kGroupThreads);  // (len is the warpgroup's)
    }

    // K K^T and Q K^T of the raw rows (kSplitL: Q K^T), on the tensor cores
    // while the norms are formed below.
    float kk[2 * kPrepBlocks][4], qk[2 * kPrepBlocks][4];  // (kSplitL: kk unused)
    if constexpr (kAll) zero_acc(kk);
    zero_acc(qk);
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < K / 16; ++ks) {
      const uint64_t bk = kq_desc(kq, 0, ks);
      if constexpr (kAll) wgmma_bf16_ss_n64(kk, bk, bk);
      wgmma_bf16_ss_n64(qk, kq_desc(kq, 1, ks), bk);
    }
    wgmma_commit();
    GDN_PROBE_MARK(1);

    // Reciprocal norms: thread r < 64 takes row r of k, the others row
    // r - 64 of q, over 16-byte units in their swizzled places (a row's sum
    // needs no order; eight rows in a row hit distinct banks).
    {
      const int r = tid % kChunk, which = tid / kChunk;
      float sq[4] = {};
      if (p.l2norm && r < len) {
        // (Two units in flight at a time: the products' accumulators hold
        // 64 of the warpgroup's 104 registers, 96 persistent, meanwhile.)
#pragma unroll 2
        for (int x = 0; x < K / 8; ++x) {
          const uint4 w = *reinterpret_cast<const uint4*>(kq.kq[x / 8][which] + swizzle128(r, x % 8));
          const uint32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&ws[e]));
            sq[(e & 1) * 2] = fmaf(f.x, f.x, sq[(e & 1) * 2]);
            sq[(e & 1) * 2 + 1] = fmaf(f.y, f.y, sq[(e & 1) * 2 + 1]);
          }
        }
      }
      (which == 0 ? ps.rnk : ps.rnq)[r] =
          p.l2norm ? 1.f / sqrtf(((sq[0] + sq[1]) + (sq[2] + sq[3])) + 1e-6f) : 1.f;
    }
    wgmma_wait<0>();
    if constexpr (kAll) wgmma_fence_operand(kk);
    wgmma_fence_operand(qk);
    named_barrier(kPrepBarrier, kGroupThreads);  // gates, norms
    GDN_PROBE_MARK(2);

    const TiledPrepStores out{reinterpret_cast<float*>(sl.au), reinterpret_cast<float*>(sl.l)};
    if constexpr (!kAll) {  // L and s_q; Au and the other factors come with the slot's copies
      static_assert(kRing, "kSplitL's s_q sit beside F, not in it");
      // The slot's L and s_q are free once the state warpgroups are done
      // with the chunk kStages before (the load thread waits for the same
      // before the slot's copies).
      if (i >= kStages) mbar_wait(&s.empty[st], ((i / kStages) - 1) & 1);
      mask_product_rows<false>(ps, p.scale, warp, lane, qk, qk,
                               [&](int r, int j, float2 xy) { out.l_pair(r, j, xy); });
      if (tid < kChunk) s.sq[st][tid] = q_factor(ps.rnq[tid], p.scale, expf(ps.G[tid]), tid < len);
      if (len < kChunk) {  // v's rows past the end, once its copies are in
        mbar_wait(&s.full[st], (i / kStages) & 1);
        clear_rows(false, true);
      }
      fence_async_shared();  // L, before the async proxy
      mbar_arrive(&s.ready[st]);
    } else {
      mask_product_rows(ps, p.scale, warp, lane, kk, qk,
                        [&](int r, int j, float2 xy) { out.l_pair(r, j, xy); });
      named_barrier(kPrepBarrier, kGroupThreads);  // M
      GDN_PROBE_MARK(3);
      if (tid < kChunk)
        invert_diagonal_blocks(ps, tid);
      else
        row_factors(ps, p.scale, len, tid - kChunk, s.F[st]);
      named_barrier(kPrepBarrier, kGroupThreads);  // the diagonal blocks
      GDN_PROBE_MARK(4);
      invert_block_column(
          ps, warp, lane, [&](int r, int j, float x) { out.au_element(r, j, x); },
          [&](int bi) { out.au_zero_block(bi, warp, lane); });
      fence_async_shared();  // Au and L, before the state warpgroups' wgmma reads
      mbar_arrive(&s.ready[st]);
      GDN_PROBE_MARK(5);
    }
  }
  GDN_PROBE_REPORT("prep", max(1, last - first));
}

// Column tiles per (sequence or segment, value head): the value columns, and
// in the local pass the state map's as many again.
template <int K>
constexpr int tiles_per_item(bool local) {
  return (K + (local ? K : 0)) / kTileColumns;
}

// Whether the call's device-side checks failed. The fused pass runs first
// when the parameters carry the offsets (p.clear_flag set: no prep kernel
// wrote the flag before it), so there each CTA runs the one-sequence checks
// itself, as the prep kernel does, and CTA 0 writes the flag for the
// kernels after it and for prefill_device_status.
template <PassForm kForm>
__device__ __forceinline__ bool checks_failed(const PrefillParams& p) {
  if (kForm == PassForm::kFused && p.clear_flag != nullptr)
    return p.inline_check && one_sequence_checks(p) != 0;
  return device_checks_failed(p);
}

// A CTA's work item: (sequence or segment, value head, tiles).
struct CtaItem {
  int64_t n, hv, h;
  int seg;
  CtaTiles tiles;
};
// Item b of the grid's order (state_item_at): the CTA's own (blockIdx.x),
// or in the persistent pass one from the ticket counter.
template <int K, bool kLocal>
__device__ __forceinline__ CtaItem cta_item(const StateParams& fp, uint32_t b) {
  const PrefillParams& p = fp.p;
  const StateItem item = state_item_at(p, p.segments, tiles_per_item<K>(kLocal) / fp.groups, b);
  return {item.n, item.hv, item.hv / p.group, item.seg,
          CtaTiles{item.tile * fp.groups, K / kTileColumns, kLocal}};
}

// The persistent pass (kPersist; whole sequences, the two-kernel and kSplitL
// forms, where the CTA items outnumber the SMs): one CTA an SM, each taking
// its items after its first (blockIdx.x) from a ticket counter
// (p.tickets, which the prep kernel zeroes; item gridDim.x + ticket),
// so in the grid's order, longest first. The load thread takes a ticket
// once it has issued the copies of its item's last chunk and hands the item
// to the other roles through this two-entry ring (-1: no more), with the
// ring position its chunks start at: the chunk ring's slots and phases run
// on across items, so the next item's first chunks load while the state
// warpgroups finish the last one's.
struct ItemRing {
  int64_t item[2];
  int ring0[2];
  uint64_t full[2], empty[2];  // full: the load thread's arrive; empty: every consumer thread's
};
__device__ __forceinline__ ItemRing& item_ring() {
  __shared__ ItemRing ring;  // (only the persistent kernels reference it)
  return ring;
}
struct NextItem {
  int64_t b;  // the item, or -1
  int ring0;  // chunks the CTA has streamed before it
};
// The load thread posts the CTA's item `it` (>= 1; item 0 is its grid item,
// blockIdx.x): a ticket, with ring0, the chunk-ring position where that
// item's chunks start, into the entry the consumers read item it - 2 from
// once they have read it.
__device__ __forceinline__ int64_t post_next_item(const StateParams& fp, int it, int ring0) {
  ItemRing& ir = item_ring();
  const int64_t ticket = int64_t{gridDim.x} + atomicAdd(fp.p.tickets, 1);
  const int64_t b = ticket < fp.items ? ticket : -1;
  const int e = (it - 1) & 1, use = (it - 1) >> 1;
  if (use > 0) mbar_wait(&ir.empty[e], (use - 1) & 1);
  ir.item[e] = b;
  ir.ring0[e] = ring0;
  mbar_arrive(&ir.full[e]);  // (release: the entry is written)
  return b;
}
// A consumer thread's item `it` (>= 1), as the load thread posted it.
__device__ __forceinline__ NextItem read_next_item(int it) {
  ItemRing& ir = item_ring();
  const int e = (it - 1) & 1;
  mbar_wait(&ir.full[e], ((it - 1) >> 1) & 1);
  const NextItem next{ir.item[e], ir.ring0[e]};
  mbar_arrive(&ir.empty[e]);
  return next;
}

// kOverlap (GDN_SM90_OVERLAP=1): the two-kernel pass over whole sequences
// beside the overlapped prep, launched programmatically after it: no role
// waits for the prep kernel to end (griddepcontrol.wait) before its work;
// the load thread acquires each chunk's ready mark instead (load_role), and
// the call's offsets are its parameters and were checked on the host
// (launch_sm90), so nothing else this pass reads comes from the prep. The
// load thread waits for the prep kernel's end only after its last copies.
template <int K, bool kLocal, PassForm kForm, bool kPFirst = false, bool kPersist = false,
          bool kOverlap = false>
__global__ void __launch_bounds__(Config<kForm>::kThreads, 1)
    prefill_state_sm90_kernel(const __grid_constant__ StateParams fp) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  static_assert(!kPersist || (!kLocal && !kPFirst && kForm != PassForm::kFused),
                "persistent: the two-kernel and kSplitL passes over whole sequences");
  static_assert(!kOverlap || (!kLocal && !kPFirst && !kPersist && kForm == PassForm::kTwoKernel),
                "overlapped: the two-kernel pass over whole sequences");
  constexpr int V = K;
  using Cfg = Config<kForm, kPersist>;
  const PrefillParams& p = fp.p;
  if (kForm == PassForm::kFused && p.clear_flag != nullptr && blockIdx.x == 0 && threadIdx.x == 0)
    *p.clear_flag = p.inline_check ? one_sequence_checks(p) : 0;
  extern __shared__ unsigned char smem_raw[];
  // Aligned by an offset from smem_raw (not by rounding the address as an
  // integer), so the compiler still knows every access through s is to
  // shared memory (shared-memory instructions, not generic ones).
  auto& s = *reinterpret_cast<SharedStorage<K, kForm>*>(
      smem_raw + ((1024 - (reinterpret_cast<uintptr_t>(smem_raw) & 1023)) & 1023));
  const int segs = p.segments;
  const CtaItem ci = cta_item<K, kLocal>(fp, blockIdx.x);
  if (kLocal && ci.seg == segs - 1) return;  // the last segment's end state and map are not needed
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int group = warp / 4;
  const Role role = warp < kStateWarps ? Role::kState : warp < kStateWarps + 4 ? Role::kLoad : Role::kPrep;
  if (tid == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&s.full[i], 1);
      mbar_init(&s.empty[i], fp.groups * kGroupThreads);
      mbar_init(&s.ready[i], kGroupThreads);
    }
    if constexpr (kKqRing<kForm>) {
      for (int i = 0; i < kKqStages<kForm>; ++i) {
        mbar_init(&s.kq_full[i], 1);
        mbar_init(&s.kq_empty[i], fp.groups * kGroupThreads);
      }
    }
    if constexpr (kPersist) {
      for (int i = 0; i < 2; ++i) {  // consumers: the state threads and the prep warpgroup
        mbar_init(&item_ring().full[i], 1);
        mbar_init(&item_ring().empty[i], (fp.groups + (Cfg::kPrep ? 1 : 0)) * kGroupThreads);
      }
    }
    mbar_init_fence();
  }
  // The zero quarter of every slot's Au and L, which no copy writes
  // (tile_layout.cuh), before any product reads them.
  constexpr int kZeroUnits = kF32ZeroQuarter / 16;  // 16-byte stores per quarter
  for (int u = tid; u < kStages * 2 * kZeroUnits; u += Cfg::kThreads) {
    auto& sl = s.slot[u / (2 * kZeroUnits)];
    unsigned char* quarter = (u / kZeroUnits) % 2 == 0 ? sl.au[1] : sl.l[1];
    *reinterpret_cast<uint4*>(quarter + 16 * (u % kZeroUnits)) = make_uint4(0, 0, 0, 0);
  }
  fence_async_shared();  // the zeros before the wgmma operand reads (async proxy)
  __syncthreads();
  // The roles part here for good: ptxas gives a path its setmaxnreg budget
  // only where no path of the other budget joins it. The persistent pass
  // runs each role over its items in a loop (one inlined copy of the role);
  // an item's values are decoded anew in each pass of it, not carried.
  if (role == Role::kLoad) {
    setmaxnreg_dec<Cfg::kLoadRegs>();
    if (warp != kStateWarps || lane != 0) return;
    if constexpr (!kOverlap) wait_for_prerequisites();  // chunk offsets, error flag, prep results
    if (checks_failed<kForm>(p)) return;
    if constexpr (kPersist) {
      uint32_t b = blockIdx.x;
      for (int it = 1, ring0 = 0;; ++it) {
        const CtaItem c = cta_item<K, false>(fp, b);
        const SeqChunks seq(p, c.n);
        load_role<K, kForm>(fp, s, c.h, c.hv, c.tiles, seq.begin, seq.stop, seq, ring0);
        ring0 += seq.stop - seq.begin;
        const int64_t next = post_next_item(fp, it, ring0);
        if (next < 0) break;
        b = static_cast<uint32_t>(next);
      }
    } else {
      const SeqChunks seq(p, ci.n);
      load_role<K, kForm, kLocal, kOverlap>(fp, s, ci.h, ci.hv, ci.tiles, seq.seg_first(ci.seg, segs),
                                            seq.seg_first(ci.seg + 1, segs), seq, 0);
      // kOverlap: this CTA ends only after the prep kernel has ended, so that
      // the pass's end means the call's (a kernel launched programmatically
      // after it waits for this grid alone, and its memory may be this call's
      // workspace, where prep units may still take their last ticket).
      if constexpr (kOverlap) wait_for_prerequisites();
    }
    return;
  }
  if constexpr (Cfg::kPrep) {
    if (role == Role::kPrep) {
      setmaxnreg_dec<Cfg::kPrepRegs>();
      wait_for_prerequisites();  // chunk offsets, error flag
      if (checks_failed<kForm>(p)) return;
      if constexpr (kPersist) {
        NextItem next{blockIdx.x, 0};
        for (int it = 1;; ++it) {
          const CtaItem c = cta_item<K, false>(fp, static_cast<uint32_t>(next.b));
          const SeqChunks seq(p, c.n);
          prep_role<K, kForm>(fp, s, c.hv, c.tiles, seq.begin, seq.stop, seq,
                              opaque(static_cast<int>(threadIdx.x)) - (kStateWarps + 4) * 32, next.ring0);
          next = read_next_item(it);
          if (next.b < 0) break;
        }
      } else {
        const SeqChunks seq(p, ci.n);
        prep_role<K, kForm>(fp, s, ci.hv, ci.tiles, seq.seg_first(ci.seg, segs),
                            seq.seg_first(ci.seg + 1, segs), seq, tid - (kStateWarps + 4) * 32, 0);
      }
      return;
    }
  }
  setmaxnreg_inc<Cfg::kStateRegs>();
  if (group >= fp.groups) return;  // one tile in this CTA

  // The entering state first (sm80/prefill_columns.cu explains the rows):
  // only the caller's inputs address it, so it overlaps the prep kernel.
  int64_t row_in = -1, row_out = -1;
  StateSlice<K> S(lane, ci.tiles.v0(group) + 16 * (warp % 4));
  const bool combined = p.seg_phase == kSegFinal;
  state_rows(p, ci.n, &row_in, &row_out);
  if (kLocal || combined) row_in = -1;
  if (ci.seg != segs - 1) row_out = -1;
  S.enter(p.init, row_in, ci.hv, ci.tiles.map_cols(group));
  if constexpr (!kOverlap)
    wait_for_prerequisites();  // chunk offsets, error flag, prep results, combined states
  if (checks_failed<kForm>(p)) return;
  if constexpr (kPersist) {
    // (Whole sequences: no segments, no map columns. The thread's indices
    // are read anew for each item rather than held across its chunks.)
    NextItem next{blockIdx.x, 0};
    for (int it = 1;; ++it) {
      const int w = opaque(static_cast<int>(threadIdx.x)) >> 5;
      const CtaItem c = cta_item<K, false>(fp, static_cast<uint32_t>(next.b));
      const SeqChunks seq(p, c.n);
      if (it > 1) {  // the entering state (item 1's was read before the wait)
        S.v_base = c.tiles.v0(w / 4) + 16 * (w % 4);
        state_rows(p, c.n, &row_in, &row_out);
        S.enter(p.init, row_in, c.hv, false);
      }
      state_role<K, false, kForm>(fp, s, c.n, 0, c.hv, w / 4, c.tiles.v0(w / 4), false, seq.begin, seq.stop,
                                  seq, w % 4, opaque(static_cast<int>(threadIdx.x)) & 31, row_out, S,
                                  next.ring0);
      next = read_next_item(it);
      if (next.b < 0) break;
    }
  } else {
    const SeqChunks seq(p, ci.n);
    if (combined) {
      // Segment 0's entering state sits in the last segment's slot,
      // segment s's in slot s - 1 (sm80/prefill_segments.cu).
      const int64_t slot = (ci.n * segs + (ci.seg == 0 ? segs - 1 : ci.seg - 1)) * p.HV + ci.hv;
      S.load(p.seg_state + slot * K * V, V);
    }
    state_role<K, kLocal, kForm, kPFirst>(
        fp, s, ci.n, ci.seg, ci.hv, group, ci.tiles.v0(group), ci.tiles.map_cols(group),
        seq.seg_first(ci.seg, segs), seq.seg_first(ci.seg + 1, segs), seq, warp % 4, lane, row_out, S, 0);
  }
#else
  __trap();  // built for sm_90a only; the dispatcher never launches it elsewhere
#endif
}

// Dynamic shared memory: the storage plus its 1024-byte alignment slack.
template <int K, PassForm kForm>
constexpr size_t kSmemBytes = sizeof(SharedStorage<K, kForm>) + 1024;
static_assert(kSmemBytes<128, PassForm::kTwoKernel> <= 227 * 1024 &&
                  kSmemBytes<128, PassForm::kFused> <= 227 * 1024 &&
                  kSmemBytes<128, PassForm::kSplitL> <= 227 * 1024,
              "every form fits an sm_90 CTA's 227 KB of shared memory");

}  // namespace

Status encode_token_maps(const PrefillParams& p, int64_t K, int64_t V, StateParams* fp) {
  // No tokens: no chunk, so no copy reads the maps (a map cannot have an
  // empty dimension); the state pass still carries every sequence's entering
  // state to its final one.
  if (p.T == 0) {
    fp->q_map = fp->k_map = fp->v_map = CUtensorMap{};
    return Status::Ok();
  }
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  static Encode encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr)
    return Status(StatusCode::kDeviceError, "sm90: the driver has no cuTensorMapEncodeTiled");
  // A [T, heads, cols] bf16 tensor in boxes of 64 columns x 1 head x 64
  // tokens. Strides of extent-1 dimensions are never used; they get a valid
  // value.
  const auto map = [&](CUtensorMap* m, const void* base, int64_t cols, int64_t heads, int64_t s_head,
                       int64_t s_tok, const char* name) -> Status {
    const int64_t head_bytes = heads > 1 ? s_head * 2 : cols * 2;
    const int64_t tok_bytes = p.T > 1 ? s_tok * 2 : heads * head_bytes;
    const cuuint64_t dims[3] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(heads),
                                static_cast<cuuint64_t>(p.T)};
    const cuuint64_t strides[2] = {static_cast<cuuint64_t>(head_bytes), static_cast<cuuint64_t>(tok_bytes)};
    const cuuint32_t box[3] = {64, 1, static_cast<cuuint32_t>(kChunk)};
    const cuuint32_t elem[3] = {1, 1, 1};
    const CUresult r = encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides,
                              box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                              CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
      return Status(StatusCode::kDeviceError, std::string("sm90: cuTensorMapEncodeTiled failed for ") + name +
                                                  " (" + std::to_string(r) + ")");
    return Status::Ok();
  };
  if (Status s = map(&fp->q_map, p.q, K, p.H, p.q_s1, p.q_s0, "q"); !s.ok()) return s;
  if (Status s = map(&fp->k_map, p.k, K, p.H, p.k_s1, p.k_s0, "k"); !s.ok()) return s;
  return map(&fp->v_map, p.v, V, p.HV, p.v_s1, p.v_s0, "v");
}

// State warpgroups per CTA: two (a head's tiles in pairs) when the grid of
// one-tile CTAs would not fit on the SMs at once, one when it would (each
// chain then has its SM to itself) or when one sequence outlasts the rest
// (long_tail: its chains, alone at the end, run faster one per SM).
// Measured on an H200 (graph us, one / two; bench/results
// sm90-h200-2026-12-03-groups-ab.txt): q3n-tp1 32x1024 1114 / 902, 8x1024
// 284 / 234, 128x256 1378 / 1133, 257 short 1600 / 1162, q3n-tp4 64x512 318 /
// 256, q35-397b-tp8 1x65536 (9 segments) 1063 / 844; but q3n-tp1 1x8192 (64
// tiles) 374 / 507, q35-397b-tp8 1x2048 (4 segments, 128 local tiles) 73 /
// 90, q3n-tp1 skewed (a 16384-token sequence and 31 of 128) 1012 / 1192.
// GDN_SM90_GROUPS=1|2 forces the choice where the tiles pair up.
int groups_for(int64_t items, int tiles, int sms, bool long_tail) {
  if (tiles % 2 != 0) return 1;
  if (const char* env = std::getenv("GDN_SM90_GROUPS");
      env != nullptr && (env == std::string("1") || env == std::string("2")))
    return env[0] - '0';
  return items * tiles > sms && !long_tail ? 2 : 1;
}

// The fused pass pays where no chain of chunks follows the prep: every
// sequence one chunk long and the grid's CTAs all on the SMs at once. There
// it saves the prep kernel's launch and the trip of Au and L through
// memory: q3n-tp1 1x64 15.3 against 18.6 us graph time on the H100 (571cc23,
// bench/results/h100-2026-12-07-571cc23-fused-ab.txt). Over longer
// sequences its prep warpgroup is the bottleneck: about 11,800 cycles a
// chunk at q3n-tp1 1x8192 and 14,600 at 32 x 1024 (GDN_SM90_PROBE=3, every
// prep warp: barrier, gates and the wait for the slot's copies
// 1,500-2,900, the products' issue and completion 4,700-5,800, masks
// 1,600-2,300, diagonal blocks and factors 600-1,500, block columns
// 1,000-2,500) against the state warpgroups' 6,100 and 7,700 of their own
// work, so 1x8192 takes 683 against 317 us and the batch rows -1% to +8%
// (32x1024 826 against 808, 128x256 1085 against 1005).
// kSplitL pays where the CTAs, in pairs of tiles, outnumber the SMs, no
// sequence is split and none outlasts the rest: there the two-kernel pass
// is bound by memory (the prep kernel's L and second read of q), and
// kSplitL's longer chunk on the state warpgroups (about 10,800 cycles
// against 6,800 at 32 x 1024, probes in
// bench/results/h100-2026-12-07-split-ring-ab.txt) is hidden by the other
// CTAs. Graph us on the H100, two-kernel against kSplitL with its k and q
// ring (3102120, same run): q3n-tp1 8x1024 222.5 / 216.4, 32x1024 810.5 /
// 787.4, 128x256 1011.4 / 989.7, q3n-tp4 64x512 240.3 / 235.8. Where the
// pairs fit on the SMs the chain shows: 4x1000 116.7 / 117.2, q3n-tp1
// 1x8192 (64 CTAs) 317.7 / 452.3, and split sequences lose too
// (q35-397b-tp8 1x65536 637.0 / 923.2). GDN_SM90_FUSED=0, 1 or 2 forces
// the two-kernel pass, the fused one or kSplitL.

PassForm pass_form_for_shape(int64_t n, int64_t hv, int64_t tiles_per_item, int segments, int sms,
                             bool one_chunk, bool long_tail) {
  if (const char* env = std::getenv("GDN_SM90_FUSED");
      env != nullptr && env[0] >= '0' && env[0] <= '2' && env[1] == '\0')
    return static_cast<PassForm>(env[0] - '0');
  const int64_t tiles = n * hv * tiles_per_item;
  if (segments == 1 && one_chunk && tiles <= sms) return PassForm::kFused;
  if (segments == 1 && !long_tail && tiles > 2 * int64_t{sms}) return PassForm::kSplitL;
  return PassForm::kTwoKernel;
}

namespace {
// CTAs of a pass over `items` (sequence or segment, value head) pairs of
// `tiles` column tiles, paired as groups_for pairs them (the launch's grid,
// and the persistent and overlap rules' count).
int64_t pass_ctas(int64_t items, int tiles, int sms, bool long_tail) {
  return items * (tiles / groups_for(items, tiles, sms, long_tail));
}

// Whether the environment variable `var` reads "1" (the candidates'
// switches, read at each launch).
bool switched_on(const char* var) {
  const char* env = std::getenv(var);
  return env != nullptr && std::string(env) == "1";
}
}  // namespace

bool p_first_requested() {
  return switched_on("GDN_SM90_PFIRST");
}

bool local_skip_requested() {
  return switched_on("GDN_SM90_LOCAL_SKIP");
}

bool persist_requested() {
  return switched_on("GDN_SM90_PERSIST");
}

bool persistent_shape(int64_t n, int64_t hv, int tiles_per_item, int segments, PassForm form, int sms,
                      bool long_tail) {
  if (segments != 1 || form == PassForm::kFused) return false;
  if (form == PassForm::kTwoKernel && p_first_requested()) return false;
  return pass_ctas(n * hv, tiles_per_item, sms, long_tail) > sms;
}

bool overlap_requested() {
  return switched_on("GDN_SM90_OVERLAP");
}

// The overlapped prep where the state pass's CTAs leave at least half the
// SMs idle: the prep kernel gets those SMs, one CTA each. (Its estimate at
// q3n-tp1 1x8192, docs/design.md: about 235 us against 312.8.)
int overlap_prep_ctas_for_shape(int64_t n, int64_t hv, int tiles_per_item, int segments, PassForm form,
                                int sms, bool long_tail) {
  if (segments != 1 || form != PassForm::kTwoKernel || p_first_requested()) return 0;
  const int64_t ctas = pass_ctas(n * hv, tiles_per_item, sms, long_tail);
  return 2 * ctas <= sms ? static_cast<int>(sms - ctas) : 0;
}

// (Only a call the host checked, whose offsets are its parameters: the
// overlapped state pass reads nothing else the prep writes.)
template <int K>
int overlap_prep_ctas(const PrefillParams& p, PassForm form, int sms, bool long_tail) {
  if (!overlap_requested() || p.max_chunks == 0 || !p.inline_offsets || p.error_flag != nullptr) return 0;
  return overlap_prep_ctas_for_shape(p.N, p.HV, tiles_per_item<K>(false), p.segments, form, sms, long_tail);
}

// (A call without chunks, T == 0, launches no prep kernel to zero the
// counter, and its items have no chunks to overlap: it keeps the grid.)
template <int K>
bool persistent_pass(const PrefillParams& p, PassForm form, int sms, bool long_tail) {
  return persist_requested() && p.max_chunks > 0 &&
         persistent_shape(p.N, p.HV, tiles_per_item<K>(false), p.segments, form, sms, long_tail);
}

template <int K>
PassForm pass_form_for(const PrefillParams& p, int sms, bool one_chunk, bool long_tail) {
  return pass_form_for_shape(p.N, p.HV, tiles_per_item<K>(false), p.segments, sms, one_chunk, long_tail);
}

template <int K, bool kLocal, PassForm kForm, bool kPFirst = false, bool kPersist = false,
          bool kOverlap = false>
Status launch_phase(StateParams fp, int sms, bool long_tail, cudaStream_t stream) {
  const auto kernel = prefill_state_sm90_kernel<K, kLocal, kForm, kPFirst, kPersist, kOverlap>;
  constexpr size_t kSmem = kSmemBytes<K, kForm>;
  if (Status s = allow_dynamic_smem(reinterpret_cast<const void*>(kernel), kSmem,
                                    "prefill_state_sm90_kernel: raising its shared memory limit");
      !s.ok())
    return s;
  // The fused pass that writes the error flag is the call's first kernel:
  // launched programmatically it would read the caller's entering state
  // while the kernel before the call may still write it.
  static const bool programmatic = kernel_waits_for_prerequisites(kernel);
  const bool first = kForm == PassForm::kFused && fp.p.clear_flag != nullptr;
  const PrefillParams& p = fp.p;
  if (p.N == 0) return Status::Ok();
  fp.groups = groups_for(p.N * p.segments * p.HV, tiles_per_item<K>(kLocal), sms, long_tail);
  const int64_t ctas = pass_ctas(p.N * p.segments * p.HV, tiles_per_item<K>(kLocal), sms, long_tail);
  fp.items = ctas;  // (the persistent pass's: one CTA an SM takes them by tickets)
  dim3 grid;
  if (Status s = linear_grid(kPersist ? std::min<int64_t>(ctas, sms) : ctas, &grid,
                             "prefill_state_sm90_kernel: sequences, heads and column tiles");
      !s.ok())
    return s;
  return cuda_status(
      launch_kernel(kernel, grid, dim3(Config<kForm>::kThreads), kSmem, stream, programmatic && !first, fp),
      "prefill_state_sm90_kernel launch");
}

template <int K, PassForm kForm>
Status launch_form(const StateParams& fp, int sms, bool long_tail, cudaStream_t stream) {
  if (fp.p.seg_phase == kSegLocal) {
    StateParams local = fp;
    local.local_skip = local_skip_requested();
    return launch_phase<K, true, kForm>(local, sms, long_tail, stream);
  }
  // (launch_sm90 sets the marks where overlap_prep_ctas says so, the ticket
  // counter alone where persistent_pass does; their rules exclude each other.)
  if constexpr (kForm == PassForm::kTwoKernel)
    if (fp.p.ready != nullptr)
      return launch_phase<K, false, kForm, false, false, true>(fp, sms, long_tail, stream);
  if constexpr (kForm != PassForm::kFused)
    if (fp.p.tickets != nullptr && fp.p.ready == nullptr)
      return launch_phase<K, false, kForm, false, true>(fp, sms, long_tail, stream);
  if constexpr (kForm == PassForm::kTwoKernel)
    if (p_first_requested()) return launch_phase<K, false, kForm, true>(fp, sms, long_tail, stream);
  return launch_phase<K, false, kForm>(fp, sms, long_tail, stream);
}

template <int K>
Status launch_state_sm90(const StateParams& fp, PassForm form, int sms, bool long_tail, cudaStream_t stream) {
  switch (form) {
    case PassForm::kFused:
      return launch_form<K, PassForm::kFused>(fp, sms, long_tail, stream);
    case PassForm::kSplitL:
      return launch_form<K, PassForm::kSplitL>(fp, sms, long_tail, stream);
    default:
      return launch_form<K, PassForm::kTwoKernel>(fp, sms, long_tail, stream);
  }
}

template PassForm pass_form_for<64>(const PrefillParams&, int, bool, bool);
template bool persistent_pass<64>(const PrefillParams&, PassForm, int, bool);
template int overlap_prep_ctas<64>(const PrefillParams&, PassForm, int, bool);
template int overlap_prep_ctas<128>(const PrefillParams&, PassForm, int, bool);
template bool persistent_pass<128>(const PrefillParams&, PassForm, int, bool);
template PassForm pass_form_for<128>(const PrefillParams&, int, bool, bool);
template Status launch_state_sm90<64>(const StateParams&, PassForm, int, bool, cudaStream_t);
template Status launch_state_sm90<128>(const StateParams&, PassForm, int, bool, cudaStream_t);

}  // namespace gdn::cuda::sm90
