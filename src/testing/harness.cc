#include "testing/harness.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sstream>

#include "common/convert.h"
#include "gdn/dispatch.h"

#if GDN_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace gdn::testing {
namespace {

// splitmix64 + Box-Muller: the same numbers with every standard library.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  // Box-Muller gives two normals per pair of uniforms; the second is kept.
  double normal() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double u1 = uniform(), u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
    spare_ = r * std::sin(a);
    have_spare_ = true;
    return r * std::cos(a);
  }

 private:
  uint64_t s_;
  double spare_ = 0.0;
  bool have_spare_ = false;
};

float round_to(DType d, float x) {
  if (d == DType::kBF16) return bf16_to_float(float_to_bf16(x));
  if (d == DType::kF16) return half_to_float(float_to_half(x));
  return x;
}

// An owned, contiguous host tensor in some dtype.
struct Buffer {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::vector<uint64_t> storage;  // 8-byte aligned backing store
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    return n;
  }
  void* data() { return storage.data(); }
  const void* data() const { return storage.data(); }
  size_t bytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  Tensor view() {
    Tensor t;
    t.data = data();
    t.dtype = dtype;
    t.rank = static_cast<int32_t>(shape.size());
    int64_t stride = 1;
    for (int d = t.rank - 1; d >= 0; --d) {
      t.shape[d] = shape[d];
      t.stride[d] = stride;
      stride *= shape[d];
    }
    return t;
  }
  float get(int64_t i) const { return load_float(data(), dtype, i); }
};

Buffer make(DType dtype, std::vector<int64_t> shape) {
  Buffer b;
  b.dtype = dtype;
  b.shape = std::move(shape);
  b.storage.assign((b.bytes() + 7) / 8 + 1, 0);
  return b;
}

Buffer from_values(DType dtype, std::vector<int64_t> shape, const std::vector<float>& values) {
  Buffer b = make(dtype, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) store_float(b.data(), dtype, static_cast<int64_t>(i), values[i]);
  return b;
}

Buffer from_ints(std::vector<int64_t> values, bool int64) {
  Buffer b = make(int64 ? DType::kI64 : DType::kI32, {static_cast<int64_t>(values.size())});
  for (size_t i = 0; i < values.size(); ++i) {
    if (int64)
      static_cast<int64_t*>(b.data())[i] = values[i];
    else
      static_cast<int32_t*>(b.data())[i] = static_cast<int32_t>(values[i]);
  }
  return b;
}

constexpr uint8_t kPoison = 0xFF;  // NaN in fp32, bf16 and fp16

void poison(Buffer& b) {
  std::memset(b.data(), kPoison, b.bytes());
}

bool is_poison(const Buffer& b, int64_t i) {
  const size_t es = dtype_size(b.dtype);
  const uint8_t* p = static_cast<const uint8_t*>(b.data()) + static_cast<size_t>(i) * es;
  for (size_t k = 0; k < es; ++k)
    if (p[k] != kPoison) return false;
  return true;
}

// The elementwise bound of the error model: no single element further from
// the reference than this many tolerances times the reference's RMS.
constexpr double kElementwiseFactor = 64.0;

struct Inputs {
  int64_t T = 0, N = 0, L = 0;  // L: verify slots
  std::vector<int64_t> cu;
  std::vector<float> q, k, v, g, beta, a, b, a_log, dt_bias;
  std::vector<float> state0;  // [rows, HV, d2, d3] in the case's layout, rounded to state dtype
  int64_t state_rows = 0;
  std::vector<int64_t> indices;  // pool rows (pool) or n
};

