// gdn: Gated DeltaNet linear-attention kernels for LLM inference.
//
// Per value head, per sequence, tokens t = 1..L, state S[K, V] (fp32):
//   q_t, k_t <- l2norm(q_t), l2norm(k_t)      if l2norm_qk
//   S   <- exp(g_t) S                          g_t <= 0, natural-log decay
//   u   <- beta_t (v_t - S^T k_t)              delta-rule correction
//   S   <- S + k_t u^T
//   o_t  = S^T (scale q_t)                     scale defaults to 1/sqrt(K)
//
// Three entry points run that recurrence: `prefill` (packed variable-length
// batch, chunked), `decode` (one token per sequence) and `verify` (up to 16
// draft tokens per sequence, optionally keeping every intermediate state);
// `commit_states` then copies each sequence's accepted intermediate state
// into its pool row.
// Every call validates its arguments before anything is written; a rejected
// call returns a Status naming the argument and the rule and leaves `out` and
// every state buffer byte-for-byte unchanged. No exception crosses the API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

namespace gdn {

enum class DType : int32_t { kInvalid = 0, kF32, kF16, kBF16, kI32, kI64 };
enum class Backend : int32_t { kAuto = 0, kReference, kCpu, kCuda, kSm90 };
enum class Op : int32_t { kPrefill = 0, kDecode, kVerify };
// kKV: a state is [K, V] (flash-linear-attention's layout); kVK: [V, K] (the
// layout of SGLang's and FlashInfer's state pools).
enum class StateLayout : int32_t { kKV = 0, kVK };
// kLogSpace: caller passes g (log-space decay, <= 0) and beta (post-sigmoid).
// kFused: caller passes raw a, b and per-head A_log, dt_bias;
//   g = -exp(A_log[hv]) * softplus(a + dt_bias[hv]),  beta = sigmoid(b).
enum class GateMode : int32_t { kLogSpace = 0, kFused };

enum class StatusCode : int32_t {
  kOk = 0,
  kInvalidArgument,  // the call's arguments break a rule (names the argument)
  kUnsupported,      // valid, but no backend that may run it can serve it
  kDeviceError,      // the CUDA runtime reported an error
  kInternal,
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }
  static Status Invalid(std::string message) { return {StatusCode::kInvalidArgument, std::move(message)}; }
  static Status Unsupported(std::string message) { return {StatusCode::kUnsupported, std::move(message)}; }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

constexpr int kMaxRank = 5;
constexpr int64_t kChunkSize = 64;        // chunk length of the chunked algorithm
constexpr int64_t kMaxVerifyTokens = 16;  // draft tokens per sequence in verify

// A strided view of memory the caller owns. Strides are in elements. A tensor
// with rank 0 is "not given". Host or device memory; all tensors of one call
// live on the same device (or all on the host).
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kInvalid;
  int32_t rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t stride[kMaxRank] = {};

  bool defined() const { return rank > 0; }
  int64_t numel() const;
};

// A contiguous (row-major) tensor view.
Tensor make_tensor(void* data, DType dtype, std::initializer_list<int64_t> shape);
// The same view with other strides (elements).
Tensor with_strides(Tensor t, std::initializer_list<int64_t> strides);

// Everything one call needs. Sizes come from the tensors' shapes:
//   T tokens, N sequences, H q/k heads, HV value heads, K and V head sizes.
struct Args {
  // Token inputs. Decode: T == N (one token per sequence).
  Tensor q, k;  // [T, H, K]   bf16, fp16 or fp32 (q, k and v share one dtype)
  Tensor v;     // [T, HV, V]
  // GateMode::kLogSpace.
  Tensor g;     // [T, HV] fp32, log-space decay
  Tensor beta;  // [T, HV] fp32 or bf16, post-sigmoid
  // GateMode::kFused.
  Tensor a, b;            // [T, HV] fp32 or bf16, raw
  Tensor a_log, dt_bias;  // [HV] fp32
  // Sequence boundaries [N + 1] (int32 or int64): 0 = c_0 <= ... <= c_N = T.
  // Required by prefill; optional for verify (else tokens_per_seq); unused by
  // decode. For device tensors, a host copy lets the call check the values
  // and plan its launches from them (the token recurrence for short
  // sequences, the ring depth of a long tail): it must hold the device
  // tensor's values, and a CUDA graph captured with it replays that plan.
  Tensor cu_seqlens;
  const void* cu_seqlens_host = nullptr;  // same dtype and length as cu_seqlens
  int64_t tokens_per_seq = 0;             // verify without cu_seqlens: T = N * L

  // State. Without state_indices: `initial_state` [N, HV, K, V] (optional,
  // zero when absent) and `final_state` [N, HV, K, V] (the output; may be the
  // same view as initial_state for an in-place update). With state_indices
  // [N] (int32 or int64): `initial_state` is a pool [P, HV, K, V] read at row
  // state_indices[n] and written back there in place; a negative index means
  // "no cached state": start from zero and write nothing. [K, V] becomes
  // [V, K] with StateLayout::kVK. fp32 or bf16.
  Tensor initial_state;
  Tensor state_indices;
  const void* state_indices_host = nullptr;  // host copy for device tensors
  Tensor final_state;
  // Prefill: the state after every `checkpoint_every` tokens of each
  // sequence, [C, HV, K, V] with C >= sum_n floor(L_n / checkpoint_every);
  // sequence n's checkpoints follow those of sequences 0..n-1.
  Tensor checkpoints;
  // Verify: the state after each token, [N, L, HV, K, V], L >= every L_n.
  Tensor intermediate_states;

