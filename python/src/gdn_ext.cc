// gdn._gdn: the C++ API for Python. Takes arrays without copying: through
// the DLPack C exchange API where the array's type offers it (PyTorch 2.10
// and later), PyTorch tensors through their attributes otherwise, and any
// other DLPack array (NumPy on the CPU, CuPy on the GPU) through a capsule.
// A rejected call becomes a Python exception carrying the library's message.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "gdn/dispatch.h"
#include "gdn/gdn.h"

namespace nb = nanobind;

namespace {

using Array = nb::ndarray<nb::ro>;

// gdn's dtype for a DLPack dtype; kInvalid for the others.
gdn::DType dtype_code(const nb::dlpack::dtype& d) {
  const auto code = static_cast<nb::dlpack::dtype_code>(d.code);
  if (d.lanes == 1) {
    if (code == nb::dlpack::dtype_code::Float && d.bits == 32) return gdn::DType::kF32;
    if (code == nb::dlpack::dtype_code::Float && d.bits == 16) return gdn::DType::kF16;
    if (code == nb::dlpack::dtype_code::Bfloat && d.bits == 16) return gdn::DType::kBF16;
    if (code == nb::dlpack::dtype_code::Int && d.bits == 32) return gdn::DType::kI32;
    if (code == nb::dlpack::dtype_code::Int && d.bits == 64) return gdn::DType::kI64;
  }
  return gdn::DType::kInvalid;
}

gdn::DType dtype_of(const nb::dlpack::dtype& d, const char* name) {
  const gdn::DType t = dtype_code(d);
  if (t != gdn::DType::kInvalid) return t;
  throw nb::type_error(
      (std::string(name) + ": dtype must be float32, float16, bfloat16, int32 or int64").c_str());
}

// Where an array lives (DLPack device type and id).
struct Where {
  bool cuda = false;
  int device = 0;
};

// PyTorch without the DLPack C exchange API, read through its Python
// attributes (the extension does not link libtorch): a tensor's pointer,
// dtype, shape, strides and device cost a few attribute reads, against
// ~2.5 us for a DLPack capsule. Set up the first time a call finds torch
// imported; until then every array takes the other paths.
struct Torch {
  PyTypeObject* tensor = nullptr;
  PyObject* dtypes[5] = {};  // float32, float16, bfloat16, int32, int64: gdn::DType kF32 + i
  PyObject *dtype, *shape, *stride, *data_ptr, *is_cuda, *is_cpu, *get_device;  // interned names
};

const Torch* torch_api() {
  static Torch t;
  if (t.tensor != nullptr) return &t;
  PyObject* mod = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed; nullptr: not imported
  if (mod == nullptr) return nullptr;
  static const char* const kDTypes[5] = {"float32", "float16", "bfloat16", "int32", "int64"};
  Torch u;
  PyObject* tensor = PyObject_GetAttrString(mod, "Tensor");
  bool ok = tensor != nullptr && PyType_Check(tensor);
  for (int i = 0; ok && i < 5; ++i) ok = (u.dtypes[i] = PyObject_GetAttrString(mod, kDTypes[i])) != nullptr;
  if (!ok) {  // torch half imported (or not the real one): DLPack for now
    PyErr_Clear();
    Py_XDECREF(tensor);
    for (PyObject* d : u.dtypes) Py_XDECREF(d);
    return nullptr;
  }
  u.dtype = PyUnicode_InternFromString("dtype");
  u.shape = PyUnicode_InternFromString("shape");
  u.stride = PyUnicode_InternFromString("stride");
  u.data_ptr = PyUnicode_InternFromString("data_ptr");
  u.is_cuda = PyUnicode_InternFromString("is_cuda");
  u.is_cpu = PyUnicode_InternFromString("is_cpu");
  u.get_device = PyUnicode_InternFromString("get_device");
  u.tensor = reinterpret_cast<PyTypeObject*>(tensor);  // references kept for the life of the process
  t = u;
  return &t;
}

nb::object checked(PyObject* o) {
  if (o == nullptr) throw nb::python_error();
  return nb::steal(o);
}

// A torch.Tensor (or subclass) of a dtype gdn takes, on the CPU or a CUDA
// device, as a gdn::Tensor; false for anything else (which then takes the
// DLPack path and its messages).
bool tensor_of_torch(const Torch& api, PyObject* o, const char* name, gdn::Tensor* t, Where* where) {
  const nb::object dtype = checked(PyObject_GetAttr(o, api.dtype));
  int code = 0;
  while (code < 5 && dtype.ptr() != api.dtypes[code]) ++code;
  if (code == 5) return false;
  const nb::object cuda = checked(PyObject_GetAttr(o, api.is_cuda));
  int device = 0;
  if (cuda.ptr() == Py_True) {
    if (where != nullptr) device = nb::cast<int>(checked(PyObject_CallMethodNoArgs(o, api.get_device)));
  } else if (checked(PyObject_GetAttr(o, api.is_cpu)).ptr() != Py_True) {
    return false;
  }
  const nb::object shape = checked(PyObject_GetAttr(o, api.shape));
  const nb::object stride = checked(PyObject_CallMethodNoArgs(o, api.stride));
  if (!PyTuple_Check(shape.ptr()) || !PyTuple_Check(stride.ptr()) ||
      PyTuple_GET_SIZE(shape.ptr()) != PyTuple_GET_SIZE(stride.ptr()))
    return false;
  const Py_ssize_t rank = PyTuple_GET_SIZE(shape.ptr());
  if (rank > gdn::kMaxRank) throw nb::value_error((std::string(name) + ": at most 5 dimensions").c_str());
  for (Py_ssize_t i = 0; i < rank; ++i) {
    t->shape[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape.ptr(), i));
    t->stride[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(stride.ptr(), i));
  }
  if (PyErr_Occurred()) throw nb::python_error();
  t->data = PyLong_AsVoidPtr(checked(PyObject_CallMethodNoArgs(o, api.data_ptr)).ptr());
  if (PyErr_Occurred()) throw nb::python_error();
  t->dtype = static_cast<gdn::DType>(static_cast<int>(gdn::DType::kF32) + code);
  t->rank = static_cast<int32_t>(rank);
  if (where != nullptr) {
    where->cuda = cuda.ptr() == Py_True;
    where->device = device;
  }
  return true;
}