Inputs generate(const Case& c) {
  Inputs in;
  Rng rng(c.seed);
  in.N = static_cast<int64_t>(c.seq_lens.size());
  in.cu.assign(static_cast<size_t>(in.N) + 1, 0);
  for (int64_t n = 0; n < in.N; ++n)
    in.cu[n + 1] = in.cu[n] + (c.op == Op::kDecode ? 1 : c.seq_lens[static_cast<size_t>(n)]);
  in.T = in.cu[in.N];
  for (int64_t n = 0; n < in.N; ++n) in.L = std::max(in.L, in.cu[n + 1] - in.cu[n]);
  auto normals = [&](int64_t count, double sd, DType d) {
    std::vector<float> x(static_cast<size_t>(count));
    for (float& e : x) e = round_to(d, static_cast<float>(sd * rng.normal()));
    return x;
  };
  in.q = normals(in.T * c.H * c.K, 1.0, c.io);
  in.k = normals(in.T * c.H * c.K, 1.0, c.io);
  if (!c.l2norm) {  // keep keys unit-norm so the recurrence stays stable
    for (int64_t r = 0; r < in.T * c.H; ++r) {
      double s = 0;
      for (int64_t i = 0; i < c.K; ++i) s += double(in.k[r * c.K + i]) * in.k[r * c.K + i];
      for (int64_t i = 0; i < c.K; ++i)
        in.k[r * c.K + i] = round_to(c.io, static_cast<float>(in.k[r * c.K + i] / std::sqrt(s)));
    }
  }
  in.v = normals(in.T * c.HV * c.V, 1.0, c.io);
  const int64_t gates = in.T * c.HV;
  if (c.gate == GateMode::kLogSpace) {
    in.g.resize(static_cast<size_t>(gates));
    in.beta.resize(static_cast<size_t>(gates));
    for (int64_t n = 0; n < in.N; ++n)
      for (int64_t t = in.cu[n]; t < in.cu[n + 1]; ++t)
        for (int64_t h = 0; h < c.HV; ++h) {
          float g = -static_cast<float>(0.01 + 0.3 * rng.uniform());
          if (c.adversarial_gates) {
            const int64_t pos = t - in.cu[n];
            if (rng.uniform() < 0.05) g = -60.0f;
            if (pos >= 128 && pos < 192) g = -50.0f - static_cast<float>(rng.uniform());
          }
          in.g[t * c.HV + h] = g;
          in.beta[t * c.HV + h] = static_cast<float>(1.0 / (1.0 + std::exp(-rng.normal())));
        }
  } else {
    in.a = normals(gates, 1.0, DType::kF32);
    in.b = normals(gates, 1.0, DType::kF32);
    in.a_log.resize(static_cast<size_t>(c.HV));
    in.dt_bias.resize(static_cast<size_t>(c.HV));
    for (int64_t h = 0; h < c.HV; ++h) {
      in.a_log[h] = static_cast<float>(-2.0 + 2.5 * rng.uniform());
      in.dt_bias[h] = static_cast<float>(0.5 * rng.normal());
    }
  }
  in.indices.resize(static_cast<size_t>(in.N));
  if (c.pool) {
    in.state_rows = std::max(c.pool_rows > 0 ? c.pool_rows : in.N + 3, in.N);
    std::vector<int64_t> perm(static_cast<size_t>(in.state_rows));
    std::iota(perm.begin(), perm.end(), 0);
    for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.next() % i]);
    for (int64_t n = 0; n < in.N; ++n) in.indices[n] = c.pool_padding && n % 3 == 2 ? -1 - n % 2 : perm[n];
  } else {
    in.state_rows = in.N;
    std::iota(in.indices.begin(), in.indices.end(), 0);
  }
  if (c.initial_state || c.pool) in.state0 = normals(in.state_rows * c.HV * c.K * c.V, 0.1, c.state);
  return in;
}

// One set of tensors for a call (the case's dtypes, or fp32 for the oracle).
struct CallBuffers {
  Buffer q, k, v, g, beta, a, b, a_log, dt_bias, cu, indices, state, final_state, checkpoints, intermediate,
      out;
  Args args;
};

int64_t checkpoint_rows(const Case& c, const Inputs& in) {
  if (c.checkpoint_every <= 0) return 0;
  int64_t rows = 0;
  for (int64_t n = 0; n < in.N; ++n) rows += (in.cu[n + 1] - in.cu[n]) / c.checkpoint_every;
  return rows;
}

