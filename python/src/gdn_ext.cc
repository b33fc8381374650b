// gdn._gdn: the C++ API for Python. Takes any DLPack array (NumPy on the
// CPU; PyTorch or CuPy on the GPU) without copying, and turns a rejected
// call into a Python exception carrying the library's message.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <map>
#include <mutex>
#include <string>

#include "gdn/dispatch.h"
#include "gdn/gdn.h"

namespace nb = nanobind;

namespace {

using Array = nb::ndarray<nb::ro>;

gdn::DType dtype_of(const nb::dlpack::dtype& d, const char* name) {
  const auto code = static_cast<nb::dlpack::dtype_code>(d.code);
  if (d.lanes == 1) {
    if (code == nb::dlpack::dtype_code::Float && d.bits == 32) return gdn::DType::kF32;
    if (code == nb::dlpack::dtype_code::Float && d.bits == 16) return gdn::DType::kF16;
    if (code == nb::dlpack::dtype_code::Bfloat && d.bits == 16) return gdn::DType::kBF16;
    if (code == nb::dlpack::dtype_code::Int && d.bits == 32) return gdn::DType::kI32;
    if (code == nb::dlpack::dtype_code::Int && d.bits == 64) return gdn::DType::kI64;
  }
  throw nb::type_error(
      (std::string(name) + ": dtype must be float32, float16, bfloat16, int32 or int64").c_str());
}

// Where an array lives (DLPack device type and id).
struct Where {
  bool cuda = false;
  int device = 0;
};

// A raw descriptor (data pointer, gdn::DType value, shape, strides in
// elements, DLPack device type, device id): what the gdn package passes for
// PyTorch tensors, skipping the DLPack capsule (~2.5 us per tensor).
gdn::Tensor tensor_of_raw(const nb::tuple& d, const char* name, Where* where) {
  auto bad = [&](const char* what) {
    return nb::type_error((std::string(name) + ": malformed raw tensor descriptor (" + what + ")").c_str());
  };
  if (d.size() != 6) throw bad("expected 6 fields");
  gdn::Tensor t;
  t.data = reinterpret_cast<void*>(nb::cast<uintptr_t>(d[0]));
  const int dtype = nb::cast<int>(d[1]);
  if (dtype < static_cast<int>(gdn::DType::kF32) || dtype > static_cast<int>(gdn::DType::kI64))
    throw bad("dtype");
  t.dtype = static_cast<gdn::DType>(dtype);
  const nb::tuple shape = nb::cast<nb::tuple>(d[2]), stride = nb::cast<nb::tuple>(d[3]);
  if (shape.size() != stride.size()) throw bad("shape and strides differ in length");
  if (shape.size() > static_cast<size_t>(gdn::kMaxRank))
    throw nb::value_error((std::string(name) + ": at most 5 dimensions").c_str());
  t.rank = static_cast<int32_t>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) {
    t.shape[i] = nb::cast<int64_t>(shape[i]);
    t.stride[i] = nb::cast<int64_t>(stride[i]);
  }
  if (where != nullptr) {
    where->cuda = nb::cast<int>(d[4]) == nb::device::cuda::value;
    where->device = nb::cast<int>(d[5]);
  }
  return t;
}

// An optional array argument as a gdn::Tensor (rank 0 when None): any
// DLPack array, or a raw descriptor tuple. `where`, when given, receives the
// array's device.
gdn::Tensor tensor_of(const nb::handle& obj, const char* name, Where* where = nullptr) {
  gdn::Tensor t;
  if (obj.is_none()) return t;
  if (nb::isinstance<nb::tuple>(obj)) return tensor_of_raw(nb::borrow<nb::tuple>(obj), name, where);
  Array a;
  if (!nb::try_cast(obj, a))
    throw nb::type_error((std::string(name) + ": expected an array (NumPy, PyTorch, CuPy, ...)").c_str());
  if (a.ndim() > static_cast<size_t>(gdn::kMaxRank))
    throw nb::value_error((std::string(name) + ": at most 5 dimensions").c_str());
  t.data = const_cast<void*>(a.data());
  t.dtype = dtype_of(a.dtype(), name);
  t.rank = static_cast<int32_t>(a.ndim());
  for (size_t i = 0; i < a.ndim(); ++i) {
    t.shape[i] = static_cast<int64_t>(a.shape(i));
    t.stride[i] = static_cast<int64_t>(a.stride(i));
  }
  if (where != nullptr) {
    where->cuda = a.device_type() == nb::device::cuda::value;
    where->device = a.device_id();
  }
  return t;
}

const void* host_data(const nb::handle& obj, const char* name) {
  if (obj.is_none()) return nullptr;
  Array a;
  if (!nb::try_cast(obj, a) || a.device_type() != nb::device::cpu::value)
    throw nb::type_error((std::string(name) + ": expected a host (CPU) array").c_str());
  return a.data();
}

// Device scratch, one per GPU, kept for the life of the process.
gdn::Workspace& workspace_for(int device) {
  static std::mutex mutex;
  static std::map<int, gdn::Workspace> pool;
  std::lock_guard<std::mutex> lock(mutex);
  return pool[device];
}

void raise(const gdn::Status& s) {
  switch (s.code()) {
    case gdn::StatusCode::kInvalidArgument:
      throw nb::value_error(s.message().c_str());
    case gdn::StatusCode::kUnsupported:
      throw nb::builtin_exception(nb::exception_type::runtime_error, ("unsupported: " + s.message()).c_str());
    default:
      throw std::runtime_error(s.message());
  }
}

