// Host side of the GPU prefill, both backends: workspace layout, parameters,
// and the launches on the caller's stream: chunk metadata, then for cuda
// stage 1 (prep) and stage 2 (a state pass), for sm90 the prep and the sm90
// state pass (sm90/state_pass.cu); a split into segments adds a local pass
// and a combine before the final one.
// Nothing is allocated and nothing waits on the device, so a call can be
// captured in a CUDA graph.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <numeric>
#include <string>
#include <type_traits>

#include "cuda/backend.h"
#include "cuda/prep/chunk_meta.cuh"
#include "cuda/prep/prep_heads.h"
#include "cuda/sm80/kernels.cuh"
#include "cuda/sm80/recurrent.h"
#if GDN_WITH_SM90_BACKEND
#include "cuda/sm90/state_pass.h"
#endif

namespace gdn::cuda {
namespace {

constexpr size_t kAlign = 256;

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

// Upper bound of sum_n ceil(L_n / 64) for N sequences of T tokens: at most
// min(N, T) non-empty sequences, all but one as short as one token.
int64_t max_chunks(int64_t T, int64_t N) {
  if (T == 0 || N == 0) return 0;
  const int64_t m = std::min(N, T);
  return (m - 1) + (T - (m - 1) + kChunk - 1) / kChunk;
}

// What the state pass's launch depends on, read once per device.
struct DeviceLimits {
  int sms = 0;
  size_t smem_optin = 0;   // per block
  size_t smem_per_sm = 0;  // per multiprocessor
};

Status device_limits(int ordinal, DeviceLimits* out) {
  static std::mutex mutex;
  static std::map<int, DeviceLimits> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(ordinal);
  if (it == cache.end()) {
    DeviceLimits d;
    int smem = 0;
    GDN_CUDA_RETURN(cudaDeviceGetAttribute(&d.sms, cudaDevAttrMultiProcessorCount, ordinal));
    GDN_CUDA_RETURN(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, ordinal));
    d.smem_optin = static_cast<size_t>(smem);
    GDN_CUDA_RETURN(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, ordinal));
    d.smem_per_sm = static_cast<size_t>(smem);
    it = cache.emplace(ordinal, d).first;
  }
  *out = it->second;
  return Status::Ok();
}

// Shared memory each resident CTA also takes from its SM.
constexpr size_t kSmemPerBlockReserved = 1024;

// Ring slots for a state-pass launch of `ctas` CTAs taking `one` or `two`
// bytes of shared memory with one or two slots: one slot and two CTAs per SM
// when the grid has more CTAs than SMs and the kernel's registers allow it
// (another CTA's work hides this one's loads, and two slots, one CTA per SM,
// would take a second wave: 1x64 of q3n-tp1, 256 CTAs, ran its state pass in
// 20 us that way); else two slots when they fit (the next chunk loads while
// this one computes); else one. GDN_CUDA_RING_STAGES=1|2 forces the depth.
int ring_stages(int64_t ctas, size_t one, size_t two, int min_blocks, const DeviceLimits& dev) {
  if (const char* env = std::getenv("GDN_CUDA_RING_STAGES"); env != nullptr && (*env == '1' || *env == '2'))
    return *env == '2' && two <= dev.smem_optin ? 2 : 1;  // forced (measurements)
  if (ctas > dev.sms && min_blocks >= 2 && 2 * (one + kSmemPerBlockReserved) <= dev.smem_per_sm) return 1;
  return two <= dev.smem_optin ? 2 : 1;
}

Status check_smem(size_t bytes, const DeviceLimits& dev) {
  if (bytes <= dev.smem_optin) return Status::Ok();
  return Status::Unsupported("cuda: the device's shared memory per block (" + std::to_string(dev.smem_optin) +
                             " bytes) is too small for the state pass");
}

struct Layout {
  size_t meta = 0, au = 0, l = 0, f = 0, seg_state = 0, seg_map = 0, ready = 0, total = 0;
};

