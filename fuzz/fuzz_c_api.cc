// libFuzzer target for the C ABI (gdn_c.h).
//
// Each input describes one call: a small, valid-by-construction problem
// (prefill T <= 256 tokens in <= 6 sequences, decode <= 8 sequences, verify
// <= 5 sequences of <= 16 tokens; H <= HV <= 4 heads; K, V <= 16; dense,
// in-place or pooled state, checkpoints, intermediate states; strided
// layouts) that a list of mutations, read from the front of the input, then
// breaks in chosen ways: ranks, dtypes, extents, strides (zero, negative,
// huge, overlapping), data pointers (null, misaligned, aliasing another
// tensor), cu_seqlens and state_indices contents, and options. The call goes
// through gdn_workspace_size, gdn_supports and the op's entry point
// (gdn_prefill, gdn_decode or gdn_verify) on host memory.
//
// Every tensor gets its own heap buffer of exactly the bytes its declared
// shape and strides span, so AddressSanitizer reports any access outside
// them. A tensor whose declared span cannot be allocated (overflow, more than
// kMaxBytes) gets a small buffer instead; such a call is only executed when
// gdn_workspace_size (which validates exactly as the call does) rejects it,
// so the call must reject it too, before touching any memory.
//
// Oracles, each a __builtin_trap() on violation:
//  - gdn_workspace_size and the call agree on the status; gdn_last_error()
//    is empty after a success and names the problem after a failure;
//  - gdn_workspace_size and gdn_supports write no tensor;
//  - a rejected call leaves every buffer byte-for-byte unchanged;
//  - an accepted call, repeated on the same inputs, writes the same bytes;
//  - an accepted call writes only the elements of its outputs (out,
//    final_state, the checkpoint rows it owes, intermediate_states, and the
//    pool rows named by state_indices when write_final_state is set), no two
//    of which overlap, none of which overlaps an input, and it writes every
//    element of out, of final_state and of the checkpoint rows it owes
//    (outputs are pre-filled with signalling-NaN patterns), and of the
//    intermediate states of each sequence's tokens.
//
// Deliberate limits: cu_seqlens and state_indices keep small extents (the
// library reads and sizes host metadata by them), decode and verify are not
// called with T > 65536, and num_threads stays <= 64.
//
// Environment: GDN_FUZZ_VERBOSE=1 prints each case and its statuses;
// GDN_FUZZ_WILD_ENUMS=1 also feeds enum fields values outside the enums'
// ranges (the C++ side then loads invalid enum values, which UBSan reports).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "gdn/gdn_c.h"

namespace {

constexpr int64_t kMaxBytes = int64_t{1} << 20;  // largest buffer allocated exactly
constexpr size_t kSmallBytes = 64;               // stand-in for larger declared spans
// Decode and verify derive N from T (q.shape[0]) and size host metadata by it;
// a declared T beyond this is not called (it would need that much memory).
constexpr int64_t kMaxDerivedSequences = int64_t{1} << 16;

constexpr int64_t kI64Max = std::numeric_limits<int64_t>::max();
constexpr int64_t kI64Min = std::numeric_limits<int64_t>::min();
constexpr int32_t kI32Max = std::numeric_limits<int32_t>::max();
constexpr int32_t kI32Min = std::numeric_limits<int32_t>::min();

bool verbose() {
  static const bool v = [] {
    const char* e = std::getenv("GDN_FUZZ_VERBOSE");
    return e != nullptr && *e != '\0' && *e != '0';
  }();
  return v;
}

bool wild_enums() {
  static const bool v = [] {
    const char* e = std::getenv("GDN_FUZZ_WILD_ENUMS");
    return e != nullptr && *e != '\0' && *e != '0';
  }();
  return v;
}

// Enum fields are read and written as their int32 representation, so the
// driver itself never loads an out-of-range enum value.
template <typename E>
int32_t raw(const E& e) {
  static_assert(sizeof(E) == sizeof(int32_t), "C enums are int-sized");
  int32_t v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}
template <typename E>
void set_raw(E* e, int32_t v) {
  static_assert(sizeof(E) == sizeof(int32_t), "C enums are int-sized");
  std::memcpy(e, &v, sizeof v);
}

[[noreturn]] void violation(const char* what) {
  std::fprintf(stderr, "gdn_fuzz_c_api: oracle violated: %s (gdn_last_error: \"%s\")\n", what,
               gdn_last_error());
  __builtin_trap();
}

int64_t elem_size(int32_t dtype) {
  switch (dtype) {
    case GDN_F32:
    case GDN_I32:
      return 4;
    case GDN_F16:
    case GDN_BF16:
      return 2;
    case GDN_I64:
      return 8;
    default:
      return 0;
  }
}

// Bytes spanned by the elements of `t` when its layout is usable (rank 1..5,
// a known dtype, non-negative extents and strides); -1 otherwise, or when the
// span overflows or exceeds kMaxBytes.
int64_t exact_bytes(const gdn_tensor_t& t) {
  if (t.rank < 1 || t.rank > GDN_MAX_RANK) return -1;
  const int64_t es = elem_size(raw(t.dtype));
  if (es == 0) return -1;
  bool empty = false;
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] < 0 || t.stride[i] < 0) return -1;
    empty = empty || t.shape[i] == 0;
  }
  if (empty) return 0;
  int64_t last = 0;
  for (int i = 0; i < t.rank; ++i) {
    int64_t term;
    if (__builtin_mul_overflow(t.shape[i] - 1, t.stride[i], &term) ||
        __builtin_add_overflow(last, term, &last))
      return -1;
  }
  int64_t bytes;
  if (__builtin_add_overflow(last, 1, &bytes) || __builtin_mul_overflow(bytes, es, &bytes) ||
      bytes > kMaxBytes)
    return -1;
  return bytes;
}

// Calls f(index, element offset) for every element of a tensor whose layout
// is usable and non-empty.
template <typename F>
void for_each_element(const gdn_tensor_t& t, F&& f) {
  int64_t idx[GDN_MAX_RANK] = {};
  for (;;) {
    int64_t off = 0;
    for (int i = 0; i < t.rank; ++i) off += idx[i] * t.stride[i];
    f(static_cast<const int64_t*>(idx), off);
    int d = t.rank - 1;
    while (d >= 0 && ++idx[d] == t.shape[d]) idx[d--] = 0;
    if (d < 0) return;
  }
}