// `oracle`: fp32 everything, dense states (padding sequences start from
// zero), final state always written.
void build(const Case& c, const Inputs& in, bool oracle, CallBuffers& cb) {
  const DType io = oracle ? DType::kF32 : c.io;
  const DType st = oracle ? DType::kF32 : c.state;
  const bool vk = c.layout == StateLayout::kVK;
  const int64_t d2 = vk ? c.V : c.K, d3 = vk ? c.K : c.V, mat = c.K * c.V;
  Args& a = cb.args;
  cb.q = from_values(io, {in.T, c.H, c.K}, in.q);
  cb.k = from_values(io, {in.T, c.H, c.K}, in.k);
  cb.v = from_values(io, {in.T, c.HV, c.V}, in.v);
  a.q = cb.q.view();
  a.k = cb.k.view();
  a.v = cb.v.view();
  if (c.gate == GateMode::kLogSpace) {
    cb.g = from_values(DType::kF32, {in.T, c.HV}, in.g);
    cb.beta = from_values(DType::kF32, {in.T, c.HV}, in.beta);
    a.g = cb.g.view();
    a.beta = cb.beta.view();
  } else {
    cb.a = from_values(DType::kF32, {in.T, c.HV}, in.a);
    cb.b = from_values(DType::kF32, {in.T, c.HV}, in.b);
    cb.a_log = from_values(DType::kF32, {c.HV}, in.a_log);
    cb.dt_bias = from_values(DType::kF32, {c.HV}, in.dt_bias);
    a.a = cb.a.view();
    a.b = cb.b.view();
    a.a_log = cb.a_log.view();
    a.dt_bias = cb.dt_bias.view();
    a.gate_mode = GateMode::kFused;
  }
  if (c.op == Op::kPrefill || (c.op == Op::kVerify && !c.fixed_len)) {
    cb.cu = from_ints(in.cu, c.int64_indices);
    a.cu_seqlens = cb.cu.view();
  } else if (c.op == Op::kVerify) {
    a.tokens_per_seq = in.L;
  }
  a.l2norm_qk = c.l2norm;
  a.state_layout = c.layout;
  if (oracle) {
    if (!in.state0.empty()) {
      std::vector<float> dense(static_cast<size_t>(in.N * c.HV * mat), 0.0f);
      for (int64_t n = 0; n < in.N; ++n) {
        const int64_t row = in.indices[n];
        if (row < 0) continue;
        std::copy_n(in.state0.begin() + row * c.HV * mat, c.HV * mat, dense.begin() + n * c.HV * mat);
      }
      cb.state = from_values(st, {in.N, c.HV, d2, d3}, dense);
      a.initial_state = cb.state.view();
    }
    cb.final_state = make(st, {in.N, c.HV, d2, d3});
    a.final_state = cb.final_state.view();
    a.write_final_state = true;
  } else if (c.pool) {
    cb.state = from_values(st, {in.state_rows, c.HV, d2, d3}, in.state0);
    cb.indices = from_ints(in.indices, c.int64_indices);
    a.initial_state = cb.state.view();
    a.state_indices = cb.indices.view();
    a.write_final_state = c.write_final;
  } else {
    if (!in.state0.empty()) {
      cb.state = from_values(st, {in.N, c.HV, d2, d3}, in.state0);
      a.initial_state = cb.state.view();
    }
    a.write_final_state = c.write_final;
    if (c.write_final) {
      cb.final_state = make(st, {in.N, c.HV, d2, d3});
      poison(cb.final_state);
      a.final_state = cb.final_state.view();
    }
  }
  if (c.checkpoint_every > 0) {
    // One spare row: a write past the needed rows shows as a lost poison.
    cb.checkpoints = make(st, {checkpoint_rows(c, in) + 1, c.HV, d2, d3});
    poison(cb.checkpoints);
    a.checkpoints = cb.checkpoints.view();
    a.checkpoint_every = c.checkpoint_every;
  }
  if (c.intermediate) {
    cb.intermediate = make(st, {in.N, std::max<int64_t>(in.L, 1), c.HV, d2, d3});
    poison(cb.intermediate);
    a.intermediate_states = cb.intermediate.view();
  }
  cb.out = make(io, {in.T, c.HV, c.V});
  poison(cb.out);
  a.out = cb.out.view();
}

// GPU copies of a call's buffers: uploads every buffer, points the Args at
// the device copies (host copies of cu_seqlens and state_indices stay
// available to validation), and downloads the outputs after the call.
class DeviceMirror {
 public:
  DeviceMirror() = default;
  DeviceMirror(const DeviceMirror&) = delete;
  DeviceMirror& operator=(const DeviceMirror&) = delete;
  ~DeviceMirror() { release(); }

