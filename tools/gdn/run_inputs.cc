// gdn run --inputs FILE: a prefill on the tensors of a safetensors file, timed,
// checked against the float64 reference on fp32 copies of the inputs, with
// o and the final state optionally written to another safetensors file.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/convert.h"
#include "gdn/commands.h"
#include "gdn/cost.h"
#include "gdn/safetensors.h"
#include "testing/harness.h"

namespace gdn::cli {
namespace {

namespace names = input_names;

// Flags of the built-in problem; with --inputs the file gives shapes and dtypes.
constexpr const char* kBuiltinFlags[] = {"h", "hv", "k", "v", "seq-lens", "t", "dtype", "state-dtype"};

// Bounds on the relative RMS error (DESIGN's error model, as `gdn run`).
constexpr double kTolLowPrecision = 4e-3;  // bf16 or fp16 q, k, v
constexpr double kTolF32 = 1e-5;           // fp32 q, k, v
constexpr double kTolBF16State = 8e-3;     // a bf16 state

// An owned, contiguous, 16-byte aligned host tensor.
class Owned {
 public:
  Owned() = default;
  Owned(DType dtype, std::vector<int64_t> shape) : dtype_(dtype), shape_(std::move(shape)) {
    storage_.resize((bytes() + sizeof(Block) - 1) / sizeof(Block) + 1);
  }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  void* data() { return storage_.data(); }
  const void* data() const { return storage_.data(); }

 private:
  struct alignas(16) Block {
    unsigned char bytes[16];
  };
  DType dtype_ = DType::kInvalid;
  std::vector<int64_t> shape_;
  std::vector<Block> storage_;
};

// A contiguous view of `shape` (rank >= 1) at `data`.
Tensor view(void* data, DType dtype, const std::vector<int64_t>& shape) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.shape[d] = shape[static_cast<size_t>(d)];
    t.stride[d] = stride;
    stride *= shape[static_cast<size_t>(d)];
  }
  return t;
}

Tensor view(Owned& o) {
  return view(o.data(), o.dtype(), o.shape());
}

std::string dtype_list(std::initializer_list<DType> allowed) {
  std::string s;
  size_t i = 0;
  for (DType d : allowed) {
    s += i == 0 ? "" : (i + 1 == allowed.size() ? " or " : ", ");
    s += safetensors_dtype_name(d);
    ++i;
  }
  return s;
}

// "" when `t` has one of the `allowed` dtypes, else the message.
std::string check_dtype(const SafetensorsTensor& t, std::initializer_list<DType> allowed) {
  if (std::find(allowed.begin(), allowed.end(), t.dtype) != allowed.end()) return "";
  return t.name + ": dtype " + t.dtype_name + " is not supported here (expected " + dtype_list(allowed) + ")";
}

// A token tensor of `rank` dimensions ("T, H, K"), optionally with a leading
// batch dimension of 1 (reported in `batched` when not null). "" or the message.
std::string token_view(SafetensorsTensor& t, int rank, const char* dims, std::initializer_list<DType> allowed,
                       Tensor* out, bool* batched) {
  const std::string expect = std::string("expected [") + dims + "] or [1, " + dims + "]";
  const int r = static_cast<int>(t.shape.size());
  if (r != rank && r != rank + 1) return t.name + ": " + expect + ", got " + shape_string(t.shape);
  const bool has_batch = r == rank + 1;
  if (batched != nullptr) *batched = has_batch;
  if (has_batch && t.shape[0] != 1)
    return t.name + ": " + expect + ", got " + shape_string(t.shape) + " (batch " +
           std::to_string(t.shape[0]) + "; pack the sequences along T and give cu_seqlens)";
  if (std::string why = check_dtype(t, allowed); !why.empty()) return why;
  *out = view(t.data, t.dtype, std::vector<int64_t>(t.shape.begin() + (has_batch ? 1 : 0), t.shape.end()));
  return "";
}