// A tiny PRNG for tensor contents (the fuzzer's bytes pick the seed).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>(next() >> 40) * (1.0f / 16777216.0f);
  }
};

uint16_t to_bf16(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return static_cast<uint16_t>(b >> 16);
}

// Truncating float -> IEEE half for the small finite values used here.
uint16_t to_half(float f) {
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int32_t e = static_cast<int32_t>((b >> 23) & 0xffu) - 127 + 15;
  if (e <= 0) return static_cast<uint16_t>(sign);
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7bffu);
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(e) << 10) | ((b & 0x7fffffu) >> 13));
}

// Signalling-NaN patterns the library never produces from finite inputs:
// an element still holding one was never written.
std::array<unsigned char, 4> sentinel(int32_t dtype, size_t* bytes) {
  switch (dtype) {
    case GDN_F32:
      *bytes = 4;
      return {0xa5, 0xa5, 0xa5, 0x7f};
    case GDN_BF16:
      *bytes = 2;
      return {0xa5, 0x7f, 0, 0};
    case GDN_F16:
      *bytes = 2;
      return {0x5a, 0x7d, 0, 0};
    default:
      *bytes = 1;
      return {0xa5, 0, 0, 0};
  }
}

enum Tid : int {
  kQ,
  kK,
  kV,
  kG,
  kBeta,
  kA,
  kB,
  kALog,
  kDtBias,
  kCuSeqlens,
  kStateIndices,
  kInitialState,
  kFinalState,
  kCheckpoints,
  kIntermediate,
  kOut,
  kNumTensors
};

const char* const kTensorNames[kNumTensors] = {"q",
                                               "k",
                                               "v",
                                               "g",
                                               "beta",
                                               "a",
                                               "b",
                                               "a_log",
                                               "dt_bias",
                                               "cu_seqlens",
                                               "state_indices",
                                               "initial_state",
                                               "final_state",
                                               "checkpoints",
                                               "intermediate_states",
                                               "out"};

gdn_tensor_t& tensor_of(gdn_args_t& a, int id) {
  switch (id) {
    case kQ:
      return a.q;
    case kK:
      return a.k;
    case kV:
      return a.v;
    case kG:
      return a.g;
    case kBeta:
      return a.beta;
    case kA:
      return a.a;
    case kB:
      return a.b;
    case kALog:
      return a.a_log;
    case kDtBias:
      return a.dt_bias;
    case kCuSeqlens:
      return a.cu_seqlens;
    case kStateIndices:
      return a.state_indices;
    case kInitialState:
      return a.initial_state;
    case kFinalState:
      return a.final_state;
    case kCheckpoints:
      return a.checkpoints;
    case kIntermediate:
      return a.intermediate_states;
    default:
      return a.out;
  }
}

bool is_output_id(int id) {
  return id == kFinalState || id == kCheckpoints || id == kIntermediate || id == kOut;
}
bool is_index_id(int id) {
  return id == kCuSeqlens || id == kStateIndices;
}

// One mutation of the valid call; applied in phases (descriptors, then data
// pointers, then contents).
enum MutKind : int {
  kMutRank,
  kMutDtype,
  kMutShape,
  kMutStride,
  kMutOverlap,
  kMutUndefine,
  kMutDefineExtra,
  kMutNull,
  kMutMisalign,
  kMutAlias,
  kMutCuEntry,
  kMutIdxEntry,
  kMutOption,
  kMutCrossOp,
  kNumMutKinds
};

struct Mutation {
  int kind = 0;
  int target = 0;  // tensor id, or option number
  int dim = 0;     // dimension, entry index
  int other = 0;   // alias target
  uint32_t sel = 0;
  int64_t value = 0;
};

struct Buffer {
  unsigned char* data = nullptr;
  size_t size = 0;
  std::vector<unsigned char> before;
  std::vector<unsigned char> mark;  // accepted calls: 1 read as input, 2 written
};

struct Placement {
  int buffer = -1;  // -1: null data
  size_t offset = 0;
  bool own = false;  // the tensor's own buffer (not an alias)
};

class Case {
 public:
  explicit Case(FuzzedDataProvider& fdp) : fdp_(fdp) {}
  ~Case() {
    for (Buffer& b : buffers_) std::free(b.data);
  }
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;

  void run();

 private:
  void plan();
  void build_descriptors();
  void set_tensor(int id, int32_t dtype, std::initializer_list<int64_t> shape, bool define);
  void parse_mutations();
  void apply_descriptor_mutation(const Mutation& m);
  void apply_data_mutation(const Mutation& m);
  void apply_content_mutation(const Mutation& m);
  void allocate_and_fill();
  void fill(int id);
  void write_index(int id, int64_t entry, int64_t value);
  void snapshot();
  void describe() const;
  bool unchanged() const;
  void check_accepted();
  bool too_big(int32_t op) const;
  gdn_status_t call(int32_t op);

  FuzzedDataProvider& fdp_;
  Rng rng_{0};
  gdn_args_t args_{};

  // The valid problem.
  int32_t op_ = GDN_OP_PREFILL;  // shapes follow this op
  int32_t call_op_ = GDN_OP_PREFILL;
  int64_t H_ = 1, HV_ = 1, K_ = 1, V_ = 1, N_ = 0, T_ = 0;
  std::vector<int64_t> lens_;
  int32_t io_ = GDN_F32, state_ = GDN_F32, beta_ = GDN_F32, ab_ = GDN_F32, cu_ = GDN_I32, idx_ = GDN_I32;
  bool fused_ = false, vk_ = false, use_cu_ = true;
  int state_mode_ = 0;  // 0 none, 1 dense, 2 dense in place, 3 pool
  bool has_initial_ = false;
  int64_t pool_rows_ = 0;
  std::vector<int64_t> rows_;
  int64_t ckpt_rows_ = 0, inter_slots_ = 0;
  bool has_ckpt_ = false, has_inter_ = false;
  uint8_t style_[kNumTensors] = {};
  int32_t sup_backend_ = GDN_BACKEND_AUTO, sup_op_ = GDN_OP_PREFILL;

  std::vector<Mutation> muts_;
  std::vector<Buffer> buffers_;
  Placement place_[kNumTensors];
  bool unsafe_ = false;
  unsigned char dummy_host_[16] = {};
};

