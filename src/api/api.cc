// The public entry points: validate, choose a backend, run it.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <utility>

#include "api/backend_registry.h"
#include "api/validate.h"
#include "gdn/dispatch.h"
#include "gdn/gdn.h"
#include "gdn_build_info.h"

namespace gdn {

int64_t Tensor::numel() const {
  if (rank <= 0) return 0;
  int64_t n = 1;
  for (int i = 0; i < rank && i < kMaxRank; ++i) n *= shape[i];
  return n;
}

Tensor make_tensor(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int32_t>(shape.size() <= kMaxRank ? shape.size() : kMaxRank);
  int i = 0;
  for (int64_t s : shape) {
    if (i >= kMaxRank) break;
    t.shape[i++] = s;
  }
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.stride[d] = stride;
    stride *= t.shape[d];
  }
  return t;
}

Tensor with_strides(Tensor t, std::initializer_list<int64_t> strides) {
  int i = 0;
  for (int64_t s : strides) {
    if (i >= t.rank) break;
    t.stride[i++] = s;
  }
  return t;
}

const char* backend_name(Backend backend) {
  switch (backend) {
    case Backend::kAuto:
      return "auto";
    case Backend::kReference:
      return "reference";
    case Backend::kCpu:
      return "cpu";
    case Backend::kCuda:
      return "cuda";
    case Backend::kSm90:
      return "sm90";
  }
  return "unknown";
}

bool parse_backend(const std::string& name, Backend* backend) {
  for (Backend b : {Backend::kAuto, Backend::kReference, Backend::kCpu, Backend::kCuda, Backend::kSm90})
    if (name == backend_name(b)) {
      *backend = b;
      return true;
    }
  return false;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "fp32";
    case DType::kF16:
      return "fp16";
    case DType::kBF16:
      return "bf16";
    case DType::kI32:
      return "int32";
    case DType::kI64:
      return "int64";
    default:
      return "invalid";
  }
}

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    default:
      return 0;
  }
}

const char* op_name(Op op) {
  switch (op) {
    case Op::kPrefill:
      return "prefill";
    case Op::kDecode:
      return "decode";
    case Op::kVerify:
      return "verify";
  }
  return "unknown";
}

const char* version() {
  return GDN_VERSION_STRING " (" GDN_GIT_COMMIT ")";
}

