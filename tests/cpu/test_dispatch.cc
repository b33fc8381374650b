// Routing as a pure function of (problem, device, build), for injected
// devices, and the once-per-process fallback notice.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "gdn/dispatch.h"
#include "support/scoped_env.h"
#include "testing/harness.h"

namespace gdn {
namespace {

DeviceInfo gpu(int major, int minor, const char* name) {
  DeviceInfo d;
  d.present = true;
  d.ordinal = 0;
  d.cc_major = major;
  d.cc_minor = minor;
  d.num_sms = 100;
  d.name = name;
  return d;
}

Problem problem(Op op, bool on_device, int64_t k = 128) {
  Problem p;
  p.op = op;
  p.T = 100, p.N = 2, p.H = 16, p.HV = 32, p.K = k, p.V = k;
  p.on_device = on_device;
  p.device_ordinal = on_device ? 0 : -1;
  return p;
}

struct Expect {
  const char* device;
  DeviceInfo info;
  // Backends auto picks for device-resident prefill and for device-resident
  // decode and verify; "" = none.
  const char* prefill;
  const char* decode;
};

TEST(Routing, InjectedDevicesWithEveryBackendBuilt) {
  const BuildInfo all{true, true};
  const std::vector<Expect> table = {
      {"none", DeviceInfo{}, "", ""},
      {"sm_75", gpu(7, 5, "T4"), "", ""},
      {"sm_80", gpu(8, 0, "A100"), "cuda", "cuda"},
      {"sm_89", gpu(8, 9, "L40S"), "cuda", "cuda"},
      {"sm_90", gpu(9, 0, "H100"), "sm90", "cuda"},
      {"sm_100", gpu(10, 0, "B200"), "cuda", "cuda"},
  };
  for (const Expect& e : table) {
    SCOPED_TRACE(e.device);
    // Host data always runs on cpu, whatever the device.
    for (Op op : {Op::kPrefill, Op::kDecode, Op::kVerify}) {
      Route r = route(Backend::kAuto, false, problem(op, false), e.info, all);
      ASSERT_TRUE(r.status.ok()) << r.status.message();
      EXPECT_EQ(r.backend, Backend::kCpu);
      EXPECT_FALSE(r.fell_back);
    }
    for (Op op : {Op::kPrefill, Op::kDecode, Op::kVerify}) {
      SCOPED_TRACE(op_name(op));
      const char* expect = op == Op::kPrefill ? e.prefill : e.decode;
      Problem p = problem(op, true);
      if (op == Op::kPrefill) p.T = 2048;  // sequences of 1024 tokens on average
      const Route r = route(Backend::kAuto, false, p, e.info, all);
      if (std::string(expect).empty()) {
        EXPECT_EQ(r.status.code(), StatusCode::kUnsupported);
        EXPECT_NE(r.status.message().find(std::string("no backend can run this ") + op_name(op)),
                  std::string::npos)
            << r.status.message();
      } else {
        ASSERT_TRUE(r.status.ok()) << r.status.message();
        EXPECT_STREQ(backend_name(r.backend), expect);
        EXPECT_FALSE(r.fell_back);
      }
    }
  }
}

// On sm_90, sequences of at most 64 tokens on average go to cuda first
// (dispatch.cc, auto_order), longer ones to sm90.
TEST(Routing, ShortSequencesPreferCudaOnHopper) {
  const BuildInfo all{true, true};
  Problem p = problem(Op::kPrefill, true);
  p.N = 4;
  for (const auto& [T, expect] : {std::pair<int64_t, Backend>{4 * 64, Backend::kCuda},
                                  std::pair<int64_t, Backend>{4 * 64 + 1, Backend::kSm90}}) {
    p.T = T;
    const Route r = route(Backend::kAuto, false, p, gpu(9, 0, "H100"), all);
    ASSERT_TRUE(r.status.ok()) << r.status.message();
    EXPECT_EQ(r.backend, expect) << "T = " << T;
    EXPECT_NE(r.reason.find("fastest backend"), std::string::npos) << r.reason;
    EXPECT_EQ(r.reason.find("average at most 64 tokens") != std::string::npos, expect == Backend::kCuda)
        << r.reason;
  }
}

TEST(Routing, ReasonsNameTheRule) {
  const BuildInfo all{true, true};
  EXPECT_NE(backend_supports(Backend::kSm90, problem(Op::kPrefill, true), gpu(10, 0, "B200"), all)
                .message()
                .find("runs only on sm_90"),
            std::string::npos);
  EXPECT_NE(backend_supports(Backend::kCuda, problem(Op::kPrefill, true), gpu(7, 5, "T4"), all)
                .message()
                .find("needs compute capability 8.0"),
            std::string::npos);
  EXPECT_NE(backend_supports(Backend::kCuda, problem(Op::kPrefill, true, 96), gpu(9, 0, "H100"), all)
                .message()
                .find("K, V in {64, 128}"),
            std::string::npos);
  EXPECT_NE(backend_supports(Backend::kSm90, problem(Op::kDecode, true), gpu(9, 0, "H100"), all)
                .message()
                .find("prefill only"),
            std::string::npos);
  EXPECT_NE(backend_supports(Backend::kCuda, problem(Op::kVerify, true, 96), gpu(9, 0, "H100"), all)
                .message()
                .find("K, V in {64, 128}"),
            std::string::npos);
  // The prefill's tiles need K == V; decode and verify take K != V.
  Problem kv = problem(Op::kPrefill, true);
  kv.V = 64;
  EXPECT_NE(backend_supports(Backend::kCuda, kv, gpu(9, 0, "H100"), all).message().find("K == V"),
            std::string::npos);
  for (Op op : {Op::kDecode, Op::kVerify}) {
    Problem d = problem(op, true);
    d.V = 64;
    EXPECT_TRUE(backend_supports(Backend::kCuda, d, gpu(8, 0, "A100"), all).ok()) << op_name(op);
  }
  EXPECT_NE(backend_supports(Backend::kCpu, problem(Op::kPrefill, true), gpu(9, 0, "H100"), all)
                .message()
                .find("host memory"),
            std::string::npos);
  EXPECT_NE(backend_supports(Backend::kCuda, problem(Op::kPrefill, true), gpu(9, 0, "H100"), BuildInfo{})
                .message()
                .find("built without the cuda backend"),
            std::string::npos);
  Problem unaligned = problem(Op::kPrefill, true);
  unaligned.aligned16 = false;
  unaligned.unaligned = "v";
  const std::string why = backend_supports(Backend::kCuda, unaligned, gpu(8, 0, "A100"), all).message();
  EXPECT_NE(why.find("16-byte"), std::string::npos) << why;
  EXPECT_NE(why.find("v is not"), std::string::npos) << why;
}

TEST(Routing, ExplicitRequests) {
  const BuildInfo all{true, true};
  const DeviceInfo h100 = gpu(9, 0, "H100");
  // Served as asked.
  Route r = route(Backend::kCuda, false, problem(Op::kPrefill, true), h100, all);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_FALSE(r.fell_back);
  // Odd head size: sm90 cannot, and nothing on the GPU can.
  r = route(Backend::kSm90, false, problem(Op::kPrefill, true, 96), h100, all);
  EXPECT_FALSE(r.status.ok());
  // fp16 io and K != V: sm90 falls back to cuda, saying why.
  Problem f16 = problem(Op::kPrefill, true);
  f16.io_dtype = DType::kF16;
  r = route(Backend::kSm90, false, f16, h100, all);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_NE(r.reason.find("sm90 runs bf16 q, k, v and out; fp16 runs on cuda"), std::string::npos)
      << r.reason;
  Problem kv = problem(Op::kPrefill, true);
  kv.V = 64;
  EXPECT_NE(backend_supports(Backend::kSm90, kv, h100, all).message().find("needs K == V"),
            std::string::npos);
  // sm90 asked on an sm_100 device: falls back to cuda, saying why.
  const DeviceInfo b200 = gpu(10, 0, "B200");
  r = route(Backend::kSm90, false, problem(Op::kPrefill, true), b200, all);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_TRUE(r.fell_back);
  EXPECT_NE(r.reason.find("runs only on sm_90"), std::string::npos) << r.reason;
  // Strict turns the fallback into an error.
  r = route(Backend::kSm90, true, problem(Op::kPrefill, true), b200, all);
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported);
  // Host data asked to run on cuda falls back to cpu.
  r = route(Backend::kCuda, false, problem(Op::kPrefill, false), h100, all);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kCpu);
  EXPECT_TRUE(r.fell_back);
  // The reference is never picked by auto but runs when asked.
  r = route(Backend::kReference, true, problem(Op::kPrefill, false), DeviceInfo{}, BuildInfo{});
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kReference);
}

