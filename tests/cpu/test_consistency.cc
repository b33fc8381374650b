// Properties across entry points on the cpu backend: decode equals prefill of
// the same tokens, verify's intermediate states equal step-by-step decode,
// runs are bitwise deterministic, strided and in-place views give the same
// results as contiguous ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/convert.h"
#include "testing/harness.h"

namespace gdn::testing {
namespace {

std::vector<float> values(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[i] = load_float(t.data, t.dtype, i);
  return v;
}

std::vector<uint8_t> bytes(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data);
  return {p, p + t.numel() * static_cast<int64_t>(dtype_size(t.dtype))};
}

Case fp32_case(Op op, std::vector<int64_t> lens) {
  Case c;
  c.op = op;
  c.seq_lens = std::move(lens);
  c.H = 2, c.HV = 4, c.K = 32, c.V = 48;
  c.io = DType::kF32;
  c.pool = true;
  return c;
}

// Runs decode step by step over L tokens per sequence of `w`'s inputs.
void decode_steps(Args whole, int64_t L) {
  whole.write_final_state = true;
  if (!whole.state_indices.defined()) whole.final_state = whole.initial_state;  // dense, in place
  for (int64_t j = 0; j < L; ++j) {
    const Status s = decode(decode_step(whole, j, L));
    ASSERT_TRUE(s.ok()) << s.message();
  }
}

TEST(Consistency, DecodeEqualsPrefillOfTheSameTokens) {
  const int64_t L = 6;
  Case c = fp32_case(Op::kPrefill, {L, L, L, L});
  c.pool = false;  // dense states; decode updates them in place
  Workload pre(c), dec(c);
  pre.args().backend = dec.args().backend = Backend::kCpu;
  ASSERT_TRUE(prefill(pre.args()).ok());
  decode_steps(dec.args(), L);
  EXPECT_LE(rel_rms(values(dec.args().out), values(pre.args().out)), 1e-6);
  EXPECT_LE(rel_rms(values(dec.args().initial_state), values(pre.args().final_state)), 1e-6);
}

TEST(Consistency, VerifyIntermediatesEqualStepwiseDecode) {
  const int64_t L = 5;
  Case c = fp32_case(Op::kVerify, {L, L, L, L, L});
  c.fixed_len = true;
  c.intermediate = true;
  Workload ver(c), dec(c);
  ver.args().backend = dec.args().backend = Backend::kCpu;
  ASSERT_TRUE(verify(ver.args()).ok());
  const Args& v = ver.args();
  Args d = dec.args();
  const int64_t N = 5, mat = c.HV * c.K * c.V;
  const auto* idx = static_cast<const int32_t*>(d.state_indices.data);
  const auto* pool = static_cast<const float*>(d.initial_state.data);
  const auto* inter = static_cast<const float*>(v.intermediate_states.data);
  const Args whole = d;
  for (int64_t j = 0; j < L; ++j) {
    ASSERT_TRUE(decode(decode_step(whole, j, L)).ok());
    for (int64_t n = 0; n < N; ++n) {
      if (idx[n] < 0) continue;  // padding: decode keeps nothing to compare
      EXPECT_EQ(0, std::memcmp(pool + idx[n] * mat, inter + (n * L + j) * mat, mat * sizeof(float)))
          << "sequence " << n << " token " << j;
    }
  }
  // Outputs of sequences with a cached state match bitwise (a padding
  // sequence restarts from zero at every decode step).
  const int64_t row = c.HV * c.V;
  const auto* vo = static_cast<const float*>(ver.args().out.data);
  const auto* dout = static_cast<const float*>(dec.args().out.data);
  for (int64_t n = 0; n < N; ++n) {
    if (idx[n] >= 0) {
      EXPECT_EQ(0, std::memcmp(vo + n * L * row, dout + n * L * row, L * row * sizeof(float))) << n;
    }
  }
}

TEST(Consistency, BitwiseDeterministicAcrossRunsAndThreadCounts) {
  Case c;
  c.seq_lens = {1, 7, 63, 64, 65, 130, 300};
  c.K = c.V = 64;
  Workload w1(c), w2(c), w3(c);
  w1.args().num_threads = 0;
  w2.args().num_threads = 0;
  w3.args().num_threads = 1;
  for (Workload* w : {&w1, &w2, &w3}) {
    w->args().backend = Backend::kCpu;
    ASSERT_TRUE(prefill(w->args()).ok());
  }
  EXPECT_EQ(bytes(w1.args().out), bytes(w2.args().out));
  EXPECT_EQ(bytes(w1.args().out), bytes(w3.args().out));
  EXPECT_EQ(bytes(w1.args().final_state), bytes(w3.args().final_state));
}

TEST(Consistency, FewLongItemsPathEqualsManyItemsPath) {
  // One sequence, one head: the chunk-parallel path (items < threads).
  Case c;
  c.seq_lens = {1000};
  c.H = 1, c.HV = 1, c.K = c.V = 64;
  Workload few(c), one(c);
  few.args().backend = one.args().backend = Backend::kCpu;
  few.args().num_threads = 0;  // every thread: items (1) < threads (when > 1)
  one.args().num_threads = 1;  // one thread: the item-parallel path
  ASSERT_TRUE(prefill(few.args()).ok());
  ASSERT_TRUE(prefill(one.args()).ok());
  EXPECT_EQ(bytes(few.args().out), bytes(one.args().out));
  EXPECT_EQ(bytes(few.args().final_state), bytes(one.args().final_state));
}

TEST(Consistency, StridedAndInPlaceViewsMatchContiguous) {
  Case c;
  c.seq_lens = {5, 70, 129};
  c.io = DType::kF32;
  c.K = c.V = 32;
  Workload w(c), s(c);
  w.args().backend = s.args().backend = Backend::kCpu;
  ASSERT_TRUE(prefill(w.args()).ok());

  Args& a = s.args();
  const int64_t T = a.q.shape[0], H = a.q.shape[1], K = a.q.shape[2], HV = a.v.shape[1], V = a.v.shape[2];
  // q and k interleaved in one [T, 2, H, K] buffer; out in the first half of
  // a [T, HV, 2V] buffer whose second half must stay untouched.
  std::vector<float> qk(static_cast<size_t>(T * 2 * H * K));
  const auto* q = static_cast<const float*>(a.q.data);
  const auto* k = static_cast<const float*>(a.k.data);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < H * K; ++i) {
      qk[(t * 2 + 0) * H * K + i] = q[t * H * K + i];
      qk[(t * 2 + 1) * H * K + i] = k[t * H * K + i];
    }
  a.q = with_strides(make_tensor(qk.data(), DType::kF32, {T, H, K}), {2 * H * K, K, 1});
  a.k = with_strides(make_tensor(qk.data() + H * K, DType::kF32, {T, H, K}), {2 * H * K, K, 1});
  std::vector<float> wide(static_cast<size_t>(T * HV * 2 * V), 7.25f);
  a.out = with_strides(make_tensor(wide.data(), DType::kF32, {T, HV, V}), {HV * 2 * V, 2 * V, 1});
  // In place: final_state is the same view as initial_state.
  a.final_state = a.initial_state;
  ASSERT_TRUE(prefill(a).ok()) << prefill(a).message();