gdn::Backend backend_of(const std::string& name) {
  gdn::Backend b;
  if (!gdn::parse_backend(name, &b))
    throw nb::value_error(
        ("backend: unknown backend '" + name + "' (auto, reference, cpu, cuda, sm90)").c_str());
  return b;
}

void run(int op_code, const nb::dict& t, float scale, bool l2norm, bool fused, bool layout_vk,
         bool write_final, int64_t checkpoint_every, int64_t tokens_per_seq, const std::string& backend,
         bool strict, uintptr_t stream, const nb::object& cu_seqlens_host,
         const nb::object& state_indices_host) {
  const gdn::Op op = static_cast<gdn::Op>(op_code);
  gdn::Args a;
  auto get = [&](const char* key) -> nb::handle { return t.contains(key) ? t[key] : nb::none(); };
  Where where;  // q's device says where the call runs; only GPU calls need scratch
  a.q = tensor_of(get("q"), "q", &where);
  a.k = tensor_of(get("k"), "k");
  a.v = tensor_of(get("v"), "v");
  a.g = tensor_of(get("g"), "g");
  a.beta = tensor_of(get("beta"), "beta");
  a.a = tensor_of(get("a"), "a");
  a.b = tensor_of(get("b"), "b");
  a.a_log = tensor_of(get("A_log"), "A_log");
  a.dt_bias = tensor_of(get("dt_bias"), "dt_bias");
  a.cu_seqlens = tensor_of(get("cu_seqlens"), "cu_seqlens");
  a.initial_state = tensor_of(get("initial_state"), "initial_state");
  a.state_indices = tensor_of(get("state_indices"), "state_indices");
  a.final_state = tensor_of(get("final_state"), "final_state");
  a.checkpoints = tensor_of(get("checkpoints"), "checkpoints");
  a.intermediate_states = tensor_of(get("intermediate_states"), "intermediate_states");
  a.out = tensor_of(get("out"), "out");
  a.cu_seqlens_host = host_data(cu_seqlens_host, "cu_seqlens_host");
  a.state_indices_host = host_data(state_indices_host, "state_indices_host");
  a.scale = scale;
  a.l2norm_qk = l2norm;
  a.gate_mode = fused ? gdn::GateMode::kFused : gdn::GateMode::kLogSpace;
  a.state_layout = layout_vk ? gdn::StateLayout::kVK : gdn::StateLayout::kKV;
  a.write_final_state = write_final;
  a.checkpoint_every = checkpoint_every;
  a.tokens_per_seq = tokens_per_seq;
  a.backend = backend_of(backend);
  a.strict = strict;
  a.stream = reinterpret_cast<void*>(stream);
  gdn::Status s;
  {
    nb::gil_scoped_release release;
    s = where.cuda ? workspace_for(where.device).run(op, a) : gdn::run(op, a);
  }
  if (!s.ok()) raise(s);
}

void commit(const nb::dict& t, const std::string& backend, bool strict, uintptr_t stream,
            const nb::object& accepted_host, const nb::object& state_indices_host) {
  gdn::CommitArgs a;
  auto get = [&](const char* key) -> nb::handle { return t.contains(key) ? t[key] : nb::none(); };
  a.intermediate_states = tensor_of(get("intermediate_states"), "intermediate_states");
  a.accepted = tensor_of(get("accepted"), "accepted");
  a.state_indices = tensor_of(get("state_indices"), "state_indices");
  a.pool = tensor_of(get("pool"), "pool");
  a.accepted_host = host_data(accepted_host, "accepted_host");
  a.state_indices_host = host_data(state_indices_host, "state_indices_host");
  a.backend = backend_of(backend);
  a.strict = strict;
  a.stream = reinterpret_cast<void*>(stream);
  gdn::Status s;
  {
    nb::gil_scoped_release release;
    s = gdn::commit_states(a);
  }
  if (!s.ok()) raise(s);
}

}  // namespace

NB_MODULE(_gdn, m) {
  m.doc() = "gdn: Gated DeltaNet kernels (the C++ library; use the functions of the gdn package)";
  m.def("run", &run, nb::arg("op"), nb::arg("tensors"), nb::arg("scale"), nb::arg("l2norm"), nb::arg("fused"),
        nb::arg("layout_vk"), nb::arg("write_final"), nb::arg("checkpoint_every"), nb::arg("tokens_per_seq"),
        nb::arg("backend"), nb::arg("strict"), nb::arg("stream"), nb::arg("cu_seqlens_host").none(),
        nb::arg("state_indices_host").none(),
        "Runs op (0 prefill, 1 decode, 2 verify) on the given arrays; raises with the library's message.");
  m.def("commit", &commit, nb::arg("tensors"), nb::arg("backend"), nb::arg("strict"), nb::arg("stream"),
        nb::arg("accepted_host").none(), nb::arg("state_indices_host").none(),
        "Runs commit_states on the given arrays; raises with the library's message.");
  m.def("dtype_codes", [] {
    nb::dict d;
    for (gdn::DType t :
         {gdn::DType::kF32, gdn::DType::kF16, gdn::DType::kBF16, gdn::DType::kI32, gdn::DType::kI64})
      d[gdn::dtype_name(t)] = static_cast<int>(t);
    return d;
  });
  m.def("version", [] { return std::string(gdn::version()); });
  m.def("device_count", [] { return gdn::device_count(); });
}
