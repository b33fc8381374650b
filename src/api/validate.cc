#include "api/validate.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "api/device.h"
#include "common/convert.h"

namespace gdn {
namespace {

// Largest extent of one dimension and largest element span we accept: keeps
// every offset computation far from int64 overflow.
constexpr int64_t kMaxExtent = int64_t{1} << 40;
constexpr int64_t kMaxSpan = int64_t{1} << 56;

std::string shape_str(const Tensor& t) {
  std::ostringstream s;
  s << '[';
  for (int i = 0; i < t.rank; ++i) s << (i ? ", " : "") << t.shape[i];
  s << ']';
  return s.str();
}

template <typename... Parts>
Status invalid(const Parts&... parts) {
  std::ostringstream s;
  (s << ... << parts);
  return Status::Invalid(s.str());
}

bool is_float(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
}
bool is_int(DType d) {
  return d == DType::kI32 || d == DType::kI64;
}

// Byte range [lo, hi) a tensor's elements occupy (strides are non-negative
// once check_tensor has passed).
struct Range {
  uintptr_t lo = 0, hi = 0;
  bool empty() const { return hi <= lo; }
};

Range byte_range(const Tensor& t) {
  Range r;
  if (!t.defined() || t.numel() == 0) return r;
  int64_t last = 0;
  for (int i = 0; i < t.rank; ++i) last += (t.shape[i] - 1) * t.stride[i];
  r.lo = reinterpret_cast<uintptr_t>(t.data);
  r.hi = r.lo + static_cast<uintptr_t>(last + 1) * element_bytes(t.dtype);
  return r;
}

bool overlaps(const Range& a, const Range& b) {
  return !a.empty() && !b.empty() && a.lo < b.hi && b.lo < a.hi;
}

bool same_view(const Tensor& a, const Tensor& b) {
  if (a.data != b.data || a.dtype != b.dtype || a.rank != b.rank) return false;
  for (int i = 0; i < a.rank; ++i)
    if (a.shape[i] != b.shape[i] || a.stride[i] != b.stride[i]) return false;
  return true;
}

// Structural checks every given tensor must pass.
Status check_tensor(const char* name, const Tensor& t) {
  if (t.rank < 0 || t.rank > kMaxRank) return invalid(name, ": rank ", t.rank, " is out of range");
  if (element_bytes(t.dtype) == 0) return invalid(name, ": dtype is not set");
  int64_t span = 1;
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] < 0 || t.shape[i] > kMaxExtent)
      return invalid(name, ": dimension ", i, " has extent ", t.shape[i], ", outside [0, 2^40]");
    if (t.stride[i] < 0 || t.stride[i] > kMaxSpan)
      return invalid(name, ": stride ", i, " is ", t.stride[i], "; strides must be non-negative (elements)");
  }
  // Count the elements without overflow (broadcast strides let the count
  // exceed the span); past this check, numel() cannot overflow.
  for (int i = 0; i < t.rank; ++i)
    if (t.shape[i] == 0) return Status::Ok();
  int64_t count = 1;
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] > kMaxSpan / count) return invalid(name, ": has more than 2^56 elements");
    count *= t.shape[i];
  }
  for (int i = 0; i < t.rank; ++i) {
    if (t.shape[i] > 1 && t.stride[i] > kMaxSpan / (t.shape[i] - 1))
      return invalid(name, ": strides reach beyond 2^56 elements");
    span += (t.shape[i] - 1) * t.stride[i];
    if (span > kMaxSpan) return invalid(name, ": strides reach beyond 2^56 elements");
  }
  if (t.stride[t.rank - 1] != 1 && t.shape[t.rank - 1] > 1)
    return invalid(name, ": the last dimension must be contiguous (stride 1), got stride ",
                   t.stride[t.rank - 1]);
  if (t.data == nullptr) return invalid(name, ": data is null but the tensor has elements");
  if (reinterpret_cast<uintptr_t>(t.data) % element_bytes(t.dtype) != 0)
    return invalid(name, ": data is not aligned to its ", element_bytes(t.dtype), "-byte element size");
  return Status::Ok();
}