// The workspace of a call split into `segments` per sequence (the same for
// both backends).
Layout layout(const Call& c, int segments) {
  Layout l;
  const size_t chunks = static_cast<size_t>(max_chunks(c.T, c.N)) * static_cast<size_t>(c.HV);
  size_t at = 0;
  l.meta = at;
  at = align_up(at + sizeof(int32_t) * (3 * static_cast<size_t>(c.N) + 3));
  l.au = at;
  at = align_up(at + sizeof(float) * chunks * kChunk * kChunk);
  l.l = at;
  at = align_up(at + sizeof(float) * chunks * kChunk * kChunk);
  l.f = at;
  at = align_up(at + sizeof(float) * chunks * kFactorStride);
  if (segments > 1) {
    const size_t items = static_cast<size_t>(c.N) * static_cast<size_t>(segments) * static_cast<size_t>(c.HV);
    l.seg_state = at;
    at = align_up(at + sizeof(float) * items * static_cast<size_t>(c.K) * static_cast<size_t>(c.V));
    l.seg_map = at;
    at = align_up(at + sizeof(float) * items * static_cast<size_t>(c.K) * static_cast<size_t>(c.K));
  }
  l.ready = at;  // last: the candidates' ticket counter and ready marks (PrefillParams::tickets)
  at += prefill_ready_bytes(c.T, c.N, c.HV);
  l.total = at;
  return l;
}

// The meta region: the error flag first (at the workspace's start whatever
// the call's shape), then chunk_offset [N + 1], ckpt_offset [N + 1] and
// seq_order [N].
int32_t* error_flag_in(void* workspace, const Layout& l) {
  return reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + l.meta);
}

// State columns per CTA when GDN_CUDA_STATE_COLUMNS names one (16 or 32;
// for measuring the heuristic below), else 0.
int forced_state_columns() {
  static const int forced = [] {
    const char* env = std::getenv("GDN_CUDA_STATE_COLUMNS");
    const int v = env != nullptr ? std::atoi(env) : 0;
    return v == 16 || v == 32 ? v : 0;
  }();
  return forced;
}

// Which state pass bf16 io takes (fp16 and fp32 io always take the tiled
// one, prefill_state.cu): the column-owner pass (prefill_columns.cu) when its
// grid fills at least a quarter of the SMs, else the tiled one, whose 16- and
// 32-column CTAs spread a few heads over more SMs and run a chunk with less
// latency. GDN_CUDA_STATE_PASS=tiles|columns forces one (for measurements).
// Measured on the H100 (graph ms, columns / tiles; bench/results, f6410b9):
// q35-397b-tp8 1x65536 (16 column-owner CTAs) 4.26 / 3.50, q3n-tp4 1x16384
// (16) 1.11 / 0.94, q3n-tp1 1x8192 (64) 0.67 / 0.75, q36-27b-tp1 1x8192 (96)
// 0.76 / 1.30, q3n-tp1 32x1024 (2048) 1.67 / 2.68.
template <int KV>
bool column_state_pass(int64_t items, const DeviceLimits& dev) {
  static const int forced = [] {
    const char* env = std::getenv("GDN_CUDA_STATE_PASS");
    const std::string v = env != nullptr ? env : "";
    return v == "columns" ? 1 : v == "tiles" ? -1 : 0;
  }();
  if (forced != 0) return forced > 0;
  return 4 * prefill_columns_ctas<KV, KV>(items) >= dev.sms;
}

// What the launches take from the host side of a call besides the kernel
// parameters.
struct HostPlan {
  int64_t checkpoint_rows = 0;
  bool long_tail = false;      // long_tail_of
  bool one_chunk = false;      // every sequence at most one chunk long (a host copy of cu_seqlens shows it)
  int32_t* tickets = nullptr;  // the workspace's last region: its ticket counter, then the ready marks
};