// The DLPack C exchange API (dlpack.h, DLPack 1.2 and later): a table of C
// functions a framework sets on its tensor type as the capsule
// `__dlpack_c_exchange_api__` (PyTorch 2.10 and later). gdn takes two of
// them: a tensor's DLTensor, filled in place with no capsule and no Python
// call (tens of ns), and the framework's current stream on a device.
struct ExchangeApi {
  struct {
    uint32_t major, minor;
  } version;
  const void* prev_api;
  const void* managed_tensor_allocator;
  const void* managed_tensor_from_py_object_no_sync;
  const void* managed_tensor_to_py_object_no_sync;
  int (*dltensor_from_py_object_no_sync)(void* py_object, nb::dlpack::dltensor* out);
  int (*current_work_stream)(int32_t device_type, int32_t device_id, void** out_stream);
};

// A type's exchange API, or nullptr; looked up once per type (the few array
// types a process passes; each kept alive so that its address stays its).
const ExchangeApi* exchange_api(PyTypeObject* type) {
  static std::vector<std::pair<PyTypeObject*, const ExchangeApi*>> seen;
  for (const auto& [t, api] : seen)
    if (t == type) return api;
  const ExchangeApi* api = nullptr;
  PyObject* capsule = PyObject_GetAttrString(reinterpret_cast<PyObject*>(type), "__dlpack_c_exchange_api__");
  if (capsule != nullptr && PyCapsule_IsValid(capsule, "dlpack_exchange_api")) {
    const auto* a = static_cast<const ExchangeApi*>(PyCapsule_GetPointer(capsule, "dlpack_exchange_api"));
    if (a != nullptr && a->version.major == 1 && a->dltensor_from_py_object_no_sync != nullptr &&
        a->current_work_stream != nullptr)
      api = a;  // the table lives as long as the process (the protocol's rule)
  }
  Py_XDECREF(capsule);
  PyErr_Clear();
  if (seen.size() < 16) {
    Py_INCREF(type);
    seen.emplace_back(type, api);
  }
  return api;
}

