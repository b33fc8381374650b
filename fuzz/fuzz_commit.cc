// libFuzzer target for gdn_commit_states (gdn_c.h) on host memory.
//
// Each input describes one commit: intermediate_states [N, L, HV, K, V],
// accepted [N] and state_indices [N] (int32 or int64, values anywhere in
// -2 .. L + 1 and -2 .. P + 1, duplicates allowed), a pool [P, HV, K, V]
// with optional row padding, fp32 or bf16 states; then one structural
// mutation (rank, extent, dtype, null data, a negative or zero stride, the
// pool aliasing intermediate_states). Every tensor has a heap buffer of
// exactly the bytes it spans, so AddressSanitizer reports any access outside.
//
// Oracles, each a __builtin_trap() on violation:
//  - with the structure intact, the call is rejected exactly when a slot is
//    >= L, a row is >= P, or a non-negative row appears twice;
//  - a rejected call names the problem (gdn_last_error) and leaves every
//    buffer byte-for-byte unchanged;
//  - an accepted call writes pool row state_indices[n] with the bytes of
//    intermediate_states[n, accepted[n]] where both are >= 0, and nothing
//    else, and reads its inputs only.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "gdn/gdn_c.h"

namespace {

[[noreturn]] void violation(const char* what) {
  std::fprintf(stderr, "gdn_fuzz_commit: oracle violated: %s (gdn_last_error: \"%s\")\n", what,
               gdn_last_error());
  __builtin_trap();
}

// One tensor and the exact heap buffer behind it.
struct Buffer {
  gdn_tensor_t t{};
  std::unique_ptr<unsigned char[]> bytes;
  size_t size = 0;