TEST(Routing, CommitGoesWhereTheDataIs) {
  const BuildInfo all{true, true};
  const CommitProblem host{false, -1}, device{true, 0};
  const DeviceInfo h100 = gpu(9, 0, "H100");
  Route r = route_commit(Backend::kAuto, false, host, h100, all);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.backend, Backend::kCpu);
  r = route_commit(Backend::kAuto, false, device, h100, all);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_FALSE(r.fell_back);
  // The reference runs the same copy on host data when asked.
  r = route_commit(Backend::kReference, true, host, DeviceInfo{}, BuildInfo{});
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.backend, Backend::kReference);
  // sm90 does not commit: cuda runs it, saying why; strict makes it an error.
  r = route_commit(Backend::kSm90, false, device, h100, all);
  ASSERT_TRUE(r.status.ok()) << r.status.message();
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_TRUE(r.fell_back);
  EXPECT_NE(r.reason.find("commit_states runs on cuda"), std::string::npos) << r.reason;
  r = route_commit(Backend::kSm90, true, device, h100, all);
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status.message().find("backend sm90 cannot run this commit (strict)"), std::string::npos)
      << r.status.message();
  // Host backends on device data fall back to cuda; a GPU older than sm_80
  // or a build without cuda leaves nothing for device data.
  r = route_commit(Backend::kCpu, false, device, h100, all);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(r.backend, Backend::kCuda);
  EXPECT_TRUE(r.fell_back);
  r = route_commit(Backend::kAuto, false, device, gpu(7, 5, "T4"), all);
  EXPECT_EQ(r.status.code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status.message().find("no backend can run this commit"), std::string::npos)
      << r.status.message();
  EXPECT_NE(commit_supports(Backend::kCuda, device, h100, BuildInfo{}).message().find("built without"),
            std::string::npos);
  EXPECT_EQ(commit_supports(static_cast<Backend>(9), host, h100, all).code(), StatusCode::kInvalidArgument);
}

