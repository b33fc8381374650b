// The GPU suite (label gpu): the correctness matrix on the cuda backend
// against the float64 reference, plus determinism, CUDA-graph capture,
// non-default streams and strided outputs; for decode and verify also
// decode against prefill, verify's intermediate states against stepwise
// decode, untouched pool rows, every output written on every call, the bf16
// state's error, the device-side index checks and commit_states. Skipped,
// with the reason, on a machine without a CUDA device;
// scripts/device-check.sh runs it on one.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "common/convert.h"
#if GDN_WITH_SM90_BACKEND
#include "cuda/backend.h"
#include "cuda/prep/prep_heads.h"
#include "cuda/sm90/pass_form.h"
#endif
#include "gdn/dispatch.h"
#include "support/expect_case.h"
#include "support/scoped_env.h"
#include "testing/harness.h"

namespace gdn::testing {
namespace {

#define REQUIRE_GPU()      \
  if (device_count() == 0) \
  GTEST_SKIP() << "no CUDA device here; the gpu suite runs on a GPU machine (scripts/device-check.sh)"

#define CUDA_OK(expr) \
  ASSERT_EQ(cudaSuccess, (expr)) << #expr << ": " << cudaGetErrorString(cudaGetLastError())

// The prefill's products run in tf32 (10-bit mantissa, unit roundoff 2^-11)
// on the GPU, so the fp32-input prefill cases of the matrix, which hold the
// fp32 cpu backend to 1e-5, are held to this bound here; bf16 cases keep
// their 4e-3. Decode and verify run fp32 arithmetic on the GPU as on the
// CPU and keep the cpu backend's bounds.
constexpr double kTf32Tolerance = 2e-3;

Case for_gpu(Case c) {
  if (c.op != Op::kPrefill) return c;
  c.tol_o = std::max(c.tol_o, kTf32Tolerance);
  c.tol_state = std::max(c.tol_state, kTf32Tolerance);
  return c;
}

// Captures call(), which must run on `stream`, into an instantiated CUDA
// graph in global mode (any synchronising or allocating call inside fails
// the capture) and asserts the call's status.
template <typename F>
void capture(cudaStream_t stream, F&& call, cudaGraphExec_t* exec) {
  cudaGraph_t graph;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  const Status s = call();
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  ASSERT_TRUE(s.ok()) << s.message();
  CUDA_OK(cudaGraphInstantiate(exec, graph, 0));
  CUDA_OK(cudaGraphDestroy(graph));
}

std::vector<uint8_t> device_bytes(const Tensor& t) {
  std::vector<uint8_t> h(static_cast<size_t>(t.numel()) * dtype_size(t.dtype));
  EXPECT_EQ(cudaSuccess, cudaMemcpy(h.data(), t.data, h.size(), cudaMemcpyDeviceToHost));
  return h;
}

void poison_device(const Tensor& t) {
  if (!t.defined()) return;
  CUDA_OK(cudaMemset(t.data, 0xFF, static_cast<size_t>(t.numel()) * dtype_size(t.dtype)));
}

void restore_device(const Tensor& t, const std::vector<uint8_t>& bytes) {
  CUDA_OK(cudaMemcpy(t.data, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
}

// A prefill into poisoned out and checkpoints that returns Ok and whose
// device-side checks report Ok.
void prefill_reports_ok(const Args& a) {
  poison_device(a.out);
  poison_device(a.checkpoints);
  const Status s = prefill(a);
  ASSERT_TRUE(s.ok()) << s.message();
  const Status d = prefill_device_status(a);
  EXPECT_TRUE(d.ok()) << d.message();
}

// Whether `backend` serves case c here; if not, the refusal must be one of
// the backends' documented limits (head sizes, K != V, sm90's prefill-only
// bf16 scope, not this GPU, or not built), anything else fails, and the test
// is skipped.
bool serves(Backend backend, const Case& c) {
  Workload probe(c, true);
  EXPECT_TRUE(probe.status().ok()) << probe.status().message();
  const Status s = supports(backend, c.op, probe.args());
  if (s.ok()) return true;
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  const std::string& why = s.message();
  const bool in_scope =
      why.find("head sizes") != std::string::npos || why.find("K == V") != std::string::npos ||
      why.find("prefill only") != std::string::npos || why.find("runs bf16") != std::string::npos ||
      why.find("runs only on sm_90") != std::string::npos || why.find("built without") != std::string::npos;
  EXPECT_TRUE(in_scope) << "a refusal outside the backend's documented scope: " << why;
  std::cout << "[ SKIPPED  ] " << backend_name(backend) << " refuses this case: " << s.message() << "\n";
  return false;
}

void matches_reference(Backend backend, const Case& c) {
  const CaseResult r = run_case(c, backend);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  expect_case_passes(c, r);
}

class CudaMatrix : public ::testing::TestWithParam<Case> {};

TEST_P(CudaMatrix, MatchesReference) {
  REQUIRE_GPU();
  const Case c = for_gpu(GetParam());
  if (!serves(Backend::kCuda, c)) GTEST_SKIP() << "cuda refuses this case";
  matches_reference(Backend::kCuda, c);
}

INSTANTIATE_TEST_SUITE_P(Matrix, CudaMatrix, ::testing::ValuesIn(correctness_matrix()), case_name);

// The same matrix on the sm90 backend (H100, H200; skipped elsewhere),
// which runs bf16 io only: the fp32 and fp16 io prefill cases run with bf16
// inputs instead (at the bf16 cases' tolerance), so every shape and option
// is covered. Each case's error must also stay within the cuda backend's on
// the same inputs (plus 5%: the two sum in different orders).
Case for_sm90(Case c) {
  if (c.op == Op::kPrefill && c.io != DType::kBF16) {
    const Case bf16;
    c.io = DType::kBF16;
    c.tol_o = bf16.tol_o;
    c.tol_state = std::max(c.tol_state, bf16.tol_state);
    c.name += " as bf16";
  }
  return for_gpu(c);
}

class Sm90Matrix : public ::testing::TestWithParam<Case> {};

TEST_P(Sm90Matrix, MatchesReferenceAndTheCudaBackend) {
  REQUIRE_GPU();
  const Case c = for_sm90(GetParam());
  if (!serves(Backend::kSm90, c)) GTEST_SKIP() << "sm90 refuses this case";
  const CaseResult r = run_case(c, Backend::kSm90);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  expect_case_passes(c, r);
  const CaseResult base = run_case(c, Backend::kCuda);
  ASSERT_TRUE(base.status.ok()) << base.status.message();
  constexpr double kSlack = 1.05;
  EXPECT_LE(r.out.rel_rms, kSlack * base.out.rel_rms) << "cuda: " << base.out.rel_rms;
  EXPECT_LE(r.state.rel_rms, kSlack * base.state.rel_rms) << "cuda: " << base.state.rel_rms;
  EXPECT_LE(r.checkpoints.rel_rms, kSlack * base.checkpoints.rel_rms) << "cuda: " << base.checkpoints.rel_rms;
}

INSTANTIATE_TEST_SUITE_P(Matrix, Sm90Matrix, ::testing::ValuesIn(correctness_matrix()), case_name);

Case suite_like() {
  Case c;
  c.name = "gpu properties";
  c.seq_lens = {1, 7, 63, 64, 65, 130, 1000};
  c.H = 4, c.HV = 8, c.K = c.V = 128;
  c.pool = true;
  c.checkpoint_every = 128;
  return c;
}

// The prefill properties below hold on both GPU prefill backends.
class GpuPrefill : public ::testing::TestWithParam<Backend> {
 protected:
  // Skips when this GPU or build has no such backend for the suite's shape.
  void SetUp() override {
    if (device_count() == 0) GTEST_SKIP() << "no CUDA device here";
    if (!serves(GetParam(), suite_like()))
      GTEST_SKIP() << backend_name(GetParam()) << " is not available here";
  }
  Args on_backend(Args a) const {
    a.backend = GetParam();
    a.strict = true;
    return a;
  }
};

std::string backend_param_name(const ::testing::TestParamInfo<Backend>& info) {
  return backend_name(info.param);
}

// Sequences split into segments (local pass, combine, final pass; forced
// with GDN_CUDA_SEGMENTS) match the reference like whole ones: sequences
// shorter than the split (empty segments), a pool updated in place,
// checkpoints, both layouts, no initial state, adversarial gates.
TEST_P(GpuPrefill, SplitSequencesMatchTheReference) {
  std::vector<std::pair<Case, const char*>> cases;
  Case c = suite_like();
  c.name = "segments: suite-like pool, checkpoints every 128";
  cases.emplace_back(c, "3");
  c.name = "segments: one long sequence, pool, layout vk";
  c.seq_lens = {3000};
  c.layout = StateLayout::kVK, c.checkpoint_every = 320;
  cases.emplace_back(c, "5");
  c.name = "segments: k=v=64 dense, no initial state, adversarial gates";
  c.seq_lens = {700, 1, 2100, 64};
  c.pool = false, c.initial_state = false, c.adversarial_gates = true, c.K = c.V = 64;
  c.layout = StateLayout::kKV, c.checkpoint_every = 0;
  cases.emplace_back(c, "4");
  c.name = "segments: k=v=64 dense with an initial state, 16 segments";
  c.initial_state = true, c.adversarial_gates = false;
  cases.emplace_back(c, "16");
  for (auto& [sc, segments] : cases) {
    SCOPED_TRACE(sc.name + ", GDN_CUDA_SEGMENTS=" + segments);
    sc.seed = 77;
    ScopedEnv env("GDN_CUDA_SEGMENTS", segments);
    matches_reference(GetParam(), for_gpu(sc));
  }
  // The combine with one shared-memory buffer (GPUs whose blocks cannot
  // hold two), on the long sequence and on the 16 segments at K = 64.
  const ScopedEnv one_buffer("GDN_CUDA_COMBINE_BUFFERS", "1");
  for (const int i : {1, 3}) {
    auto& [sc, segments] = cases[i];
    SCOPED_TRACE(sc.name + ", one combine buffer, GDN_CUDA_SEGMENTS=" + segments);
    ScopedEnv env("GDN_CUDA_SEGMENTS", segments);
    matches_reference(GetParam(), for_gpu(sc));
  }
}

#if GDN_WITH_SM90_BACKEND  // (the sm90 tests call its host functions)
// Two column tiles of a head in one sm90 CTA (GDN_SM90_GROUPS=2) compute each
// tile exactly as a CTA of its own does (GDN_SM90_GROUPS=1): outputs, the
// pool or final states and the checkpoints are bitwise the same, for whole
// sequences and split ones (the local pass pairs state-map tiles, and at
// K = 64 a value tile with a map tile), both layouts, short last chunks; and
// the paired run matches the reference; in both forms of the pass (fused
// and two-kernel).
// Cases of the sm90 pass's forms and pairings, each with its
// GDN_CUDA_SEGMENTS: the suite-like pool with checkpoints (whole
// sequences), the same in layout vk in 3 segments, and K = V = 64 dense
// sequences of 700, 1, 2100 and 64 tokens in 4 segments.
std::vector<std::pair<Case, const char*>> sm90_cases(const std::string& tag) {
  std::vector<std::pair<Case, const char*>> cases;
  Case c = suite_like();
  c.name = tag + ": suite-like pool, checkpoints every 128, whole sequences";
  cases.emplace_back(c, "1");
  c.name = tag + ": suite-like pool, layout vk, 3 segments";
  c.layout = StateLayout::kVK;
  cases.emplace_back(c, "3");
  c.name = tag + ": k=v=64 dense, 4 segments";
  c.seq_lens = {700, 1, 2100, 64};
  c.pool = false, c.K = c.V = 64, c.layout = StateLayout::kKV, c.checkpoint_every = 0;
  cases.emplace_back(c, "4");
  return cases;
}

// The bytes an sm90 prefill (strict) of the case writes: out, the states
// (the final ones or the pool) and the checkpoints (none when it writes none).
struct PrefillBytes {
  std::vector<uint8_t> out, states, checkpoints;
};
PrefillBytes sm90_prefill_bytes(const Case& c) {
  PrefillBytes b;
  Workload w(for_gpu(c), true);
  EXPECT_TRUE(w.status().ok()) << w.status().message();
  if (!w.status().ok()) return b;
  Args a = w.args();
  a.backend = Backend::kSm90;
  a.strict = true;
  EXPECT_TRUE(prefill(a).ok());
  EXPECT_EQ(cudaSuccess, cudaDeviceSynchronize());
  b.out = device_bytes(a.out);
  b.states = device_bytes(a.final_state.defined() ? a.final_state : a.initial_state);
  if (a.checkpoints.defined()) b.checkpoints = device_bytes(a.checkpoints);
  return b;
}
// The same with the environment variable var set to value for the call.
PrefillBytes sm90_prefill_bytes(const Case& c, const char* var, const char* value) {
  const ScopedEnv env(var, value);
  return sm90_prefill_bytes(c);
}
// The workspace's last region (cuda::prefill_ready_bytes) after a prefill of
// case c on a's workspace, as int32: the sm90 candidates' ticket counter,
// then the overlapped prep's ready marks. The Workload sizes the workspace
// exactly for the call (checked here), so the region ends it. Empty when a
// check fails.
std::vector<int32_t> ticket_region(const Args& a, const Case& c) {
  int64_t tokens = 0;
  for (const int64_t len : c.seq_lens) tokens += len;
  const size_t region = cuda::prefill_ready_bytes(tokens, static_cast<int64_t>(c.seq_lens.size()), c.HV);
  size_t need = 0;
  EXPECT_TRUE(workspace_size(Op::kPrefill, a, &need).ok());
  EXPECT_EQ(a.workspace_bytes, need);
  EXPECT_GE(need, region);
  if (a.workspace_bytes != need || need < region) return {};
  std::vector<int32_t> words(region / sizeof(int32_t));
  EXPECT_EQ(cudaSuccess, cudaMemcpy(words.data(), static_cast<const char*>(a.workspace) + need - region,
                                    region, cudaMemcpyDeviceToHost));
  return words;
}

// A setting that must change no bit: the bytes with var = a and var = b
// agree, and the call with b matches the reference.
void expect_setting_keeps_bits(const Case& c, const char* var, const char* a, const char* b) {
  const PrefillBytes x = sm90_prefill_bytes(c, var, a), y = sm90_prefill_bytes(c, var, b);
  EXPECT_EQ(x.out, y.out) << "out";
  EXPECT_EQ(x.states, y.states) << "states";
  EXPECT_EQ(x.checkpoints, y.checkpoints) << "checkpoints";
  const ScopedEnv env(var, b);
  matches_reference(Backend::kSm90, for_gpu(c));
}

TEST(Sm90Groups, PairedTilesGiveTheBitsOfSingleTiles) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  std::vector<std::pair<Case, const char*>> cases = sm90_cases("groups");
  for (auto& [sc, segments] : cases)
    for (const char* fused : {"0", "1", "2"}) {  // (the pass's form is pinned: every form pairs tiles)
      SCOPED_TRACE(sc.name + ", GDN_SM90_FUSED=" + fused);
      sc.seed = 91;
      const ScopedEnv split("GDN_CUDA_SEGMENTS", segments);
      const ScopedEnv form("GDN_SM90_FUSED", fused);
      expect_setting_keeps_bits(sc, "GDN_SM90_GROUPS", "1", "2");
    }
}

// The two-kernel pass with P issued before R (GDN_SM90_PFIRST=1: two N = 64
// products in commit groups of their own instead of one N = 128) gives the
// bits of [P | R] as one product, whole and split (the final pass takes it),
// and matches the reference.
TEST(Sm90PFirst, GivesTheBitsOfOneProduct) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  const ScopedEnv form("GDN_SM90_FUSED", "0");
  for (auto& [sc, segments] : sm90_cases("p first")) {
    SCOPED_TRACE(sc.name);
    sc.seed = 99;
    const ScopedEnv split("GDN_CUDA_SEGMENTS", segments);
    {  // (the setting the launch reads: else both runs would take the default)
      const ScopedEnv first("GDN_SM90_PFIRST", "1");
      ASSERT_TRUE(cuda::sm90::p_first_requested());
    }
    expect_setting_keeps_bits(sc, "GDN_SM90_PFIRST", "0", "1");
  }
}

// The prep for the sm90 tiles can take up to four value heads of one q/k
// head per CTA, sharing K K^T, Q K^T, the norms and the copies of k and q
// (GDN_PREP_HEADS=n, where n divides the group): with L (the two-kernel
// form, GDN_SM90_FUSED=0) and without (the split form, =2), every such count
// gives the bits of one head a CTA and matches the reference, with 2, 3 and
// 4 value heads per q/k head.
TEST(Sm90PrepHeads, EveryHeadCountGivesTheBitsOfOne) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  std::vector<std::pair<Case, const char*>> cases = sm90_cases("prep heads");  // 8 value heads, group 2
  Case c = suite_like();
  c.name = "prep heads: group 4, fused gates";
  c.H = 2, c.gate = GateMode::kFused;
  cases.emplace_back(c, "1");
  c.name = "prep heads: group 3, 2 segments";
  c.HV = 6, c.gate = GateMode::kLogSpace;
  cases.emplace_back(c, "2");
  c.name = "prep heads: group 4, k=v=64 dense";
  c.HV = 8, c.K = c.V = 64, c.pool = false, c.checkpoint_every = 0;
  cases.emplace_back(c, "1");
  for (const char* form : {"0", "2"}) {
    const ScopedEnv pass_form("GDN_SM90_FUSED", form);
    for (auto& [sc, segments] : cases) {
      sc.seed = 97;
      const ScopedEnv split("GDN_CUDA_SEGMENTS", segments);
      int tried = 0;
      for (const char* n : {"2", "3", "4"}) {
        if ((sc.HV / sc.H) % std::atoi(n) != 0) continue;
        SCOPED_TRACE(sc.name + ", GDN_SM90_FUSED=" + form + ", GDN_PREP_HEADS=" + n);
        {  // (the count the launch reads: else both runs would take one head)
          const ScopedEnv heads("GDN_PREP_HEADS", n);
          ASSERT_EQ(cuda::prep_heads_for_group(sc.HV / sc.H), std::atoi(n));
        }
        expect_setting_keeps_bits(sc, "GDN_PREP_HEADS", "1", n);
        ++tried;
      }
      EXPECT_GE(tried, 1) << sc.name;
    }
  }
}

// The overlapped prep (GDN_SM90_OVERLAP=1: where the two-kernel pass's CTAs
// leave at least half the SMs idle, the prep runs on those SMs beside the
// pass, which copies each chunk's Au, L and factors once the prep has marked
// them ready) gives the bits of the prep run before the pass, whole
// sequences (segments forced off), one and several, K = 128 and 64, a pool
// with checkpoints, several value heads a prep unit (GDN_PREP_HEADS=max),
// and matches the reference. Each overlapped call runs on a workspace filled
// with 0xFF (every mark set, the ticket counter spent: a call that did not
// zero them would skip its prep and copy garbage), and leaves its marks
// set for exactly its chunks and the counter at its tickets plus one a prep
// unit, which only the overlapped prep leaves there; a second call on the
// same workspace gives the same bits again.
TEST(Sm90Overlap, GivesTheBitsOfThePrepBefore) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const ScopedEnv form("GDN_SM90_FUSED", "0"), whole("GDN_CUDA_SEGMENTS", "1");
  const ScopedEnv no_p_first("GDN_SM90_PFIRST", nullptr), inline_offsets("GDN_CUDA_INLINE_OFFSETS", nullptr),
      default_pairing("GDN_SM90_GROUPS",
                      nullptr);  // (the settings the overlap rule reads, at their defaults)
  std::vector<Case> cases;
  Case c;
  c.name = "overlap: one sequence of 3000, pool, checkpoints every 320";
  c.seq_lens = {3000};
  c.H = 4, c.HV = 8, c.K = c.V = 128;
  c.pool = true;
  c.checkpoint_every = 320;
  c.seed = 107;
  cases.push_back(c);
  c.name = "overlap: 1000, 1 and 2100 tokens, k=v=64 dense, adversarial gates";
  c.seq_lens = {1000, 1, 2100};
  c.K = c.V = 64, c.pool = false, c.checkpoint_every = 0, c.adversarial_gates = true;
  cases.push_back(c);
  c.name = "overlap: group 4, fused gates, 700 and 64 tokens";
  c.seq_lens = {700, 64};
  c.H = 2, c.K = c.V = 128, c.adversarial_gates = false, c.gate = GateMode::kFused;
  cases.push_back(c);
  for (const Case& sc : cases)
    for (const char* heads : {"1", "max"}) {
      SCOPED_TRACE(sc.name + ", GDN_PREP_HEADS=" + heads);
      const ScopedEnv prep_heads("GDN_PREP_HEADS", heads);
      const int64_t n = static_cast<int64_t>(sc.seq_lens.size());
      int64_t chunks = 0, longest = 0;
      for (const int64_t len : sc.seq_lens)
        chunks += (len + 63) / 64, longest = std::max(longest, (len + 63) / 64);
      const int prep_ctas = [&] {  // (the launch overlaps this shape: else the runs would not differ)
        const ScopedEnv overlap("GDN_SM90_OVERLAP", "1");
        EXPECT_TRUE(cuda::sm90::overlap_requested());
        return cuda::sm90::overlap_prep_ctas_for_shape(n, sc.HV, sc.V / 64, 1,
                                                       cuda::sm90::PassForm::kTwoKernel, sms, false);
      }();
      ASSERT_GT(prep_ctas, 0);
      const PrefillBytes before = sm90_prefill_bytes(sc, "GDN_SM90_OVERLAP", "0");
      const ScopedEnv overlap("GDN_SM90_OVERLAP", "1");
      Workload w(for_gpu(sc), true);
      ASSERT_TRUE(w.status().ok()) << w.status().message();
      Args a = w.args();
      a.backend = Backend::kSm90;
      a.strict = true;
      a.write_final_state = !sc.pool;  // (a pool stays, so that both calls start from the same states)
      const int group = static_cast<int>(sc.HV / sc.H);
      const int64_t head_sets = sc.HV / cuda::prep_heads_for_group(group);
      for (int i = 0; i < 2; ++i) {
        SCOPED_TRACE("call " + std::to_string(i));
        if (i == 0) {
          CUDA_OK(cudaMemset(a.workspace, 0xFF, a.workspace_bytes));
        }
        ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // (out and checkpoints poisoned first)
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_EQ(before.out, device_bytes(a.out));
        if (a.checkpoints.defined()) {
          EXPECT_EQ(before.checkpoints, device_bytes(a.checkpoints));
        }
        if (!sc.pool) {
          EXPECT_EQ(before.states, device_bytes(a.final_state));
        }
        // The ticket counter, then a mark per (chunk, value head): set for
        // the call's chunks, clear past them (then the region's padding,
        // which keeps the 0xFF the first call found).
        const std::vector<int32_t> region = ticket_region(a, sc);
        ASSERT_GT(region.size(), static_cast<size_t>(chunks * sc.HV));
        EXPECT_EQ(region[0], longest * n * head_sets + cuda::kOverlapPrepUnits * prep_ctas)
            << "the ticket counter";
        size_t at = 1;
        for (; at <= static_cast<size_t>(chunks * sc.HV); ++at) ASSERT_EQ(region[at], 1) << "mark " << at - 1;
        for (; at < region.size() && region[at] == 0; ++at) {
        }
        for (; at < region.size(); ++at) ASSERT_EQ(region[at], -1) << "padding " << at;
      }
      matches_reference(Backend::kSm90, for_gpu(sc));
    }
}

