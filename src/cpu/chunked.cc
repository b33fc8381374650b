// The cpu backend: chunked prefill in fp32 (DESIGN section 2), C = 64.
//
// Per chunk of Lc <= 64 tokens, with G_i = g_1 + ... + g_i (kept in float64,
// so differences of large cumulative decays stay exact) and
// Gamma_ij = exp(G_i - G_j) for i >= j:
//   A   = (I + strict_lower(diag(beta) (K K^T) .* Gamma))^-1      (a unit-lower solve)
//   W   = A diag(beta .* exp(G)) K          [Lc, K]
//   U   = A diag(beta) V                    [Lc, V]
//   Vn  = U - W S                           [Lc, V]   S: state at chunk start [K, V]
//   O   = diag(exp(G)) Q S + (lower_incl(Q K^T .* Gamma)) Vn
//   S'  = exp(G_C) S + (diag(exp(G_C - G)) K)^T Vn
// `prep` computes everything that does not depend on S (parallel over
// chunks); `step` applies the three state products (sequential per item).
#include <Eigen/Core>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cpu/backends.h"
#include "cpu/parallel.h"

namespace gdn::cpu {
namespace {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Vec = Eigen::VectorXf;

// What one chunk contributes, independent of the state entering it.
struct ChunkPrep {
  int64_t t0 = 0, len = 0;  // first token, tokens in the chunk
  Mat WQ;                   // [2 Lc, K]: rows [0, Lc) = W, rows [Lc, 2 Lc) = diag(exp G) Q
  Mat U;                    // [Lc, V]
  Mat L;                    // [Lc, Lc] lower_incl(Q K^T .* Gamma)
  Mat Kd;                   // [Lc, K] diag(exp(G_C - G)) K
  float decay = 1.0f;       // exp(G_C)
};

// Per-worker scratch for prep.
struct PrepScratch {
  Mat Q, Kc, Rhs, KK;
  std::vector<double> G;
  std::vector<float> beta, row;
};

class Chunked {
 public:
  Chunked(const Call& c, const Args& a) : c_(c), a_(a), rd_(c, a) {}

  void alloc_scratch(PrepScratch& s) const {
    s.Q.resize(kChunkSize, c_.K);
    s.Kc.resize(kChunkSize, c_.K);
    s.Rhs.resize(kChunkSize, c_.K + c_.V);
    s.KK.resize(kChunkSize, kChunkSize);
    s.G.resize(kChunkSize);
    s.beta.resize(kChunkSize);
    s.row.resize(static_cast<size_t>(std::max(c_.K, c_.V)));
  }
  void alloc_prep(ChunkPrep& p) const {
    p.WQ.resize(2 * kChunkSize, c_.K);
    p.U.resize(kChunkSize, c_.V);
    p.L.resize(kChunkSize, kChunkSize);
    p.Kd.resize(kChunkSize, c_.K);
  }

  void prep(int64_t hv, int64_t t0, int64_t len, PrepScratch& s, ChunkPrep& p) const {
    const int64_t K = c_.K, V = c_.V, h = rd_.qk_head(hv);
    p.t0 = t0;
    p.len = len;
    double G = 0.0;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t t = t0 + i;
      float g, beta;
      rd_.gate(t, hv, &g, &beta);
      G += g;
      s.G[i] = G;
      s.beta[i] = beta;
      rd_.qk(t, h, s.Q.row(i).data(), s.Kc.row(i).data());
      rd_.v(t, hv, s.Rhs.row(i).data() + K);
    }
    auto Q = s.Q.topRows(len);
    auto Kc = s.Kc.topRows(len);
    auto KK = s.KK.topLeftCorner(len, len);
    auto L = p.L.topLeftCorner(len, len);
    KK.noalias() = Kc * Kc.transpose();
    L.noalias() = Q * Kc.transpose();
    const double G_last = s.G[len - 1];
    for (int64_t i = 0; i < len; ++i) {
      for (int64_t j = 0; j < i; ++j) {
        const float gamma = static_cast<float>(std::exp(s.G[i] - s.G[j]));
        KK(i, j) *= s.beta[i] * gamma;
        L(i, j) *= gamma;
      }
      for (int64_t j = i + 1; j < len; ++j) L(i, j) = 0.0f;
      const float eg = static_cast<float>(std::exp(s.G[i]));
      const float bi = s.beta[i];
      auto rhs = s.Rhs.row(i);
      for (int64_t x = 0; x < K; ++x) rhs(x) = bi * eg * Kc(i, x);
      for (int64_t x = K; x < K + V; ++x) rhs(x) *= bi;
      p.WQ.row(len + i) = eg * Q.row(i);
      p.Kd.row(i) = static_cast<float>(std::exp(G_last - s.G[i])) * Kc.row(i);
    }
    auto rhs = s.Rhs.topRows(len);
    KK.triangularView<Eigen::UnitLower>().solveInPlace(rhs);
    p.WQ.topRows(len) = rhs.leftCols(K);
    p.U.topRows(len) = rhs.rightCols(V);
    p.decay = static_cast<float>(std::exp(G_last));
  }