// A tensor of exactly `rank` dimensions ("N + 1"). "" or the message.
std::string plain_view(SafetensorsTensor& t, int rank, const char* dims, std::initializer_list<DType> allowed,
                       Tensor* out) {
  if (static_cast<int>(t.shape.size()) != rank)
    return t.name + ": expected [" + dims + "], got " + shape_string(t.shape);
  if (std::string why = check_dtype(t, allowed); !why.empty()) return why;
  *out = view(t.data, t.dtype, t.shape);
  return "";
}

// An fp32 copy of a floating tensor (exact for bf16 and fp16).
Owned to_f32(const void* data, DType dtype, const std::vector<int64_t>& shape) {
  Owned o(DType::kF32, shape);
  float* dst = static_cast<float*>(o.data());
  for (int64_t i = 0; i < o.numel(); ++i) dst[i] = load_float(data, dtype, i);
  return o;
}

Owned to_f32(const Tensor& t) {
  return to_f32(t.data, t.dtype, std::vector<int64_t>(t.shape, t.shape + t.rank));
}

// Adds `count` elements of x (in `x_dtype`) against the fp32 reference.
void add_errors(testing::ErrorAccumulator& acc, const void* x, DType x_dtype, int64_t x_offset,
                const float* ref, int64_t count) {
  for (int64_t i = 0; i < count; ++i) acc.add(load_float(x, x_dtype, x_offset + i), ref[i]);
}

bool within(const testing::ErrorStats& e, double tol) {
  return e.non_finite == 0 && e.rel_rms <= tol;
}

std::string failure_reason(const char* what, const testing::ErrorStats& e, double tol) {
  char line[160];
  if (e.non_finite > 0)
    std::snprintf(line, sizeof line,
                  "%s: %lld of %lld values are not finite (in the result or the reference)", what,
                  static_cast<long long>(e.non_finite), static_cast<long long>(e.count));
  else
    std::snprintf(line, sizeof line, "%s: relative RMS error %.3e exceeds the tolerance %.0e", what,
                  e.rel_rms, tol);
  return line;
}

// Largest element count of a buffer the command allocates.
constexpr int64_t kMaxElements = int64_t{1} << 56;

bool fits(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && n > kMaxElements / d)) return false;
    n *= d;
  }
  return true;
}

