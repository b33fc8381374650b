/* gdn C ABI: a mirror of gdn.h for bindings. Structs are plain C; every call
 * returns a gdn_status_t and, on failure, writes a message readable through
 * gdn_last_error() (per thread). Nothing aborts on bad input. */
#ifndef GDN_GDN_C_H_
#define GDN_GDN_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GDN_MAX_RANK 5

typedef enum { GDN_DTYPE_INVALID = 0, GDN_F32, GDN_F16, GDN_BF16, GDN_I32, GDN_I64 } gdn_dtype_t;
typedef enum {
  GDN_BACKEND_AUTO = 0,
  GDN_BACKEND_REFERENCE,
  GDN_BACKEND_CPU,
  GDN_BACKEND_CUDA,
  GDN_BACKEND_SM90
} gdn_backend_t;
typedef enum { GDN_OP_PREFILL = 0, GDN_OP_DECODE, GDN_OP_VERIFY } gdn_op_t;
typedef enum { GDN_LAYOUT_KV = 0, GDN_LAYOUT_VK } gdn_state_layout_t;
typedef enum { GDN_GATE_LOG_SPACE = 0, GDN_GATE_FUSED } gdn_gate_mode_t;
typedef enum {
  GDN_OK = 0,
  GDN_INVALID_ARGUMENT,
  GDN_UNSUPPORTED,
  GDN_DEVICE_ERROR,
  GDN_INTERNAL
} gdn_status_t;

typedef struct {
  void* data;
  int32_t dtype; /* a gdn_dtype_t value */
  int32_t rank;  /* 0: not given */
  int64_t shape[GDN_MAX_RANK];
  int64_t stride[GDN_MAX_RANK]; /* elements */
} gdn_tensor_t;

/* Field meanings as in gdn::Args (gdn.h). Zero-initialise, then set. */
typedef struct {
  gdn_tensor_t q, k, v;
  gdn_tensor_t g, beta;
  gdn_tensor_t a, b, a_log, dt_bias;
  gdn_tensor_t cu_seqlens;
  const void* cu_seqlens_host;
  int64_t tokens_per_seq;
  gdn_tensor_t initial_state, state_indices;
  const void* state_indices_host;
  gdn_tensor_t final_state, checkpoints, intermediate_states;
  gdn_tensor_t out;
  float scale;
  int32_t l2norm_qk;
  int32_t gate_mode;    /* a gdn_gate_mode_t value */
  int32_t state_layout; /* a gdn_state_layout_t value */
  int32_t write_final_state;
  int64_t checkpoint_every;
  int32_t backend; /* a gdn_backend_t value */
  int32_t strict;
  void* stream;
  void* workspace;
  size_t workspace_bytes;
  int32_t num_threads;
} gdn_args_t;

/* Defaults of gdn::Args (write_final_state = 1, everything else zero). */
void gdn_args_init(gdn_args_t* args);
gdn_status_t gdn_prefill(const gdn_args_t* args);
gdn_status_t gdn_decode(const gdn_args_t* args);
gdn_status_t gdn_verify(const gdn_args_t* args);
/* gdn::prefill_device_status: waits for args->stream, then GDN_INVALID with
 * the message when the last GPU prefill on args->workspace (same args) failed
 * its device-side checks and wrote nothing. */
gdn_status_t gdn_prefill_device_status(const gdn_args_t* args);
/* Fields as in gdn::CommitArgs (gdn.h): copies intermediate_states[n,
 * accepted[n]] into pool row state_indices[n] for every n where both are
 * non-negative. Zero-initialise (gdn_commit_args_init), then set. */
typedef struct {
  gdn_tensor_t intermediate_states, accepted;
  const void* accepted_host;
  gdn_tensor_t state_indices;
  const void* state_indices_host;
  gdn_tensor_t pool;
  int32_t backend; /* a gdn_backend_t value */
  int32_t strict;
  void* stream;
} gdn_commit_args_t;

void gdn_commit_args_init(gdn_commit_args_t* args);
gdn_status_t gdn_commit_states(const gdn_commit_args_t* args);
/* op: a gdn_op_t value; backend: a gdn_backend_t value. Enum-valued fields
 * and parameters are int32_t so any value a binding passes is well defined;
 * unknown values are rejected with a message. */
gdn_status_t gdn_workspace_size(int32_t op, const gdn_args_t* args, size_t* bytes);
gdn_status_t gdn_supports(int32_t backend, int32_t op, const gdn_args_t* args);
/* The message of this thread's last failed call ("" after a success). */
const char* gdn_last_error(void);
const char* gdn_version(void);

#ifdef __cplusplus
}
#endif

#endif /* GDN_GDN_C_H_ */