// Outputs must not write one element twice: with dimensions sorted by
// stride, each stride must step over the whole span of the faster ones.
Status check_no_self_overlap(const char* name, const Tensor& t) {
  if (t.numel() <= 1) return Status::Ok();
  std::vector<std::pair<int64_t, int64_t>> dims;  // (stride, extent)
  for (int i = 0; i < t.rank; ++i)
    if (t.shape[i] > 1) dims.push_back({t.stride[i], t.shape[i]});
  std::sort(dims.begin(), dims.end());
  int64_t span = 1;  // elements covered by the faster dimensions
  for (const auto& [stride, extent] : dims) {
    if (stride < span)
      return invalid(name, ": strides make elements overlap; an output needs distinct elements");
    span = stride * (extent - 1) + span;
  }
  return Status::Ok();
}

Status expect_shape(const char* name, const Tensor& t, std::initializer_list<int64_t> shape,
                    const char* meaning) {
  bool ok = t.rank == static_cast<int32_t>(shape.size());
  int i = 0;
  for (int64_t s : shape) {
    if (!ok) break;
    ok = t.shape[i++] == s;
  }
  if (ok) return Status::Ok();
  std::ostringstream want;
  want << '[';
  i = 0;
  for (int64_t s : shape) want << (i++ ? ", " : "") << s;
  want << ']';
  return invalid(name, ": shape must be ", want.str(), " ", meaning, ", got ", shape_str(t));
}

struct Named {
  const char* name;
  const Tensor* t;
};

// The pool rows state_indices names (host values): every entry below P (the
// first that is not is named, `negative` says what a negative entry means),
// and no row >= 0 named twice. Sorting a copy finds a repeat without a hash
// set's allocation per entry (a 256-sequence decode's checks took ~10 us here
// with one). rows gets each entry, negative ones as -1.
Status pool_rows_of(const Tensor& indices, const void* host, int64_t N, int64_t P, const char* negative,
                    std::vector<int64_t>* rows) {
  rows->resize(static_cast<size_t>(N));
  std::vector<int64_t> named;
  named.reserve(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n) {
    const int64_t r = load_int(host, indices.dtype, n * indices.stride[0]);
    if (r >= P)
      return invalid("state_indices: entry ", n, " is ", r, " but the pool has ", P,
                     " rows (indices must be < P; negative = ", negative, ")");
    (*rows)[static_cast<size_t>(n)] = r < 0 ? -1 : r;
    if (r >= 0) named.push_back(r);
  }
  std::sort(named.begin(), named.end());
  if (const auto twice = std::adjacent_find(named.begin(), named.end()); twice != named.end())
    return invalid("state_indices: row ", *twice, " appears twice (indices must be unique)");
  return Status::Ok();
}

}  // namespace