  const auto* ref = static_cast<const float*>(w.args().out.data);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < HV; ++h)
      for (int64_t j = 0; j < V; ++j) {
        ASSERT_EQ(wide[(t * HV + h) * 2 * V + j], ref[(t * HV + h) * V + j]);
        ASSERT_EQ(wide[(t * HV + h) * 2 * V + V + j], 7.25f);
      }
  EXPECT_EQ(bytes(a.initial_state), bytes(w.args().final_state));
}

TEST(Workspace, HostCallsNeedNoScratch) {
  Case c;
  c.seq_lens = {5, 70};
  c.K = c.V = 16;
  Workload w(c);
  w.args().backend = Backend::kCpu;
  gdn::Workspace ws;
  ASSERT_TRUE(ws.prepare(Op::kPrefill, &w.args()).ok());
  EXPECT_EQ(ws.bytes(), 0u);
  EXPECT_TRUE(prefill(w.args()).ok());
  // An invalid call is refused with the validation message, allocating nothing.
  Args bad = w.args();
  bad.q.rank = 2;
  const Status s = ws.prepare(Op::kPrefill, &bad);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ws.bytes(), 0u);
  EXPECT_EQ(ws.run(Op::kPrefill, bad).code(), StatusCode::kInvalidArgument);
  // run() on host data: the call itself, the same bytes as gdn::prefill.
  const Tensor out = w.host_out();
  const size_t n = static_cast<size_t>(out.numel()) * dtype_size(out.dtype);
  auto* p = static_cast<uint8_t*>(out.data);
  const std::vector<uint8_t> before(p, p + n);
  std::fill(p, p + n, uint8_t{0xAB});
  ASSERT_TRUE(ws.run(Op::kPrefill, w.args()).ok());
  EXPECT_EQ(before, std::vector<uint8_t>(p, p + n));
  EXPECT_EQ(ws.bytes(), 0u);
}

}  // namespace
}  // namespace gdn::testing