  // Applies a prepared chunk to S, writes its outputs and any checkpoint.
  void step(int64_t n, int64_t hv, const ChunkPrep& p, Mat& S, Mat& WQS, Mat& Vn, Mat& O) const {
    const int64_t len = p.len, V = c_.V;
    auto wqs = WQS.topRows(2 * len);
    wqs.noalias() = p.WQ.topRows(2 * len) * S;
    auto vn = Vn.topRows(len);
    vn = p.U.topRows(len) - wqs.topRows(len);
    auto o = O.topRows(len);
    o = wqs.bottomRows(len);
    o.noalias() += p.L.topLeftCorner(len, len) * vn;
    S *= p.decay;
    S.noalias() += p.Kd.topRows(len).transpose() * vn;
    for (int64_t i = 0; i < len; ++i) {
      const int64_t off = offset3(a_.out, p.t0 + i, hv, 0);
      for (int64_t j = 0; j < V; ++j) store_float(a_.out.data, a_.out.dtype, off + j, o(i, j));
    }
    const int64_t done = p.t0 + len - c_.seq_start[n];
    if (a_.checkpoint_every > 0 && done % a_.checkpoint_every == 0) {
      const int64_t row = c_.ckpt_start[n] + done / a_.checkpoint_every - 1;
      store_state(state_ref(a_.checkpoints, a_.state_layout, row, hv), c_.K, c_.V, S.data());
    }
  }