  // Uploads cb's buffers and points `a` (a copy of cb.args) at them.
  Status upload(CallBuffers& cb, Args& a, Op op) {
#if GDN_WITH_CUDA
    Buffer* all[] = {&cb.q,       &cb.k,     &cb.v,           &cb.g,           &cb.beta,
                     &cb.a,       &cb.b,     &cb.a_log,       &cb.dt_bias,     &cb.cu,
                     &cb.indices, &cb.state, &cb.final_state, &cb.checkpoints, &cb.intermediate,
                     &cb.out};
    for (Buffer* b : all) {
      if (b->storage.empty() || b->bytes() == 0) continue;
      void* d = nullptr;
      if (cudaMalloc(&d, b->bytes()) != cudaSuccess) return fail("cudaMalloc");
      maps_.push_back({b, d});
      if (cudaMemcpy(d, b->data(), b->bytes(), cudaMemcpyHostToDevice) != cudaSuccess)
        return fail("cudaMemcpy to device");
    }
    Tensor* tensors[] = {&a.q,
                         &a.k,
                         &a.v,
                         &a.g,
                         &a.beta,
                         &a.a,
                         &a.b,
                         &a.a_log,
                         &a.dt_bias,
                         &a.cu_seqlens,
                         &a.initial_state,
                         &a.state_indices,
                         &a.final_state,
                         &a.checkpoints,
                         &a.intermediate_states,
                         &a.out};
    for (Tensor* t : tensors)
      for (const Map& m : maps_)
        if (t->defined() && t->data == m.host->data()) t->data = m.device;
    if (a.cu_seqlens.defined()) a.cu_seqlens_host = cb.cu.data();
    if (a.state_indices.defined()) a.state_indices_host = cb.indices.data();
    // Scratch for whichever GPU backend the caller picks after this (tests
    // and gdn bench set args.backend on the prepared arguments): the largest
    // any of them needs. A call no backend can run has no workspace; the
    // call itself will report why.
    size_t most = 0;
    Args sized = a;
    for (Backend b : {a.backend, Backend::kCuda, Backend::kSm90}) {
      Args probe = a;
      probe.backend = b;
      probe.strict = false;
      size_t bytes = 0;
      if (workspace_size(op, probe, &bytes).ok() && bytes > most) most = bytes, sized = probe;
    }
    if (most == 0) return Status::Ok();
    if (Status s = workspace_.prepare(op, &sized); !s.ok()) return s;
    a.workspace = sized.workspace;
    a.workspace_bytes = sized.workspace_bytes;
    return Status::Ok();
#else
    (void)cb;
    (void)a;
    (void)op;
    return Status(StatusCode::kUnsupported, "this build has no CUDA");
#endif
  }

  // Waits for the device's work (errors of asynchronous launches surface here).
  Status sync() {
#if GDN_WITH_CUDA
    if (cudaDeviceSynchronize() != cudaSuccess) return fail("kernel execution");
    return Status::Ok();
#else
    return Status(StatusCode::kUnsupported, "this build has no CUDA");
#endif
  }

  // Copies every output (and the pool) back into the host buffers.
  Status download(CallBuffers& cb) {
#if GDN_WITH_CUDA
    if (cudaDeviceSynchronize() != cudaSuccess) return fail("kernel execution");
    for (Buffer* b : {&cb.out, &cb.state, &cb.final_state, &cb.checkpoints, &cb.intermediate})
      for (const Map& m : maps_)
        if (m.host == b && cudaMemcpy(b->data(), m.device, b->bytes(), cudaMemcpyDeviceToHost) != cudaSuccess)
          return fail("cudaMemcpy to host");
    return Status::Ok();
#else
    (void)cb;
    return Status(StatusCode::kUnsupported, "this build has no CUDA");
#endif
  }

 private:
  struct Map {
    Buffer* host;
    void* device;
  };
  Status fail(const char* what) {
#if GDN_WITH_CUDA
    const cudaError_t e = cudaGetLastError();
    return Status(StatusCode::kDeviceError, std::string(what) + ": " + cudaGetErrorString(e));
#else
    return Status(StatusCode::kDeviceError, what);
#endif
  }
  void release() {
#if GDN_WITH_CUDA
    for (const Map& m : maps_) cudaFree(m.device);
#endif
    maps_.clear();
  }
  std::vector<Map> maps_;
  gdn::Workspace workspace_;
};

}  // namespace

Tensor token_slice(Tensor t, int64_t j, int64_t L) {
  if (!t.defined()) return t;
  t.data = static_cast<char*>(t.data) + j * t.stride[0] * static_cast<int64_t>(dtype_size(t.dtype));
  t.shape[0] /= L;
  t.stride[0] *= L;
  return t;
}

Args decode_step(const Args& whole, int64_t j, int64_t L) {
  Args a = whole;
  a.cu_seqlens = Tensor{};
  a.cu_seqlens_host = nullptr;
  a.tokens_per_seq = 0;
  a.intermediate_states = Tensor{};
  for (Tensor Args::*t :
       {&Args::q, &Args::k, &Args::v, &Args::g, &Args::beta, &Args::a, &Args::b, &Args::out})
    a.*t = token_slice(whole.*t, j, L);
  return a;
}