std::vector<std::string> captured;
void capture(const char* line, void*) {
  captured.emplace_back(line);
}

TEST(Fallback, NoticePrintedExactlyOnce) {
  testing::Case c;
  c.seq_lens = {3, 9};
  c.K = c.V = 16;
  testing::Workload w(c);
  Args& a = w.args();
  a.backend = Backend::kSm90;  // host data: sm90 cannot run it, cpu does
  captured.clear();
  set_log_handler(capture, nullptr);
  ASSERT_TRUE(prefill(a).ok());
  ASSERT_TRUE(prefill(a).ok());
  ASSERT_TRUE(prefill(a).ok());
  set_log_handler(nullptr, nullptr);
  ASSERT_EQ(captured.size(), 1u);
  EXPECT_NE(captured[0].find("prefill asked for backend 'sm90', running 'cpu' instead"), std::string::npos)
      << captured[0];
  // Routing answers match the run.
  Choice choice;
  ASSERT_TRUE(choose_backend(Op::kPrefill, a, &choice).ok());
  EXPECT_EQ(choice.backend, Backend::kCpu);
  EXPECT_TRUE(choice.fell_back);
  EXPECT_EQ(supports(Backend::kSm90, Op::kPrefill, a).code(), StatusCode::kUnsupported);
  EXPECT_TRUE(supports(Backend::kCpu, Op::kPrefill, a).ok());
}

TEST(Fallback, EnvironmentOverridesAuto) {
  testing::Case c;
  c.seq_lens = {3};
  c.K = c.V = 16;
  testing::Workload w(c);
  Choice choice;
  {
    const testing::ScopedEnv env("GDN_PREFILL_BACKEND", "reference");
    const Status s = choose_backend(Op::kPrefill, w.args(), &choice);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(choice.backend, Backend::kReference);
  }
  // Decode's variable does not touch prefill.
  const testing::ScopedEnv prefill_auto("GDN_PREFILL_BACKEND", nullptr);
  const testing::ScopedEnv decode("GDN_DECODE_BACKEND", "reference");
  ASSERT_TRUE(choose_backend(Op::kPrefill, w.args(), &choice).ok());
  EXPECT_EQ(choice.backend, Backend::kCpu);
}

}  // namespace
}  // namespace gdn