// The two-kernel local pass of a split can skip the copies of q and L,
// which it does not read (GDN_SM90_LOCAL_SKIP=1): its bits are those of the
// pass that copies them, with one tile a CTA and two (at K = 128 value
// tiles paired and map tiles paired, at K = 64 a value tile with a map
// tile), and the reference matches.
TEST(Sm90Local, SkippedCopiesChangeNoBit) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  const ScopedEnv form("GDN_SM90_FUSED", "0");
  {  // (the setting the launch reads: else both runs would copy them)
    const ScopedEnv skip("GDN_SM90_LOCAL_SKIP", "1");
    ASSERT_TRUE(cuda::sm90::local_skip_requested());
  }
  int tried = 0;
  for (auto& [sc, segments] : sm90_cases("local copies")) {
    if (std::string(segments) == "1") continue;  // (whole sequences: no local pass)
    for (const char* groups : {"1", "2"}) {
      SCOPED_TRACE(sc.name + ", GDN_SM90_GROUPS=" + groups);
      sc.seed = 103;
      const ScopedEnv split("GDN_CUDA_SEGMENTS", segments), pairing("GDN_SM90_GROUPS", groups);
      expect_setting_keeps_bits(sc, "GDN_SM90_LOCAL_SKIP", "0", "1");
      ++tried;
    }
  }
  EXPECT_EQ(tried, 4);
}