  void make(int32_t dtype, std::vector<int64_t> shape, std::vector<int64_t> stride, size_t elem) {
    t.dtype = static_cast<gdn_dtype_t>(dtype);
    t.rank = static_cast<int32_t>(shape.size());
    int64_t last = 0;
    for (size_t i = 0; i < shape.size(); ++i) {
      t.shape[i] = shape[i];
      t.stride[i] = stride[i];
      last += (shape[i] - 1) * stride[i];
    }
    size = static_cast<size_t>(last + 1) * elem;
    bytes.reset(new unsigned char[size]);
    t.data = bytes.get();
  }
  std::vector<unsigned char> copy() const { return {bytes.get(), bytes.get() + size}; }
};

int64_t read_index(const Buffer& b, int64_t n) {
  if (b.t.dtype == GDN_I64) {
    int64_t v;
    std::memcpy(&v, b.bytes.get() + 8 * n, 8);
    return v;
  }
  int32_t v;
  std::memcpy(&v, b.bytes.get() + 4 * n, 4);
  return v;
}

void write_index(Buffer& b, int64_t n, int64_t v) {
  if (b.t.dtype == GDN_I64) {
    std::memcpy(b.bytes.get() + 8 * n, &v, 8);
  } else {
    const int32_t w = static_cast<int32_t>(v);
    std::memcpy(b.bytes.get() + 4 * n, &w, 4);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int64_t N = in.ConsumeIntegralInRange<int64_t>(1, 6), L = in.ConsumeIntegralInRange<int64_t>(1, 5);
  const int64_t HV = in.ConsumeIntegralInRange<int64_t>(1, 3), K = in.ConsumeIntegralInRange<int64_t>(1, 6);
  const int64_t V = in.ConsumeIntegralInRange<int64_t>(1, 6), P = in.ConsumeIntegralInRange<int64_t>(1, 8);
  const bool bf16 = in.ConsumeBool();
  const int32_t sdt = bf16 ? GDN_BF16 : GDN_F32;
  const size_t es = bf16 ? 2 : 4;
  const int64_t pad = in.ConsumeIntegralInRange<int64_t>(0, 3);  // extra elements per pool row
  const int64_t mat = K * V;

  Buffer inter, acc, idx, pool;
  inter.make(sdt, {N, L, HV, K, V}, {L * HV * mat, HV * mat, mat, V, 1}, es);
  const bool acc64 = in.ConsumeBool(), idx64 = in.ConsumeBool();
  acc.make(acc64 ? GDN_I64 : GDN_I32, {N}, {1}, acc64 ? 8 : 4);
  idx.make(idx64 ? GDN_I64 : GDN_I32, {N}, {1}, idx64 ? 8 : 4);
  pool.make(sdt, {P, HV, K, V}, {HV * mat + pad, mat, V, 1}, es);
  for (size_t i = 0; i < inter.size; ++i) inter.bytes[i] = static_cast<unsigned char>(i * 37 + 11);
  for (size_t i = 0; i < pool.size; ++i) pool.bytes[i] = static_cast<unsigned char>(i * 101 + 7);
  for (int64_t n = 0; n < N; ++n) {
    write_index(acc, n, in.ConsumeIntegralInRange<int64_t>(-2, L + 1));
    write_index(idx, n, in.ConsumeIntegralInRange<int64_t>(-2, P + 1));
  }

  gdn_commit_args_t a;
  gdn_commit_args_init(&a);
  a.intermediate_states = inter.t;
  a.accepted = acc.t;
  a.state_indices = idx.t;
  a.pool = pool.t;
  a.backend = in.ConsumeBool() ? GDN_BACKEND_CPU : GDN_BACKEND_AUTO;

  // Whether the values alone break a rule.
  bool bad_values = false;
  std::set<int64_t> rows;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t j = read_index(acc, n), r = read_index(idx, n);
    if (j >= L || r >= P || (r >= 0 && !rows.insert(r).second)) bad_values = true;
  }

  // One structural mutation (each keeps the declared spans inside the
  // buffers); `structural` says whether one was applied.
  bool structural = true;
  switch (in.ConsumeIntegralInRange<int>(0, 9)) {
    case 1:
      a.intermediate_states.rank = 4;
      break;
    case 2:  // the pool's matrices no longer match
      if (V > 1)
        a.pool.shape[3] = V - 1;
      else if (K > 1)
        a.pool.shape[2] = K - 1;
      else if (HV > 1)
        a.pool.shape[1] = HV - 1;
      else
        structural = false;
      break;
    case 3:  // a pool dtype of the same size that is not the states'
      a.pool.dtype = bf16 ? GDN_F16 : GDN_I32;
      break;
    case 4:
      a.accepted.shape[0] = N - 1;
      break;
    case 5:
      a.state_indices.dtype = GDN_F32;
      break;
    case 6:
      a.pool.data = nullptr;
      break;
    case 7:
      a.pool.stride[0] = -a.pool.stride[0];
      break;
    case 8:  // rows alias each other
      if (P > 1)
        a.pool.stride[0] = 0;
      else
        structural = false;
      break;
    case 9:  // the pool in place over the input
      if (P * (HV * mat + pad) <= N * L * HV * mat)
        a.pool.data = inter.bytes.get();
      else
        structural = false;
      break;
    default:
      structural = false;
      break;
  }

  const auto inter0 = inter.copy(), acc0 = acc.copy(), idx0 = idx.copy(), pool0 = pool.copy();
  const gdn_status_t s = gdn_commit_states(&a);
  const bool ok = s == GDN_OK;
  if (!ok && gdn_last_error()[0] == '\0') violation("a rejected call gave no message");
  if (!structural && ok == bad_values)
    violation(ok ? "accepted a bad slot or row" : "rejected a valid commit");
  if (structural && ok) violation("accepted a structurally invalid commit");
  if (inter.copy() != inter0 || acc.copy() != acc0 || idx.copy() != idx0) violation("an input changed");
  if (!ok) {
    if (pool.copy() != pool0) violation("a rejected call wrote the pool");
    return 0;
  }
  // Expected pool: the old bytes, with the named rows' matrices replaced.
  std::vector<unsigned char> want = pool0;
  for (int64_t n = 0; n < N; ++n) {
    const int64_t j = read_index(acc, n), r = read_index(idx, n);
    if (j < 0 || r < 0) continue;
    for (int64_t h = 0; h < HV; ++h)
      std::memcpy(want.data() + (r * (HV * mat + pad) + h * mat) * es,
                  inter0.data() + ((n * L + j) * HV * mat + h * mat) * es, static_cast<size_t>(mat) * es);
  }
  if (pool.copy() != want) violation("the pool does not hold exactly the accepted states");
  return 0;
}