// Whether one sequence's chunks outlast the rest of a column-owner launch by
// far (known only from a host copy of cu_seqlens): its CTAs then run alone
// for most of the launch, where a one-slot ring leaves every chunk's loads
// exposed, so the launch takes two slots (one CTA per SM). The rest of the
// launch takes about sum_n chunks_n x CTAs per sequence / (2 x SMs) chunk
// steps; a tail is a sequence of more than twice that many chunks. Measured
// on the H100 (graph ms, two slots / one; bench/results
// cuda-h100-2026-11-25-ring-stages-ab.txt): q3n-tp1 skewed (one 16384-token
// sequence, 31 of 128) 1.45 / 2.04; batch rows lose with two slots (32x1024
// 1.48 / 1.41), and none of them has a tail.
// The longest sequence's chunks and all sequences' chunks, from a host copy
// of cu_seqlens (zero without one; lengths suffice, pool rows may be
// checked on the device). One pass over the lengths serves the host plan.
struct ChunkCounts {
  int64_t longest = 0, total = 0;
};
ChunkCounts chunk_counts(const Call& c) {
  ChunkCounts k;
  if (!c.host_seqlens) return k;
  for (int64_t n = 0; n < c.N; ++n) {
    const int64_t chunks = (c.seq_start[n + 1] - c.seq_start[n] + kChunk - 1) / kChunk;
    k.longest = std::max(k.longest, chunks);
    k.total += chunks;
  }
  return k;
}

bool long_tail_of(const Call& c, const ChunkCounts& k, const DeviceLimits& dev) {
  if (!c.host_seqlens || c.N < 2) return false;
  const int64_t per_seq = c.HV * (c.V / 64);
  return k.longest * dev.sms > k.total * per_seq;
}

// Segments per sequence (params.h): when the column-owner pass's CTAs for
// whole sequences would fill at most a quarter of the SMs, each sequence
// splits into as many segments as keep the final pass's CTAs within the SMs
// (one each), each of at least kMinSegmentTokens tokens on average, at most
// kMaxSegments, and at least 3 (the split costs a local pass, carrying the
// end state and, in as many columns again, the state map of each segment,
// and a combine before the final pass). Measured on the H100 (graph ms,
// split / whole; bench/results cuda-h100-2026-11-25-segments-ab.txt):
// q35-397b-tp8 1x65536 (16 CTAs, 9 segments) 1.73 / 3.53, 1x8192 (8) 0.27 /
// 0.47, q3n-tp4 1x16384 (9) 0.51 / 0.94; but q3n-tp1 1x8192 (64 CTAs, 3
// segments) 0.72 / 0.67. Segments of 512 tokens still pay: q35-397b-tp8
// 1x2048 with 4, 0.106 ms, against 0.123 whole
// (cuda-h100-2026-11-25-ring-stages-ab.txt). One CTA per SM, not one more:
// on the H200 with 16 CTAs a segment (bench/results
// cuda-h200-2026-12-04-segments-ab.txt, graph us, 8 / 9 segments, 9 being
// the rounded-up count this rule used before) q35-397b-tp8 1x65536 1092 /
// 1268, 1x8192 188 / 213, q3n-tp4 1x16384 323 / 366: with 9, 144 CTAs
// leave 12 SMs running two of the final pass's chains at half speed.
// GDN_CUDA_SEGMENTS=P forces P (tests and measurements; 1 turns it off).
constexpr int64_t kMinSegmentTokens = 512;
constexpr int kMinSegments = 3;
constexpr int kMaxSegments = 16;