// The persistent state pass (GDN_SM90_PERSIST=1: where the CTA items
// outnumber the SMs, one CTA an SM takes its items after the first from a
// ticket counter) computes every item as the grid's CTA for it does: the
// bits of the grid in the two-kernel and split forms, with one tile a CTA
// and (K = 128) two, empty and short sequences, checkpoints, K = 128 and 64,
// and the reference matched. A call repeated on the same workspace (the
// counter left past the items by the call before; the prep kernel zeroes
// it) writes every output again, the same bits, with the offsets inline and
// from chunk_meta (whose sequence order sits beside the counter), and the
// counter ends at the item count, which only the persistent pass leaves
// there. A call without tokens keeps the grid (no prep kernel zeroes the
// counter) and matches the reference.
TEST(Sm90Persist, GivesTheBitsOfTheGrid) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  Case c;
  c.name = "persistent: 64 sequences of 0 to 286 tokens, pool, checkpoints every 64";
  for (int i = 0; i < 64; ++i) c.seq_lens.push_back((i * 53) % 300);  // (the first empty)
  c.H = 4, c.HV = 8, c.K = c.V = 128;
  c.pool = true;
  c.checkpoint_every = 64;
  c.seed = 101;
  Case d = c;
  d.name = "persistent: the lengths at k=v=64, dense states";
  d.K = d.V = 64, d.pool = false, d.checkpoint_every = 0;
  const ScopedEnv no_p_first("GDN_SM90_PFIRST", nullptr);  // (P first keeps the grid)
  for (const char* form : {"0", "2"})
    for (const char* groups : {"1", "2"})
      for (const Case& sc : {c, d}) {
        if (sc.V == 64 && groups[0] == '2') continue;  // (one tile an item: nothing to pair)
        SCOPED_TRACE(sc.name + ", GDN_SM90_FUSED=" + form + ", GDN_SM90_GROUPS=" + groups);
        const ScopedEnv pass_form("GDN_SM90_FUSED", form), pairing("GDN_SM90_GROUPS", groups);
        {  // (the launch persists for this shape: else both runs would take the grid)
          const ScopedEnv persist("GDN_SM90_PERSIST", "1");
          ASSERT_TRUE(cuda::sm90::persist_requested());
          ASSERT_TRUE(cuda::sm90::persistent_shape(static_cast<int64_t>(sc.seq_lens.size()), sc.HV, sc.V / 64,
                                                   1, static_cast<cuda::sm90::PassForm>(form[0] - '0'), sms,
                                                   false));
        }
        expect_setting_keeps_bits(sc, "GDN_SM90_PERSIST", "0", "1");
      }
  const ScopedEnv persist("GDN_SM90_PERSIST", "1"), default_pairing("GDN_SM90_GROUPS", nullptr);
  const int64_t n = static_cast<int64_t>(c.seq_lens.size());
  for (const char* form : {"0", "2"})
    for (const char* inline_offsets : {"1", "0"}) {
      SCOPED_TRACE(std::string("repeated persistent calls, GDN_SM90_FUSED=") + form +
                   ", GDN_CUDA_INLINE_OFFSETS=" + inline_offsets);
      const ScopedEnv pass_form("GDN_SM90_FUSED", form), offsets("GDN_CUDA_INLINE_OFFSETS", inline_offsets);
      Workload w(for_gpu(c), true);
      ASSERT_TRUE(w.status().ok()) << w.status().message();
      Args a = w.args();
      a.backend = Backend::kSm90;
      a.strict = true;
      a.write_final_state = false;  // the pool stays, so every call starts from the same states
      ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));
      CUDA_OK(cudaDeviceSynchronize());
      const auto first = device_bytes(a.out), first_ckpt = device_bytes(a.checkpoints);
      for (int i = 0; i < 2; ++i) {
        ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // (out and checkpoints poisoned first)
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT_EQ(first, device_bytes(a.out)) << "run " << i;
        EXPECT_EQ(first_ckpt, device_bytes(a.checkpoints)) << "run " << i;
      }
      // The ticket counter: every CTA took tickets up to one past the items
      // (pairs of tiles here).
      const std::vector<int32_t> region = ticket_region(a, c);
      ASSERT_FALSE(region.empty());
      EXPECT_EQ(region[0], n * c.HV);
    }
  Case empty = c;
  empty.name = "persistent: 200 sequences without tokens";
  empty.seq_lens.assign(200, 0);
  const ScopedEnv chunked("GDN_CUDA_SHORT_PREFILL", "0");  // (else the token recurrence runs it)
  for (const char* form : {"0", "2"}) {
    SCOPED_TRACE(empty.name + ", GDN_SM90_FUSED=" + form);
    const ScopedEnv pass_form("GDN_SM90_FUSED", form);
    matches_reference(Backend::kSm90, for_gpu(empty));
  }
}

// The sm90 prefill's three forms, the fused state pass (GDN_SM90_FUSED=1: a
// prep warpgroup in each CTA forms Au, L and the factors), the two-kernel
// one (=0: the prep kernel's results copied in) and the split one (=2: the
// prep kernel's Au and factors copied in, L and s_q formed in the CTA), all
// match the reference, whole and split, with short last chunks, both head
// sizes, with and without host copies of the offsets (the fused pass first
// in the stream, writing the error flag itself); and the fused and split
// passes are no less accurate than the two-kernel one beyond 5%.
TEST(Sm90Fused, EveryFormMatchesTheReference) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  std::vector<std::pair<Case, const char*>> cases = sm90_cases("fused");
  cases[2].first.name += ", adversarial gates";
  cases[2].first.adversarial_gates = true;
  Case c = suite_like();
  c.name = "fused: one dense sequence of 1000, no initial state";
  c.seq_lens = {1000};
  c.pool = false, c.initial_state = false, c.checkpoint_every = 0;
  cases.emplace_back(c, "1");
  for (auto& [sc, segments] : cases) {
    sc.seed = 93;
    const ScopedEnv split("GDN_CUDA_SEGMENTS", segments);
    for (const char* inline_offsets : {"1", "0"}) {
      const ScopedEnv offsets("GDN_CUDA_INLINE_OFFSETS", inline_offsets);
      const char* forms[] = {"0", "1", "2"};
      CaseResult r[3];
      for (int f = 0; f < 3; ++f) {
        SCOPED_TRACE(sc.name + ", GDN_SM90_FUSED=" + forms[f] +
                     ", GDN_CUDA_INLINE_OFFSETS=" + inline_offsets);
        const ScopedEnv fused("GDN_SM90_FUSED", forms[f]);
        r[f] = run_case(for_gpu(sc), Backend::kSm90);
        expect_case_passes(for_gpu(sc), r[f]);
      }
      constexpr double kSlack = 1.05;
      for (int f = 1; f < 3; ++f) {
        SCOPED_TRACE(sc.name + ", GDN_SM90_FUSED=" + forms[f] +
                     ", GDN_CUDA_INLINE_OFFSETS=" + inline_offsets);
        EXPECT_LE(r[f].out.rel_rms, kSlack * r[0].out.rel_rms) << "two-kernel: " << r[0].out.rel_rms;
        EXPECT_LE(r[f].state.rel_rms, kSlack * r[0].state.rel_rms) << "two-kernel: " << r[0].state.rel_rms;
      }
    }
  }
}

// Without GDN_SM90_FUSED the form follows pass_form_for's rule: the fused
// pass when a host copy of cu_seqlens shows every sequence at most one chunk
// long and the CTAs fit the SMs, kSplitL when the CTAs in pairs of tiles
// outnumber the SMs (and no sequence is split or outlasts the rest), the
// two-kernel pass otherwise. The forms' bits differ (the in-pass prep sums
// the rows' norms in another order, and the fused one inverts on its own),
// so the default call's bits name the form that ran.
TEST(Sm90Fused, TheDefaultFormFollowsTheRule) {
  REQUIRE_GPU();
  if (!serves(Backend::kSm90, suite_like())) GTEST_SKIP() << "sm90 is not available here";
  int sms = 0;
  CUDA_OK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const auto bits = [](const Case& c, const char* form) {
    const ScopedEnv env("GDN_SM90_FUSED",
                        form);  // nullptr: the default (a run may force a form for every test)
    PrefillBytes b = sm90_prefill_bytes(c);
    b.out.insert(b.out.end(), b.states.begin(), b.states.end());
    return b.out;
  };
  Case c = suite_like();  // 4 q/k heads, 8 value heads: 2 sequences x 8 heads x 2 tiles fit any sm_90 part
  c.seed = 95;
  c.checkpoint_every = 0;
  struct Shape {
    const char* name;
    std::vector<int64_t> seq_lens;
    int form;  // GDN_SM90_FUSED's value for the form the rule picks
  };
  const Shape shapes[] = {
      {"every sequence one chunk, the CTAs fit: fused", {64, 40}, 1},
      {"a sequence of two chunks, the CTAs fit: two-kernel", {100, 40}, 0},
      // 16 tiles a sequence: sms / 8 + 1 sequences outnumber the SMs in pairs
      {"sms / 8 + 1 sequences of two chunks: kSplitL", std::vector<int64_t>(sms / 8 + 1, 100), 2},
  };
  for (const Shape& shape : shapes) {
    c.seq_lens = shape.seq_lens;
    c.name = shape.name;
    SCOPED_TRACE(c.name);
    const std::vector<uint8_t> by_default = bits(c, nullptr);
    std::vector<uint8_t> forced[3];
    for (int f = 0; f < 3; ++f) forced[f] = bits(c, std::to_string(f).c_str());
    for (int f = 0; f < 3; ++f) {
      if (f == shape.form) continue;
      EXPECT_NE(forced[shape.form], forced[f])
          << "forms " << shape.form << " and " << f << " give the same bits: the test cannot tell them apart";
    }
    EXPECT_EQ(by_default, forced[shape.form]);
  }
}

// pass_form_for's rule on the suite's shapes (host code: it runs without a
// GPU, so CI holds the rule too): fused where every sequence is one chunk
// and the tiles fit the SMs, kSplitL where the tiles exceed twice the SMs
// and no sequence is split or outlasts the rest, else two-kernel; a valid
// GDN_SM90_FUSED forces a form, any other value is ignored.
TEST(Sm90Rule, TheFormFollowsTheShape) {
  using cuda::sm90::PassForm;
  const ScopedEnv unforced("GDN_SM90_FUSED", nullptr);
  const auto form = [](int64_t n, int64_t hv, int segments, bool one_chunk, bool long_tail) {
    return cuda::sm90::pass_form_for_shape(n, hv, 2, segments, 132, one_chunk, long_tail);  // K = V = 128
  };
  EXPECT_EQ(form(1, 32, 1, true, false), PassForm::kFused);        // q3n-tp1 1x64: 64 tiles
  EXPECT_EQ(form(4, 32, 1, true, false), PassForm::kTwoKernel);    // 4x7: 256 tiles, more than fit
  EXPECT_EQ(form(1, 32, 1, false, false), PassForm::kTwoKernel);   // 1x8192: one chain a CTA
  EXPECT_EQ(form(4, 32, 1, false, false), PassForm::kTwoKernel);   // 4x1000: 256 tiles, pairs fit
  EXPECT_EQ(form(8, 32, 1, false, false), PassForm::kSplitL);      // 8x1024: 512 tiles
  EXPECT_EQ(form(257, 32, 1, false, false), PassForm::kSplitL);    // 257 short
  EXPECT_EQ(form(32, 32, 1, false, true), PassForm::kTwoKernel);   // skewed: a long tail
  EXPECT_EQ(form(1, 8, 9, false, false), PassForm::kTwoKernel);    // q35-397b-tp8 1x65536, 9 segments
  EXPECT_EQ(form(300, 8, 3, false, false), PassForm::kTwoKernel);  // split sequences
  const auto forced = [&](const char* value) {
    const ScopedEnv env("GDN_SM90_FUSED", value);
    return form(8, 32, 1, false, false);
  };
  EXPECT_EQ(forced("0"), PassForm::kTwoKernel);
  EXPECT_EQ(forced("1"), PassForm::kFused);
  EXPECT_EQ(forced("2"), PassForm::kSplitL);
  EXPECT_EQ(forced("3"), PassForm::kSplitL);   // not a form: the rule's
  EXPECT_EQ(forced("22"), PassForm::kSplitL);  // likewise
}