void Case::plan() {
  op_ = fdp_.ConsumeIntegralInRange<int32_t>(0, 2);
  H_ = fdp_.ConsumeIntegralInRange<int64_t>(1, 4);
  HV_ = H_ * fdp_.ConsumeIntegralInRange<int64_t>(1, 4);
  if (HV_ > 4) HV_ = H_;
  K_ = fdp_.ConsumeIntegralInRange<int64_t>(1, 16);
  V_ = fdp_.ConsumeIntegralInRange<int64_t>(1, 16);
  io_ = fdp_.PickValueInArray({GDN_F32, GDN_BF16, GDN_F16});
  state_ = fdp_.PickValueInArray({GDN_F32, GDN_BF16});
  beta_ = fdp_.PickValueInArray({GDN_F32, GDN_BF16});
  ab_ = fdp_.PickValueInArray({GDN_F32, GDN_BF16});
  cu_ = fdp_.PickValueInArray({GDN_I32, GDN_I64});
  idx_ = fdp_.PickValueInArray({GDN_I32, GDN_I64});
  fused_ = fdp_.ConsumeIntegralInRange<int>(0, 2) == 2;
  vk_ = fdp_.ConsumeBool();

  // Sequences.
  if (op_ == GDN_OP_PREFILL) {
    N_ = fdp_.ConsumeIntegralInRange<int64_t>(0, 6);
    for (int64_t n = 0; n < N_; ++n) {
      int64_t len = 0;
      switch (fdp_.ConsumeIntegralInRange<int>(0, 3)) {
        case 0:
          len = fdp_.ConsumeIntegralInRange<int64_t>(0, 8);
          break;
        case 1:
          len = fdp_.ConsumeIntegralInRange<int64_t>(1, 40);
          break;
        case 2:
          len = fdp_.ConsumeIntegralInRange<int64_t>(60, 70);
          break;
        default:
          len = fdp_.ConsumeIntegralInRange<int64_t>(120, 140);
          break;
      }
      if (T_ + len > 256) len = 0;
      lens_.push_back(len);
      T_ += len;
    }
  } else if (op_ == GDN_OP_DECODE) {
    N_ = fdp_.ConsumeIntegralInRange<int64_t>(0, 8);
    lens_.assign(static_cast<size_t>(N_), 1);
    T_ = N_;
    use_cu_ = false;
  } else {
    N_ = fdp_.ConsumeIntegralInRange<int64_t>(0, 5);
    use_cu_ = fdp_.ConsumeBool();
    const int64_t L = fdp_.ConsumeIntegralInRange<int64_t>(1, 16);
    for (int64_t n = 0; n < N_; ++n) {
      const int64_t len = use_cu_ ? fdp_.ConsumeIntegralInRange<int64_t>(0, 16) : L;
      lens_.push_back(len);
      T_ += len;
    }
    if (!use_cu_) args_.tokens_per_seq = L;
  }

  // State.
  state_mode_ = fdp_.ConsumeIntegralInRange<int>(0, 3);
  args_.write_final_state = fdp_.ConsumeBool() ? 1 : 0;
  has_initial_ = fdp_.ConsumeBool();
  if (state_mode_ == 2) args_.write_final_state = 1;
  if (state_mode_ == 3) {
    pool_rows_ = N_ + fdp_.ConsumeIntegralInRange<int64_t>(0, 3);
    for (int64_t r = 0; r < pool_rows_; ++r) rows_.push_back(r);
    for (int64_t r = pool_rows_ - 1; r > 0; --r)
      std::swap(rows_[static_cast<size_t>(r)],
                rows_[static_cast<size_t>(fdp_.ConsumeIntegralInRange<int64_t>(0, r))]);
    rows_.resize(static_cast<size_t>(N_));
    for (int64_t& r : rows_)
      if (fdp_.ConsumeIntegralInRange<int>(0, 3) == 0) r = -1;
  }
  if (op_ == GDN_OP_PREFILL && fdp_.ConsumeIntegralInRange<int>(0, 3) == 0) {
    has_ckpt_ = true;
    args_.checkpoint_every = fdp_.PickValueInArray({int64_t{64}, int64_t{128}});
    for (int64_t len : lens_) ckpt_rows_ += len / args_.checkpoint_every;
    ckpt_rows_ += fdp_.ConsumeIntegralInRange<int64_t>(0, 2);
  }
  if (op_ == GDN_OP_VERIFY && fdp_.ConsumeBool()) {
    has_inter_ = true;
    int64_t max_len = 0;
    for (int64_t len : lens_) max_len = std::max(max_len, len);
    inter_slots_ = max_len + fdp_.ConsumeIntegralInRange<int64_t>(0, 2);
  }

  // Options.
  args_.scale = fdp_.ConsumeBool() ? 0.0f : fdp_.ConsumeFloatingPointInRange<float>(-4.0f, 4.0f);
  args_.l2norm_qk = fdp_.ConsumeBool() ? 1 : 0;
  set_raw(&args_.gate_mode, fused_ ? GDN_GATE_FUSED : GDN_GATE_LOG_SPACE);
  set_raw(&args_.state_layout, vk_ ? GDN_LAYOUT_VK : GDN_LAYOUT_KV);
  // Host data: reference and cpu run it (auto picks cpu); cuda and sm90 fall
  // back to cpu or, when strict, refuse; 5..7 are unknown backends.
  set_raw(&args_.backend, fdp_.PickValueInArray({0, 1, 2, 2, 0, 1, 2, 2, 0, 1, 2, 2, 3, 4, 5, 7}));
  args_.strict = fdp_.ConsumeBool() ? 1 : 0;
  args_.num_threads = fdp_.PickValueInArray({1, 1, 0, 2});
  sup_backend_ = fdp_.ConsumeIntegralInRange<int32_t>(0, 7);
  sup_op_ = fdp_.ConsumeIntegralInRange<int32_t>(0, 3);
  // Tensor layouts: all contiguous (seed 0), or drawn per tensor.
  const uint32_t layout_seed = fdp_.ConsumeIntegral<uint32_t>();
  Rng layout{layout_seed};
  for (uint8_t& s : style_) s = layout_seed == 0 ? 0 : static_cast<uint8_t>(layout.next());
  rng_.s = fdp_.ConsumeIntegral<uint32_t>();
  call_op_ = op_;
}