bool runs_on_device(Backend backend) {
  if (backend == Backend::kCuda || backend == Backend::kSm90) return true;
  return backend == Backend::kAuto && device_count() > 0;
}

struct Workload::Impl {
  Case c;
  Inputs in;
  CallBuffers cb;
  std::vector<std::unique_ptr<DeviceMirror>> mirrors;
  std::vector<Args> device_args;
  Status status;
};

Workload::Workload(const Case& c, bool on_device, int copies) : impl_(std::make_unique<Impl>()) {
  impl_->c = c;
  impl_->in = generate(c);
  build(c, impl_->in, false, impl_->cb);
  if (!on_device) return;
  impl_->device_args.reserve(static_cast<size_t>(copies));
  for (int i = 0; i < copies && impl_->status.ok(); ++i) {
    impl_->mirrors.push_back(std::make_unique<DeviceMirror>());
    impl_->device_args.push_back(impl_->cb.args);
    impl_->status = impl_->mirrors.back()->upload(impl_->cb, impl_->device_args.back(), c.op);
  }
}
Workload::~Workload() = default;
const Status& Workload::status() const {
  return impl_->status;
}
int Workload::copies() const {
  return impl_->device_args.empty() ? 1 : static_cast<int>(impl_->device_args.size());
}
Args& Workload::args(int copy) {
  return impl_->device_args.empty() ? impl_->cb.args : impl_->device_args[static_cast<size_t>(copy)];
}
Status Workload::download() {
  if (impl_->mirrors.empty()) return Status::Ok();
  return impl_->mirrors.front()->download(impl_->cb);
}
Tensor Workload::host_out() {
  return impl_->cb.out.view();
}
Tensor Workload::host_final_state() {
  return impl_->cb.final_state.view();
}
const Case& Workload::spec() const {
  return impl_->c;
}
int64_t Workload::tokens() const {
  return impl_->in.T;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& r) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (double(x[i]) - r[i]) * (double(x[i]) - r[i]);
    den += double(r[i]) * r[i];
  }
  return std::sqrt(num / den);
}

void ErrorAccumulator::add(double x, double ref) {
  ++count_;
  if (!std::isfinite(x) || !std::isfinite(ref)) {
    ++non_finite_;
    return;
  }
  num_ += (x - ref) * (x - ref);
  den_ += ref * ref;
  max_abs_ = std::max(max_abs_, std::abs(x - ref));
}

ErrorStats ErrorAccumulator::stats() const {
  ErrorStats e;
  e.count = count_;
  e.non_finite = non_finite_;
  const double rms = count_ > 0 ? std::sqrt(den_ / static_cast<double>(count_)) : 0.0;
  e.rel_rms = den_ > 0 ? std::sqrt(num_ / den_) : std::sqrt(num_);
  e.max_abs_over_rms = rms > 0 ? max_abs_ / rms : max_abs_;
  return e;
}

std::string test_name(const Case& c, size_t index) {
  std::string s = std::to_string(index) + "_";
  for (char ch : c.name) s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return s;
}

std::string describe(const ErrorStats& e) {
  std::ostringstream s;
  s.precision(3);
  s << "rel_rms " << std::scientific << e.rel_rms << ", max|err|/rms " << e.max_abs_over_rms;
  if (e.non_finite) s << ", " << e.non_finite << " non-finite";
  return s.str();
}