int segments_for(const Call& c, const DeviceLimits& dev) {
  if (c.io_dtype != DType::kBF16 || c.K != c.V || (c.K != 64 && c.K != 128) || c.N == 0) return 1;
  if (const char* env = std::getenv("GDN_CUDA_SEGMENTS"); env != nullptr && *env != '\0')
    return std::clamp(std::atoi(env), 1, kMaxSegments);
  if (std::getenv("GDN_CUDA_STATE_PASS") != nullptr) return 1;  // a forced pass runs whole sequences
  const int64_t ctas = c.N * c.HV * (c.V / 64);
  if (4 * ctas > dev.sms) return 1;
  const int64_t by_sms = dev.sms / ctas;
  const int64_t by_len = c.T / (c.N * kMinSegmentTokens);
  const int64_t segments = std::min<int64_t>({by_sms, by_len, kMaxSegments});
  return segments >= kMinSegments ? static_cast<int>(segments) : 1;
}

template <typename T, int KV, int VT>
Status launch_state(PrefillParams p, int64_t items, const DeviceLimits& dev, cudaStream_t stream) {
  p.stages =
      ring_stages(items * (KV / VT), prefill_state_smem<T, KV, KV, VT>(1),
                  prefill_state_smem<T, KV, KV, VT>(2), prefill_state_min_blocks<T, KV, KV, VT>(), dev);
  if (Status s = check_smem(prefill_state_smem<T, KV, KV, VT>(p.stages), dev); !s.ok()) return s;
  return launch_prefill_state<T, KV, KV, VT>(p, stream);
}

// One column-owner launch of `phase` over `items` (sequence, value head) pairs.
template <int KV>
Status launch_columns_phase(PrefillParams p, int phase, int64_t items, bool long_tail,
                            const DeviceLimits& dev, cudaStream_t stream) {
  p.seg_phase = phase;
  const int64_t ctas = prefill_columns_ctas<KV, KV>(items * p.segments) * (phase == kSegLocal ? 2 : 1);
  // A long tail runs one CTA per SM (two slots), else two fit by registers.
  p.stages = ring_stages(ctas, prefill_columns_smem<KV, KV>(1), prefill_columns_smem<KV, KV>(2),
                         long_tail ? 1 : 2, dev);
  if (Status s = check_smem(prefill_columns_smem<KV, KV>(p.stages), dev); !s.ok()) return s;
  return launch_prefill_columns<KV, KV>(p, stream);
}

// The column-owner pass over whole sequences, or over p.segments segments
// of each: local pass, combine, final pass.
template <int KV>
Status launch_columns(const PrefillParams& p, int64_t items, bool long_tail, const DeviceLimits& dev,
                      cudaStream_t stream) {
  if (p.segments == 1) return launch_columns_phase<KV>(p, kSegWhole, items, long_tail, dev, stream);
  if (Status s = launch_columns_phase<KV>(p, kSegLocal, items, false, dev, stream); !s.ok()) return s;
  if (Status s = launch_combine_segments<KV, KV>(p, dev.smem_optin, stream); !s.ok()) return s;
  return launch_columns_phase<KV>(p, kSegFinal, items, false, dev, stream);
}

// State-pass shape: 32 state columns per CTA (fewer re-reads of q, k, Au, L
// per column) unless that fills less than half the SMs; then 16 (twice the
// CTAs, a chunk's latency being what a few-CTA launch pays). Measured on the
// H100 (graph ms, VT 16 / 32): q35-397b-tp8 1x8192, 32 CTAs at 32:
// 0.49 / 0.66; q3n-tp1 1x8192, 128 CTAs at 32: 0.87 / 0.78; q3n-tp1 32x1024:
// 3.92 / 2.77. 64 columns (one CTA per SM, 224 registers) was within 3% of 32
// on the batch rows and slower on the others.
// Whether the environment variable `var` reads "0" (a path turned off; read
// per call, as tests set it).
bool turned_off(const char* var) {
  const char* env = std::getenv(var);
  return env != nullptr && std::string(env) == "0";
}

// Chunk metadata on the device, unless the parameters carry it.
Status chunk_meta(const PrefillParams& p, const HostPlan& plan, cudaStream_t stream) {
  if (p.inline_offsets) return Status::Ok();
  launch_chunk_meta(p, plan.checkpoint_rows, stream);
  GDN_CUDA_RETURN(cudaGetLastError());
  return Status::Ok();
}