// Strides for a styled tensor: contiguous, padded, the non-last dimensions in
// reverse order, or (inputs) one broadcast dimension.
void Case::set_tensor(int id, int32_t dtype, std::initializer_list<int64_t> shape, bool define) {
  gdn_tensor_t& t = tensor_of(args_, id);
  t = gdn_tensor_t{};
  set_raw(&t.dtype, dtype);
  int r = 0;
  for (int64_t s : shape) t.shape[r++] = s;
  const uint8_t style = style_[id];
  const int kind = style & 7;
  const int64_t pad = (style >> 3) & 3;
  t.stride[r - 1] = 1;
  if (kind == 5 && r >= 3) {  // reversed non-last dimensions
    int64_t acc = t.shape[r - 1] + pad;
    for (int d = 0; d < r - 1; ++d) {
      t.stride[d] = acc;
      acc = acc * std::max<int64_t>(t.shape[d], 1) + pad;
    }
  } else {
    const bool padded = kind == 4 || kind == 5 || kind == 7;
    const int64_t p = kind == 7 ? 1000 * (pad + 1) : (padded ? pad + 1 : 0);
    for (int d = r - 2; d >= 0; --d) t.stride[d] = t.stride[d + 1] * std::max<int64_t>(t.shape[d + 1], 1) + p;
    if (kind == 6 && r >= 2 && !is_output_id(id)) t.stride[(style >> 5) % (r - 1)] = 0;
  }
  t.rank = define ? r : 0;
}

void Case::build_descriptors() {
  const int64_t d2 = vk_ ? V_ : K_, d3 = vk_ ? K_ : V_;
  set_tensor(kQ, io_, {T_, H_, K_}, true);
  set_tensor(kK, io_, {T_, H_, K_}, true);
  set_tensor(kV, io_, {T_, HV_, V_}, true);
  set_tensor(kOut, io_, {T_, HV_, V_}, true);
  set_tensor(kG, GDN_F32, {T_, HV_}, !fused_);
  set_tensor(kBeta, beta_, {T_, HV_}, !fused_);
  set_tensor(kA, ab_, {T_, HV_}, fused_);
  set_tensor(kB, ab_, {T_, HV_}, fused_);
  set_tensor(kALog, GDN_F32, {HV_}, fused_);
  set_tensor(kDtBias, GDN_F32, {HV_}, fused_);
  set_tensor(kCuSeqlens, cu_, {N_ + 1}, use_cu_);
  const bool pool = state_mode_ == 3;
  set_tensor(kStateIndices, idx_, {N_}, pool);
  set_tensor(kInitialState, state_, {pool ? pool_rows_ : N_, HV_, d2, d3},
             pool || (state_mode_ == 1 && has_initial_) || state_mode_ == 2);
  set_tensor(kFinalState, state_, {N_, HV_, d2, d3},
             (state_mode_ == 1 || state_mode_ == 0) && args_.write_final_state);
  if (state_mode_ == 2) args_.final_state = args_.initial_state;  // in place: the same view
  set_tensor(kCheckpoints, state_, {ckpt_rows_, HV_, d2, d3}, has_ckpt_);
  set_tensor(kIntermediate, state_, {N_, inter_slots_, HV_, d2, d3}, has_inter_);
}

// Mutations come from the front of the input (FuzzedDataProvider takes
// integers from the back, for the plan), 16 bytes each, at most one per 24
// bytes of input so that the plan keeps its share. An exhausted input gives a
// valid call.
void Case::parse_mutations() {
  const std::vector<uint8_t> head = fdp_.ConsumeBytes<uint8_t>(1);
  if (head.empty()) return;
  const size_t count = std::min<size_t>(head[0] % 6, fdp_.remaining_bytes() / 24);
  for (size_t i = 0; i < count; ++i) {
    const std::vector<uint8_t> b = fdp_.ConsumeBytes<uint8_t>(16);
    Mutation m;
    m.kind = b[0] % kNumMutKinds;
    m.target = b[1] % kNumTensors;
    m.dim = b[2] % 8;
    m.other = b[3] % kNumTensors;
    std::memcpy(&m.sel, &b[4], sizeof m.sel);
    std::memcpy(&m.value, &b[8], sizeof m.value);
    muts_.push_back(m);
  }
}

// Two's-complement addition (extents and strides near the int64 limits).
int64_t wrap_add(int64_t a, int64_t b) {
  return static_cast<int64_t>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
}

template <typename T, size_t N>
T pick(const T (&values)[N], uint32_t sel) {
  return values[sel % N];
}

