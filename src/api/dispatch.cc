// Capability checks and routing. Pure functions of (problem, device, build):
// nothing here touches the CUDA runtime, so tests inject any device.
#include "gdn/dispatch.h"

#include <algorithm>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace gdn {
namespace {

std::string device_str(const DeviceInfo& d) {
  std::ostringstream s;
  s << (d.name.empty() ? "GPU" : d.name) << " (sm_" << d.cc_major << d.cc_minor << ")";
  return s.str();
}

const char* op_verb(Op op) {
  switch (op) {
    case Op::kPrefill:
      return "prefill";
    case Op::kDecode:
      return "decode";
    default:
      return "verify";
  }
}

Status host_backend(const char* name, bool on_device, int device_ordinal) {
  if (on_device)
    return Status::Unsupported(std::string(name) + " runs on host memory; the tensors are on GPU " +
                               std::to_string(device_ordinal));
  return Status::Ok();
}

// What every GPU backend needs of the data and the device.
Status gpu_device(const char* name, bool on_device, const DeviceInfo& d, int min_major, int exact_major) {
  const std::string n = name;
  if (!on_device) return Status::Unsupported(n + " needs the tensors in GPU memory; they are on the host");
  if (!d.present) return Status::Unsupported(n + " needs a CUDA device; none is present");
  if (exact_major > 0 && d.cc_major != exact_major)
    return Status::Unsupported(n + " runs only on sm_" + std::to_string(exact_major) +
                               "0 (H100, H200); the device is " + device_str(d));
  if (d.cc_major < min_major)
    return Status::Unsupported(n + " needs compute capability " + std::to_string(min_major) +
                               ".0 or newer; the device is " + device_str(d));
  return Status::Ok();
}

Status gpu_common(const char* name, const Problem& p, const DeviceInfo& d, int min_major, int exact_major) {
  if (Status s = gpu_device(name, p.on_device, d, min_major, exact_major); !s.ok()) return s;
  if (!p.aligned16)
    return Status::Unsupported(
        std::string(name) +
        " needs q, k, v, out and the states 16-byte aligned, with strides of a multiple of "
        "16 bytes; " +
        (p.unaligned != nullptr ? p.unaligned : "a tensor") + " is not");
  return Status::Ok();
}

Status head_dims(const char* name, const Problem& p) {
  auto ok = [](int64_t x) { return x == 64 || x == 128; };
  if (!ok(p.K) || !ok(p.V))
    return Status::Unsupported(std::string(name) + " supports head sizes K, V in {64, 128}; got K = " +
                               std::to_string(p.K) + ", V = " + std::to_string(p.V));
  return Status::Ok();
}

// Prefill on sm_90: sm90 first unless the sequences average at most
// kSm90MaxShortTokens tokens (one chunk), where both run about as fast on
// the GPU and cuda's plain call costs less on the host (sm90 encodes three
// tensor maps per call). Measured on an H200 (bench/results
// cuda-h200-2026-12-03-ab05ac1.json, sm90-...-ab05ac1.json; graph us, sm90 /
// cuda): q3n-tp1 257 short (69 tokens a sequence) 1136 / 1291, 128x256 1099 /
// 1390, 4x1000 123 / 167; 1x64 20.9 / 20.8 as graphs, 40.0 / 37.5 as plain
// calls; 4x7 15.9 / 15.9 (both run the token recurrence).
constexpr int64_t kSm90MaxShortTokens = 64;

bool short_sequences(const Problem& p) {
  return p.op == Op::kPrefill && p.T <= kSm90MaxShortTokens * std::max<int64_t>(p.N, 1);
}

}  // namespace

std::vector<Backend> auto_order(const Problem& problem) {
  if (!problem.on_device) return {Backend::kCpu};
  if (problem.op == Op::kPrefill) {
    if (short_sequences(problem)) return {Backend::kCuda, Backend::kSm90};
    return {Backend::kSm90, Backend::kCuda};
  }
  return {Backend::kCuda};
}