template <typename T, int KV>
Status launch(PrefillParams p, const HostPlan& plan, const DeviceLimits& dev, cudaStream_t stream) {
  if (Status s = chunk_meta(p, plan, stream); !s.ok()) return s;
  if (Status s = launch_prefill_prep<T, KV, KV>(p, stream); !s.ok()) return s;
  const int64_t items = p.N * p.HV;
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    if (p.segments > 1 || column_state_pass<KV>(items, dev))
      return launch_columns<KV>(p, items, plan.long_tail, dev, stream);
  int columns = forced_state_columns();
  if (columns == 0)
    columns =
        2 * items * (KV / 32) >= dev.sms && prefill_state_smem<T, KV, KV, 32>(1) <= dev.smem_optin ? 32 : 16;
  return columns == 32 ? launch_state<T, KV, 32>(p, items, dev, stream)
                       : launch_state<T, KV, 16>(p, items, dev, stream);
}

#if GDN_WITH_SM90_BACKEND
// The sm90 backend: chunk metadata, the prep kernel (Au and L in the sm90
// tile layout), then the sm90 state pass over whole sequences, or local
// pass, combine and final pass over segments. Candidates (off by default):
// the whole pass persistent (GDN_SM90_PERSIST; the prep zeroes its ticket
// counter), or beside the prep (GDN_SM90_OVERLAP: the marks zeroed by a
// memset, then the overlapped prep as the call's first kernel, which
// clears the error flag, then the pass).
// With the fused state pass (sm90::pass_form_for) no prep kernel runs;
// with inline offsets the first state pass is then the call's first kernel
// and writes the error flag (state_pass.cu, checks_failed).
template <int KV>
Status launch_sm90(sm90::StateParams fp, const HostPlan& plan, const DeviceLimits& dev, cudaStream_t stream) {
  if (Status s = chunk_meta(fp.p, plan, stream); !s.ok()) return s;
  fp.p.sm90_tiles = true;
  fp.p.prep_heads = static_cast<uint8_t>(prep_heads_for_group(fp.p.group));
  const sm90::PassForm form = sm90::pass_form_for<KV>(fp.p, dev.sms, plan.one_chunk, plan.long_tail);
  if (sm90::persistent_pass<KV>(fp.p, form, dev.sms, plan.long_tail)) fp.p.tickets = plan.tickets;
  if (const int prep_ctas = sm90::overlap_prep_ctas<KV>(fp.p, form, dev.sms, plan.long_tail); prep_ctas > 0) {
    // The prep on the SMs the pass leaves idle, beside it (its ticket
    // counter and the marks zeroed first).
    fp.p.tickets = plan.tickets;
    fp.p.ready = plan.tickets + 1;
    GDN_CUDA_RETURN(cudaMemsetAsync(fp.p.tickets, 0, sizeof(int32_t) * (1 + ready_marks(fp.p)), stream));
    if (Status s = launch_prefill_prep_overlap<__nv_bfloat16, KV, KV>(fp.p, prep_ctas, stream); !s.ok())
      return s;
  } else if (form != sm90::PassForm::kFused) {
    const bool au_only = form == sm90::PassForm::kSplitL;
    if (Status s = launch_prefill_prep<__nv_bfloat16, KV, KV>(fp.p, stream, au_only); !s.ok()) return s;
  }
  if (fp.p.segments == 1) {
    fp.p.seg_phase = kSegWhole;
    return sm90::launch_state_sm90<KV>(fp, form, dev.sms, plan.long_tail, stream);
  }
  fp.p.seg_phase = kSegLocal;
  if (Status s = sm90::launch_state_sm90<KV>(fp, form, dev.sms, plan.long_tail, stream); !s.ok()) return s;
  fp.p.clear_flag = nullptr;  // written by now
  if (Status s = launch_combine_segments<KV, KV>(fp.p, dev.smem_optin, stream); !s.ok()) return s;
  fp.p.seg_phase = kSegFinal;
  return sm90::launch_state_sm90<KV>(fp, form, dev.sms, plan.long_tail, stream);
}
#endif