void Case::apply_descriptor_mutation(const Mutation& m) {
  gdn_tensor_t& t = tensor_of(args_, m.target);
  const int dim = m.dim % GDN_MAX_RANK;
  switch (m.kind) {
    case kMutRank:
      t.rank = pick({0, 1, 2, 3, 4, 5, 6, -1, kI32Min, kI32Max}, m.sel);
      break;
    case kMutDtype:
      if (wild_enums() && (m.sel & 1))
        set_raw(&t.dtype, pick({-1, 8, 255, kI32Max, kI32Min}, m.sel >> 1));
      else
        set_raw(&t.dtype, static_cast<int32_t>(m.sel % 8));  // 0 and 6, 7 are invalid
      break;
    case kMutShape: {
      const int64_t cur = t.shape[dim];
      const int last = (m.sel >> 16) & 1 ? GDN_MAX_RANK - 1 : dim;  // this dimension, or all from it
      // Index tensors keep extents the driver can allocate.
      const int64_t v = is_index_id(m.target)
                            ? pick({int64_t{0}, int64_t{1}, int64_t{2}, int64_t{-1}, int64_t{17},
                                    int64_t{300}, wrap_add(cur, 1), wrap_add(cur, -1), kI64Min},
                                   m.sel)
                            : pick({int64_t{0}, int64_t{1}, int64_t{2}, int64_t{-1}, int64_t{17}, int64_t{65},
                                    wrap_add(cur, 1), wrap_add(cur, -1), int64_t{1} << 20, int64_t{1} << 40,
                                    (int64_t{1} << 40) + 1, int64_t{1} << 62, kI64Max, kI64Min, m.value},
                                   m.sel);
      for (int d = dim; d <= last; ++d) t.shape[d] = v;
      break;
    }
    case kMutStride: {
      const int64_t cur = t.stride[dim];
      t.stride[dim] = pick({int64_t{0}, int64_t{1}, int64_t{-1}, wrap_add(cur, 1), wrap_add(cur, -1),
                            wrap_add(cur, cur), int64_t{1} << 20, int64_t{1} << 40, int64_t{1} << 56,
                            (int64_t{1} << 56) + 1, int64_t{1} << 62, kI64Max, kI64Min, m.value},
                           m.sel);
      break;
    }
    case kMutOverlap:  // a dimension that steps inside a faster one
      if (dim + 1 < GDN_MAX_RANK)
        t.stride[dim] = (m.sel & 1) ? t.stride[dim + 1] : std::max<int64_t>(1, t.stride[dim] / 2);
      break;
    case kMutUndefine:
      t.rank = 0;
      break;
    case kMutDefineExtra:
      if (t.rank == 0) {
        const int64_t d2 = vk_ ? V_ : K_, d3 = vk_ ? K_ : V_;
        switch (m.target) {
          case kG:
            set_tensor(kG, GDN_F32, {T_, HV_}, true);
            break;
          case kBeta:
            set_tensor(kBeta, beta_, {T_, HV_}, true);
            break;
          case kA:
          case kB:
            set_tensor(m.target, ab_, {T_, HV_}, true);
            break;
          case kALog:
          case kDtBias:
            set_tensor(m.target, GDN_F32, {HV_}, true);
            break;
          case kCuSeqlens:
            set_tensor(kCuSeqlens, cu_, {N_ + 1}, true);
            break;
          case kStateIndices:
            set_tensor(kStateIndices, idx_, {N_}, true);
            break;
          case kInitialState:
          case kFinalState:
            set_tensor(m.target, state_, {N_, HV_, d2, d3}, true);
            break;
          case kCheckpoints:
            set_tensor(kCheckpoints, state_, {T_ / 64 + 1, HV_, d2, d3}, true);
            break;
          case kIntermediate:
            set_tensor(kIntermediate, state_, {N_, 16, HV_, d2, d3}, true);
            break;
          default:
            break;
        }
      }
      break;
    case kMutOption:
      switch (m.target % 12) {
        case 0:
          args_.scale = pick({std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                              -std::numeric_limits<float>::infinity(), -1.5f, 1e30f, 1e-40f, FLT_MAX, 0.0f},
                             m.sel);
          break;
        case 1:
          set_raw(&args_.gate_mode, (wild_enums() && (m.sel & 1)) ? pick({2, -1, 1000, kI32Min}, m.sel >> 1)
                                                                  : static_cast<int32_t>(m.sel & 2) >> 1);
          break;
        case 2:
          set_raw(&args_.state_layout, (wild_enums() && (m.sel & 1))
                                           ? pick({2, -1, 1000, kI32Max}, m.sel >> 1)
                                           : static_cast<int32_t>(m.sel & 2) >> 1);
          break;
        case 3:
          args_.checkpoint_every = pick({int64_t{0}, int64_t{64}, int64_t{128}, int64_t{-64}, int64_t{1},
                                         int64_t{63}, int64_t{65}, int64_t{1} << 62, kI64Min, kI64Max},
                                        m.sel);
          break;
        case 4:
          args_.tokens_per_seq = pick({int64_t{0}, int64_t{1}, int64_t{2}, int64_t{16}, int64_t{17},
                                       int64_t{-1}, kI64Max, kI64Min, m.value},
                                      m.sel);
          break;
        case 5:
          set_raw(&args_.backend, (wild_enums() && (m.sel & 1)) ? pick({-1, 8, 99, kI32Max}, m.sel >> 1)
                                                                : static_cast<int32_t>((m.sel >> 1) % 8));
          break;
        case 6:
          args_.write_final_state = pick({0, 1, 2, -1}, m.sel);
          break;
        case 7:
          args_.strict = pick({0, 1, -3}, m.sel);
          break;
        case 8:
          args_.num_threads = pick({0, 1, 2, 3, -1, kI32Min, 64}, m.sel);
          break;
        case 9:
          args_.l2norm_qk = pick({0, 1, -7}, m.sel);
          break;
        case 10:
          if (m.sel & 1) args_.cu_seqlens_host = dummy_host_;
          if (m.sel & 2) args_.state_indices_host = dummy_host_;
          break;
        default:
          args_.workspace = dummy_host_;
          args_.workspace_bytes = pick({size_t{0}, sizeof dummy_host_, ~size_t{0}}, m.sel);
          if (m.sel & 4) args_.stream = dummy_host_;
          break;
      }
      break;
    case kMutCrossOp:
      call_op_ = static_cast<int32_t>(m.sel % 3);
      if (m.sel & 4) {
        sup_backend_ = static_cast<int32_t>((m.sel >> 3) % 8);
        sup_op_ = static_cast<int32_t>((m.sel >> 6) % 4);
      }
      break;
    default:
      break;
  }
}

void Case::allocate_and_fill() {
  for (int id = 0; id < kNumTensors; ++id) {
    gdn_tensor_t& t = tensor_of(args_, id);
    if (id == kFinalState && state_mode_ == 2) {
      // In place: unless a mutation changed either view, final_state is
      // initial_state's view and shares its buffer.
      gdn_tensor_t same = t;
      same.data = args_.initial_state.data;
      if (std::memcmp(&same, &args_.initial_state, sizeof same) == 0) {
        t = same;
        place_[id] = place_[kInitialState];
        place_[id].own = false;
        continue;
      }
    }
    const int64_t bytes = exact_bytes(t);
    if (t.rank > 0 && bytes < 0) unsafe_ = true;
    Buffer b;
    b.size = bytes >= 0 ? static_cast<size_t>(bytes) : kSmallBytes;
    b.data = static_cast<unsigned char*>(std::malloc(b.size));  // malloc(0): ASan reports any access
    buffers_.push_back(std::move(b));
    place_[id].buffer = static_cast<int>(buffers_.size()) - 1;
    place_[id].offset = 0;
    place_[id].own = true;
    t.data = buffers_.back().data;
    fill(id);
  }
}