// The candidates' settings as the launches read them (host code, so CI holds
// them): GDN_SM90_PFIRST only as "1"; GDN_PREP_HEADS a count of 2 to 4 that
// divides the group, or max for the most that do, else one head a CTA.
TEST(Sm90Rule, TheCandidateSettingsReadAsDocumented) {
  const auto p_first = [](const char* value) {
    const ScopedEnv env("GDN_SM90_PFIRST", value);
    return cuda::sm90::p_first_requested();
  };
  EXPECT_FALSE(p_first(nullptr));
  EXPECT_FALSE(p_first("0"));
  EXPECT_TRUE(p_first("1"));
  EXPECT_FALSE(p_first("yes"));
  const auto heads = [](const char* value, int64_t group) {
    const ScopedEnv env("GDN_PREP_HEADS", value);
    return cuda::prep_heads_for_group(group);
  };
  EXPECT_EQ(heads(nullptr, 4), 1);
  EXPECT_EQ(heads("2", 2), 2);
  EXPECT_EQ(heads("2", 4), 2);
  EXPECT_EQ(heads("3", 2), 1);  // 3 does not divide 2
  EXPECT_EQ(heads("3", 6), 3);
  EXPECT_EQ(heads("4", 8), 4);
  EXPECT_EQ(heads("8", 8), 1);  // more than kMaxPrepHeads
  EXPECT_EQ(heads("max", 2), 2);
  EXPECT_EQ(heads("max", 6), 3);
  EXPECT_EQ(heads("max", 8), 4);
  EXPECT_EQ(heads("max", 1), 1);
  EXPECT_EQ(heads("max", 5), 1);
  // The switches that read "1" as on and anything else as off.
  const std::pair<const char*, bool (*)()> switches[] = {
      {"GDN_SM90_PERSIST", cuda::sm90::persist_requested},
      {"GDN_SM90_LOCAL_SKIP", cuda::sm90::local_skip_requested},
      {"GDN_SM90_OVERLAP", cuda::sm90::overlap_requested}};
  for (const auto& [var, on] : switches) {
    SCOPED_TRACE(var);
    for (const char* value : {static_cast<const char*>(nullptr), "0", "1", "on"}) {
      const ScopedEnv env(var, value);
      EXPECT_EQ(on(), value != nullptr && std::string(value) == "1") << (value ? value : "unset");
    }
  }
}

// Where the overlapped prep runs when asked (K = V = 128, 132 SMs): whole
// sequences in the two-kernel form whose CTAs leave at least half the SMs
// idle, the prep taking those SMs.
TEST(Sm90Rule, TheOverlappedPrepTakesTheIdleSms) {
  using cuda::sm90::PassForm;
  const ScopedEnv default_pairing("GDN_SM90_GROUPS", nullptr), p_first("GDN_SM90_PFIRST", nullptr);
  const auto prep_ctas = [](int64_t n, int64_t hv, int segments, PassForm form) {
    return cuda::sm90::overlap_prep_ctas_for_shape(n, hv, 2, segments, form, 132, false);
  };
  EXPECT_EQ(prep_ctas(1, 32, 1, PassForm::kTwoKernel), 68);  // q3n-tp1 1x8192: 64 state CTAs
  EXPECT_EQ(prep_ctas(1, 8, 1, PassForm::kTwoKernel), 116);  // one sequence, 8 value heads, whole
  EXPECT_EQ(prep_ctas(1, 48, 1, PassForm::kTwoKernel), 0);   // q36-27b-tp1 1x8192: 96 state CTAs
  EXPECT_EQ(prep_ctas(4, 32, 1, PassForm::kTwoKernel), 0);   // 4x1000: 128 paired CTAs
  EXPECT_EQ(prep_ctas(1, 8, 8, PassForm::kTwoKernel), 0);    // a split
  EXPECT_EQ(prep_ctas(1, 32, 1, PassForm::kSplitL), 0);      // other forms
  EXPECT_EQ(prep_ctas(1, 32, 1, PassForm::kFused), 0);
  const ScopedEnv first("GDN_SM90_PFIRST", "1");
  EXPECT_EQ(prep_ctas(1, 32, 1, PassForm::kTwoKernel), 0);  // P first has no overlapped build
}

// Which shapes the persistent pass takes when asked (K = V = 128, 132 SMs):
// whole sequences whose CTAs, paired as the launch pairs them, outnumber the
// SMs, in the forms a prep kernel feeds.
TEST(Sm90Rule, ThePersistentPassTakesWholeSequencesPastTheSms) {
  using cuda::sm90::PassForm;
  const ScopedEnv default_pairing("GDN_SM90_GROUPS", nullptr), p_first("GDN_SM90_PFIRST", nullptr);
  const auto persistent = [](int64_t n, int64_t hv, int segments, PassForm form, bool long_tail) {
    return cuda::sm90::persistent_shape(n, hv, 2, segments, form, 132, long_tail);
  };
  EXPECT_TRUE(persistent(32, 32, 1, PassForm::kSplitL, false));      // 32x1024: 1024 paired CTAs
  EXPECT_TRUE(persistent(257, 32, 1, PassForm::kSplitL, false));     // 257 short
  EXPECT_TRUE(persistent(64, 8, 1, PassForm::kTwoKernel, false));    // q3n-tp4 64x512 (two-kernel forced)
  EXPECT_FALSE(persistent(4, 32, 1, PassForm::kTwoKernel, false));   // 4x1000: 128 paired CTAs fit
  EXPECT_FALSE(persistent(1, 32, 1, PassForm::kTwoKernel, false));   // 1x8192: 64 CTAs
  EXPECT_TRUE(persistent(32, 32, 1, PassForm::kTwoKernel, true));    // skewed: 2048 unpaired CTAs
  EXPECT_FALSE(persistent(300, 8, 3, PassForm::kTwoKernel, false));  // split sequences keep the grid
  EXPECT_FALSE(persistent(32, 32, 1, PassForm::kFused, false));      // no prep kernel zeroes the counter
  const ScopedEnv first("GDN_SM90_PFIRST", "1");
  EXPECT_FALSE(persistent(32, 32, 1, PassForm::kTwoKernel, false));  // P first has no persistent build
  EXPECT_TRUE(persistent(32, 32, 1, PassForm::kSplitL, false));
}
#endif