template <typename T>
Status launch_dtype(const PrefillParams& p, int64_t kv, const HostPlan& plan, const DeviceLimits& dev,
                    cudaStream_t stream) {
  switch (kv) {
    case 64:
      return launch<T, 64>(p, plan, dev, stream);
    case 128:
      return launch<T, 128>(p, plan, dev, stream);
    default:
      return Status::Unsupported("cuda: head size " + std::to_string(kv) + " is not compiled (64, 128)");
  }
}

// Whether a prefill runs the token recurrence of decode and verify
// (recurrent.cu, one launch) instead of the chunked pipeline: when the host
// copies show every sequence at most kShortPrefillTokens long (no checkpoint
// falls in so short a sequence: checkpoint_every is a multiple of 64). The
// recurrence is exact fp32 per token; its cost grows by a token's step per
// token, the chunked pipeline's is that of one chunk (three kernels in a
// chain) from the first token. GDN_CUDA_SHORT_PREFILL=0 keeps the chunked
// pipeline (tests and measurements).
constexpr int64_t kShortPrefillTokens = kMaxVerifyTokens;

bool short_prefill(const Call& c) {
  if (turned_off("GDN_CUDA_SHORT_PREFILL") || !c.host_indexing || c.N == 0 || c.V % kTileColumns != 0)
    return false;
  for (int64_t n = 0; n < c.N; ++n)
    if (c.seq_start[n + 1] - c.seq_start[n] > kShortPrefillTokens) return false;
  return true;
}

// The inline order table (params.h, kOrderedSeqs): the sequences by
// descending chunk count, ties in index order; index order for one
// sequence, without host copies, or under GDN_CUDA_ORDER=0.
void order_longest_first(const Call& c, PrefillParams* p) {
  std::array<int, kInlineSeqs> order{};
  std::iota(order.begin(), order.begin() + c.N, 0);
  if (c.host_indexing && !turned_off("GDN_CUDA_ORDER")) {
    const auto chunks = [&](int n) { return (c.seq_start[n + 1] - c.seq_start[n] + kChunk - 1) / kChunk; };
    std::stable_sort(order.begin(), order.begin() + c.N, [&](int a, int b) { return chunks(a) > chunks(b); });
  }
  for (int64_t r = 0; r < c.N; ++r) p->inline_order[r] = static_cast<uint8_t>(order[r]);
}

// Inline offsets (params.h, kInlineSeqs) when the host validated the call's
// sequences and pool rows and they are few, or for one sequence without
// host copies (checked by the prep): chunk_meta then does not run.
// GDN_CUDA_INLINE_OFFSETS=0 keeps chunk_meta (tests and measurements).
void set_inline_offsets(const Call& c, PrefillParams* p) {
  if (turned_off("GDN_CUDA_INLINE_OFFSETS") || c.N < 1 || c.N > kInlineSeqs || c.T == 0) return;
  const bool checked = c.host_indexing;
  if (!checked && c.N != 1) return;
  int32_t chunks = 0, ckpts = 0;
  for (int64_t n = 0; n < c.N; ++n) {
    const int64_t start = checked ? c.seq_start[n] : 0, end = checked ? c.seq_start[n + 1] : c.T;
    p->inline_start[n] = start;
    p->inline_chunk[n] = chunks;
    p->inline_ckpt[n] = ckpts;
    chunks += static_cast<int32_t>((end - start + kChunk - 1) / kChunk);
    if (p->ckpt_every > 0) ckpts += static_cast<int32_t>((end - start) / p->ckpt_every);
  }
  order_longest_first(c, p);
  p->inline_start[c.N] = c.T;
  p->inline_chunk[c.N] = chunks;
  p->inline_ckpt[c.N] = ckpts;
  p->inline_offsets = true;
  p->inline_check = !checked;
  p->clear_flag = p->error_flag;
  p->seq_order = nullptr;  // the inline table instead
  if (checked) p->error_flag = nullptr;
}