void Case::fill(int id) {
  const gdn_tensor_t& t = tensor_of(args_, id);
  Buffer& b = buffers_[static_cast<size_t>(place_[id].buffer)];
  const int32_t dt = raw(t.dtype);
  if (is_output_id(id)) {
    size_t n = 0;
    const auto pat = sentinel(dt, &n);
    for (size_t i = 0; i < b.size; ++i) b.data[i] = pat[i % n];
    return;
  }
  if (is_index_id(id)) {
    for (size_t i = 0; i < b.size; ++i) b.data[i] = static_cast<unsigned char>(rng_.next());
    if (id == kCuSeqlens) {
      int64_t c = 0;
      write_index(id, 0, 0);
      for (int64_t n = 0; n < static_cast<int64_t>(lens_.size()); ++n) write_index(id, n + 1, c += lens_[n]);
    } else {
      for (int64_t n = 0; n < static_cast<int64_t>(rows_.size()); ++n) write_index(id, n, rows_[n]);
    }
    return;
  }
  float lo = -1.0f, hi = 1.0f;
  switch (id) {
    case kG:
      lo = -3.0f, hi = 0.0f;
      break;
    case kBeta:
      lo = 0.0f;
      break;
    case kA:
    case kB:
      lo = -4.0f, hi = 4.0f;
      break;
    case kALog:
      lo = -2.0f;
      break;
    default:
      break;
  }
  const int64_t es = elem_size(dt);
  if (es == 0 || (dt != GDN_F32 && dt != GDN_F16 && dt != GDN_BF16)) {
    for (size_t i = 0; i < b.size; ++i) b.data[i] = static_cast<unsigned char>(rng_.next());
    return;
  }
  for (size_t i = 0; i + static_cast<size_t>(es) <= b.size; i += static_cast<size_t>(es)) {
    const float x = rng_.uniform(lo, hi);
    if (dt == GDN_F32) {
      std::memcpy(b.data + i, &x, 4);
    } else {
      const uint16_t h = dt == GDN_BF16 ? to_bf16(x) : to_half(x);
      std::memcpy(b.data + i, &h, 2);
    }
  }
}

// Writes entry `entry` of a rank-1 index tensor when it lies in its buffer.
void Case::write_index(int id, int64_t entry, int64_t value) {
  const gdn_tensor_t& t = tensor_of(args_, id);
  const Placement& p = place_[id];
  if (p.buffer < 0 || t.rank < 1) return;
  const int32_t dt = raw(t.dtype);
  const int64_t es = elem_size(dt);
  if (es == 0 || t.stride[0] < 0 || entry < 0 || t.shape[0] <= entry) return;
  int64_t off;
  if (__builtin_mul_overflow(entry, t.stride[0], &off) || __builtin_mul_overflow(off, es, &off)) return;
  Buffer& b = buffers_[static_cast<size_t>(p.buffer)];
  if (off < 0 || static_cast<size_t>(off) + p.offset + static_cast<size_t>(es) > b.size) return;
  unsigned char* at = b.data + p.offset + off;
  if (dt == GDN_I64) {
    std::memcpy(at, &value, 8);
  } else if (dt == GDN_I32) {
    const int32_t v = static_cast<int32_t>(value);
    std::memcpy(at, &v, 4);
  }
}

void Case::apply_data_mutation(const Mutation& m) {
  gdn_tensor_t& t = tensor_of(args_, m.target);
  switch (m.kind) {
    case kMutNull:
      t.data = nullptr;
      place_[m.target].buffer = -1;
      break;
    case kMutMisalign: {
      // A fresh buffer one byte larger, the tensor one byte in: exact from the
      // pointer's view, misaligned for every dtype.
      const int64_t bytes = exact_bytes(t);
      if (bytes < 0) break;
      Buffer b;
      b.size = static_cast<size_t>(bytes) + 1;
      b.data = static_cast<unsigned char*>(std::malloc(b.size));
      std::memset(b.data, 0, b.size);
      buffers_.push_back(std::move(b));
      place_[m.target] = {static_cast<int>(buffers_.size()) - 1, 1, false};
      t.data = buffers_.back().data + 1;
      break;
    }
    case kMutAlias: {
      // Put the tensor inside another tensor's buffer, where it fits.
      const int64_t bytes = exact_bytes(t);
      const Placement& o = place_[m.other];
      if (bytes < 0 || o.buffer < 0 || m.other == m.target) break;
      const Buffer& b = buffers_[static_cast<size_t>(o.buffer)];
      if (static_cast<size_t>(bytes) > b.size) break;
      const int64_t es = elem_size(raw(t.dtype));
      size_t off = (m.sel & 1) ? 0 : static_cast<size_t>(m.value & 0x7fffffff) % (b.size - bytes + 1);
      off -= off % static_cast<size_t>(es);
      place_[m.target] = {o.buffer, off, false};
      t.data = b.data + off;
      if (m.sel & 2) {  // or the very same view (when the shapes allow it)
        const gdn_tensor_t& src = tensor_of(args_, m.other);
        if (src.rank == t.rank && raw(src.dtype) == raw(t.dtype) &&
            std::memcmp(src.shape, t.shape, sizeof t.shape) == 0) {
          std::memcpy(t.stride, src.stride, sizeof t.stride);
          t.data = src.data;
          place_[m.target] = {o.buffer, o.offset, false};
          if (exact_bytes(t) < 0) unsafe_ = true;
        }
      }
      break;
    }
    default:
      break;
  }
}

void Case::apply_content_mutation(const Mutation& m) {
  // An entry of the declared extent (mostly), or just past it.
  const gdn_tensor_t& t = tensor_of(args_, m.kind == kMutCuEntry ? kCuSeqlens : kStateIndices);
  const int64_t extent = t.rank >= 1 && t.shape[0] > 0 ? std::min<int64_t>(t.shape[0], 1024) : 1;
  const int64_t entry = static_cast<int64_t>(m.sel >> 8) % (extent + 1);
  if (m.kind == kMutCuEntry) {
    const int64_t v = pick({int64_t{-1}, int64_t{0}, T_, T_ + 1, T_ - 1, int64_t{kI32Max}, kI64Min, kI64Max,
                            int64_t{64}, m.value},
                           m.sel);
    write_index(kCuSeqlens, entry, v);
  } else if (m.kind == kMutIdxEntry) {
    const int64_t dup = rows_.empty() ? 0 : rows_[static_cast<size_t>(m.sel >> 4) % rows_.size()];
    const int64_t v = pick({int64_t{-1}, int64_t{kI32Min}, pool_rows_, pool_rows_ + 1, dup, int64_t{0},
                            kI64Max, kI64Min, m.value},
                           m.sel);
    write_index(kStateIndices, entry, v);
  }
}

void Case::snapshot() {
  for (Buffer& b : buffers_) b.before.assign(b.data, b.data + b.size);
}