// The command; run_with_inputs adds the out-of-memory guard.
int run_inputs(const Flags& flags) {
  for (const char* f : kBuiltinFlags)
    if (flags.has(f))
      return usage_error("run",
                         std::string("--") + f +
                             " goes with the built-in problem; with --inputs the file gives the shapes "
                             "and dtypes");
  if (flags.has("dump-inputs")) return usage_error("run", "--dump-inputs and --inputs do not go together");

  std::string err;
  Backend backend;
  if (!backend_flag(flags, &backend, &err)) return usage_error("run", err);
  int64_t threads = 0;
  if (!flags.get_int("threads", 0, &threads, &err)) return usage_error("run", err);
  if (threads > std::numeric_limits<int>::max()) return usage_error("run", "--threads: too large");
  const std::string layout = flags.get("layout", "kv");
  if (layout != "kv" && layout != "vk")
    return usage_error("run", "--layout: expected kv or vk, got '" + layout + "'");
  const bool vk = layout == "vk";
  const bool verify = !flags.has("no-verify");
  const std::string in_path = flags.get("inputs");
  const std::string out_path = flags.get("out");
  if (flags.has("out") && out_path.empty()) return usage_error("run", "--out: expected a file name");

  SafetensorsFile file;
  if (!file.load(in_path, &err)) return usage_error("run", err);
  auto input = [&](const char* name) { return file.find(name); };
  for (const char* required : {names::kQ, names::kK, names::kV, names::kG, names::kBeta})
    if (input(required) == nullptr) {
      std::string have;
      for (const SafetensorsTensor& t : file.tensors()) have += (have.empty() ? "" : ", ") + t.name;
      return usage_error("run", in_path + ": no tensor '" + required +
                                    "' (needs q, k, v, g, beta; optional cu_seqlens, initial_state, "
                                    "state_indices, A_log, dt_bias, scale; the file has: " +
                                    (have.empty() ? "none" : have) + ")");
    }

  // Gates: log-space g and beta, or raw a and b with A_log and dt_bias.
  SafetensorsTensor* a_log = input(names::kALog);
  SafetensorsTensor* dt_bias = input(names::kDtBias);
  if ((a_log == nullptr) != (dt_bias == nullptr))
    return usage_error("run", std::string(in_path) + ": " + (a_log ? names::kALog : names::kDtBias) +
                                  " without " + (a_log ? names::kDtBias : names::kALog) +
                                  " (give both for fused gates, where g and beta hold the raw a and b)");
  const bool fused = a_log != nullptr;

  Args args;
  bool v_batched = false;
  const std::initializer_list<DType> io_types = {DType::kBF16, DType::kF16, DType::kF32};
  const std::initializer_list<DType> gate_types = {DType::kF32, DType::kBF16};
  std::string why = token_view(*input(names::kQ), 3, "T, H, K", io_types, &args.q, nullptr);
  if (why.empty()) why = token_view(*input(names::kK), 3, "T, H, K", io_types, &args.k, nullptr);
  if (why.empty()) why = token_view(*input(names::kV), 3, "T, HV, V", io_types, &args.v, &v_batched);
  Tensor g, beta;
  if (why.empty())
    why = token_view(*input(names::kG), 2, "T, HV",
                     fused ? gate_types : std::initializer_list<DType>{DType::kF32}, &g, nullptr);
  if (why.empty()) why = token_view(*input(names::kBeta), 2, "T, HV", gate_types, &beta, nullptr);
  if (why.empty() && fused) why = plain_view(*a_log, 1, "HV", {DType::kF32}, &args.a_log);
  if (why.empty() && fused) why = plain_view(*dt_bias, 1, "HV", {DType::kF32}, &args.dt_bias);
  if (!why.empty()) return usage_error("run", why);
  if (fused) {
    args.gate_mode = GateMode::kFused;
    args.a = g;
    args.b = beta;
  } else {
    args.g = g;
    args.beta = beta;
  }
  const int64_t T = args.q.shape[0], H = args.q.shape[1], K = args.q.shape[2];
  const int64_t HV = args.v.shape[1], V = args.v.shape[2];

  // Sequences: cu_seqlens, or one sequence of T tokens.
  Owned cu_default;
  if (SafetensorsTensor* cu = input(names::kCuSeqlens)) {
    why = plain_view(*cu, 1, "N + 1", {DType::kI32, DType::kI64}, &args.cu_seqlens);
    if (why.empty() && cu->shape[0] < 1) why = "cu_seqlens: expected [N + 1] with N >= 0, got [0]";
  } else {
    const bool wide = T > std::numeric_limits<int32_t>::max();
    cu_default = Owned(wide ? DType::kI64 : DType::kI32, {2});
    if (wide)
      static_cast<int64_t*>(cu_default.data())[1] = T;
    else
      static_cast<int32_t*>(cu_default.data())[1] = static_cast<int32_t>(T);
    args.cu_seqlens = view(cu_default);
  }
  if (!why.empty()) return usage_error("run", why);
  const int64_t N = args.cu_seqlens.shape[0] - 1;

  // State: dense [N, HV, K, V], or a pool [P, HV, K, V] with state_indices.
  SafetensorsTensor* state0 = input(names::kInitialState);
  SafetensorsTensor* indices = input(names::kStateIndices);
  if (indices != nullptr && state0 == nullptr)
    return usage_error("run",
                       in_path + ": state_indices without initial_state (the state pool [P, HV, K, V])");
  const bool pool = indices != nullptr;
  const char* state_dims =
      vk ? (pool ? "P, HV, V, K" : "N, HV, V, K") : (pool ? "P, HV, K, V" : "N, HV, K, V");
  if (state0 != nullptr)
    why = plain_view(*state0, 4, state_dims, {DType::kF32, DType::kBF16}, &args.initial_state);
  if (why.empty() && pool)
    why = plain_view(*indices, 1, "N", {DType::kI32, DType::kI64}, &args.state_indices);
  if (why.empty() && state0 != nullptr && !vk && args.initial_state.shape[2] == V &&
      args.initial_state.shape[3] == K && K != V)
    why = "initial_state: " + shape_string(state0->shape) +
          " looks like the vk layout [., HV, V, K]; pass --layout vk";
  if (!why.empty()) return usage_error("run", why);
  const DType state_dtype = state0 != nullptr ? state0->dtype : DType::kF32;
  const int64_t d2 = vk ? V : K, d3 = vk ? K : V;

  // Scale: a 0-d or [1] tensor.
  if (const SafetensorsTensor* s = input(names::kScale)) {
    if (s->shape.size() > 1 || s->numel() != 1)
      return usage_error("run", "scale: expected [] or [1], got " + shape_string(s->shape));
    if (std::string bad = check_dtype(*s, {DType::kF32, DType::kBF16, DType::kF16}); !bad.empty())
      return usage_error("run", bad);
    args.scale = load_float(s->data, s->dtype, 0);
  }

  // A dense final state may be far larger than the file (N from cu_seqlens).
  if (!pool && !fits({N, HV, d2, d3}))
    return usage_error(
        "run", "final_state: [N, HV, K, V] = " + shape_string({N, HV, d2, d3}) + " is too large to allocate");
  Owned out(args.v.dtype, {T, HV, V});
  args.out = view(out);
  Owned final_state;
  if (!pool) {
    final_state = Owned(state_dtype, {N, HV, d2, d3});
    args.final_state = view(final_state);
  }
  args.write_final_state = true;
  args.l2norm_qk = flags.has("l2norm");
  args.state_layout = vk ? StateLayout::kVK : StateLayout::kKV;
  args.backend = backend;
  args.num_threads = static_cast<int>(threads);

  Choice choice;
  if (Status s = choose_backend(Op::kPrefill, args, &choice); !s.ok()) return usage_error("run", s.message());
  std::printf(
      "gdn run: prefill of %lld tokens in %lld sequences from %s, H=%lld HV=%lld K=%lld V=%lld, %s inputs, "
      "%s state%s, %s gates%s\n",
      static_cast<long long>(T), static_cast<long long>(N), in_path.c_str(), static_cast<long long>(H),
      static_cast<long long>(HV), static_cast<long long>(K), static_cast<long long>(V),
      dtype_name(args.q.dtype), dtype_name(state_dtype), pool ? " (pool)" : "", fused ? "fused" : "log-space",
      args.l2norm_qk ? ", l2norm q/k" : "");
  std::printf("backend: %s (%s%s)\n", backend_name(choice.backend), choice.fell_back ? "fell back: " : "",
              choice.reason.c_str());

  // The pool is updated in place: keep the initial one for the reference.
  Owned pool_before;
  if (pool) {
    pool_before = Owned(state_dtype, state0->shape);
    std::memcpy(pool_before.data(), state0->data, state0->bytes);
  }

  const auto t0 = std::chrono::steady_clock::now();
  const Status status = prefill(args);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (!status.ok()) return usage_error("run", status.message());
  Shape shape;
  for (int64_t n = 0; n < N; ++n)
    shape.seq_lens.push_back(load_int(args.cu_seqlens.data, args.cu_seqlens.dtype, n + 1) -
                             load_int(args.cu_seqlens.data, args.cu_seqlens.dtype, n));
  shape.H = H, shape.HV = HV, shape.K = K, shape.V = V;
  std::printf("time: %.2f ms, %.1f GFLOP/s (host clock, one call)\n", ms, flops(shape) / (ms * 1e6));

  bool passed = true;
  std::string failure;
  if (verify) {
    // The same call on the reference backend: fp32 q, k, v, out and state.
    Args ref = args;
    Owned q32 = to_f32(args.q), k32 = to_f32(args.k), v32 = to_f32(args.v);
    ref.q = view(q32);
    ref.k = view(k32);
    ref.v = view(v32);
    Owned state32;
    if (state0 != nullptr) {
      if (pool) {
        state32 = Owned(DType::kF32, {N, HV, d2, d3});
        const int64_t row = HV * d2 * d3;
        float* dst = static_cast<float*>(state32.data());
        for (int64_t n = 0; n < N; ++n) {
          const int64_t r = load_int(args.state_indices.data, args.state_indices.dtype, n);
          for (int64_t i = 0; i < row; ++i)
            dst[n * row + i] = r < 0 ? 0.0f : load_float(pool_before.data(), state_dtype, r * row + i);
        }
      } else {
        state32 = to_f32(args.initial_state);
      }
      ref.initial_state = view(state32);
    }
    ref.state_indices = Tensor();
    Owned out32(DType::kF32, {T, HV, V}), final32(DType::kF32, {N, HV, d2, d3});
    ref.out = view(out32);
    ref.final_state = view(final32);
    ref.backend = Backend::kReference;
    ref.strict = true;
    if (Status s = prefill(ref); !s.ok()) return usage_error("run", "reference call failed: " + s.message());

    testing::ErrorAccumulator out_err, state_err;
    add_errors(out_err, out.data(), out.dtype(), 0, static_cast<const float*>(out32.data()), out.numel());
    const int64_t row = HV * d2 * d3;
    for (int64_t n = 0; n < N; ++n) {
      const int64_t r = pool ? load_int(args.state_indices.data, args.state_indices.dtype, n) : n;
      if (r < 0) continue;  // a padding sequence writes nothing
      const void* test_state = pool ? state0->data : final_state.data();
      add_errors(state_err, test_state, state_dtype, r * row,
                 static_cast<const float*>(final32.data()) + n * row, row);
    }
    const testing::ErrorStats eo = out_err.stats(), es = state_err.stats();
    const double tol_o = args.q.dtype == DType::kF32 ? kTolF32 : kTolLowPrecision;
    const double tol_state = state_dtype == DType::kBF16 ? kTolBF16State : tol_o;
    std::printf("error vs float64 reference: out %s; final state %s (tolerance %.0e, %.0e)\n",
                testing::describe(eo).c_str(), testing::describe(es).c_str(), tol_o, tol_state);
    if (!within(eo, tol_o))
      failure = failure_reason("out", eo, tol_o);
    else if (!within(es, tol_state))
      failure = failure_reason("final state", es, tol_state);
    passed = failure.empty();
  }

  if (!out_path.empty()) {
    std::vector<int64_t> o_shape = {T, HV, V};
    if (v_batched) o_shape.insert(o_shape.begin(), 1);
    std::vector<NamedTensor> results = {{"o", out.dtype(), o_shape, out.data()}};
    if (pool)
      results.push_back({"final_state", state_dtype, state0->shape, state0->data});
    else
      results.push_back({"final_state", state_dtype, final_state.shape(), final_state.data()});
    if (!write_safetensors(out_path, results, &err,
                           {{"producer", "gdn run --inputs"},
                            {"backend", backend_name(choice.backend)},
                            {"layout", layout}}))
      return usage_error("run", err);
    std::printf("wrote o %s and final_state %s to %s\n", shape_string(o_shape).c_str(),
                shape_string(pool ? state0->shape : final_state.shape()).c_str(), out_path.c_str());
  }

  if (!verify) {
    std::printf("not verified (--no-verify)\n");
    return kExitOk;
  }
  if (!passed) {
    std::printf("FAIL: %s\n", failure.c_str());
    return kExitFail;
  }
  std::printf("PASS\n");
  return kExitOk;
}

}  // namespace

int run_with_inputs(const Flags& flags) {
  try {
    return run_inputs(flags);
  } catch (const std::bad_alloc&) {
    return usage_error("run", "out of memory for the tensors of " + flags.get("inputs"));
  } catch (const std::length_error&) {
    return usage_error("run", "out of memory for the tensors of " + flags.get("inputs"));
  }
}

}  // namespace gdn::cli