// An array through its type's exchange API, on the CPU or a CUDA device and
// of a dtype gdn takes; false for anything else (which then takes the
// slower paths and their messages).
bool tensor_of_exchange(const ExchangeApi& api, PyObject* o, gdn::Tensor* t, Where* where) {
  nb::dlpack::dltensor d;
  if (api.dltensor_from_py_object_no_sync(o, &d) != 0) {
    PyErr_Clear();
    return false;
  }
  const bool cuda = d.device.device_type == nb::device::cuda::value;
  if (!cuda && d.device.device_type != nb::device::cpu::value) return false;
  if (d.ndim < 0 || d.ndim > gdn::kMaxRank) return false;
  t->dtype = dtype_code(d.dtype);
  if (t->dtype == gdn::DType::kInvalid) return false;
  t->data = static_cast<char*>(d.data) + d.byte_offset;
  t->rank = d.ndim;
  int64_t compact = 1;  // strides of a row-major array, where none are given
  for (int i = d.ndim - 1; i >= 0; --i) {
    t->shape[i] = d.shape[i];
    t->stride[i] = d.strides != nullptr ? d.strides[i] : compact;
    compact *= d.shape[i];
  }
  if (where != nullptr) {
    where->cuda = cuda;
    where->device = d.device.device_id;
  }
  return true;
}