TEST_P(GpuPrefill, RepeatedCallsAreBitwiseIdentical) {
  Workload w(suite_like(), true);
  ASSERT_TRUE(w.status().ok()) << w.status().message();
  Args a = on_backend(w.args());
  a.write_final_state = false;  // keep the pool fixed so both calls see the same start
  ASSERT_TRUE(prefill(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const auto first = device_bytes(a.out);
  const auto first_ckpt = device_bytes(a.checkpoints);
  for (int i = 0; i < 3; ++i) {
    CUDA_OK(cudaMemset(a.out.data, 0xFF, first.size()));
    ASSERT_TRUE(prefill(a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(first, device_bytes(a.out)) << "run " << i;
    EXPECT_EQ(first_ckpt, device_bytes(a.checkpoints)) << "run " << i;
  }
}

// Workspace::run (one validation, scratch from the helper) gives the bytes a
// call with separately prepared scratch gives; a rejected call writes nothing
// and allocates nothing.
TEST(CudaProperties, WorkspaceRunMatchesAPreparedCall) {
  REQUIRE_GPU();
  Workload w(suite_like(), true);
  ASSERT_TRUE(w.status().ok()) << w.status().message();
  Args a = w.args();
  a.backend = Backend::kCuda;
  a.strict = true;
  a.write_final_state = false;
  ASSERT_TRUE(prefill(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const auto prepared = device_bytes(a.out);
  Args b = a;
  b.workspace = nullptr;
  b.workspace_bytes = 0;
  Workspace ws;
  Args bad = b;
  bad.v.shape[1] += 1;  // HV no longer a multiple of H
  CUDA_OK(cudaMemset(b.out.data, 0xFF, prepared.size()));
  const auto poisoned = device_bytes(b.out);
  EXPECT_EQ(ws.run(Op::kPrefill, bad).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws.bytes(), 0u);
  EXPECT_EQ(poisoned, device_bytes(b.out));
  ASSERT_TRUE(ws.run(Op::kPrefill, b).ok());
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_GT(ws.bytes(), 0u);
  EXPECT_EQ(prepared, device_bytes(b.out));
}

TEST_P(GpuPrefill, GraphCaptureReplaysTheSameResult) {
  Workload w(suite_like(), true);
  ASSERT_TRUE(w.status().ok());
  Args a = on_backend(w.args());
  a.write_final_state = false;
  ASSERT_TRUE(prefill(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const auto eager = device_bytes(a.out);

  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  a.stream = stream;
  cudaGraphExec_t exec;
  ASSERT_NO_FATAL_FAILURE(capture(
      stream, [&] { return prefill(a); }, &exec));
  for (int i = 0; i < 3; ++i) {
    CUDA_OK(cudaMemsetAsync(a.out.data, 0xFF, eager.size(), stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_EQ(eager, device_bytes(a.out)) << "replay " << i;
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaStreamDestroy(stream));
}

TEST_P(GpuPrefill, NonDefaultStreamAndOutInsideALargerBuffer) {
  Case c = suite_like();
  c.pool = false;
  c.checkpoint_every = 0;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok());
  Args a = on_backend(w.args());
  ASSERT_TRUE(prefill(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const auto contiguous = device_bytes(a.out);

  // out as the first half of a [T, HV, 2V] buffer; the second half keeps its pattern.
  const int64_t T = a.out.shape[0], HV = a.out.shape[1], V = a.out.shape[2];
  const size_t es = dtype_size(a.out.dtype);
  void* wide = nullptr;
  CUDA_OK(cudaMalloc(&wide, static_cast<size_t>(T * HV * 2 * V) * es));
  CUDA_OK(cudaMemset(wide, 0x5A, static_cast<size_t>(T * HV * 2 * V) * es));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  Args b = a;
  b.out = with_strides(make_tensor(wide, a.out.dtype, {T, HV, V}), {HV * 2 * V, 2 * V, 1});
  b.stream = stream;
  ASSERT_TRUE(prefill(b).ok());
  CUDA_OK(cudaStreamSynchronize(stream));
  std::vector<uint8_t> h(static_cast<size_t>(T * HV * 2 * V) * es);
  CUDA_OK(cudaMemcpy(h.data(), wide, h.size(), cudaMemcpyDeviceToHost));
  for (int64_t r = 0; r < T * HV; ++r) {
    ASSERT_EQ(0, std::memcmp(&h[r * 2 * V * es], &contiguous[r * V * es], V * es)) << "row " << r;
    for (size_t i = 0; i < V * es; ++i) ASSERT_EQ(h[(r * 2 + 1) * V * es + i], 0x5A) << "row " << r;
  }
  cudaFree(wide);
  cudaStreamDestroy(stream);
}

// The first `rows` rows (along dimension 0) of a device tensor, as bytes.
std::vector<uint8_t> leading_rows(const Tensor& t, int64_t rows) {
  std::vector<uint8_t> h(static_cast<size_t>(rows * t.stride[0]) * dtype_size(t.dtype));
  EXPECT_EQ(cudaSuccess, cudaMemcpy(h.data(), t.data, h.size(), cudaMemcpyDeviceToHost));
  return h;
}

// Sets every 16-bit element of rows [first, first + rows) of a device tensor
// to `bits`.
void fill_rows16(const Tensor& t, int64_t first, int64_t rows, uint16_t bits) {
  ASSERT_EQ(dtype_size(t.dtype), 2u);
  const std::vector<uint16_t> h(static_cast<size_t>(rows * t.stride[0]), bits);
  CUDA_OK(cudaMemcpy(static_cast<uint16_t*>(t.data) + first * t.stride[0], h.data(), h.size() * 2,
                     cudaMemcpyHostToDevice));
}

// A sequence's last chunk runs past its end into the next sequence's
// tokens. Those rows must contribute nothing even when they are not finite:
// with +Inf in every k and NaN in every v of the next sequence, the first
// sequence's outputs and final state stay bitwise what they were with
// finite neighbours, whole and split into segments.
TEST_P(GpuPrefill, ANonFiniteNeighbourLeavesASequenceBitwiseUnchanged) {
  for (const char* segments : {"1", "3"}) {
    SCOPED_TRACE(std::string("GDN_CUDA_SEGMENTS=") + segments);
    ScopedEnv env("GDN_CUDA_SEGMENTS", segments);
    Case c;
    c.name = "non-finite neighbour";
    c.seq_lens = {1000, 80};  // the first one's last chunk holds 40 of its tokens
    c.H = 2, c.HV = 4, c.K = c.V = 128;
    c.seed = 23;
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok()) << w.status().message();
    Args a = on_backend(w.args());
    ASSERT_TRUE(prefill(a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    const int64_t len0 = c.seq_lens[0], len1 = c.seq_lens[1];
    const auto out0 = leading_rows(a.out, len0), state0 = leading_rows(a.final_state, 1);
    fill_rows16(a.k, len0, len1, 0x7F80);  // bf16 +Inf
    fill_rows16(a.v, len0, len1, 0x7FC0);  // bf16 NaN
    ASSERT_TRUE(prefill(a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(out0, leading_rows(a.out, len0));
    EXPECT_EQ(state0, leading_rows(a.final_state, 1));
  }
}

// Without host copies, cu_seqlens and state_indices (range and uniqueness)
// are checked on the GPU.
// A prefill that fails there returns Ok (nothing waits on the device) but
// writes nothing: out and the pool keep their bytes; and
// prefill_device_status names the argument and the rule. Good inputs report
// Ok, also after a failed call (the result is written on every call).
// (No checkpoints: without a host copy of cu_seqlens the call wants the
// T / checkpoint_every rows of the worst case.)
TEST_P(GpuPrefill, DeviceSideChecksWriteNothingAndAreReported) {
  Case c = suite_like();
  c.checkpoint_every = 0;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok()) << w.status().message();
  Args a = on_backend(w.args());
  a.cu_seqlens_host = nullptr;
  a.state_indices_host = nullptr;
  ASSERT_EQ(a.cu_seqlens.dtype, DType::kI32);
  ASSERT_EQ(a.state_indices.dtype, DType::kI32);
  auto run = [&a] {
    const Status s = prefill(a);
    ASSERT_TRUE(s.ok()) << s.message();
  };
  ASSERT_NO_FATAL_FAILURE(run());
  const Status good = prefill_device_status(a);
  EXPECT_TRUE(good.ok()) << good.message();

  const std::vector<uint8_t> cu0 = device_bytes(a.cu_seqlens), idx0 = device_bytes(a.state_indices);
  auto set_i32 = [](const Tensor& t, int64_t i, int32_t value) {
    CUDA_OK(cudaMemcpy(static_cast<int32_t*>(t.data) + i * t.stride[0], &value, sizeof(value),
                       cudaMemcpyHostToDevice));
  };
  struct Bad {
    const char* what;
    const Tensor* tensor;
    int64_t at;
    int32_t value;
    const char* expect;
  };
  const int32_t* cu = reinterpret_cast<const int32_t*>(cu0.data());
  // Two sequences with cached rows: the second is made to name the first's.
  const int32_t* idx = reinterpret_cast<const int32_t*>(idx0.data());
  std::vector<int64_t> cached;
  for (int64_t n = 0; n < static_cast<int64_t>(idx0.size() / 4); ++n)
    if (idx[n] >= 0) cached.push_back(n);
  ASSERT_GE(cached.size(), 2u) << "the workload needs two sequences with pool rows";
  const Bad bads[] = {
      {"cu_seqlens[2] above cu_seqlens[3]", &a.cu_seqlens, 2, cu[3] + 1,
       "cu_seqlens: must be non-decreasing"},
      {"cu_seqlens ending past T", &a.cu_seqlens, static_cast<int64_t>(cu0.size() / 4 - 1),
       cu[cu0.size() / 4 - 1] + 64, "cu_seqlens: must be non-decreasing"},
      {"a pool index past the pool", &a.state_indices, 1, static_cast<int32_t>(a.initial_state.shape[0]),
       "state_indices: every index must be below the pool's"},
      {"two sequences naming one pool row", &a.state_indices, cached[1], idx[cached[0]],
       "state_indices: a pool row appears twice"},
  };
  for (const Bad& bad : bads) {
    SCOPED_TRACE(bad.what);
    poison_device(a.out);
    const std::vector<uint8_t> out0 = device_bytes(a.out), pool0 = device_bytes(a.initial_state);
    set_i32(*bad.tensor, bad.at, bad.value);
    ASSERT_NO_FATAL_FAILURE(run());
    const Status s = prefill_device_status(a);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(bad.expect), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("the prefill wrote nothing"), std::string::npos) << s.message();
    EXPECT_EQ(out0, device_bytes(a.out));
    EXPECT_EQ(pool0, device_bytes(a.initial_state));
    restore_device(a.cu_seqlens, cu0);
    restore_device(a.state_indices, idx0);
    ASSERT_NO_FATAL_FAILURE(run());
    const Status again = prefill_device_status(a);
    EXPECT_TRUE(again.ok()) << again.message();
  }
}

// A call with host copies of cu_seqlens and state_indices and at most
// kInlineSeqs (64) sequences carries its chunk offsets in the kernel
// parameters instead of running chunk_meta: the same bytes as the call
// without host copies, and it clears the flag a failed call left.
TEST_P(GpuPrefill, InlineOffsetsGiveTheBitsOfDeviceMetadata) {
  struct Variant {
    const char* name;
    std::vector<int64_t> seq_lens;
    int64_t checkpoint_every;
    const char* segments;  // GDN_CUDA_SEGMENTS, or nullptr
  };
  // With checkpoints the lengths make sum floor(L_n / every) == T / every,
  // the rows a call without a host copy of cu_seqlens asks for.
  const Variant variants[] = {
      {"whole sequences", suite_like().seq_lens, 0, nullptr},
      {"checkpoints", {128, 256, 1000, 7}, 128, nullptr},
      {"three segments", suite_like().seq_lens, 0, "3"},
  };
  for (const Variant& var : variants) {
    SCOPED_TRACE(var.name);
    std::optional<ScopedEnv> segments;
    if (var.segments != nullptr) segments.emplace("GDN_CUDA_SEGMENTS", var.segments);
    Case c = suite_like();
    c.seq_lens = var.seq_lens;
    c.checkpoint_every = var.checkpoint_every;
    ASSERT_LE(c.seq_lens.size(), 64u) << "the inline path takes at most 64 sequences";
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok()) << w.status().message();
    Args a = on_backend(w.args());
    const void* cu_host = a.cu_seqlens_host;
    const void* idx_host = a.state_indices_host;
    ASSERT_NE(cu_host, nullptr);
    ASSERT_NE(idx_host, nullptr);
    const std::vector<uint8_t> pool0 = device_bytes(a.initial_state), idx0 = device_bytes(a.state_indices);
    ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // inline offsets
    const std::vector<uint8_t> out_inline = device_bytes(a.out), pool_inline = device_bytes(a.initial_state);
    const std::vector<uint8_t> ckpt_inline =
        a.checkpoints.defined() ? device_bytes(a.checkpoints) : std::vector<uint8_t>{};
    restore_device(a.initial_state, pool0);
    a.cu_seqlens_host = nullptr;
    a.state_indices_host = nullptr;
    ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // chunk_meta
    EXPECT_EQ(out_inline, device_bytes(a.out));
    EXPECT_EQ(pool_inline, device_bytes(a.initial_state));
    if (a.checkpoints.defined()) {
      EXPECT_EQ(ckpt_inline, device_bytes(a.checkpoints));
    }

    // A failed device check, then an inline call: the flag reads Ok again.
    const int32_t past = static_cast<int32_t>(a.initial_state.shape[0]);
    CUDA_OK(cudaMemcpy(a.state_indices.data, &past, sizeof(past), cudaMemcpyHostToDevice));
    ASSERT_TRUE(prefill(a).ok());
    EXPECT_EQ(prefill_device_status(a).code(), StatusCode::kInvalidArgument);
    restore_device(a.state_indices, idx0);
    a.cu_seqlens_host = cu_host;
    a.state_indices_host = idx_host;
    ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));
  }
}

// The state passes run sequences longest first (params.h, kOrderedSeqs):
// the same bytes as index order (GDN_CUDA_ORDER=0), from the host's table
// (inline offsets) and from chunk_meta's (no host copies; more than
// kInlineSeqs sequences), whole and in three segments.
TEST_P(GpuPrefill, LongestFirstOrderGivesTheBitsOfIndexOrder) {
  std::vector<int64_t> many;  // 300 sequences, lengths 1..~700 in no order
  for (int i = 0; i < 300; ++i) many.push_back(1 + (i * 7919) % 701);
  struct Variant {
    const char* name;
    std::vector<int64_t> seq_lens;
    bool host_copies;
    const char* segments;  // GDN_CUDA_SEGMENTS, or nullptr
  };
  const Variant variants[] = {
      {"inline", {65, 1000, 7, 130, 1, 64, 1000, 63}, true, nullptr},
      {"chunk_meta", {65, 1000, 7, 130, 1, 64, 1000, 63}, false, nullptr},
      {"chunk_meta, three segments", {65, 1000, 7, 130, 1, 64, 1000, 63}, false, "3"},
      {"300 sequences", many, true, nullptr},
  };
  for (const Variant& var : variants) {
    SCOPED_TRACE(var.name);
    std::optional<ScopedEnv> segments;
    if (var.segments != nullptr) segments.emplace("GDN_CUDA_SEGMENTS", var.segments);
    Case c = suite_like();
    c.seq_lens = var.seq_lens;
    c.checkpoint_every = 0;
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok()) << w.status().message();
    Args a = on_backend(w.args());
    if (!var.host_copies) {
      a.cu_seqlens_host = nullptr;
      a.state_indices_host = nullptr;
    }
    const std::vector<uint8_t> pool0 = device_bytes(a.initial_state);
    ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // longest first
    const std::vector<uint8_t> out_ordered = device_bytes(a.out),
                               pool_ordered = device_bytes(a.initial_state);
    restore_device(a.initial_state, pool0);
    {
      ScopedEnv index_order("GDN_CUDA_ORDER", "0");
      ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));
    }
    EXPECT_EQ(out_ordered, device_bytes(a.out));
    EXPECT_EQ(pool_ordered, device_bytes(a.initial_state));
  }
}

// One sequence without host copies: its only valid cu_seqlens is [0, T], so
// it carries inline offsets too and the prep checks cu_seqlens and the pool
// row itself. The bits of the chunk_meta path (GDN_CUDA_INLINE_OFFSETS=0),
// whole, with checkpoints and in three segments; a bad cu_seqlens or pool
// row writes nothing and is reported, and good inputs report Ok again.
TEST_P(GpuPrefill, OneSequenceWithoutHostCopiesChecksItselfInline) {
  struct Variant {
    const char* name;
    int64_t len, checkpoint_every;
    const char* segments;  // GDN_CUDA_SEGMENTS, or nullptr
  };
  const Variant variants[] = {
      {"whole", 1000, 0, nullptr}, {"checkpoints", 1024, 128, nullptr}, {"three segments", 4096, 0, "3"}};
  for (const Variant& var : variants) {
    SCOPED_TRACE(var.name);
    std::optional<ScopedEnv> segments;
    if (var.segments != nullptr) segments.emplace("GDN_CUDA_SEGMENTS", var.segments);
    Case c = suite_like();
    c.seq_lens = {var.len};
    c.checkpoint_every = var.checkpoint_every;
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok()) << w.status().message();
    Args a = on_backend(w.args());
    a.cu_seqlens_host = nullptr;
    a.state_indices_host = nullptr;
    ASSERT_EQ(a.cu_seqlens.dtype, DType::kI32);
    ASSERT_EQ(a.state_indices.dtype, DType::kI32);
    const std::vector<uint8_t> pool0 = device_bytes(a.initial_state), cu0 = device_bytes(a.cu_seqlens),
                               idx0 = device_bytes(a.state_indices);
    ASSERT_GE(reinterpret_cast<const int32_t*>(idx0.data())[0], 0) << "the sequence needs a pool row";
    {
      ScopedEnv meta("GDN_CUDA_INLINE_OFFSETS", "0");
      ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // chunk_meta
    }
    const std::vector<uint8_t> out_meta = device_bytes(a.out), pool_meta = device_bytes(a.initial_state);
    const std::vector<uint8_t> ckpt_meta =
        a.checkpoints.defined() ? device_bytes(a.checkpoints) : std::vector<uint8_t>{};
    restore_device(a.initial_state, pool0);
    ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));  // inline, checked by the prep
    EXPECT_EQ(out_meta, device_bytes(a.out));
    EXPECT_EQ(pool_meta, device_bytes(a.initial_state));
    if (a.checkpoints.defined()) {
      EXPECT_EQ(ckpt_meta, device_bytes(a.checkpoints));
    }

    struct Bad {
      const char* what;
      const Tensor* tensor;
      int64_t at;
      int32_t value;
      const char* expect;
    };
    const Bad bads[] = {
        {"cu_seqlens starting at 1", &a.cu_seqlens, 0, 1, "cu_seqlens: must be non-decreasing"},
        {"cu_seqlens ending before T", &a.cu_seqlens, 1, static_cast<int32_t>(var.len - 1),
         "cu_seqlens: must be non-decreasing"},
        {"a pool index past the pool", &a.state_indices, 0, static_cast<int32_t>(a.initial_state.shape[0]),
         "state_indices: every index must be below the pool's"},
    };
    for (const Bad& bad : bads) {
      SCOPED_TRACE(bad.what);
      poison_device(a.out);
      const std::vector<uint8_t> out0 = device_bytes(a.out), pool1 = device_bytes(a.initial_state);
      CUDA_OK(cudaMemcpy(static_cast<int32_t*>(bad.tensor->data) + bad.at, &bad.value, sizeof(bad.value),
                         cudaMemcpyHostToDevice));
      ASSERT_TRUE(prefill(a).ok());
      const Status st = prefill_device_status(a);
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
      EXPECT_NE(st.message().find(bad.expect), std::string::npos) << st.message();
      EXPECT_EQ(out0, device_bytes(a.out));
      EXPECT_EQ(pool1, device_bytes(a.initial_state));
      restore_device(a.cu_seqlens, cu0);
      restore_device(a.state_indices, idx0);
      ASSERT_NO_FATAL_FAILURE(prefill_reports_ok(a));
    }
  }
}

// A prefill whose sequences are all at most 16 tokens long (known from the
// host copies) runs the token recurrence in one launch; it matches the
// reference, as the chunked pipeline does on the same inputs
// (GDN_CUDA_SHORT_PREFILL=0), with empty sequences, both layouts, a pool
// with padding rows, and it clears the device-check flag a failed prefill
// left on the workspace.
TEST_P(GpuPrefill, ShortSequencesTakeTheRecurrenceAndMatchTheReference) {
  for (const StateLayout layout : {StateLayout::kKV, StateLayout::kVK}) {
    Case c;
    c.name = "short prefill";
    c.seq_lens = {1, 7, 16, 0, 12, 3};
    c.H = 4, c.HV = 8, c.K = c.V = 128;
    c.pool = true;
    c.layout = layout;
    c = for_gpu(c);
    SCOPED_TRACE(layout == StateLayout::kKV ? "layout kv" : "layout vk");
    ASSERT_NO_FATAL_FAILURE(matches_reference(GetParam(), c));
    {
      ScopedEnv chunked("GDN_CUDA_SHORT_PREFILL", "0");
      ASSERT_NO_FATAL_FAILURE(matches_reference(GetParam(), c));
    }
  }
  Case c;
  c.seq_lens = {5, 16, 9};
  c.H = 2, c.HV = 4, c.K = c.V = 64;
  c.pool = true;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok()) << w.status().message();
  Args a = on_backend(w.args());
  const void* host_rows = a.state_indices_host;
  a.state_indices_host = nullptr;  // checked on the device: a bad row sets the flag
  const std::vector<uint8_t> idx0 = device_bytes(a.state_indices);
  const int32_t past = static_cast<int32_t>(a.initial_state.shape[0]);
  CUDA_OK(cudaMemcpy(a.state_indices.data, &past, sizeof(past), cudaMemcpyHostToDevice));
  ASSERT_TRUE(prefill(a).ok());
  EXPECT_EQ(prefill_device_status(a).code(), StatusCode::kInvalidArgument);
  CUDA_OK(cudaMemcpy(a.state_indices.data, idx0.data(), idx0.size(), cudaMemcpyHostToDevice));
  a.state_indices_host = host_rows;
  ASSERT_TRUE(prefill(a).ok());
  const Status s = prefill_device_status(a);
  EXPECT_TRUE(s.ok()) << s.message();
}

INSTANTIATE_TEST_SUITE_P(Backends, GpuPrefill, ::testing::Values(Backend::kCuda, Backend::kSm90),
                         backend_param_name);

// Enough (sequence, head, column tile) CTAs for two per SM: the state pass
// then runs its single-slot ring, which the smaller cases above never reach.
TEST(CudaProperties, ManyWorkItemsTakeTheSingleSlotRing) {
  REQUIRE_GPU();
  Case c;
  c.name = "many work items";
  for (int i = 0; i < 96; ++i) c.seq_lens.push_back(1 + (i * 37) % 150);
  c.H = 4, c.HV = 8, c.K = c.V = 128;  // 96 * 8 * 4 = 3072 CTAs of 32 columns
  c.pool = true;
  c.checkpoint_every = 64;
  const CaseResult r = run_case(c, Backend::kCuda);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  expect_case_passes(c, r);
}

TEST(CudaProperties, UnsupportedProblemsSayWhy) {
  REQUIRE_GPU();
  Case c = suite_like();
  c.K = c.V = 96;
  c.pool = false;
  c.checkpoint_every = 0;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok());
  const Status s = prefill(w.args());  // auto: nothing on the GPU serves K = 96
  EXPECT_EQ(s.code(), StatusCode::kUnsupported);
  EXPECT_NE(s.message().find("K, V in {64, 128}"), std::string::npos) << s.message();
}

// ---- Decode, verify and commit_states ----

std::vector<float> values_of(const std::vector<uint8_t>& bytes, DType dtype) {
  std::vector<float> v(bytes.size() / dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) v[i] = load_float(bytes.data(), dtype, static_cast<int64_t>(i));
  return v;
}

std::vector<float> device_values(const Tensor& t) {
  return values_of(device_bytes(t), t.dtype);
}

std::vector<float> host_values(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  return values_of({p, p + t.numel() * static_cast<int64_t>(dtype_size(t.dtype))}, t.dtype);
}

// Whether element i of a byte image holds the 0xFF poison in every byte.
bool poisoned(const std::vector<uint8_t>& b, size_t es, int64_t i) {
  for (size_t k = 0; k < es; ++k)
    if (b[static_cast<size_t>(i) * es + k] != 0xFF) return false;
  return true;
}

Args on_cuda(Args a) {
  a.backend = Backend::kCuda;
  a.strict = true;
  return a;
}

const int32_t* host_indices(const Args& a) {
  return static_cast<const int32_t*>(a.state_indices_host);
}

// The float64 reference's out and one of its state tensors (`state`: the
// final state, or the pool it updated) for case c run as op on the host.
struct RefValues {
  Status status;
  std::vector<float> out, state;
};
RefValues reference_values(const Case& c, Op op, Tensor Args::*state) {
  Workload ref(c);
  Args r = ref.args();
  r.backend = Backend::kReference;
  RefValues v;
  v.status = run(op, r);
  if (v.status.ok()) v.out = host_values(r.out), v.state = host_values(r.*state);
  return v;
}

struct DecodeVsPrefill {
  const char* name;
  DType io;
  StateLayout layout;
  int64_t K;
  double tol;  // decode against the float64 prefill
};

void PrintTo(const DecodeVsPrefill& v, std::ostream* os) {
  *os << v.name;
}

class CudaDecodeVsPrefill : public ::testing::TestWithParam<DecodeVsPrefill> {};

// One token per sequence: decode on cuda equals the prefill of those tokens,
// on the reference (to the fp32 bound) and on cuda's chunked pipeline (to the
// prefill's tf32 bound; without the host copy of cu_seqlens, so the prefill
// does not take the token recurrence that decode runs).
TEST_P(CudaDecodeVsPrefill, DecodeEqualsPrefillOfOneTokenPerSequence) {
  REQUIRE_GPU();
  const DecodeVsPrefill& v = GetParam();
  Case c;
  c.name = v.name;
  c.seq_lens.assign(12, 1);
  c.H = 2, c.HV = 8, c.K = c.V = v.K;
  c.io = v.io;
  c.layout = v.layout;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok()) << w.status().message();
  Args pre = on_cuda(w.args());
  pre.cu_seqlens_host = nullptr;
  ASSERT_TRUE(prefill(pre).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> out_pre = device_values(pre.out), state_pre = device_values(pre.final_state);
  poison_device(pre.out);
  poison_device(pre.final_state);
  Args dec = pre;
  dec.cu_seqlens = Tensor{};
  dec.cu_seqlens_host = nullptr;
  const Status s = decode(dec);
  ASSERT_TRUE(s.ok()) << s.message();
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<float> out_dec = device_values(dec.out), state_dec = device_values(dec.final_state);

  const RefValues ref = reference_values(c, Op::kPrefill, &Args::final_state);
  ASSERT_TRUE(ref.status.ok()) << ref.status.message();
  const std::vector<float>&out_ref = ref.out, &state_ref = ref.state;
  for (const auto* x : {&out_dec, &state_dec})
    for (float e : *x) ASSERT_TRUE(std::isfinite(e)) << "an element was left unwritten (poison is NaN)";
  const double eo = rel_rms(out_dec, out_ref), es = rel_rms(state_dec, state_ref);
  std::cout << "  decode vs reference prefill: out " << eo << ", state " << es << "; vs cuda prefill: out "
            << rel_rms(out_dec, out_pre) << ", state " << rel_rms(state_dec, state_pre) << std::endl;
  EXPECT_LE(eo, v.tol);
  EXPECT_LE(es, v.tol);
  EXPECT_LE(rel_rms(out_dec, out_pre), kTf32Tolerance + v.tol);
  EXPECT_LE(rel_rms(state_dec, state_pre), kTf32Tolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, CudaDecodeVsPrefill,
    ::testing::Values(DecodeVsPrefill{"fp32_kv_k128", DType::kF32, StateLayout::kKV, 128, 1e-5},
                      DecodeVsPrefill{"bf16_vk_k64", DType::kBF16, StateLayout::kVK, 64, 4e-3}),
    [](const ::testing::TestParamInfo<DecodeVsPrefill>& i) { return std::string(i.param.name); });

struct Shape {
  const char* name;
  StateLayout layout;
  int64_t K, V;
};

void PrintTo(const Shape& v, std::ostream* os) {
  *os << v.name;
}

class CudaVerifyVsDecode : public ::testing::TestWithParam<Shape> {};

// Verify keeps the state in registers across its tokens; decode reads and
// writes it each token. With an fp32 state the two must agree bitwise.
TEST_P(CudaVerifyVsDecode, IntermediateStatesEqualStepwiseDecodeBitwise) {
  REQUIRE_GPU();
  const Shape& sh = GetParam();
  const int64_t N = 6, L = 5;
  Case c;
  c.op = Op::kVerify;
  c.seq_lens.assign(N, L);
  c.fixed_len = true;
  c.H = 2, c.HV = 4, c.K = sh.K, c.V = sh.V;
  c.layout = sh.layout;
  c.pool = true;  // sequences 2 and 5 are padding
  c.write_final = false;
  c.intermediate = true;
  Workload ver(c, true), dec(c, true);
  ASSERT_TRUE(ver.status().ok() && dec.status().ok());
  const Args va = on_cuda(ver.args());
  ASSERT_TRUE(verify(va).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> inter = device_bytes(va.intermediate_states), vout = device_bytes(va.out);

  const Args whole = on_cuda(dec.args());
  const int32_t* idx = host_indices(whole);
  const size_t mat = static_cast<size_t>(c.HV * c.K * c.V) * sizeof(float);
  for (int64_t j = 0; j < L; ++j) {
    Args step = decode_step(whole, j, L);
    step.write_final_state = true;
    const Status s = decode(step);
    ASSERT_TRUE(s.ok()) << s.message();
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> pool = device_bytes(whole.initial_state);
    for (int64_t n = 0; n < N; ++n) {
      if (idx[n] < 0) continue;  // padding: each decode step restarts from zero
      EXPECT_EQ(0, std::memcmp(&pool[idx[n] * mat], &inter[(n * L + j) * mat], mat))
          << "sequence " << n << " token " << j;
    }
  }
  EXPECT_NE(0, std::memcmp(&inter[0], &inter[(L - 1) * mat], mat)) << "the state did not move";
  const std::vector<uint8_t> dout = device_bytes(whole.out);
  const size_t row = static_cast<size_t>(c.HV * c.V) * dtype_size(c.io);
  for (int64_t n = 0; n < N; ++n)
    if (idx[n] >= 0) {
      EXPECT_EQ(0, std::memcmp(&vout[n * L * row], &dout[n * L * row], L * row)) << n;
    }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaVerifyVsDecode,
                         ::testing::Values(Shape{"kv_k128_v128", StateLayout::kKV, 128, 128},
                                           Shape{"vk_k128_v64", StateLayout::kVK, 128, 64},
                                           Shape{"kv_k64_v128", StateLayout::kKV, 64, 128},
                                           Shape{"vk_k64_v64", StateLayout::kVK, 64, 64}),
                         [](const ::testing::TestParamInfo<Shape>& i) { return std::string(i.param.name); });

TEST(CudaDecode, PoolRowsItMustNotWriteStayBytewiseUnchanged) {
  REQUIRE_GPU();
  for (Op op : {Op::kDecode, Op::kVerify}) {
    SCOPED_TRACE(op_name(op));
    Case c;
    c.op = op;
    c.seq_lens.assign(10, op == Op::kDecode ? 1 : 3);
    c.fixed_len = true;
    c.H = 2, c.HV = 4, c.K = c.V = 128;
    c.pool = true;  // every third sequence is padding
    c.pool_rows = 40;
    c.intermediate = op == Op::kVerify;
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok());
    Args a = on_cuda(w.args());
    const std::vector<uint8_t> before = device_bytes(a.initial_state);
    ASSERT_TRUE(run(op, a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> after = device_bytes(a.initial_state);
    std::vector<bool> named(40, false);
    for (int64_t n = 0; n < 10; ++n)
      if (host_indices(a)[n] >= 0) named[static_cast<size_t>(host_indices(a)[n])] = true;
    const size_t mat = static_cast<size_t>(c.HV * c.K * c.V) * sizeof(float);
    int written = 0;
    for (size_t row = 0; row < 40; ++row) {
      const bool same = std::memcmp(&before[row * mat], &after[row * mat], mat) == 0;
      EXPECT_EQ(same, !named[row]) << "row " << row << (named[row] ? " was not written" : " was written");
      written += !same;
    }
    EXPECT_EQ(written, 7);  // 10 sequences, 3 of them padding
    // With write_final_state clear no row changes.
    a.write_final_state = false;
    ASSERT_TRUE(run(op, a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    EXPECT_EQ(after, device_bytes(a.initial_state));
  }
}

// Outputs are poisoned (NaN) before every call; every element the call owes
// must be written, the slots past a draft left alone, and the bytes must
// repeat call after call.
TEST(CudaDecode, EveryOutputIsWrittenOnEveryCallAndRepeatsBitwise) {
  REQUIRE_GPU();
  Case d;
  d.name = "decode dense, separate final state";
  d.op = Op::kDecode;
  d.seq_lens.assign(33, 1);
  d.H = 2, d.HV = 8, d.K = 128, d.V = 64;
  Case v;
  v.name = "verify packed with an empty draft, vk, bf16 state, pool untouched";
  v.op = Op::kVerify;
  v.seq_lens = {7, 0, 16, 2, 5, 1};
  v.H = 1, v.HV = 4, v.K = 64, v.V = 128;
  v.layout = StateLayout::kVK;
  v.state = DType::kBF16;
  v.pool = true;
  v.write_final = false;
  v.intermediate = true;
  for (const Case& c : {d, v}) {
    SCOPED_TRACE(c.name);
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok());
    const Args a = on_cuda(w.args());
    std::vector<uint8_t> first_out, first_fin, first_inter;
    for (int rep = 0; rep < 3; ++rep) {
      poison_device(a.out);
      poison_device(a.final_state);
      poison_device(a.intermediate_states);
      ASSERT_TRUE(run(c.op, a).ok());
      CUDA_OK(cudaDeviceSynchronize());
      const std::vector<uint8_t> out = device_bytes(a.out);
      for (int64_t i = 0; i < a.out.numel(); ++i)
        ASSERT_FALSE(poisoned(out, dtype_size(c.io), i)) << "out " << i;
      std::vector<uint8_t> fin, inter;
      if (a.final_state.defined()) {
        fin = device_bytes(a.final_state);
        for (int64_t i = 0; i < a.final_state.numel(); ++i)
          ASSERT_FALSE(poisoned(fin, dtype_size(c.state), i)) << "final_state " << i;
      }
      if (a.intermediate_states.defined()) {
        inter = device_bytes(a.intermediate_states);
        const int64_t slots = a.intermediate_states.shape[1], mat = c.HV * c.K * c.V;
        for (size_t n = 0; n < c.seq_lens.size(); ++n)
          for (int64_t j = 0; j < slots; ++j)
            for (int64_t e = 0; e < mat; ++e) {
              const int64_t i = (static_cast<int64_t>(n) * slots + j) * mat + e;
              ASSERT_EQ(poisoned(inter, dtype_size(c.state), i), j >= c.seq_lens[n])
                  << "sequence " << n << " slot " << j << " element " << e;
            }
      }
      if (rep == 0) {
        first_out = out, first_fin = fin, first_inter = inter;
      } else {
        EXPECT_EQ(first_out, out) << "call " << rep;
        EXPECT_EQ(first_fin, fin) << "call " << rep;
        EXPECT_EQ(first_inter, inter) << "call " << rep;
      }
    }
  }
}

// A bf16 state is opt-in and its error is reported: each decode and verify
// case with a bf16 state prints its error next to the same case's with an
// fp32 state; the bf16 one is larger (the rounding is real) and in bounds.
TEST(CudaDecode, Bf16StateErrorIsReported) {
  REQUIRE_GPU();
  for (Op op : {Op::kDecode, Op::kVerify}) {
    Case c;
    c.name = std::string(op_name(op)) + " state error";
    c.op = op;
    c.seq_lens.assign(16, op == Op::kDecode ? 1 : 8);
    c.fixed_len = true;
    c.H = 4, c.HV = 8, c.K = c.V = 128;
    c.pool = true;
    c.intermediate = op == Op::kVerify;
    const CaseResult f32 = run_case(c, Backend::kCuda);
    c.state = DType::kBF16;
    c.tol_state = 8e-3;
    const CaseResult b16 = run_case(c, Backend::kCuda);
    ASSERT_TRUE(f32.status.ok() && b16.status.ok()) << f32.status.message() << b16.status.message();
    std::cout << "  " << op_name(op) << " final state rel_rms: fp32 state " << f32.state.rel_rms
              << ", bf16 state " << b16.state.rel_rms;
    if (op == Op::kVerify)
      std::cout << "; intermediate: fp32 " << f32.intermediate.rel_rms << ", bf16 "
                << b16.intermediate.rel_rms;
    std::cout << "; out: fp32 state " << f32.out.rel_rms << ", bf16 state " << b16.out.rel_rms << std::endl;
    RecordProperty(std::string(op_name(op)) + "_bf16_state_rel_rms", std::to_string(b16.state.rel_rms));
    expect_case_passes(c, b16);
    EXPECT_GT(b16.state.rel_rms, 4 * f32.state.rel_rms);
  }
}

TEST(CudaDecode, GraphReplayMatchesEagerCalls) {
  REQUIRE_GPU();
  // Decode updating the pool in place: two eager calls from the starting
  // pool against two replays of a captured call from the same pool.
  Case c;
  c.op = Op::kDecode;
  c.seq_lens.assign(16, 1);
  c.H = 4, c.HV = 8, c.K = c.V = 128;
  c.pool = true;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok());
  Args a = on_cuda(w.args());
  const std::vector<uint8_t> pool0 = device_bytes(a.initial_state);
  ASSERT_TRUE(decode(a).ok());
  ASSERT_TRUE(decode(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> eager_pool = device_bytes(a.initial_state), eager_out = device_bytes(a.out);
  ASSERT_NE(pool0, eager_pool);
  CUDA_OK(cudaMemcpy(a.initial_state.data, pool0.data(), pool0.size(), cudaMemcpyHostToDevice));
  poison_device(a.out);

  cudaStream_t stream;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  a.stream = stream;
  cudaGraphExec_t exec;
  ASSERT_NO_FATAL_FAILURE(capture(
      stream, [&] { return decode(a); }, &exec));
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaGraphLaunch(exec, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  EXPECT_EQ(eager_pool, device_bytes(a.initial_state));
  EXPECT_EQ(eager_out, device_bytes(a.out));
  CUDA_OK(cudaGraphExecDestroy(exec));

  // Verify with intermediate states, pool untouched: every replay equals
  // the eager call.
  Case v = c;
  v.op = Op::kVerify;
  v.seq_lens = {4, 1, 16, 3};
  v.layout = StateLayout::kVK;
  v.write_final = false;
  v.intermediate = true;
  Workload wv(v, true);
  ASSERT_TRUE(wv.status().ok());
  Args b = on_cuda(wv.args());
  ASSERT_TRUE(verify(b).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> out_v = device_bytes(b.out), inter_v = device_bytes(b.intermediate_states);
  b.stream = stream;
  ASSERT_NO_FATAL_FAILURE(capture(
      stream, [&] { return verify(b); }, &exec));
  for (int i = 0; i < 3; ++i) {
    CUDA_OK(cudaMemsetAsync(b.out.data, 0xFF, out_v.size(), stream));
    CUDA_OK(cudaMemsetAsync(b.intermediate_states.data, 0xFF, inter_v.size(), stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_EQ(out_v, device_bytes(b.out)) << "replay " << i;
    EXPECT_EQ(inter_v, device_bytes(b.intermediate_states)) << "replay " << i;
  }
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaStreamDestroy(stream));
}

// The one-token decode runs one of two instantiations by grid size
// (sm80/recurrent.cu, launch_one): up to kLateTiles (8192) warps the one that
// checks the pool row after its gate and norm math, above it the one that
// checks it first. Both must match the reference, with the host copy of
// state_indices and without it (then the rows are checked on the device and
// each sequence scans the others' rows for its own).
TEST(CudaDecode, OneTokenPathsOfSmallAndLargeGridsMatchTheReference) {
  REQUIRE_GPU();
  for (int64_t n : {4, 40}) {  // 4 * 32 * 128 / 16 = 1,024 warps; 40 -> 10,240
    for (bool host_copy : {true, false}) {
      SCOPED_TRACE(std::to_string(n) + (host_copy ? " sequences, host copy" : " sequences, no host copy"));
      Case c;
      c.name = "one-token decode";
      c.op = Op::kDecode;
      c.seq_lens.assign(static_cast<size_t>(n), 1);
      c.H = 16, c.HV = 32, c.K = c.V = 128;
      c.io = DType::kF32;
      c.pool = true;  // every third sequence is padding: a zero state, no row written
      Workload w(c, true);
      ASSERT_TRUE(w.status().ok()) << w.status().message();
      Args a = on_cuda(w.args());
      if (!host_copy) a.state_indices_host = nullptr;
      poison_device(a.out);
      const Status s = decode(a);
      ASSERT_TRUE(s.ok()) << s.message();
      CUDA_OK(cudaDeviceSynchronize());
      const std::vector<float> out = device_values(a.out), pool = device_values(a.initial_state);

      const RefValues ref = reference_values(c, Op::kDecode, &Args::initial_state);
      ASSERT_TRUE(ref.status.ok()) << ref.status.message();
      const std::vector<float>&out_ref = ref.out, &pool_ref = ref.state;
      for (float e : out) ASSERT_TRUE(std::isfinite(e)) << "an element was left unwritten (poison is NaN)";
      const double eo = rel_rms(out, out_ref), es = rel_rms(pool, pool_ref);
      std::cout << "  " << n << " sequences" << (host_copy ? "" : ", no host copy") << ": out " << eo
                << ", pool " << es << std::endl;
      EXPECT_LE(eo, 1e-5);
      EXPECT_LE(es, 1e-5);
    }
  }
}

// Without host copies of state_indices the call cannot be rejected before
// it runs; each sequence checks its own row on the device, and one whose row
// is out of range or shared writes nothing. With the host copy the same
// indices are rejected and nothing is written.
TEST(CudaDecode, BadRowsWithoutAHostCopyWriteNothing) {
  REQUIRE_GPU();
  Case c;
  c.op = Op::kDecode;
  c.seq_lens.assign(8, 1);
  c.H = 2, c.HV = 4, c.K = c.V = 64;
  c.pool = true;
  c.pool_padding = false;
  c.pool_rows = 12;
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok());
  Args a = on_cuda(w.args());
  const std::vector<uint8_t> pool0 = device_bytes(a.initial_state);
  ASSERT_TRUE(decode(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> good_pool = device_bytes(a.initial_state), good_out = device_bytes(a.out);
  CUDA_OK(cudaMemcpy(a.initial_state.data, pool0.data(), pool0.size(), cudaMemcpyHostToDevice));

  std::vector<int32_t> bad(host_indices(a), host_indices(a) + 8);
  const int32_t shared = bad[5], orphan = bad[1], dropped = bad[3];
  bad[1] = shared;  // sequences 1 and 5 name one row
  bad[3] = 12;      // out of range
  void* dbad = nullptr;
  CUDA_OK(cudaMalloc(&dbad, sizeof(int32_t) * 8));
  CUDA_OK(cudaMemcpy(dbad, bad.data(), sizeof(int32_t) * 8, cudaMemcpyHostToDevice));
  Args b = a;
  b.state_indices.data = dbad;

  b.state_indices_host = bad.data();  // with the host copy: rejected, nothing written
  poison_device(b.out);
  const std::vector<uint8_t> out_poison = device_bytes(b.out);
  const Status rejected = decode(b);
  EXPECT_EQ(rejected.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rejected.message().find("state_indices: entry 3 is 12"), std::string::npos) << rejected.message();
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(pool0, device_bytes(b.initial_state));
  EXPECT_EQ(out_poison, device_bytes(b.out));

  b.state_indices_host = nullptr;  // device-side checks
  ASSERT_TRUE(decode(b).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> pool = device_bytes(b.initial_state), out = device_bytes(b.out);
  const size_t mat = static_cast<size_t>(c.HV * c.K * c.V) * sizeof(float);
  const size_t row = static_cast<size_t>(c.HV * c.V) * dtype_size(c.io);
  for (int n = 0; n < 8; ++n) {
    const bool refused = n == 1 || n == 3 || n == 5;
    if (refused) {
      for (size_t e = 0; e < row; ++e) ASSERT_EQ(out[n * row + e], 0xFF) << "sequence " << n;
    } else {
      EXPECT_EQ(0, std::memcmp(&out[n * row], &good_out[n * row], row)) << "sequence " << n;
      EXPECT_EQ(0, std::memcmp(&pool[bad[n] * mat], &good_pool[bad[n] * mat], mat)) << "sequence " << n;
    }
  }
  for (int32_t r : {shared, orphan, dropped})
    EXPECT_EQ(0, std::memcmp(&pool[r * mat], &pool0[r * mat], mat)) << "row " << r << " was written";
  CUDA_OK(cudaFree(dbad));
}

// The same for verify's sequence bounds: without a host copy of
// cu_seqlens, a 17-token draft (more than 16) writes nothing; the others run.
TEST(CudaDecode, AnOverlongDraftWithoutAHostCopyWritesNothing) {
  REQUIRE_GPU();
  Case c;
  c.op = Op::kVerify;
  c.seq_lens = {3, 17, 2};
  c.H = 2, c.HV = 4, c.K = c.V = 64;
  c.pool = true;
  c.pool_padding = false;
  c.intermediate = true;  // 17 slots
  Workload w(c, true);
  ASSERT_TRUE(w.status().ok());
  Args a = on_cuda(w.args());
  const std::vector<uint8_t> pool0 = device_bytes(a.initial_state), out0 = device_bytes(a.out),
                             inter0 = device_bytes(a.intermediate_states);
  const Status rejected = verify(a);  // with the host copy
  EXPECT_EQ(rejected.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(rejected.message().find("verify takes at most 16 tokens per sequence"), std::string::npos)
      << rejected.message();
  CUDA_OK(cudaDeviceSynchronize());
  EXPECT_EQ(pool0, device_bytes(a.initial_state));
  EXPECT_EQ(out0, device_bytes(a.out));

  a.cu_seqlens_host = nullptr;
  ASSERT_TRUE(verify(a).ok());
  CUDA_OK(cudaDeviceSynchronize());
  const std::vector<uint8_t> pool = device_bytes(a.initial_state), out = device_bytes(a.out),
                             inter = device_bytes(a.intermediate_states);
  const size_t es = dtype_size(c.io), row = static_cast<size_t>(c.HV * c.V);
  for (int64_t t = 0; t < 22; ++t)
    for (size_t e = 0; e < row; ++e) {
      const bool refused = t >= 3 && t < 20;  // sequence 1's tokens
      ASSERT_EQ(poisoned(out, es, static_cast<int64_t>(t * row + e)), refused) << "token " << t;
    }
  const size_t mat = static_cast<size_t>(c.HV * c.K * c.V) * sizeof(float), slot = mat;
  EXPECT_EQ(0, std::memcmp(&inter[17 * slot], &inter0[17 * slot], 17 * slot)) << "sequence 1's slots changed";
  EXPECT_NE(0, std::memcmp(&inter[0], &inter0[0], 3 * slot));
  const int32_t* idx = host_indices(a);
  EXPECT_EQ(0, std::memcmp(&pool[idx[1] * mat], &pool0[idx[1] * mat], mat)) << "sequence 1's row changed";
  EXPECT_NE(0, std::memcmp(&pool[idx[0] * mat], &pool0[idx[0] * mat], mat));
  EXPECT_NE(0, std::memcmp(&pool[idx[2] * mat], &pool0[idx[2] * mat], mat));
}

// Commit on the GPU against commit on the CPU on the same bytes, with and
// without host copies of the indices, in a graph, and into a pool view whose
// rows are only 2-byte aligned (the narrowest copy unit).
TEST(CudaCommit, MatchesTheCpuCommit) {
  REQUIRE_GPU();
  for (DType state : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(dtype_name(state));
    Case c;
    c.op = Op::kVerify;
    c.seq_lens.assign(8, 4);
    c.fixed_len = true;
    c.H = 2, c.HV = 4, c.K = c.V = 128;
    c.layout = StateLayout::kVK;
    c.state = state;
    c.pool = true;  // sequences 2 and 5 are padding
    c.pool_rows = 20;
    c.write_final = false;
    c.intermediate = true;
    Workload w(c, true);
    ASSERT_TRUE(w.status().ok());
    const Args a = on_cuda(w.args());
    ASSERT_TRUE(verify(a).ok());
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<uint8_t> inter = device_bytes(a.intermediate_states);
    const std::vector<uint8_t> pool0 = device_bytes(a.initial_state);

    std::vector<int32_t> accepted = {3, -1, 0, 2, 1, 3, 0, 2};
    void* dacc = nullptr;
    CUDA_OK(cudaMalloc(&dacc, sizeof(int32_t) * 8));
    CUDA_OK(cudaMemcpy(dacc, accepted.data(), sizeof(int32_t) * 8, cudaMemcpyHostToDevice));
    CommitArgs g;
    g.intermediate_states = a.intermediate_states;
    g.accepted = make_tensor(dacc, DType::kI32, {8});
    g.accepted_host = accepted.data();
    g.state_indices = a.state_indices;
    g.state_indices_host = a.state_indices_host;
    g.pool = a.initial_state;
    g.backend = Backend::kCuda;
    g.strict = true;
    Status s = commit_states(g);
    ASSERT_TRUE(s.ok()) << s.message();
    CUDA_OK(cudaDeviceSynchronize());
    const std::vector<uint8_t> pool_gpu = device_bytes(a.initial_state);

    std::vector<uint8_t> pool_cpu = pool0;
    std::vector<int32_t> rows(host_indices(a), host_indices(a) + 8);
    CommitArgs h;
    h.intermediate_states = a.intermediate_states;
    h.intermediate_states.data = inter.data();
    h.accepted = make_tensor(accepted.data(), DType::kI32, {8});
    h.state_indices = make_tensor(rows.data(), DType::kI32, {8});
    h.pool = a.initial_state;
    h.pool.data = pool_cpu.data();
    h.backend = Backend::kCpu;
    h.strict = true;
    ASSERT_TRUE(commit_states(h).ok());
    EXPECT_EQ(pool_cpu, pool_gpu);
    EXPECT_NE(pool0, pool_gpu);

    // Device-side checks, in a graph: the same bytes.
    CUDA_OK(cudaMemcpy(a.initial_state.data, pool0.data(), pool0.size(), cudaMemcpyHostToDevice));
    g.accepted_host = nullptr;
    g.state_indices_host = nullptr;
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    g.stream = stream;
    cudaGraphExec_t exec;
    ASSERT_NO_FATAL_FAILURE(capture(
        stream, [&] { return commit_states(g); }, &exec));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
    EXPECT_EQ(pool_gpu, device_bytes(a.initial_state));
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaStreamDestroy(stream));
    g.stream = nullptr;

    // A pool view one element into its buffer: rows 2- or 4-byte aligned.
    const size_t es = dtype_size(state), bytes = pool0.size() + es;
    void* buffer = nullptr;
    CUDA_OK(cudaMalloc(&buffer, bytes));
    char* shifted = static_cast<char*>(buffer);
    CUDA_OK(cudaMemcpy(shifted + es, pool0.data(), pool0.size(), cudaMemcpyHostToDevice));
    g.pool.data = shifted + es;
    ASSERT_TRUE(commit_states(g).ok());
    CUDA_OK(cudaDeviceSynchronize());
    std::vector<uint8_t> got(pool0.size());
    CUDA_OK(cudaMemcpy(got.data(), shifted + es, got.size(), cudaMemcpyDeviceToHost));
    EXPECT_EQ(pool_cpu, got);
    CUDA_OK(cudaFree(buffer));
    CUDA_OK(cudaFree(dacc));
  }
}

}  // namespace
}  // namespace gdn::testing