CaseResult run_case(const Case& c, Backend backend, int num_threads, bool strict) {
  CaseResult r;
  const Inputs in = generate(c);
  CallBuffers test, ref;
  build(c, in, false, test);
  build(c, in, true, ref);
  test.args.backend = backend;
  test.args.strict = strict;
  test.args.num_threads = num_threads;
  ref.args.backend = Backend::kReference;
  ref.args.strict = true;
  ref.args.num_threads = num_threads;
  const Buffer pool_before = test.state;

  DeviceMirror mirror;
  const bool device = runs_on_device(backend);
  if (device) {
    r.status = mirror.upload(test, test.args, c.op);
    if (!r.status.ok()) {
      r.failure = "device setup failed: " + r.status.message();
      return r;
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  r.status = run(c.op, test.args);
  if (r.status.ok() && device) r.status = mirror.sync();
  r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (r.status.ok() && device) r.status = mirror.download(test);
  if (!r.status.ok()) {
    r.failure = "backend call failed: " + r.status.message();
    return r;
  }
  if (Status s = run(c.op, ref.args); !s.ok()) {
    r.failure = "reference call failed: " + s.message();
    return r;
  }
  std::ostringstream why;
  ErrorAccumulator acc;
  for (int64_t i = 0; i < test.out.numel(); ++i) {
    if (is_poison(test.out, i)) r.all_written = false;
    acc.add(test.out.get(i), ref.out.get(i));
  }
  r.out = acc.stats();
  if (!r.all_written) why << "out: elements left unwritten; ";

  // Final states.
  const int64_t mat = c.HV * c.K * c.V;
  ErrorAccumulator sacc;
  if (c.pool) {
    std::vector<bool> referenced(static_cast<size_t>(in.state_rows), false);
    for (int64_t n = 0; n < in.N; ++n) {
      const int64_t row = in.indices[n];
      if (row < 0) continue;
      referenced[static_cast<size_t>(row)] = true;
      for (int64_t i = 0; i < mat; ++i) {
        if (c.write_final)
          sacc.add(test.state.get(row * mat + i), ref.final_state.get(n * mat + i));
        else if (std::memcmp(
                     static_cast<const char*>(test.state.data()) + (row * mat + i) * dtype_size(c.state),
                     static_cast<const char*>(pool_before.data()) + (row * mat + i) * dtype_size(c.state),
                     dtype_size(c.state)) != 0)
          r.untouched = false;
      }
    }
    const size_t row_bytes = static_cast<size_t>(mat) * dtype_size(c.state);
    for (int64_t row = 0; row < in.state_rows; ++row)
      if (!referenced[static_cast<size_t>(row)] &&
          std::memcmp(static_cast<const char*>(test.state.data()) + row * row_bytes,
                      static_cast<const char*>(pool_before.data()) + row * row_bytes, row_bytes) != 0)
        r.untouched = false;
    if (!r.untouched) why << "pool: a row it must not write changed; ";
  } else if (c.write_final) {
    bool written = true;
    for (int64_t i = 0; i < test.final_state.numel(); ++i) {
      if (is_poison(test.final_state, i)) written = false;
      sacc.add(test.final_state.get(i), ref.final_state.get(i));
    }
    if (!written) {
      r.all_written = false;
      why << "final_state: elements left unwritten; ";
    }
  }
  r.state = sacc.stats();

  if (c.checkpoint_every > 0) {
    ErrorAccumulator cacc;
    const int64_t rows = checkpoint_rows(c, in);
    for (int64_t i = 0; i < rows * mat; ++i) {
      if (is_poison(test.checkpoints, i)) r.all_written = false;
      cacc.add(test.checkpoints.get(i), ref.checkpoints.get(i));
    }
    for (int64_t i = rows * mat; i < (rows + 1) * mat; ++i)
      if (!is_poison(test.checkpoints, i)) r.untouched = false;
    r.checkpoints = cacc.stats();
  }
  if (c.intermediate) {
    ErrorAccumulator iacc;
    const int64_t slots = test.intermediate.shape[1];
    for (int64_t n = 0; n < in.N; ++n)
      for (int64_t j = 0; j < slots; ++j)
        for (int64_t i = 0; i < mat; ++i) {
          const int64_t idx = (n * slots + j) * mat + i;
          if (j < in.cu[n + 1] - in.cu[n]) {
            if (is_poison(test.intermediate, idx)) r.all_written = false;
            iacc.add(test.intermediate.get(idx), ref.intermediate.get(idx));
          } else if (!is_poison(test.intermediate, idx)) {
            r.untouched = false;
          }
        }
    r.intermediate = iacc.stats();
  }

  auto judge = [&](const char* what, const ErrorStats& e, double tol) {
    if (e.count == 0) return;
    if (e.non_finite > 0) why << what << ": " << e.non_finite << " non-finite values; ";
    if (!(e.rel_rms <= tol)) why << what << ": rel_rms " << e.rel_rms << " > " << tol << "; ";
    if (!(e.max_abs_over_rms <= kElementwiseFactor * tol))
      why << what << ": max|err|/rms " << e.max_abs_over_rms << " > " << kElementwiseFactor * tol << "; ";
  };
  judge("out", r.out, c.tol_o);
  judge("final_state", r.state, c.tol_state);
  judge("checkpoints", r.checkpoints, c.tol_state);
  judge("intermediate_states", r.intermediate, c.tol_state);
  if (!r.untouched && why.str().find("pool") == std::string::npos)
    why << "a buffer region outside the call's outputs changed; ";
  r.failure = why.str();
  r.passed = r.failure.empty();
  return r;
}

std::vector<Case> correctness_matrix() {
  const std::vector<int64_t> mixed = {1, 7, 63, 64, 65, 130, 1000};
  std::vector<Case> m;
  auto add = [&](Case c) {
    c.seed = 1000 + m.size();
    m.push_back(std::move(c));
  };
  Case base;
  base.seq_lens = mixed;
  // fp32 inputs: the chunked fp32 path must match float64 to 1e-5.
  for (int64_t ratio : {1, 2, 4}) {
    for (int64_t d : {64, 128, 96}) {
      Case c = base;
      c.name = "prefill fp32 gva" + std::to_string(ratio) + " k=v=" + std::to_string(d);
      c.H = 4 / ratio;
      c.HV = 4;
      c.K = c.V = d;
      c.io = DType::kF32;
      c.tol_o = c.tol_state = 1e-5;
      add(c);
    }
  }
  {
    Case c = base;
    c.name = "prefill bf16 gva2 k=v=128";
    c.H = 2, c.HV = 4, c.K = c.V = 128;
    add(c);
    c.name = "prefill bf16 gva4 k=v=128 no initial state";
    c.H = 1, c.initial_state = false;
    add(c);
    c.name = "prefill bf16 k=128 v=64 layout vk";
    c.H = 2, c.initial_state = true, c.V = 64, c.layout = StateLayout::kVK;
    add(c);
    c.name = "prefill fp16 k=v=64";
    c.io = DType::kF16, c.V = 64, c.K = 64, c.layout = StateLayout::kKV;
    add(c);
  }
  {
    Case c = base;
    c.name = "prefill bf16 pool with padding, layout vk";
    c.pool = true, c.layout = StateLayout::kVK, c.K = c.V = 128;
    add(c);
    c.name = "prefill bf16 pool, final state off (pool untouched)";
    c.write_final = false, c.layout = StateLayout::kKV, c.K = c.V = 64;
    add(c);
  }
  {
    Case c = base;
    c.name = "prefill bf16 state (error reported)";
    c.state = DType::kBF16, c.K = c.V = 128;
    c.tol_state = 8e-3;  // one rounding of the state to bf16: ~2^-9 relative per element
    add(c);
  }
  {
    Case c = base;
    c.name = "prefill fp32 fused gates";
    c.gate = GateMode::kFused, c.io = DType::kF32, c.tol_o = c.tol_state = 1e-5;
    add(c);
    c.name = "prefill bf16 fused gates, no l2norm";
    c.io = DType::kBF16, c.l2norm = false, c.tol_o = c.tol_state = 4e-3;
    add(c);
  }
  {
    Case c = base;
    c.name = "prefill fp32 adversarial gates";
    c.adversarial_gates = true, c.io = DType::kF32, c.tol_o = c.tol_state = 1e-5;
    add(c);
    c.name = "prefill bf16 adversarial gates";
    c.io = DType::kBF16, c.tol_o = c.tol_state = 4e-3;
    add(c);
  }
  {
    Case c = base;
    c.name = "prefill fp32 checkpoints every 64";
    c.io = DType::kF32, c.tol_o = c.tol_state = 1e-5, c.checkpoint_every = 64;
    add(c);
    c.name = "prefill bf16 pool checkpoints every 128, layout vk";
    c.io = DType::kBF16, c.tol_o = c.tol_state = 4e-3, c.checkpoint_every = 128;
    c.pool = true, c.layout = StateLayout::kVK;
    add(c);
  }
  {
    Case c;
    c.op = Op::kDecode;
    c.seq_lens.assign(9, 1);
    c.name = "decode bf16 pool with padding, layout vk";
    c.pool = true, c.layout = StateLayout::kVK, c.H = 2, c.HV = 8, c.K = c.V = 128;
    add(c);
    c.name = "decode fp32 dense, fused gates";
    c.pool = false, c.layout = StateLayout::kKV, c.io = DType::kF32, c.gate = GateMode::kFused;
    c.tol_o = c.tol_state = 1e-5;
    add(c);
    c.name = "decode bf16 state";
    c.io = DType::kBF16, c.gate = GateMode::kLogSpace, c.state = DType::kBF16, c.pool = true;
    c.tol_o = 4e-3, c.tol_state = 8e-3;
    add(c);
  }
  {
    Case c;
    c.op = Op::kVerify;
    c.seq_lens = {4, 1, 16, 7, 3};
    c.name = "verify bf16 packed, intermediate states, pool untouched";
    c.pool = true, c.write_final = false, c.intermediate = true, c.K = c.V = 128;
    add(c);
    c.name = "verify fp32 fixed length 4, intermediate states, pool written, layout vk";
    c.seq_lens.assign(6, 4);
    c.fixed_len = true, c.write_final = true, c.io = DType::kF32, c.layout = StateLayout::kVK;
    c.tol_o = c.tol_state = 1e-5;
    add(c);
  }
  // Decode and verify across the GPU kernel's variants: K = 64 and 128 in
  // both layouts, K != V, every io dtype, fp32 and bf16 states, dense and
  // pooled, int64 indices, an empty draft, and enough work for 4-warp CTAs.
  {
    Case c;
    c.op = Op::kDecode;
    c.seq_lens.assign(9, 1);
    c.name = "decode fp16 k=64 v=128 gva4, dense, no initial state, no l2norm";
    c.H = 1, c.HV = 4, c.K = 64, c.V = 128, c.io = DType::kF16, c.l2norm = false, c.initial_state = false;
    add(c);
    c.name = "decode fp32 k=v=64 pool, layout vk";
    c.H = 2, c.HV = 4, c.V = 64, c.io = DType::kF32, c.l2norm = true, c.initial_state = true, c.pool = true;
    c.layout = StateLayout::kVK, c.tol_o = c.tol_state = 1e-5;
    add(c);
    c.name = "decode bf16 k=128 v=64 layout vk, bf16 state, fused gates, int64 indices";
    c.K = 128, c.io = DType::kBF16, c.state = DType::kBF16, c.gate = GateMode::kFused, c.int64_indices = true;
    c.tol_o = 4e-3, c.tol_state = 8e-3;
    add(c);
    c.name = "decode bf16 k=v=128 64 sequences, pool";
    c.seq_lens.assign(64, 1);
    c.H = 4, c.HV = 8, c.V = 128, c.layout = StateLayout::kKV, c.state = DType::kF32;
    c.gate = GateMode::kLogSpace, c.int64_indices = false, c.tol_state = 4e-3;
    add(c);
  }
  {
    Case c;
    c.op = Op::kVerify;
    c.name = "verify fp32 k=64 v=128 packed with an empty draft, intermediate states, pool written";
    c.seq_lens = {3, 0, 16, 1, 9};
    c.H = 2, c.HV = 4, c.K = 64, c.V = 128, c.io = DType::kF32, c.pool = true, c.intermediate = true;
    c.tol_o = c.tol_state = 1e-5;
    add(c);
    c.name = "verify bf16 gva2 k=v=128 layout vk, bf16 state, fused gates, int64, pool untouched";
    c.seq_lens = {5, 2, 8};
    c.K = 128, c.io = DType::kBF16, c.state = DType::kBF16, c.layout = StateLayout::kVK;
    c.gate = GateMode::kFused, c.int64_indices = true, c.write_final = false;
    c.tol_o = 4e-3, c.tol_state = 8e-3;
    add(c);
    c.name = "verify fp16 dense, fixed length 3, k=v=64, no intermediate states";
    c.seq_lens.assign(7, 3);
    c.fixed_len = true, c.K = c.V = 64, c.io = DType::kF16, c.state = DType::kF32, c.pool = false;
    c.layout = StateLayout::kKV, c.gate = GateMode::kLogSpace, c.int64_indices = false, c.write_final = true;
    c.intermediate = false, c.tol_o = c.tol_state = 4e-3;
    add(c);
  }
  // One or two value heads (tensor parallelism over all but one or two of a
  // model's heads): gates with 4- and 8-byte token strides, which the GPU
  // kernels read one element at a time.
  {
    Case c = base;
    c.name = "prefill bf16 one q/k head, two value heads, fused gates";
    c.H = 1, c.HV = 2, c.K = c.V = 128, c.gate = GateMode::kFused;
    add(c);
    c.name = "prefill bf16 one head each, pool, k=v=64";
    c.HV = 1, c.K = c.V = 64, c.gate = GateMode::kLogSpace, c.pool = true;
    add(c);
  }
  {
    Case c;
    c.op = Op::kDecode;
    c.seq_lens.assign(9, 1);
    c.name = "decode bf16 one head each, pool with padding";
    c.H = 1, c.HV = 1, c.K = c.V = 128, c.pool = true;
    add(c);
    c.op = Op::kVerify;
    c.seq_lens = {4, 1, 16};
    c.name = "verify fp32 one q/k head, two value heads, intermediate states";
    c.HV = 2, c.io = DType::kF32, c.intermediate = true, c.tol_o = c.tol_state = 1e-5;
    add(c);
  }
  return m;
}

}  // namespace gdn::testing