// An optional array argument as a gdn::Tensor (rank 0 when None): through
// its type's DLPack exchange API, a PyTorch tensor through its attributes
// (PyTorch without that API), or any DLPack array. `where`, when given,
// receives the array's device.
gdn::Tensor tensor_of(const nb::handle& obj, const char* name, Where* where = nullptr) {
  gdn::Tensor t;
  if (obj.is_none()) return t;
  if (const ExchangeApi* api = exchange_api(Py_TYPE(obj.ptr())); api != nullptr)
    if (tensor_of_exchange(*api, obj.ptr(), &t, where)) return t;
  if (const Torch* api = torch_api(); api != nullptr && PyObject_TypeCheck(obj.ptr(), api->tensor))
    if (tensor_of_torch(*api, obj.ptr(), name, &t, where)) return t;
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

std::string shape_str(const gdn::Tensor& t) {  // as Python prints tuple(x.shape)
  std::string s = "(";
  for (int i = 0; i < t.rank; ++i) s += (i ? ", " : "") + std::to_string(t.shape[i]);
  return s + (t.rank == 1 ? ",)" : ")");
}

// A token-indexed argument of rank `rank`, or of rank + 1 with a batch
// dimension first, folded into the tokens ([B, T, ...] -> [B * T, ...]).
// The fold is a view where the strides allow one (always, for the arrays
// the package allocates); otherwise the array's own reshape makes the copy,
// which `keep` holds for the call.
gdn::Tensor tokens_of(const nb::handle& obj, const char* name, int rank, nb::object* keep,
                      Where* where = nullptr) {
  gdn::Tensor t = tensor_of(obj, name, where);
  if (obj.is_none() || t.rank == rank) return t;
  if (t.rank != rank + 1)
    throw nb::value_error((std::string(name) + ": expected " + std::to_string(rank) + " or " +
                           std::to_string(rank + 1) + " dimensions, got shape " + shape_str(t))
                              .c_str());
  const int64_t b = t.shape[0], n = t.shape[1];
  int64_t stride;
  if (b == 1 || b * n == 0 || t.stride[0] == n * t.stride[1]) {
    stride = t.stride[1];
  } else if (n == 1) {
    stride = t.stride[0];
  } else {
    nb::list dims;
    dims.append(b * n);
    for (int i = 2; i < t.rank; ++i) dims.append(t.shape[i]);
    *keep = obj.attr("reshape")(dims);
    return tensor_of(*keep, name, where);
  }
  t.shape[0] = b * n;
  t.stride[0] = stride;
  for (int i = 1; i < rank; ++i) {
    t.shape[i] = t.shape[i + 1];
    t.stride[i] = t.stride[i + 1];
  }
  t.shape[rank] = t.stride[rank] = 0;
  t.rank = rank;
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

// The stream a call runs on: the caller's (a cudaStream_t as an int), or for
// None the current stream of q's framework on q's device, asked through the
// DLPack exchange API (no stream for host data).
void* stream_of(nb::handle stream, nb::handle q, const Where& where) {
  if (!stream.is_none()) return reinterpret_cast<void*>(nb::cast<uintptr_t>(stream));
  if (!where.cuda) return nullptr;
  const ExchangeApi* api = exchange_api(Py_TYPE(q.ptr()));
  if (const Torch* torch = torch_api();
      api == nullptr && torch != nullptr && PyObject_TypeCheck(q.ptr(), torch->tensor))
    api = exchange_api(torch->tensor);  // a subclass that hides the API: PyTorch's stream all the same
  if (api == nullptr)
    throw nb::type_error("stream: None (the framework's current stream) needs the DLPack C exchange API");
  void* s = nullptr;
  if (api->current_work_stream(nb::device::cuda::value, where.device, &s) != 0) throw nb::python_error();
  return s;
}

// A flag as Python's bool() reads it (the package passes its callers' values).
bool truth(nb::handle flag) {
  const int t = PyObject_IsTrue(flag.ptr());
  if (t < 0) throw nb::python_error();
  return t != 0;
}

// One call of op. The token arguments (q, k, v, the gates, out) may carry a
// leading batch dimension (see tokens_of); with A_log or dt_bias given, g
// and beta are the raw gate inputs a and b. Tensors are positional (the
// package passes None for those not given): no dict to build and search.
void run(int op_code, nb::handle q, nb::handle k, nb::handle v, nb::handle g, nb::handle beta,
         nb::handle a_log, nb::handle dt_bias, nb::handle cu_seqlens, nb::handle initial_state,
         nb::handle state_indices, nb::handle final_state, nb::handle checkpoints,
         nb::handle intermediate_states, nb::handle out, float scale, nb::handle l2norm, nb::handle layout_vk,
         nb::handle write_final, int64_t checkpoint_every, int64_t tokens_per_seq, const std::string& backend,
         nb::handle strict, nb::handle stream, nb::handle cu_seqlens_host, nb::handle state_indices_host) {
  const gdn::Op op = static_cast<gdn::Op>(op_code);
  gdn::Args a;
  nb::object keep[6];  // copies made by reshape, alive until the call returns
  Where where;         // q's device says where the call runs; only GPU calls need scratch
  a.q = tokens_of(q, "q", 3, &keep[0], &where);
  a.k = tokens_of(k, "k", 3, &keep[1]);
  a.v = tokens_of(v, "v", 3, &keep[2]);
  const bool fused = !a_log.is_none() || !dt_bias.is_none();
  (fused ? a.a : a.g) = tokens_of(g, "g", 2, &keep[3]);
  (fused ? a.b : a.beta) = tokens_of(beta, "beta", 2, &keep[4]);
  a.a_log = tensor_of(a_log, "A_log");
  a.dt_bias = tensor_of(dt_bias, "dt_bias");
  a.cu_seqlens = tensor_of(cu_seqlens, "cu_seqlens");
  a.initial_state = tensor_of(initial_state, "initial_state");
  a.state_indices = tensor_of(state_indices, "state_indices");
  a.final_state = tensor_of(final_state, "final_state");
  a.checkpoints = tensor_of(checkpoints, "checkpoints");
  a.intermediate_states = tensor_of(intermediate_states, "intermediate_states");
  a.out = tokens_of(out, "out", 3, &keep[5]);
  a.cu_seqlens_host = host_data(cu_seqlens_host, "cu_seqlens_host");
  a.state_indices_host = host_data(state_indices_host, "state_indices_host");
  a.scale = scale;
  a.l2norm_qk = truth(l2norm);
  a.gate_mode = fused ? gdn::GateMode::kFused : gdn::GateMode::kLogSpace;
  a.state_layout = truth(layout_vk) ? gdn::StateLayout::kVK : gdn::StateLayout::kKV;
  a.write_final_state = truth(write_final);
  a.checkpoint_every = checkpoint_every;
  a.tokens_per_seq = tokens_per_seq;
  a.backend = backend_of(backend);
  a.strict = truth(strict);
  a.stream = stream_of(stream, q, where);
  gdn::Status s;
  {
    nb::gil_scoped_release release;
    s = where.cuda ? workspace_for(where.device).run(op, a) : gdn::run(op, a);
  }
  if (!s.ok()) raise(s);
}

void commit(nb::handle intermediate_states, nb::handle accepted, nb::handle pool, nb::handle state_indices,
            const std::string& backend, nb::handle strict, nb::handle stream, nb::handle accepted_host,
            nb::handle state_indices_host) {
  gdn::CommitArgs a;
  a.intermediate_states = tensor_of(intermediate_states, "intermediate_states");
  a.accepted = tensor_of(accepted, "accepted");
  a.state_indices = tensor_of(state_indices, "state_indices");
  Where where;  // the pool's device: where the call runs
  a.pool = tensor_of(pool, "pool", &where);
  a.accepted_host = host_data(accepted_host, "accepted_host");
  a.state_indices_host = host_data(state_indices_host, "state_indices_host");
  a.backend = backend_of(backend);
  a.strict = truth(strict);
  a.stream = stream_of(stream, pool, where);
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
  m.def("run", &run, nb::arg("op"), nb::arg("q").none(), nb::arg("k").none(), nb::arg("v").none(),
        nb::arg("g").none(), nb::arg("beta").none(), nb::arg("A_log").none(), nb::arg("dt_bias").none(),
        nb::arg("cu_seqlens").none(), nb::arg("initial_state").none(), nb::arg("state_indices").none(),
        nb::arg("final_state").none(), nb::arg("checkpoints").none(), nb::arg("intermediate_states").none(),
        nb::arg("out").none(), nb::arg("scale"), nb::arg("l2norm").none(), nb::arg("layout_vk").none(),
        nb::arg("write_final").none(), nb::arg("checkpoint_every"), nb::arg("tokens_per_seq"),
        nb::arg("backend"), nb::arg("strict").none(), nb::arg("stream").none(),
        nb::arg("cu_seqlens_host").none(), nb::arg("state_indices_host").none(),
        "Runs op (0 prefill, 1 decode, 2 verify) on the given arrays (None: not given); with A_log or "
        "dt_bias, g and beta are the raw gates a and b. Raises with the library's message.");
  m.def("commit", &commit, nb::arg("intermediate_states").none(), nb::arg("accepted").none(),
        nb::arg("pool").none(), nb::arg("state_indices").none(), nb::arg("backend"), nb::arg("strict").none(),
        nb::arg("stream").none(), nb::arg("accepted_host").none(), nb::arg("state_indices_host").none(),
        "Runs commit_states on the given arrays; raises with the library's message.");
  m.def(
      "has_exchange_api",
      [](nb::handle type) {
        return PyType_Check(type.ptr()) &&
               exchange_api(reinterpret_cast<PyTypeObject*>(type.ptr())) != nullptr;
      },
      nb::arg("type"),
      "Whether the extension reads arrays of this type through the DLPack C exchange API (and then, for "
      "stream=None, asks it for the current stream).");
  m.def("version", [] { return std::string(gdn::version()); });
  m.def("device_count", [] { return gdn::device_count(); });
}