bool Case::unchanged() const {
  for (const Buffer& b : buffers_)
    if (b.size && std::memcmp(b.before.data(), b.data, b.size) != 0) return false;
  return true;
}

void Case::describe() const {
  std::fprintf(stderr,
               "case: op %d (called as %d), T %lld, N %lld, H %lld, HV %lld, K %lld, V %lld, state mode %d, "
               "%s, %s\n",
               op_, call_op_, static_cast<long long>(T_), static_cast<long long>(N_),
               static_cast<long long>(H_), static_cast<long long>(HV_), static_cast<long long>(K_),
               static_cast<long long>(V_), state_mode_,
               unsafe_ ? "unsafe (a span could not be allocated)" : "every span allocated exactly",
               muts_.empty() ? "valid" : "mutated");
  for (const Mutation& m : muts_)
    std::fprintf(stderr, "  mutation: kind %d, %s, dim %d, other %s, sel %u, value %lld\n", m.kind,
                 kTensorNames[m.target], m.dim, kTensorNames[m.other], m.sel,
                 static_cast<long long>(m.value));
  for (int id = 0; id < kNumTensors; ++id) {
    const gdn_tensor_t& t = tensor_of(const_cast<gdn_args_t&>(args_), id);
    if (t.rank == 0) continue;
    std::fprintf(stderr, "  %s: rank %d, dtype %d, data %p (buffer %d + %zu), shape", kTensorNames[id],
                 t.rank, raw(t.dtype), t.data, place_[id].buffer, place_[id].offset);
    for (int i = 0; i < GDN_MAX_RANK; ++i) std::fprintf(stderr, " %lld", static_cast<long long>(t.shape[i]));
    std::fprintf(stderr, ", stride");
    for (int i = 0; i < GDN_MAX_RANK; ++i) std::fprintf(stderr, " %lld", static_cast<long long>(t.stride[i]));
    std::fprintf(stderr, "\n");
  }
  std::fprintf(
      stderr,
      "  options: scale %g, l2norm %d, gate %d, layout %d, write_final_state %d, checkpoint_every %lld, "
      "tokens_per_seq %lld, backend %d, strict %d, num_threads %d; supports(%d, %d)\n",
      static_cast<double>(args_.scale), args_.l2norm_qk, raw(args_.gate_mode), raw(args_.state_layout),
      args_.write_final_state, static_cast<long long>(args_.checkpoint_every),
      static_cast<long long>(args_.tokens_per_seq), raw(args_.backend), args_.strict, args_.num_threads,
      sup_backend_, sup_op_);
}

bool Case::too_big(int32_t op) const {
  return (op == GDN_OP_DECODE || op == GDN_OP_VERIFY) && args_.q.rank >= 1 &&
         args_.q.shape[0] > kMaxDerivedSequences;
}

gdn_status_t Case::call(int32_t op) {
  switch (op) {
    case GDN_OP_PREFILL:
      return gdn_prefill(&args_);
    case GDN_OP_DECODE:
      return gdn_decode(&args_);
    default:
      return gdn_verify(&args_);
  }
}

void check_error_message(gdn_status_t s) {
  const char* e = gdn_last_error();
  if (e == nullptr) violation("gdn_last_error() returned null");
  if (s == GDN_OK && *e != '\0') violation("a successful call left an error message");
  if (s != GDN_OK && *e == '\0') violation("a failed call left no error message");
}

void Case::run() {
  parse_mutations();
  plan();
  build_descriptors();
  for (const Mutation& m : muts_)
    if (m.kind <= kMutDefineExtra || m.kind == kMutOption || m.kind == kMutCrossOp)
      apply_descriptor_mutation(m);
  allocate_and_fill();
  for (const Mutation& m : muts_)
    if (m.kind == kMutNull || m.kind == kMutMisalign || m.kind == kMutAlias) apply_data_mutation(m);
  for (const Mutation& m : muts_)
    if (m.kind == kMutCuEntry || m.kind == kMutIdxEntry) apply_content_mutation(m);
  snapshot();
  if (verbose()) describe();

  // Validation-only calls: they must agree with the call and write nothing.
  gdn_status_t ws = GDN_INTERNAL;
  if (!too_big(call_op_)) {
    size_t bytes = 12345;
    gdn_op_t op;
    set_raw(&op, call_op_);
    ws = gdn_workspace_size(op, &args_, &bytes);
    check_error_message(ws);
    if (ws == GDN_OK && bytes != 0) violation("host backends need no workspace");
  }
  if (!too_big(sup_op_)) {
    gdn_backend_t b;
    gdn_op_t op;
    set_raw(&b, sup_backend_);
    set_raw(&op, sup_op_);
    check_error_message(gdn_supports(b, op, &args_));
  }
  if (!unchanged()) violation("gdn_workspace_size or gdn_supports wrote a tensor");

  gdn_status_t s = GDN_INTERNAL;
  const bool execute = !too_big(call_op_) && (!unsafe_ || ws != GDN_OK);
  if (execute) {
    s = call(call_op_);
    check_error_message(s);
    if (s != ws) violation("the call and gdn_workspace_size disagree on the status");
    if (s != GDN_OK) {
      if (!unchanged()) violation("a rejected call changed a buffer");
    } else {
      check_accepted();
      // The same call from the same inputs gives the same bytes (no reads of
      // uninitialised or unowned memory, no races between workers).
      std::vector<std::vector<unsigned char>> first;
      for (Buffer& b : buffers_) {
        first.emplace_back(b.data, b.data + b.size);
        if (b.size) std::memcpy(b.data, b.before.data(), b.size);
      }
      if (call(call_op_) != GDN_OK) violation("a repeated call was rejected");
      for (size_t i = 0; i < buffers_.size(); ++i)
        if (buffers_[i].size && std::memcmp(first[i].data(), buffers_[i].data, buffers_[i].size) != 0)
          violation("a repeated call wrote different bytes");
    }
  }
  if (verbose())
    std::fprintf(stderr, "statuses: workspace_size %d, call %d%s%s\n", ws, execute ? static_cast<int>(s) : -1,
                 execute && s != GDN_OK ? ": " : "", execute && s != GDN_OK ? gdn_last_error() : "");
}