  const Call& c_;
  const Args& a_;
  TokenReader rd_;
};

int64_t num_chunks(int64_t len) {
  return (len + kChunkSize - 1) / kChunkSize;
}

// Per-worker state-pass buffers.
struct StepScratch {
  Mat S, WQS, Vn, O;
  void alloc(const Call& c) {
    S.resize(c.K, c.V);
    WQS.resize(2 * kChunkSize, c.V);
    Vn.resize(kChunkSize, c.V);
    O.resize(kChunkSize, c.V);
  }
};

// Budget for the prepared chunks held at once by the few-items path.
constexpr int64_t kPrepBudgetBytes = int64_t{256} << 20;

Status prefill(const Call& c, const Args& a) {
  const Chunked ck(c, a);
  const std::vector<WorkItem> items = work_items_longest_first(c);
  const int threads = a.num_threads > 0 ? std::min(a.num_threads, hardware_threads()) : hardware_threads();
  const int64_t n_items = static_cast<int64_t>(items.size());

  if (n_items >= threads) {
    // Enough items: each worker runs whole items, prep and step chunk by chunk.
    std::vector<PrepScratch> ps(static_cast<size_t>(threads));
    std::vector<ChunkPrep> cp(static_cast<size_t>(threads));
    std::vector<StepScratch> ss(static_cast<size_t>(threads));
    for (int w = 0; w < threads; ++w) {
      ck.alloc_scratch(ps[w]);
      ck.alloc_prep(cp[w]);
      ss[w].alloc(c);
    }
    parallel_for(n_items, threads, [&](int64_t i, int w) {
      const WorkItem it = items[static_cast<size_t>(i)];
      StepScratch& st = ss[static_cast<size_t>(w)];
      load_state(initial_state_ref(c, a, it.n, it.hv), c.K, c.V, st.S.data());
      for (int64_t t0 = c.seq_start[it.n]; t0 < c.seq_start[it.n + 1]; t0 += kChunkSize) {
        const int64_t len = std::min(kChunkSize, c.seq_start[it.n + 1] - t0);
        ck.prep(it.hv, t0, len, ps[static_cast<size_t>(w)], cp[static_cast<size_t>(w)]);
        ck.step(it.n, it.hv, cp[static_cast<size_t>(w)], st.S, st.WQS, st.Vn, st.O);
      }
      store_state(final_state_ref(c, a, it.n, it.hv), c.K, c.V, st.S.data());
    });
    return Status::Ok();
  }

  // Few items (long sequences, few heads): prepare a block of chunks of every
  // item in parallel, then advance every item's state through that block.
  int64_t max_chunks = 0;
  for (const WorkItem& it : items)
    max_chunks = std::max(max_chunks, num_chunks(c.seq_start[it.n + 1] - c.seq_start[it.n]));
  const int64_t prep_bytes = (3 * c.K + c.V + kChunkSize) * kChunkSize * 4;
  const int64_t block = std::max<int64_t>(
      1, std::min(max_chunks,
                  std::max<int64_t>(threads, kPrepBudgetBytes / std::max<int64_t>(1, prep_bytes * n_items))));
  std::vector<PrepScratch> ps(static_cast<size_t>(threads));
  for (auto& s : ps) ck.alloc_scratch(s);
  std::vector<ChunkPrep> cp(static_cast<size_t>(block * n_items));
  for (auto& p : cp) ck.alloc_prep(p);
  std::vector<StepScratch> ss(static_cast<size_t>(n_items));
  for (int64_t i = 0; i < n_items; ++i) {
    const WorkItem it = items[static_cast<size_t>(i)];
    ss[i].alloc(c);
    load_state(initial_state_ref(c, a, it.n, it.hv), c.K, c.V, ss[i].S.data());
  }
  for (int64_t b0 = 0; b0 < max_chunks; b0 += block) {
    const int64_t nb = std::min(block, max_chunks - b0);
    parallel_for(nb * n_items, threads, [&](int64_t j, int w) {
      const int64_t i = j / nb, ch = b0 + j % nb;
      const WorkItem it = items[static_cast<size_t>(i)];
      const int64_t t0 = c.seq_start[it.n] + ch * kChunkSize;
      ChunkPrep& p = cp[static_cast<size_t>(i * block + j % nb)];
      p.len = 0;
      if (t0 >= c.seq_start[it.n + 1]) return;
      ck.prep(it.hv, t0, std::min(kChunkSize, c.seq_start[it.n + 1] - t0), ps[static_cast<size_t>(w)], p);
    });
    parallel_for(n_items, threads, [&](int64_t i, int) {
      const WorkItem it = items[static_cast<size_t>(i)];
      StepScratch& st = ss[static_cast<size_t>(i)];
      for (int64_t x = 0; x < nb; ++x) {
        const ChunkPrep& p = cp[static_cast<size_t>(i * block + x)];
        if (p.len > 0) ck.step(it.n, it.hv, p, st.S, st.WQS, st.Vn, st.O);
      }
    });
  }
  for (int64_t i = 0; i < n_items; ++i) {
    const WorkItem it = items[static_cast<size_t>(i)];
    store_state(final_state_ref(c, a, it.n, it.hv), c.K, c.V, ss[i].S.data());
  }
  return Status::Ok();
}

}  // namespace

Status run_cpu(const Call& c, const Args& a) {
  if (c.op == Op::kPrefill) return prefill(c, a);
  // Decode and verify: at most 16 tokens per item, so the fp32 token
  // recurrence beats chunking.
  const std::vector<WorkItem> items = work_items_longest_first(c);
  const int threads = a.num_threads > 0 ? std::min(a.num_threads, hardware_threads()) : hardware_threads();
  std::vector<Recurrence<float>> workers;
  for (int w = 0; w < threads; ++w) workers.emplace_back(c, a, nullptr);
  parallel_for(static_cast<int64_t>(items.size()), threads,
               [&](int64_t i, int w) { workers[static_cast<size_t>(w)].run_item(items[i].n, items[i].hv); });
  return Status::Ok();
}

}  // namespace gdn::cpu