Status backend_supports(Backend backend, const Problem& p, const DeviceInfo& d, const BuildInfo& b) {
  switch (backend) {
    case Backend::kReference:
      return host_backend("reference", p.on_device, p.device_ordinal);
    case Backend::kCpu:
      return host_backend("cpu", p.on_device, p.device_ordinal);
    case Backend::kCuda: {
      if (!b.cuda) return Status::Unsupported("cuda: this gdn was built without the cuda backend");
      if (Status s = gpu_common("cuda", p, d, 8, 0); !s.ok()) return s;
      // Decode and verify take any K, V in {64, 128}; the prefill's tiles need them equal.
      if (p.op == Op::kPrefill && p.K != p.V)
        return Status::Unsupported("cuda prefill needs K == V; got K = " + std::to_string(p.K) +
                                   ", V = " + std::to_string(p.V));
      return head_dims("cuda", p);
    }
    case Backend::kSm90: {
      if (!b.sm90) return Status::Unsupported("sm90: this gdn was built without the sm90 backend");
      if (Status s = gpu_common("sm90", p, d, 9, 9); !s.ok()) return s;
      if (p.op != Op::kPrefill)
        return Status::Unsupported(std::string("sm90 runs prefill only; ") + op_verb(p.op) + " runs on cuda");
      if (p.io_dtype != DType::kBF16)
        return Status::Unsupported(std::string("sm90 runs bf16 q, k, v and out; ") + dtype_name(p.io_dtype) +
                                   " runs on cuda");
      if (p.K != p.V)
        return Status::Unsupported("sm90 prefill needs K == V; got K = " + std::to_string(p.K) +
                                   ", V = " + std::to_string(p.V));
      if (p.T > (int64_t{1} << 31) - kChunkSize)
        return Status::Unsupported("sm90 addresses tokens with 32-bit tensor-map coordinates; T = " +
                                   std::to_string(p.T) + " is too large");
      return head_dims("sm90", p);
    }
    case Backend::kAuto:
      break;
  }
  return Status::Invalid("backend: unknown value " + std::to_string(static_cast<int>(backend)));
}

namespace {

// The routing rule shared by every call: an explicit request that its
// backend can serve runs there; one it cannot is an error when strict (or
// when the request itself is invalid), else falls back to the first backend
// of `order` that can; auto takes that first backend.
Route route_among(Backend requested, bool strict, const std::string& verb, bool on_device,
                  const DeviceInfo& d, const std::vector<Backend>& order,
                  const std::function<Status(Backend)>& supports) {
  Route r;
  std::string why_not;
  if (requested != Backend::kAuto) {
    Status s = supports(requested);
    if (s.ok()) {
      r.backend = requested;
      r.reason = std::string(backend_name(requested)) + " was requested";
      return r;
    }
    if (s.code() == StatusCode::kInvalidArgument || strict) {
      r.status = Status(s.code() == StatusCode::kInvalidArgument ? s.code() : StatusCode::kUnsupported,
                        std::string("backend ") + backend_name(requested) + " cannot run this " + verb +
                            (strict ? " (strict)" : "") + ": " + s.message());
      return r;
    }
    why_not = s.message();
  }
  std::string refusals;
  for (Backend c : order) {
    if (c == requested) continue;  // already refused above
    Status s = supports(c);
    if (s.ok()) {
      r.backend = c;
      if (requested != Backend::kAuto) {
        r.fell_back = true;
        r.reason = why_not;
      } else {
        r.reason = std::string(backend_name(c)) + " is the fastest backend that supports this " + verb +
                   (on_device ? " on " + device_str(d) : " on host memory");
        if (!refusals.empty()) r.reason += " (" + refusals + ")";
      }
      return r;
    }
    refusals += (refusals.empty() ? "" : "; ") + s.message();
  }
  r.status = Status::Unsupported("no backend can run this " + verb + ": " +
                                 (why_not.empty() ? "" : why_not + "; ") + refusals);
  return r;
}

}  // namespace

Route route(Backend requested, bool strict, const Problem& p, const DeviceInfo& d, const BuildInfo& b) {
  Route r = route_among(requested, strict, op_verb(p.op), p.on_device, d, auto_order(p),
                        [&](Backend c) { return backend_supports(c, p, d, b); });
  if (requested == Backend::kAuto && r.status.ok() && r.backend == Backend::kCuda && p.on_device &&
      short_sequences(p) && backend_supports(Backend::kSm90, p, d, b).ok())
    r.reason += "; sm90 serves it too, but its sequences average at most " +
                std::to_string(kSm90MaxShortTokens) + " tokens, where a cuda call costs less";
  return r;
}

Status commit_supports(Backend backend, const CommitProblem& p, const DeviceInfo& d, const BuildInfo& b) {
  switch (backend) {
    case Backend::kReference:
      return host_backend("reference", p.on_device, p.device_ordinal);
    case Backend::kCpu:
      return host_backend("cpu", p.on_device, p.device_ordinal);
    case Backend::kCuda:
      if (!b.cuda) return Status::Unsupported("cuda: this gdn was built without the cuda backend");
      return gpu_device("cuda", p.on_device, d, 8, 0);
    case Backend::kSm90:
      return Status::Unsupported("sm90 runs prefill only; commit_states runs on cuda");
    case Backend::kAuto:
      break;
  }
  return Status::Invalid("backend: unknown value " + std::to_string(static_cast<int>(backend)));
}

Route route_commit(Backend requested, bool strict, const CommitProblem& p, const DeviceInfo& d,
                   const BuildInfo& b) {
  const std::vector<Backend> order =
      p.on_device ? std::vector<Backend>{Backend::kCuda} : std::vector<Backend>{Backend::kCpu};
  return route_among(requested, strict, "commit", p.on_device, d, order,
                     [&](Backend c) { return commit_supports(c, p, d, b); });
}

}  // namespace gdn