namespace {

struct Logger {
  std::mutex mutex;
  LogHandler handler = nullptr;
  void* user = nullptr;
  std::set<std::string> seen;
};

Logger& logger() {
  static Logger l;
  return l;
}

void notice_once(const std::string& line) {
  Logger& l = logger();
  std::lock_guard<std::mutex> lock(l.mutex);
  if (!l.seen.insert(line).second) return;
  if (l.handler)
    l.handler(line.c_str(), l.user);
  else
    std::cerr << line << std::endl;
}

bool aligned16(const Tensor& t) {
  if (!t.defined() || t.numel() == 0) return true;
  if (reinterpret_cast<uintptr_t>(t.data) % 16 != 0) return false;
  for (int i = 0; i + 1 < t.rank; ++i)
    if (t.shape[i] > 1 && (t.stride[i] * static_cast<int64_t>(dtype_size(t.dtype))) % 16 != 0) return false;
  return true;
}

Problem problem_of(const Call& c, const Args& a) {
  Problem p;
  p.op = c.op;
  p.T = c.T;
  p.N = c.N;
  p.H = c.H;
  p.HV = c.HV;
  p.K = c.K;
  p.V = c.V;
  if (c.op == Op::kVerify) {
    p.max_tokens_per_seq = a.tokens_per_seq;
    if (c.host_indexing)
      for (int64_t n = 0; n < c.N; ++n)
        p.max_tokens_per_seq = std::max(p.max_tokens_per_seq, c.seq_start[n + 1] - c.seq_start[n]);
  }
  p.io_dtype = c.io_dtype;
  p.state_dtype = c.state_dtype;
  p.state_layout = a.state_layout;
  p.gate_mode = a.gate_mode;
  p.l2norm_qk = a.l2norm_qk;
  p.pool = c.pool;
  p.has_checkpoints = a.checkpoints.defined();
  p.has_intermediate_states = a.intermediate_states.defined();
  p.on_device = c.on_device;
  p.device_ordinal = c.device_ordinal;
  // Not the gates (g, beta, a, b): every kernel reads them one element at a
  // time, so one or two value heads (4- or 8-byte token strides) run too.
  const std::pair<const char*, const Tensor*> rows_copied[] = {
      {"q", &a.q},
      {"k", &a.k},
      {"v", &a.v},
      {"out", &a.out},
      {"initial_state", &a.initial_state},
      {"final_state", &a.final_state},
      {"checkpoints", &a.checkpoints},
      {"intermediate_states", &a.intermediate_states}};
  for (const auto& [name, t] : rows_copied)
    if (!aligned16(*t)) {
      p.aligned16 = false;
      p.unaligned = name;
      break;
    }
  return p;
}

// The caller's backend, after the environment override of kAuto
// (commit_states, part of the decode path, follows GDN_DECODE_BACKEND).
Status requested_backend(Op op, Backend asked, Backend* out) {
  *out = asked;
  if (asked != Backend::kAuto) return Status::Ok();
  const char* var = op == Op::kPrefill ? "GDN_PREFILL_BACKEND" : "GDN_DECODE_BACKEND";
  const char* env = std::getenv(var);
  if (env == nullptr || *env == '\0') return Status::Ok();
  if (!parse_backend(env, out))
    return Status::Invalid(std::string(var) + ": unknown backend '" + env +
                           "' (expected auto, reference, cpu, cuda or sm90)");
  return Status::Ok();
}

Status plan(Op op, const Args& a, Call* call, Route* r, Backend* requested) {
  if (Status s = validate(op, a, call); !s.ok()) return s;
  if (Status s = requested_backend(op, a.backend, requested); !s.ok()) return s;
  const Problem p = problem_of(*call, a);
  const DeviceInfo d = call->on_device ? device_info(call->device_ordinal) : DeviceInfo{};
  *r = route(*requested, a.strict, p, d, build_info());
  return r->status;
}

template <typename F>
Status guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kInternal, "out of host memory");
  } catch (const std::exception& e) {
    return Status(StatusCode::kInternal, std::string("internal error: ") + e.what());
  } catch (...) {
    return Status(StatusCode::kInternal, "internal error");
  }
}

}  // namespace

// The scratch-owning side of Workspace::run.
class WorkspaceAccess {
 public:
  static Status reserve(Workspace& w, size_t need, int device, Args* args) {
    if (Status s = w.reserve(need, device); !s.ok()) return s;
    args->workspace = w.data_;
    args->workspace_bytes = w.bytes_;
    return Status::Ok();
  }
};

namespace {

// Validates and routes (op, args) once, then, with `workspace`, gives the call
// the device scratch its backend needs before running it.
Status run_planned(Op op, const Args& args, Workspace* workspace) {
  return guarded([&] {
    Call call;
    Route r;
    Backend requested;
    if (Status s = plan(op, args, &call, &r, &requested); !s.ok()) return s;
    if (r.fell_back)
      notice_once(std::string("gdn: ") + op_name(op) + " asked for backend '" + backend_name(requested) +
                  "', running '" + backend_name(r.backend) + "' instead: " + r.reason);
    if (workspace == nullptr) return run_backend(r.backend, call, args);
    const size_t need = backend_workspace_size(r.backend, call, args);
    if (need == 0) return run_backend(r.backend, call, args);
    Args with = args;
    if (Status s = WorkspaceAccess::reserve(*workspace, need, call.device_ordinal, &with); !s.ok()) return s;
    return run_backend(r.backend, call, with);
  });
}

}  // namespace

Status run(Op op, const Args& args) {
  return run_planned(op, args, nullptr);
}

Status Workspace::run(Op op, const Args& args) {
  return run_planned(op, args, this);
}

