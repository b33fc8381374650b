// Launch parameters of the portable (sm_80+) chunked prefill. Built on the
// host from a validated call; passed by value to every kernel.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace gdn::cuda {

constexpr int kChunk = 64;  // tokens per chunk (DESIGN section 2)

struct PrefillParams {
  int64_t T = 0, N = 0, H = 0, HV = 0;
  int64_t group = 1;  // HV / H: value heads per q/k head
  // Token inputs (strides in elements; the last dimension is contiguous).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t q_s0 = 0, q_s1 = 0, k_s0 = 0, k_s1 = 0, v_s0 = 0, v_s1 = 0;
  // Gates: log-space g and beta, or (fused) raw a and b with A_log, dt_bias.
  bool fused = false;
  const void* gate_a = nullptr;  // g (fp32) or a
  const void* gate_b = nullptr;  // beta or b
  bool gate_a_bf16 = false, gate_b_bf16 = false;
  int64_t ga_s0 = 0, ga_s1 = 0, gb_s0 = 0, gb_s1 = 0;
  const float* a_log = nullptr;
  const float* dt_bias = nullptr;
  int64_t a_log_s = 0, dt_bias_s = 0;
  // Sequences.
  const void* cu_seqlens = nullptr;
  bool cu64 = false;
  // States: initial (pool or dense; data == nullptr: zero), final (dense, or
  // the pool itself), checkpoints.
  StateTensor init, fin, ckpt;
  const void* indices = nullptr;  // pool rows per sequence (nullptr: dense)
  bool idx64 = false;
  int64_t idx_s = 0;
  int64_t pool_rows = 0;
  int64_t ckpt_every = 0;
  // Output.
  void* out = nullptr;
  int64_t o_s0 = 0, o_s1 = 0;
  float scale = 1.0f;
  bool l2norm = false;
  // Workspace.
  int64_t max_chunks = 0;           // upper bound on sum_n ceil(L_n / 64)
  int32_t* chunk_offset = nullptr;  // [N + 1] first chunk of sequence n
  int32_t* ckpt_offset = nullptr;   // [N + 1] first checkpoint row of sequence n
  int32_t* error_flag = nullptr;    // non-zero: the device-side checks failed
  float* Au = nullptr;              // [max_chunks, HV, 64, 64]: A diag(beta)
  float* L = nullptr;               // [max_chunks, HV, 64, 64]: lower_incl((scale Q) K^T .* Gamma)
  float* F = nullptr;               // [max_chunks, HV, kFactorStride]: row factors and decay
  int stages = 1;                   // depth of the state pass's shared-memory ring (1 or 2)
};

// Row factors of a chunk (rows past the chunk's end are 0), for raw q and k:
//   s_q = scale exp(G) / |q|   s_x = exp(G) / |k|   s_k = exp(G_C - G) / |k|
constexpr int kFactorSq = 0, kFactorSx = 64, kFactorSk = 128, kFactorDecay = 192;
constexpr int kFactorStride = 200;  // floats; 800 bytes, a multiple of 16

}  // namespace gdn::cuda