// The effects of an accepted call, element by element.
void Case::check_accepted() {
  for (Buffer& b : buffers_) b.mark.assign(b.size, 0);
  auto byte_of = [&](int id, int64_t elem_off, size_t* buf, size_t* at) {
    const Placement& p = place_[id];
    const int64_t es = elem_size(raw(tensor_of(args_, id).dtype));
    *buf = static_cast<size_t>(p.buffer);
    *at = p.offset + static_cast<size_t>(elem_off * es);
    if (p.buffer < 0 || *at + static_cast<size_t>(es) > buffers_[*buf].size)
      violation("an accepted tensor lies outside its buffer");
  };
  auto usable = [&](int id) {
    const gdn_tensor_t& t = tensor_of(args_, id);
    return t.rank > 0 && exact_bytes(t) > 0;
  };
  // Sequence lengths, as validated.
  const int64_t T = args_.q.shape[0];
  std::vector<int64_t> start;
  auto read_index = [&](int id, int64_t i) {
    const gdn_tensor_t& t = tensor_of(args_, id);
    size_t buf, at;
    byte_of(id, i * t.stride[0], &buf, &at);
    if (raw(t.dtype) == GDN_I64) {
      int64_t v;
      std::memcpy(&v, buffers_[buf].data + at, 8);
      return v;
    }
    int32_t v;
    std::memcpy(&v, buffers_[buf].data + at, 4);
    return static_cast<int64_t>(v);
  };
  if (args_.cu_seqlens.rank > 0) {
    for (int64_t i = 0; i < args_.cu_seqlens.shape[0]; ++i) start.push_back(read_index(kCuSeqlens, i));
  } else {
    const int64_t L = call_op_ == GDN_OP_DECODE ? 1 : args_.tokens_per_seq;
    if (L < 1) violation("an accepted call has no sequence boundaries");
    for (int64_t i = 0; i * L <= T; ++i) start.push_back(i * L);
  }
  const int64_t N = static_cast<int64_t>(start.size()) - 1;
  const bool pool = args_.state_indices.rank > 0;
  const bool write_pool = pool && args_.write_final_state != 0;

  // Inputs: marked as read.
  for (int id = 0; id < kNumTensors; ++id) {
    if (is_output_id(id) || !usable(id)) continue;
    if (id == kInitialState &&
        (write_pool || std::memcmp(&args_.final_state, &args_.initial_state, sizeof args_.final_state) == 0))
      continue;  // written in place
    const gdn_tensor_t& t = tensor_of(args_, id);
    for_each_element(t, [&](const int64_t*, int64_t off) {
      size_t buf, at;
      byte_of(id, off, &buf, &at);
      for (int64_t i = 0; i < elem_size(raw(t.dtype)); ++i) buffers_[buf].mark[at + i] |= 1;
    });
  }
  // Outputs: marked as written; none may overlap another or an input.
  std::vector<int64_t> pool_rows;
  if (write_pool)
    for (int64_t n = 0; n < N; ++n)
      if (int64_t r = read_index(kStateIndices, n); r >= 0) pool_rows.push_back(r);
  int64_t needed_ckpt = 0;
  if (args_.checkpoint_every > 0)
    for (int64_t n = 0; n < N; ++n) needed_ckpt += (start[n + 1] - start[n]) / args_.checkpoint_every;
  auto writes = [&](int id, const int64_t* idx) {
    switch (id) {
      case kCheckpoints:
        return idx[0] < needed_ckpt;
      case kInitialState:  // the pool
        return std::find(pool_rows.begin(), pool_rows.end(), idx[0]) != pool_rows.end();
      default:
        return true;
    }
  };
  const int written_ids[] = {kOut, kFinalState, kCheckpoints, kIntermediate, kInitialState};
  for (int id : written_ids) {
    if (!usable(id) || (id == kInitialState && !write_pool)) continue;
    const gdn_tensor_t& t = tensor_of(args_, id);
    const int64_t es = elem_size(raw(t.dtype));
    for_each_element(t, [&](const int64_t* idx, int64_t off) {
      if (!writes(id, idx)) return;
      size_t buf, at;
      byte_of(id, off, &buf, &at);
      for (int64_t i = 0; i < es; ++i) {
        unsigned char& mk = buffers_[buf].mark[at + i];
        if (mk & 2) violation("an accepted call has overlapping output elements");
        if (mk & 1) violation("an accepted call has an output element overlapping an input");
        mk |= 2;
      }
    });
  }
  for (const Buffer& b : buffers_)
    for (size_t i = 0; i < b.size; ++i)
      if (!(b.mark[i] & 2) && b.data[i] != b.before[i])
        violation("an accepted call wrote outside its outputs");

  // Outputs the call owes in full (when they sit in their own buffer, which
  // was filled with the sentinel).
  auto owes = [&](int id, const int64_t* idx) {
    switch (id) {
      case kCheckpoints:
        return idx[0] < needed_ckpt;
      case kIntermediate:
        return idx[1] < start[idx[0] + 1] - start[idx[0]];
      default:
        return true;
    }
  };
  const int owed_ids[] = {kOut, kFinalState, kCheckpoints, kIntermediate};
  for (int id : owed_ids) {
    if (!usable(id) || !place_[id].own) continue;
    const gdn_tensor_t& t = tensor_of(args_, id);
    size_t n = 0;
    const auto pat = sentinel(raw(t.dtype), &n);
    for_each_element(t, [&](const int64_t* idx, int64_t off) {
      if (!owes(id, idx)) return;
      size_t buf, at;
      byte_of(id, off, &buf, &at);
      if (std::memcmp(buffers_[buf].data + at, pat.data(), n) == 0)
        violation(id == kOut ? "an accepted call left an element of out unwritten"
                             : "an accepted call left an owed state element unwritten");
    });
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Null arguments are rejected, not dereferenced.
  if (gdn_prefill(nullptr) != GDN_INVALID_ARGUMENT || gdn_decode(nullptr) != GDN_INVALID_ARGUMENT ||
      gdn_verify(nullptr) != GDN_INVALID_ARGUMENT)
    violation("a null args pointer was not rejected");
  gdn_args_t a;
  gdn_args_init(&a);
  if (gdn_workspace_size(GDN_OP_PREFILL, &a, nullptr) != GDN_INVALID_ARGUMENT)
    violation("a null bytes pointer was not rejected");
  if (gdn_version() == nullptr) violation("gdn_version() returned null");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  Case c(fdp);
  c.run();
  return 0;
}