size_t workspace_size(const Call& call) {
  if (call.op != Op::kPrefill) return 0;
  DeviceLimits dev;
  const int segments = device_limits(call.device_ordinal, &dev).ok() ? segments_for(call, dev) : 1;
  return layout(call, segments).total;
}

Status run_prefill(const Call& c, const Args& a, bool sm90) {
  const char* name = sm90 ? "sm90" : "cuda";
  if (c.op != Op::kPrefill) return Status::Unsupported(std::string(name) + ": runs prefill only");
  if (c.K != c.V) return Status::Unsupported(std::string(name) + ": needs K == V");
  DeviceLimits dev;
  if (Status s = device_limits(c.device_ordinal, &dev); !s.ok()) return s;
  const int segments = segments_for(c, dev);
  const Layout l = layout(c, segments);
  if (a.workspace_bytes < l.total || (l.total > 0 && a.workspace == nullptr))
    return Status::Invalid("workspace: this prefill needs " + std::to_string(l.total) +
                           " bytes (gdn::workspace_size), got " + std::to_string(a.workspace_bytes));
  if (reinterpret_cast<uintptr_t>(a.workspace) % kAlign != 0)
    return Status::Invalid("workspace: must be 256-byte aligned");
  if (short_prefill(c)) return run_cuda_recurrent(c, a, error_flag_in(a.workspace, l));

  PrefillParams p;
  p.T = c.T, p.N = c.N, p.H = c.H, p.HV = c.HV, p.group = c.HV / c.H;
  set_token_inputs(a, &p);
  p.cu_seqlens = a.cu_seqlens.data;
  p.cu64 = a.cu_seqlens.dtype == DType::kI64;
  set_state_inputs(a, c.pool, c.pool_rows, &p);
  p.check_unique = c.pool && a.state_indices_host == nullptr;
  p.ckpt = state_view(a.checkpoints, a.state_layout);
  p.ckpt_every = a.checkpoints.defined() ? a.checkpoint_every : 0;
  p.out = a.out.data, p.o_s0 = a.out.stride[0], p.o_s1 = a.out.stride[1];
  p.scale = c.scale;
  p.l2norm = a.l2norm_qk;
  p.max_chunks = max_chunks(c.T, c.N);
  char* ws = static_cast<char*>(a.workspace);
  p.error_flag = error_flag_in(ws, l);
  p.chunk_offset = p.error_flag + 1;
  p.ckpt_offset = p.chunk_offset + c.N + 1;
  if (c.N <= kOrderedSeqs && !turned_off("GDN_CUDA_ORDER")) p.seq_order = p.ckpt_offset + c.N + 1;
  p.Au = reinterpret_cast<float*>(ws + l.au);
  p.L = reinterpret_cast<float*>(ws + l.l);
  p.F = reinterpret_cast<float*>(ws + l.f);
  set_inline_offsets(c, &p);
  p.segments = segments;
  if (segments > 1) {
    p.seg_state = reinterpret_cast<float*>(ws + l.seg_state);
    p.seg_map = reinterpret_cast<float*>(ws + l.seg_map);
  }

  DeviceGuard guard;
  GDN_CUDA_RETURN(guard.set(c.device_ordinal));
  const auto stream = static_cast<cudaStream_t>(a.stream);
  HostPlan plan;
  plan.checkpoint_rows = a.checkpoints.defined() ? a.checkpoints.shape[0] : 0;
  const ChunkCounts counts = chunk_counts(c);
  plan.long_tail = long_tail_of(c, counts, dev);
  plan.one_chunk = c.host_seqlens && counts.longest <= 1;
  plan.tickets = reinterpret_cast<int32_t*>(ws + l.ready);
  if (sm90) {
#if GDN_WITH_SM90_BACKEND
    if (c.io_dtype != DType::kBF16) return Status::Unsupported("sm90: runs bf16 io only");
    sm90::StateParams fp;
    fp.p = p;
    if (Status s = sm90::encode_token_maps(p, c.K, c.V, &fp); !s.ok()) return s;
    switch (c.K) {
      case 64:
        return launch_sm90<64>(fp, plan, dev, stream);
      case 128:
        return launch_sm90<128>(fp, plan, dev, stream);
      default:
        return Status::Unsupported("sm90: head size " + std::to_string(c.K) + " is not compiled (64, 128)");
    }
#else
    return Status(StatusCode::kInternal, "backend sm90 is not compiled in");
#endif
  }
  switch (c.io_dtype) {
    case DType::kBF16:
      return launch_dtype<__nv_bfloat16>(p, c.K, plan, dev, stream);
    case DType::kF16:
      return launch_dtype<__half>(p, c.K, plan, dev, stream);
    case DType::kF32:
      return launch_dtype<float>(p, c.K, plan, dev, stream);
    default:
      return Status::Unsupported(std::string("cuda: io dtype ") + dtype_name(c.io_dtype) +
                                 " is not compiled");
  }
}

}  // namespace