Status validate(Op op, const Args& a, Call* call) {
  Call c;
  c.op = op;
  const bool fused = a.gate_mode == GateMode::kFused;
  if (a.gate_mode != GateMode::kLogSpace && !fused)
    return invalid("gate_mode: unknown value ", static_cast<int>(a.gate_mode));
  if (a.state_layout != StateLayout::kKV && a.state_layout != StateLayout::kVK)
    return invalid("state_layout: unknown value ", static_cast<int>(a.state_layout));
  if (op != Op::kPrefill && op != Op::kDecode && op != Op::kVerify)
    return invalid("op: unknown value ", static_cast<int>(op));

  // Every tensor the call may touch, inputs first.
  const Named inputs[] = {{"q", &a.q},
                          {"k", &a.k},
                          {"v", &a.v},
                          {"g", &a.g},
                          {"beta", &a.beta},
                          {"a", &a.a},
                          {"b", &a.b},
                          {"a_log", &a.a_log},
                          {"dt_bias", &a.dt_bias},
                          {"cu_seqlens", &a.cu_seqlens},
                          {"state_indices", &a.state_indices},
                          {"initial_state", &a.initial_state}};
  const Named outputs[] = {{"out", &a.out},
                           {"final_state", &a.final_state},
                           {"checkpoints", &a.checkpoints},
                           {"intermediate_states", &a.intermediate_states}};
  for (const Named& n : inputs)
    if (n.t->defined()) {
      if (Status s = check_tensor(n.name, *n.t); !s.ok()) return s;
    }
  for (const Named& n : outputs)
    if (n.t->defined()) {
      if (Status s = check_tensor(n.name, *n.t); !s.ok()) return s;
      if (Status s = check_no_self_overlap(n.name, *n.t); !s.ok()) return s;
    }

  // Token tensors.
  if (!a.q.defined()) return invalid("q: required");
  if (!a.k.defined()) return invalid("k: required");
  if (!a.v.defined()) return invalid("v: required");
  if (!a.out.defined()) return invalid("out: required");
  if (a.q.rank != 3) return invalid("q: must have rank 3 [T, H, K], got ", shape_str(a.q));
  const int64_t T = a.q.shape[0], H = a.q.shape[1], K = a.q.shape[2];
  if (!is_float(a.q.dtype)) return invalid("q: dtype must be bf16, fp16 or fp32");
  if (H < 1) return invalid("q: needs at least one head (H >= 1), got ", shape_str(a.q));
  if (K < 1) return invalid("q: head size K must be >= 1, got ", shape_str(a.q));
  if (Status s = expect_shape("k", a.k, {T, H, K}, "[T, H, K] (as q)"); !s.ok()) return s;
  if (a.k.dtype != a.q.dtype) return invalid("k: dtype must equal q's (", dtype_name(a.q.dtype), ")");
  if (a.v.rank != 3) return invalid("v: must have rank 3 [T, HV, V], got ", shape_str(a.v));
  if (a.v.shape[0] != T)
    return invalid("v: has ", a.v.shape[0], " tokens but q has ", T, " (shape [T, HV, V])");
  const int64_t HV = a.v.shape[1], V = a.v.shape[2];
  if (a.v.dtype != a.q.dtype) return invalid("v: dtype must equal q's (", dtype_name(a.q.dtype), ")");
  if (HV < 1) return invalid("v: needs at least one value head (HV >= 1), got ", shape_str(a.v));
  if (V < 1) return invalid("v: head size V must be >= 1, got ", shape_str(a.v));
  if (HV % H != 0)
    return invalid("v: value heads HV (", HV, ") must be a multiple of q/k heads H (", H,
                   ") (grouped value heads)");
  if (Status s = expect_shape("out", a.out, {T, HV, V}, "[T, HV, V] (as v)"); !s.ok()) return s;
  if (a.out.dtype != a.v.dtype) return invalid("out: dtype must equal v's (", dtype_name(a.v.dtype), ")");

  // Gates.
  if (!fused) {
    if (a.a.defined() || a.b.defined() || a.a_log.defined() || a.dt_bias.defined())
      return invalid("a, b, a_log, dt_bias: only with gate_mode kFused (log-space gates take g, beta)");
    if (!a.g.defined()) return invalid("g: required (log-space gate [T, HV])");
    if (!a.beta.defined()) return invalid("beta: required ([T, HV])");
    if (Status s = expect_shape("g", a.g, {T, HV}, "[T, HV]"); !s.ok()) return s;
    if (a.g.dtype != DType::kF32) return invalid("g: dtype must be fp32");
    if (Status s = expect_shape("beta", a.beta, {T, HV}, "[T, HV]"); !s.ok()) return s;
    if (a.beta.dtype != DType::kF32 && a.beta.dtype != DType::kBF16)
      return invalid("beta: dtype must be fp32 or bf16");
  } else {
    if (a.g.defined() || a.beta.defined())
      return invalid("g, beta: not with gate_mode kFused (pass raw a, b, a_log, dt_bias)");
    const Named raw[] = {{"a", &a.a}, {"b", &a.b}};
    for (const Named& n : raw) {
      if (!n.t->defined()) return invalid(n.name, ": required with gate_mode kFused ([T, HV])");
      if (Status s = expect_shape(n.name, *n.t, {T, HV}, "[T, HV]"); !s.ok()) return s;
      if (n.t->dtype != DType::kF32 && n.t->dtype != DType::kBF16)
        return invalid(n.name, ": dtype must be fp32 or bf16");
    }
    const Named per_head[] = {{"a_log", &a.a_log}, {"dt_bias", &a.dt_bias}};
    for (const Named& n : per_head) {
      if (!n.t->defined()) return invalid(n.name, ": required with gate_mode kFused ([HV])");
      if (Status s = expect_shape(n.name, *n.t, {HV}, "[HV]"); !s.ok()) return s;
      if (n.t->dtype != DType::kF32) return invalid(n.name, ": dtype must be fp32");
    }
  }

  // Where the data lives: one device, or the host, for every tensor.
  const Location where = locate(a.q.data);
  for (const Named& n : inputs)
    if (n.t->defined() && n.t->numel() > 0) {
      Location l = locate(n.t->data);
      if (l.on_device != where.on_device || l.ordinal != where.ordinal)
        return invalid(n.name, ": lives on another device than q (all tensors must share one)");
    }
  for (const Named& n : outputs)
    if (n.t->defined() && n.t->numel() > 0) {
      Location l = locate(n.t->data);
      if (l.on_device != where.on_device || l.ordinal != where.ordinal)
        return invalid(n.name, ": lives on another device than q (all tensors must share one)");
    }
  c.on_device = where.on_device;
  c.device_ordinal = where.ordinal;

  // Sequences.
  int64_t N = 0;
  const void* cu_host = nullptr;
  if (a.cu_seqlens.defined()) {
    if (op == Op::kDecode) return invalid("cu_seqlens: not used by decode (one token per sequence, N = T)");
    if (a.cu_seqlens.rank != 1 || a.cu_seqlens.shape[0] < 1)
      return invalid("cu_seqlens: shape must be [N + 1], got ", shape_str(a.cu_seqlens));
    if (!is_int(a.cu_seqlens.dtype)) return invalid("cu_seqlens: dtype must be int32 or int64");
    N = a.cu_seqlens.shape[0] - 1;
    cu_host = where.on_device ? a.cu_seqlens_host : a.cu_seqlens.data;
    if (op == Op::kVerify && a.tokens_per_seq != 0)
      return invalid("tokens_per_seq: give either cu_seqlens or tokens_per_seq, not both");
  } else if (op == Op::kPrefill) {
    return invalid("cu_seqlens: required by prefill ([N + 1] sequence offsets)");
  } else if (op == Op::kDecode) {
    if (a.tokens_per_seq != 0 && a.tokens_per_seq != 1)
      return invalid("tokens_per_seq: decode runs one token per sequence");
    N = T;
  } else {
    if (a.tokens_per_seq < 1 || a.tokens_per_seq > kMaxVerifyTokens)
      return invalid("tokens_per_seq: verify needs 1 <= tokens_per_seq <= ", kMaxVerifyTokens,
                     " without cu_seqlens, got ", a.tokens_per_seq);
    if (T % a.tokens_per_seq != 0)
      return invalid("tokens_per_seq: T (", T, ") must be a multiple of tokens_per_seq (", a.tokens_per_seq,
                     ")");
    N = T / a.tokens_per_seq;
  }
  if (op == Op::kPrefill && a.tokens_per_seq != 0)
    return invalid("tokens_per_seq: not used by prefill (sequences come from cu_seqlens)");
  if (op != Op::kVerify && a.intermediate_states.defined())
    return invalid("intermediate_states: only verify writes intermediate states");
  if (op != Op::kPrefill && (a.checkpoints.defined() || a.checkpoint_every != 0))
    return invalid("checkpoints: only prefill writes checkpoints");

  c.T = T;
  c.N = N;
  c.H = H;
  c.HV = HV;
  c.K = K;
  c.V = V;
  c.io_dtype = a.q.dtype;
  c.host_indexing = c.host_seqlens = true;
  c.seq_start.assign(static_cast<size_t>(N) + 1, 0);
  int64_t max_len = 0;
  if (a.cu_seqlens.defined()) {
    if (cu_host == nullptr) {
      c.host_indexing = c.host_seqlens = false;
      c.seq_start.clear();
    } else {
      for (int64_t n = 0; n <= N; ++n) {
        const int64_t x = load_int(cu_host, a.cu_seqlens.dtype, n * a.cu_seqlens.stride[0]);
        if (n == 0 && x != 0) return invalid("cu_seqlens: must start at 0, got ", x);
        if (n > 0 && x < c.seq_start[n - 1])
          return invalid("cu_seqlens: must be non-decreasing, but entry ", n, " (", x, ") < entry ", n - 1,
                         " (", c.seq_start[n - 1], ")");
        if (x > T) return invalid("cu_seqlens: entry ", n, " (", x, ") exceeds the ", T, " tokens of q");
        c.seq_start[n] = x;
        if (n > 0) max_len = std::max(max_len, x - c.seq_start[n - 1]);
      }
      if (c.seq_start[N] != T)
        return invalid("cu_seqlens: must end at T = ", T, " (the tokens of q), got ", c.seq_start[N],
                       "; the sequence lengths must sum to T");
    }
  } else {
    const int64_t L = op == Op::kDecode ? 1 : a.tokens_per_seq;
    for (int64_t n = 0; n <= N; ++n) c.seq_start[n] = n * L;
    max_len = L;
  }
  if (op == Op::kVerify && c.host_indexing && max_len > kMaxVerifyTokens)
    return invalid("cu_seqlens: verify takes at most ", kMaxVerifyTokens,
                   " tokens per sequence, got a sequence of ", max_len);

  // State tensors.
  const bool vk = a.state_layout == StateLayout::kVK;
  const int64_t d2 = vk ? V : K, d3 = vk ? K : V;
  const char* layout_desc = vk ? "[., HV, V, K] (layout vk)" : "[., HV, K, V] (layout kv)";
  DType state_dtype = DType::kInvalid;
  auto check_state_dtype = [&](const char* name, const Tensor& t) -> Status {
    if (t.dtype != DType::kF32 && t.dtype != DType::kBF16)
      return invalid(name, ": state dtype must be fp32 or bf16");
    if (state_dtype != DType::kInvalid && t.dtype != state_dtype)
      return invalid(name, ": dtype must match the other state tensors (", dtype_name(state_dtype), ")");
    state_dtype = t.dtype;
    return Status::Ok();
  };
  auto check_state4 = [&](const char* name, const Tensor& t, int64_t rows, bool rows_exact) -> Status {
    if (t.rank != 4 || t.shape[1] != HV || t.shape[2] != d2 || t.shape[3] != d3 ||
        (rows_exact ? t.shape[0] != rows : t.shape[0] < rows))
      return invalid(name, ": shape must be ", layout_desc, " with ", rows_exact ? "" : ">= ", rows,
                     " rows, HV = ", HV, ", K = ", K, ", V = ", V, "; got ", shape_str(t));
    return check_state_dtype(name, t);
  };

  c.pool = a.state_indices.defined();
  c.state_row.assign(static_cast<size_t>(N), -1);
  if (c.pool) {
    if (a.state_indices.rank != 1 || a.state_indices.shape[0] != N)
      return invalid("state_indices: shape must be [N] = [", N, "], got ", shape_str(a.state_indices));
    if (!is_int(a.state_indices.dtype)) return invalid("state_indices: dtype must be int32 or int64");
    if (!a.initial_state.defined())
      return invalid("initial_state: required with state_indices (the state pool [P, HV, K, V])");
    if (a.final_state.defined())
      return invalid("final_state: not with state_indices (the pool is updated in place)");
    if (a.initial_state.rank != 4)
      return invalid("initial_state: the pool must have rank 4 ", layout_desc, ", got ",
                     shape_str(a.initial_state));
    const int64_t P = a.initial_state.shape[0];
    if (Status s = check_state4("initial_state", a.initial_state, P, true); !s.ok()) return s;
    // Written in place: the pool is an output too.
    if (a.write_final_state) {
      if (Status s = check_no_self_overlap("initial_state", a.initial_state); !s.ok()) return s;
    }
    c.pool_rows = P;
    const void* idx_host = where.on_device ? a.state_indices_host : a.state_indices.data;
    if (idx_host != nullptr) {
      if (Status s = pool_rows_of(a.state_indices, idx_host, N, P, "no cached state", &c.state_row); !s.ok())
        return s;
    } else {
      c.host_indexing = false;
    }
  } else {
    if (a.state_indices_host != nullptr) return invalid("state_indices_host: given without state_indices");
    if (a.initial_state.defined()) {
      if (Status s = check_state4("initial_state", a.initial_state, N, true); !s.ok()) return s;
    }
    if (a.write_final_state && !a.final_state.defined())
      return invalid(
          "final_state: required when write_final_state is set without a pool "
          "(or clear write_final_state)");
    if (!a.write_final_state && a.final_state.defined())
      return invalid("final_state: given but write_final_state is clear");
    if (a.final_state.defined()) {
      if (Status s = check_state4("final_state", a.final_state, N, true); !s.ok()) return s;
    }
    for (int64_t n = 0; n < N; ++n) c.state_row[n] = n;
  }

  if (a.checkpoints.defined() || a.checkpoint_every != 0) {
    if (a.checkpoint_every <= 0 || a.checkpoint_every % kChunkSize != 0)
      return invalid("checkpoint_every: must be a positive multiple of ", kChunkSize, ", got ",
                     a.checkpoint_every);
    if (!a.checkpoints.defined()) return invalid("checkpoints: required when checkpoint_every is set");
    int64_t needed = T / a.checkpoint_every;
    if (c.host_indexing) {
      c.ckpt_start.assign(static_cast<size_t>(N) + 1, 0);
      for (int64_t n = 0; n < N; ++n)
        c.ckpt_start[n + 1] = c.ckpt_start[n] + (c.seq_start[n + 1] - c.seq_start[n]) / a.checkpoint_every;
      needed = c.ckpt_start[N];
    }
    if (a.checkpoints.rank != 4)
      return invalid("checkpoints: must have rank 4 ", layout_desc, ", got ", shape_str(a.checkpoints));
    if (Status s = check_state4("checkpoints", a.checkpoints, needed, false); !s.ok()) return s;
  }
  if (a.intermediate_states.defined()) {
    const Tensor& t = a.intermediate_states;
    const int64_t need_l = c.host_indexing ? max_len : a.tokens_per_seq;
    if (t.rank != 5 || t.shape[0] != N || t.shape[1] < need_l || t.shape[2] != HV || t.shape[3] != d2 ||
        t.shape[4] != d3)
      return invalid("intermediate_states: shape must be [N, L, HV, ", vk ? "V, K" : "K, V", "] with N = ", N,
                     ", L >= ", need_l, " (the longest sequence), HV = ", HV, ", K = ", K, ", V = ", V,
                     "; got ", shape_str(t));
    if (Status s = check_state_dtype("intermediate_states", t); !s.ok()) return s;
    c.intermediate_slots = t.shape[1];
  }
  c.state_dtype = state_dtype == DType::kInvalid ? DType::kF32 : state_dtype;

  // Options.
  if (!std::isfinite(a.scale)) return invalid("scale: must be finite, got ", a.scale);
  c.scale = a.scale != 0.0f ? a.scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(K)));
  if (a.num_threads < 0) return invalid("num_threads: must be >= 0 (0 = all)");

  // No output may overlap an input or another output; the one exception is a
  // dense in-place update, where final_state is exactly initial_state.
  for (const Named& o : outputs) {
    if (!o.t->defined()) continue;
    const Range ro = byte_range(*o.t);
    for (const Named& i : inputs) {
      if (!i.t->defined()) continue;
      if (o.t == &a.final_state && i.t == &a.initial_state && same_view(a.final_state, a.initial_state))
        continue;
      if (overlaps(ro, byte_range(*i.t)))
        return invalid(o.name, ": overlaps the memory of ", i.name, " (outputs must not alias inputs)");
    }
    // The pool is written in place: it must not overlap any other tensor.
    if (c.pool && a.write_final_state && overlaps(ro, byte_range(a.initial_state)))
      return invalid(o.name, ": overlaps the memory of the state pool (initial_state)");
    for (const Named& o2 : outputs) {
      if (o2.t == o.t || !o2.t->defined()) continue;
      if (overlaps(ro, byte_range(*o2.t)))
        return invalid(o.name, ": overlaps the memory of ", o2.name, " (outputs must not alias each other)");
    }
  }
  if (c.pool && a.write_final_state) {
    const Range rp = byte_range(a.initial_state);
    for (const Named& i : inputs)
      if (i.t != &a.initial_state && i.t->defined() && overlaps(rp, byte_range(*i.t)))
        return invalid("initial_state: the state pool overlaps the memory of ", i.name,
                       " (the pool is written in place)");
  }
  *call = std::move(c);
  return Status::Ok();
}

