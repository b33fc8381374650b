// The C ABI: converts the C structs to gdn::Args and statuses to codes.
#include <string>

#include "gdn/gdn.h"
#include "gdn/gdn_c.h"

namespace gdn {
namespace {

thread_local std::string last_error;

Tensor to_cpp(const gdn_tensor_t& t) {
  Tensor r;
  r.data = t.data;
  r.dtype = static_cast<DType>(t.dtype);
  r.rank = t.rank;
  for (int i = 0; i < kMaxRank; ++i) {
    r.shape[i] = t.shape[i];
    r.stride[i] = t.stride[i];
  }
  return r;
}

Args to_cpp(const gdn_args_t& c) {
  Args a;
  a.q = to_cpp(c.q);
  a.k = to_cpp(c.k);
  a.v = to_cpp(c.v);
  a.g = to_cpp(c.g);
  a.beta = to_cpp(c.beta);
  a.a = to_cpp(c.a);
  a.b = to_cpp(c.b);
  a.a_log = to_cpp(c.a_log);
  a.dt_bias = to_cpp(c.dt_bias);
  a.cu_seqlens = to_cpp(c.cu_seqlens);
  a.cu_seqlens_host = c.cu_seqlens_host;
  a.tokens_per_seq = c.tokens_per_seq;
  a.initial_state = to_cpp(c.initial_state);
  a.state_indices = to_cpp(c.state_indices);
  a.state_indices_host = c.state_indices_host;
  a.final_state = to_cpp(c.final_state);
  a.checkpoints = to_cpp(c.checkpoints);
  a.intermediate_states = to_cpp(c.intermediate_states);
  a.out = to_cpp(c.out);
  a.scale = c.scale;
  a.l2norm_qk = c.l2norm_qk != 0;
  a.gate_mode = static_cast<GateMode>(c.gate_mode);
  a.state_layout = static_cast<StateLayout>(c.state_layout);
  a.write_final_state = c.write_final_state != 0;
  a.checkpoint_every = c.checkpoint_every;
  a.backend = static_cast<Backend>(c.backend);
  a.strict = c.strict != 0;
  a.stream = c.stream;
  a.workspace = c.workspace;
  a.workspace_bytes = c.workspace_bytes;
  a.num_threads = c.num_threads;
  return a;
}

CommitArgs to_cpp(const gdn_commit_args_t& c) {
  CommitArgs a;
  a.intermediate_states = to_cpp(c.intermediate_states);
  a.accepted = to_cpp(c.accepted);
  a.accepted_host = c.accepted_host;
  a.state_indices = to_cpp(c.state_indices);
  a.state_indices_host = c.state_indices_host;
  a.pool = to_cpp(c.pool);
  a.backend = static_cast<Backend>(c.backend);
  a.strict = c.strict != 0;
  a.stream = c.stream;
  return a;
}

gdn_status_t report(const Status& s) {
  last_error = s.message();
  return static_cast<gdn_status_t>(s.code());
}

template <typename CArgs, typename F>
gdn_status_t call_with(const CArgs* args, F&& f) {
  if (args == nullptr) return report(Status::Invalid("args: null pointer"));
  return report(f(to_cpp(*args)));
}

}  // namespace
}  // namespace gdn

extern "C" {

void gdn_args_init(gdn_args_t* args) {
  if (args == nullptr) return;
  *args = gdn_args_t{};
  args->write_final_state = 1;
}

gdn_status_t gdn_prefill(const gdn_args_t* args) {
  return gdn::call_with(args, [](const gdn::Args& a) { return gdn::prefill(a); });
}
gdn_status_t gdn_decode(const gdn_args_t* args) {
  return gdn::call_with(args, [](const gdn::Args& a) { return gdn::decode(a); });
}
gdn_status_t gdn_verify(const gdn_args_t* args) {
  return gdn::call_with(args, [](const gdn::Args& a) { return gdn::verify(a); });
}
gdn_status_t gdn_prefill_device_status(const gdn_args_t* args) {
  return gdn::call_with(args, [](const gdn::Args& a) { return gdn::prefill_device_status(a); });
}
void gdn_commit_args_init(gdn_commit_args_t* args) {
  if (args == nullptr) return;
  *args = gdn_commit_args_t{};
}
gdn_status_t gdn_commit_states(const gdn_commit_args_t* args) {
  return gdn::call_with(args, [](const gdn::CommitArgs& a) { return gdn::commit_states(a); });
}
gdn_status_t gdn_workspace_size(int32_t op, const gdn_args_t* args, size_t* bytes) {
  if (bytes == nullptr) return gdn::report(gdn::Status::Invalid("bytes: null pointer"));
  return gdn::call_with(
      args, [&](const gdn::Args& a) { return gdn::workspace_size(static_cast<gdn::Op>(op), a, bytes); });
}
gdn_status_t gdn_supports(int32_t backend, int32_t op, const gdn_args_t* args) {
  return gdn::call_with(args, [&](const gdn::Args& a) {
    return gdn::supports(static_cast<gdn::Backend>(backend), static_cast<gdn::Op>(op), a);
  });
}
const char* gdn_last_error(void) {
  return gdn::last_error.c_str();
}
const char* gdn_version(void) {
  return gdn::version();
}

}  // extern "C"