Status prefill_device_status(const Call& c, const Args& a) {
  if (c.op != Op::kPrefill) return Status::Invalid("prefill_device_status: answers for prefill only");
  // The flag sits at the workspace's start whatever the call's shape.
  if (a.workspace == nullptr || a.workspace_bytes < sizeof(int32_t))
    return Status::Invalid("workspace: prefill_device_status reads the workspace the prefill ran on, got " +
                           std::to_string(a.workspace_bytes) + " bytes");
  const int32_t* flag = error_flag_in(a.workspace, Layout{});
  DeviceGuard guard;
  GDN_CUDA_RETURN(guard.set(c.device_ordinal));
  int32_t flags = 0;
  const auto stream = static_cast<cudaStream_t>(a.stream);
  GDN_CUDA_RETURN(cudaMemcpyAsync(&flags, flag, sizeof(flags), cudaMemcpyDeviceToHost, stream));
  GDN_CUDA_RETURN(cudaStreamSynchronize(stream));
  if (flags == 0) return Status::Ok();
  std::string why;
  if (flags & kBadSeqlens)
    why += "cu_seqlens: must be non-decreasing from 0 to T (" + std::to_string(c.T) + ")";
  if (flags & kBadIndex)
    why += std::string(why.empty() ? "" : "; ") + "state_indices: every index must be below the pool's " +
           std::to_string(c.pool_rows) + " rows";
  if (flags & kBadDuplicate)
    why += std::string(why.empty() ? "" : "; ") +
           "state_indices: a pool row appears twice (non-negative indices must be unique)";
  if (flags & kBadCheckpoints)
    why += std::string(why.empty() ? "" : "; ") + "checkpoints: fewer rows than the sequences' checkpoints";
  return Status::Invalid(why + " (checked on the device; the prefill wrote nothing)");
}

size_t prefill_ready_bytes(int64_t T, int64_t N, int64_t HV) {
  return align_up(sizeof(int32_t) * (static_cast<size_t>(max_chunks(T, N)) * static_cast<size_t>(HV) + 1));
}

size_t cuda_workspace_size(const Call& call, const Args& args) {
  (void)args;
  return workspace_size(call);
}

size_t sm90_workspace_size(const Call& call, const Args& args) {
  (void)args;
  return workspace_size(call);
}

Status run_cuda(const Call& call, const Args& args) {
  return run_prefill(call, args, false);
}

Status run_sm90(const Call& call, const Args& args) {
  return run_prefill(call, args, true);
}

}  // namespace gdn::cuda