Status validate_commit(const CommitArgs& a, CommitCall* call) {
  CommitCall c;
  const Named inputs[] = {{"intermediate_states", &a.intermediate_states},
                          {"accepted", &a.accepted},
                          {"state_indices", &a.state_indices}};
  for (const Named& n : inputs) {
    if (!n.t->defined()) return invalid(n.name, ": required");
    if (Status s = check_tensor(n.name, *n.t); !s.ok()) return s;
  }
  if (!a.pool.defined()) return invalid("pool: required (the state pool [P, HV, K, V], written in place)");
  if (Status s = check_tensor("pool", a.pool); !s.ok()) return s;
  if (Status s = check_no_self_overlap("pool", a.pool); !s.ok()) return s;

  const Tensor& in = a.intermediate_states;
  if (in.rank != 5)
    return invalid("intermediate_states: must have rank 5 [N, L, HV, K, V] (or [N, L, HV, V, K]), got ",
                   shape_str(in));
  if (in.dtype != DType::kF32 && in.dtype != DType::kBF16)
    return invalid("intermediate_states: state dtype must be fp32 or bf16");
  const int64_t N = in.shape[0], L = in.shape[1], HV = in.shape[2];
  const Tensor& pool = a.pool;
  if (pool.rank != 4 || pool.shape[1] != HV || pool.shape[2] != in.shape[3] || pool.shape[3] != in.shape[4])
    return invalid("pool: shape must be [P, ", HV, ", ", in.shape[3], ", ", in.shape[4],
                   "] (the matrices of intermediate_states), got ", shape_str(pool));
  if (pool.dtype != in.dtype)
    return invalid("pool: dtype must equal intermediate_states' (", dtype_name(in.dtype), ")");
  const Named index[] = {{"accepted", &a.accepted}, {"state_indices", &a.state_indices}};
  for (const Named& n : index) {
    if (n.t->rank != 1 || n.t->shape[0] != N)
      return invalid(n.name, ": shape must be [N] = [", N, "], got ", shape_str(*n.t));
    if (!is_int(n.t->dtype)) return invalid(n.name, ": dtype must be int32 or int64");
  }

  const Location where = locate(in.data);
  for (const Named& n :
       {Named{"accepted", &a.accepted}, Named{"state_indices", &a.state_indices}, Named{"pool", &a.pool}})
    if (n.t->numel() > 0) {
      const Location l = locate(n.t->data);
      if (l.on_device != where.on_device || l.ordinal != where.ordinal)
        return invalid(n.name,
                       ": lives on another device than intermediate_states (all tensors must share one)");
    }
  c.on_device = where.on_device;
  c.device_ordinal = where.ordinal;
  c.N = N, c.slots = L, c.HV = HV, c.pool_rows = pool.shape[0];
  c.state_dtype = in.dtype;

  // Values, when readable here: every slot below L, every row below P, and
  // no pool row named twice.
  const void* slot_host = where.on_device ? a.accepted_host : a.accepted.data;
  const void* row_host = where.on_device ? a.state_indices_host : a.state_indices.data;
  if (row_host != nullptr) {
    if (Status s = pool_rows_of(a.state_indices, row_host, N, c.pool_rows, "skip", &c.row); !s.ok()) return s;
  }
  if (slot_host != nullptr) {
    for (int64_t n = 0; n < N; ++n) {
      const int64_t j = load_int(slot_host, a.accepted.dtype, n * a.accepted.stride[0]);
      if (j >= L)
        return invalid("accepted: entry ", n, " is ", j, " but intermediate_states has ", L,
                       " slots (slots must be < L; negative = skip)");
      c.slot.push_back(j < 0 ? -1 : j);
    }
  }
  c.host_indexing = slot_host != nullptr && row_host != nullptr;
  if (!c.host_indexing) {
    c.slot.clear();
    c.row.clear();
  }

  // The pool is written in place: it must not overlap any other tensor.
  const Range rp = byte_range(pool);
  for (const Named& n : inputs)
    if (overlaps(rp, byte_range(*n.t)))
      return invalid("pool: overlaps the memory of ", n.name, " (the pool is written in place)");
  *call = std::move(c);
  return Status::Ok();
}

}  // namespace gdn