Status prefill_device_status(const Args& args) {
  return guarded([&] {
    Call call;
    Route r;
    Backend requested;
    // Routed as the prefill was, so the result is read where that backend left it.
    if (Status s = plan(Op::kPrefill, args, &call, &r, &requested); !s.ok()) return s;
    return backend_prefill_device_status(r.backend, call, args);
  });
}

Status Workspace::prefill_device_status(const Args& args) {
  Args with = args;
  with.workspace = data_;
  with.workspace_bytes = bytes_;
  return gdn::prefill_device_status(with);
}

Status Workspace::prepare(Op op, Args* args) {
  if (args == nullptr) return Status::Invalid("args: null pointer");
  return guarded([&] {
    Call call;
    Route r;
    Backend requested;
    if (Status s = plan(op, *args, &call, &r, &requested); !s.ok()) return s;
    const size_t need = backend_workspace_size(r.backend, call, *args);
    return need == 0 ? Status::Ok() : WorkspaceAccess::reserve(*this, need, call.device_ordinal, args);
  });
}

Status prefill(const Args& args) {
  return run(Op::kPrefill, args);
}
Status decode(const Args& args) {
  return run(Op::kDecode, args);
}
Status verify(const Args& args) {
  return run(Op::kVerify, args);
}

Status commit_states(const CommitArgs& args) {
  return guarded([&] {
    CommitCall call;
    if (Status s = validate_commit(args, &call); !s.ok()) return s;
    Backend requested;
    if (Status s = requested_backend(Op::kDecode, args.backend, &requested); !s.ok()) return s;
    const DeviceInfo d = call.on_device ? device_info(call.device_ordinal) : DeviceInfo{};
    const Route r = route_commit(requested, args.strict, CommitProblem{call.on_device, call.device_ordinal},
                                 d, build_info());
    if (!r.status.ok()) return r.status;
    if (r.fell_back)
      notice_once(std::string("gdn: commit asked for backend '") + backend_name(requested) + "', running '" +
                  backend_name(r.backend) + "' instead: " + r.reason);
    return run_commit_backend(r.backend, call, args);
  });
}

Status workspace_size(Op op, const Args& args, size_t* bytes) {
  return guarded([&] {
    *bytes = 0;
    Call call;
    Route r;
    Backend requested;
    if (Status s = plan(op, args, &call, &r, &requested); !s.ok()) return s;
    *bytes = backend_workspace_size(r.backend, call, args);
    return Status::Ok();
  });
}

Status choose_backend(Op op, const Args& args, Choice* choice) {
  return guarded([&] {
    Call call;
    Route r;
    Backend requested;
    if (Status s = plan(op, args, &call, &r, &requested); !s.ok()) return s;
    choice->backend = r.backend;
    choice->fell_back = r.fell_back;
    choice->reason = r.reason;
    return Status::Ok();
  });
}

Status supports(Backend backend, Op op, const Args& args) {
  return guarded([&] {
    Call call;
    if (Status s = validate(op, args, &call); !s.ok()) return s;
    const Problem p = problem_of(call, args);
    const DeviceInfo d = call.on_device ? device_info(call.device_ordinal) : DeviceInfo{};
    if (backend == Backend::kAuto) {
      Route r = route(Backend::kAuto, false, p, d, build_info());
      return r.status;
    }
    return backend_supports(backend, p, d, build_info());
  });
}

Problem describe(Op op, const Args& args) {
  Call call;
  if (validate(op, args, &call).ok()) return problem_of(call, args);
  Problem p;
  p.op = op;
  if (args.q.rank == 3) {
    p.T = args.q.shape[0];
    p.H = args.q.shape[1];
    p.K = args.q.shape[2];
  }
  if (args.v.rank == 3) {
    p.HV = args.v.shape[1];
    p.V = args.v.shape[2];
  }
  return p;
}

void set_log_handler(LogHandler handler, void* user) {
  Logger& l = logger();
  std::lock_guard<std::mutex> lock(l.mutex);
  l.handler = handler;
  l.user = user;
}

}  // namespace gdn