  Tensor out;  // [T, HV, V], the dtype of v

  // Options.
  float scale = 0.0f;  // 0 selects 1/sqrt(K)
  bool l2norm_qk = false;
  GateMode gate_mode = GateMode::kLogSpace;
  StateLayout state_layout = StateLayout::kKV;
  // Dense: final_state must be given when set. Pool: write back in place when
  // set; leave the pool untouched when clear.
  bool write_final_state = true;
  int64_t checkpoint_every = 0;  // tokens, a multiple of 64; 0 = none

  // Execution.
  Backend backend = Backend::kAuto;  // kAuto honours GDN_{PREFILL,DECODE}_BACKEND
  bool strict = false;               // an explicit backend that cannot serve: error
  void* stream = nullptr;            // cudaStream_t for device data
  void* workspace = nullptr;         // device scratch, >= workspace_size bytes
  size_t workspace_bytes = 0;
  int num_threads = 0;  // CPU backends; 0 = every hardware thread
};

// Runs a packed prefill of N sequences.
Status prefill(const Args& args);
// Runs one token for each of N sequences (q: [N, H, K]).
Status decode(const Args& args);
// Runs up to 16 draft tokens per sequence.
Status verify(const Args& args);
// Runs `op` (one of the three above).
Status run(Op op, const Args& args);

// Speculative decoding's commit. After verify wrote intermediate states
// (with the pool left untouched) and the engine accepted a prefix of each
// sequence's draft, the state after the last accepted token becomes the
// sequence's cached state: for each n with accepted[n] >= 0 and
// state_indices[n] >= 0, intermediate_states[n, accepted[n]] is copied into
// pool row state_indices[n], bytes as they are. Validated like the other
// calls: slots below L, rows below P, non-negative rows unique, and nothing
// written on a rejected call.
struct CommitArgs {
  Tensor intermediate_states;  // [N, L, HV, K, V] ([N, L, HV, V, K] in layout vk), fp32 or bf16
  Tensor accepted;             // [N] int32 or int64: the slot j to commit (the state after token j + 1)
  const void* accepted_host = nullptr;  // host copy for device tensors (lets the call check the values)
  Tensor state_indices;                 // [N] int32 or int64: the pool row of sequence n
  const void* state_indices_host = nullptr;
  Tensor pool;  // [P, HV, K, V] in the layout and dtype of intermediate_states, written in place

  Backend backend = Backend::kAuto;  // host data: cpu (reference runs the same copy); GPU data: cuda
  bool strict = false;
  void* stream = nullptr;  // cudaStream_t for device data
};
Status commit_states(const CommitArgs& args);

// What the device-side checks of a GPU prefill found. A prefill given
// cu_seqlens (or state_indices) on the GPU without their host copies checks
// them there; a failure makes the call write nothing (out and the state pool
// keep their bytes), but the call has returned Ok by then, since nothing waits
// on the device. Given the same args, this waits for args.stream, reads what
// the last prefill on args.workspace left there, and returns Ok or kInvalid
// naming the argument and the rule. Ok for a prefill on a CPU backend (its
// checks fail the call itself). A prefill rejected on the host launches
// nothing and leaves the flag as the previous prefill on that workspace set it.
Status prefill_device_status(const Args& args);

// Scratch bytes the backend that would run (op, args) needs in
// args.workspace. Zero for the CPU backends.
Status workspace_size(Op op, const Args& args, size_t* bytes);

// Owns the device scratch GPU calls need. prepare() sizes it for a call,
// growing it (cudaMalloc on the call's device) only when the call needs more
// than it holds, and points args->workspace at it. run() does the same and
// runs the call, validating its arguments once (prepare() and then
// gdn::run() validate twice). Grow it before a CUDA-graph capture: an
// allocation cannot happen inside one.
class Workspace {
 public:
  Workspace() = default;
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&& other) noexcept;
  Workspace& operator=(Workspace&& other) noexcept;

  Status prepare(Op op, Args* args);
  Status run(Op op, const Args& args);
  // prefill_device_status for the prefill run(Op::kPrefill, args) last ran here.
  Status prefill_device_status(const Args& args);
  size_t bytes() const { return bytes_; }

 private:
  friend class WorkspaceAccess;
  // At least `bytes` on GPU `device` (reallocated when smaller or elsewhere).
  Status reserve(size_t bytes, int device);
  void release();
  void* data_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

// Ok when `backend` can run (op, args) as given on this machine; otherwise
// the reason. kAuto answers for the backend auto would pick.
Status supports(Backend backend, Op op, const Args& args);

// The backend (op, args) would run on, after overrides and fallbacks, and why.
struct Choice {
  Backend backend = Backend::kAuto;
  bool fell_back = false;  // an explicit request could not be served
  std::string reason;
};
Status choose_backend(Op op, const Args& args, Choice* choice);

// Names: "auto", "reference", "cpu", "cuda", "sm90"; parse returns false on
// an unknown name.
const char* backend_name(Backend backend);
bool parse_backend(const std::string& name, Backend* backend);
const char* dtype_name(DType dtype);
const char* op_name(Op op);
size_t dtype_size(DType dtype);

// Where one-line notices (backend fallbacks) go. The default prints them to
// stderr. Each distinct notice is emitted once per process.
using LogHandler = void (*)(const char* line, void* user);
void set_log_handler(LogHandler handler, void* user);

// Library version and the commit it was built from.
const char* version();

}  // namespace gdn
