// gdn run: the main job. A prefill on built-in deterministic inputs shaped
// like one Qwen3-Next linear-attention layer (H = 16, HV = 32, K = V = 128)
// over sequences of odd lengths, on the best backend present, verified
// against the float64 reference.
#include <cstdio>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "gdn/commands.h"
#include "gdn/cost.h"
#include "gdn/safetensors.h"
#include "testing/harness.h"

namespace gdn::cli {
namespace {

constexpr const char* kHelp =
    "usage: gdn run [--backend B] [--h H --hv HV --k K --v V] [--seq-lens L1,L2,...]\n"
    "               [--t T] [--dtype bf16|fp16|fp32] [--state-dtype fp32|bf16] [--layout kv|vk]\n"
    "               [--threads N]\n"
    "       gdn run --inputs IN.safetensors [--out OUT.safetensors] [--no-verify] [--backend B]\n"
    "               [--layout kv|vk] [--l2norm] [--threads N]\n"
    "       gdn run --dump-inputs FILE [--h H --hv HV --k K --v V] [--seq-lens L1,...] [--t T]\n"
    "               [--dtype D] [--state-dtype D] [--layout kv|vk] [--l2norm]\n"
    "\n"
    "Runs a prefill and checks it against the float64 reference; prints the backend and why,\n"
    "the time, GFLOP/s, the error, and PASS or FAIL (exit 1 on FAIL, 2 on bad arguments).\n"
    "\n"
    "  --backend B      auto (default), reference, cpu, cuda or sm90\n"
    "  --h, --hv        q/k heads and value heads (default 16, 32; HV must be a multiple of H)\n"
    "  --k, --v         head sizes (default 128, 128)\n"
    "  --seq-lens L,..  sequence lengths of the packed batch (default 1000,333,77,1)\n"
    "  --t T            total tokens; when given, the lengths must sum to it\n"
    "  --dtype D        q, k, v and out dtype (default bf16)\n"
    "  --state-dtype D  state dtype (default fp32)\n"
    "  --layout L       state layout kv (default) or vk\n"
    "  --threads N      host threads for the cpu backends (default: all)\n"
    "  --inputs FILE    read the inputs from a safetensors file instead (shapes and dtypes\n"
    "                   come from it):\n"
    "                     q, k           [T, H, K] or [1, T, H, K], bf16, fp16 or fp32\n"
    "                     v              [T, HV, V] or [1, T, HV, V], the dtype of q\n"
    "                     g              [T, HV] or [1, T, HV] fp32, log-space decay\n"
    "                     beta           [T, HV] or [1, T, HV] fp32 or bf16, post-sigmoid\n"
    "                     cu_seqlens     [N + 1] int32 or int64 (absent: one sequence of T)\n"
    "                     initial_state  [N, HV, K, V] fp32 or bf16 (optional; [N, HV, V, K]\n"
    "                                    with --layout vk), or a pool [P, HV, K, V]\n"
    "                     state_indices  [N] int32 or int64 pool rows (optional; < 0: no state)\n"
    "                     A_log, dt_bias [HV] fp32 (optional, both or neither): fused gates;\n"
    "                                    g and beta then hold the raw a and b, and\n"
    "                                    g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b)\n"
    "                     scale          [] or [1] fp32 (optional; default 1/sqrt(K))\n"
    "  --out FILE       with --inputs: write o ([T, HV, V], the dtype of v) and final_state\n"
    "                   ([N, HV, K, V], or the updated pool) to a safetensors file\n"
    "  --no-verify      with --inputs: skip the float64 reference check\n"
    "  --l2norm         with --inputs: l2-normalize q and k in the kernel (default off)\n"
    "  --dump-inputs F  write the built-in problem's q, k, v, g, beta, cu_seqlens and\n"
    "                   initial_state to F (for --inputs) and exit; k is stored unit-norm\n"
    "                   unless --l2norm is given (then run the file with --l2norm)\n";

bool parse_dtype(const std::string& s, DType* d) {
  if (s == "bf16")
    *d = DType::kBF16;
  else if (s == "fp16")
    *d = DType::kF16;
  else if (s == "fp32")
    *d = DType::kF32;
  else
    return false;
  return true;
}

// Writes the built-in problem's inputs to `path` in the names --inputs reads.
int dump_inputs(const std::string& path, const testing::Case& c) {
  testing::Workload w(c);
  Choice choice;
  if (Status s = choose_backend(Op::kPrefill, w.args(), &choice); !s.ok())
    return usage_error("run", s.message());
  std::vector<NamedTensor> tensors;
  std::string err;
  const char* layout = c.layout == StateLayout::kVK ? "vk" : "kv";
  if (!prefill_input_tensors(w.args(), &tensors, &err) ||
      !write_safetensors(path, tensors, &err,
                         {{"producer", "gdn run --dump-inputs"},
                          {"layout", layout},
                          {"l2norm", c.l2norm ? "true" : "false"}}))
    return usage_error("run", err);
  std::printf("wrote %lld tokens in %zu sequences to %s; run it with: gdn run --inputs %s%s%s\n",
              static_cast<long long>(w.tokens()), c.seq_lens.size(), path.c_str(), path.c_str(),
              c.layout == StateLayout::kVK ? " --layout vk" : "", c.l2norm ? " --l2norm" : "");
  return kExitOk;
}

}  // namespace

int cmd_run(int argc, char** argv) {
  Flags flags(argc, argv,
              {"backend", "h", "hv", "k", "v", "seq-lens", "t", "dtype", "state-dtype", "layout", "threads",
               "inputs", "out", "dump-inputs"},
              {"no-verify", "l2norm"});
  if (flags.help()) {
    std::cout << kHelp;
    return kExitOk;
  }
  if (!flags.ok()) return usage_error("run", flags.error());
  if (flags.has("inputs")) return run_with_inputs(flags);
  if (flags.has("out") || flags.has("no-verify"))
    return usage_error("run", "--out and --no-verify go with --inputs");
  if (flags.has("l2norm") && !flags.has("dump-inputs"))
    return usage_error("run",
                       "--l2norm goes with --inputs or --dump-inputs (the built-in run normalizes q and k)");

  std::string err;
  Backend backend;
  if (!backend_flag(flags, &backend, &err)) return usage_error("run", err);
  testing::Case c;
  c.name = "gdn run";
  int64_t threads = 0, t_total = -1;
  if (!flags.get_int("h", 16, &c.H, &err) || !flags.get_int("hv", 32, &c.HV, &err) ||
      !flags.get_int("k", 128, &c.K, &err) || !flags.get_int("v", 128, &c.V, &err) ||
      !flags.get_int("threads", 0, &threads, &err) || !flags.get_int("t", -1, &t_total, &err))
    return usage_error("run", err);
  c.seq_lens = {1000, 333, 77, 1};
  if (flags.has("seq-lens") && !Flags::parse_int_list(flags.get("seq-lens"), &c.seq_lens, true))
    return usage_error("run", "--seq-lens: expected comma-separated non-negative lengths, got '" +
                                  flags.get("seq-lens") + "'");
  const int64_t T = std::accumulate(c.seq_lens.begin(), c.seq_lens.end(), int64_t{0});
  if (flags.has("t") && t_total != T)
    return usage_error("run", "--seq-lens: the lengths sum to " + std::to_string(T) + " but --t is " +
                                  std::to_string(t_total) +
                                  "; cu_seqlens must end at T (the lengths must sum to T)");
  if (!parse_dtype(flags.get("dtype", "bf16"), &c.io))
    return usage_error("run", "--dtype: expected bf16, fp16 or fp32, got '" + flags.get("dtype") + "'");
  if (!parse_dtype(flags.get("state-dtype", "fp32"), &c.state) || c.state == DType::kF16)
    return usage_error("run", "--state-dtype: expected fp32 or bf16, got '" + flags.get("state-dtype") + "'");
  const std::string layout = flags.get("layout", "kv");
  if (layout != "kv" && layout != "vk")
    return usage_error("run", "--layout: expected kv or vk, got '" + layout + "'");
  c.layout = layout == "vk" ? StateLayout::kVK : StateLayout::kKV;
  c.tol_o = c.tol_state = c.io == DType::kF32 ? 1e-5 : 4e-3;
  if (c.state == DType::kBF16) c.tol_state = 8e-3;
  if (flags.has("dump-inputs")) {
    // Without in-kernel l2norm the harness draws unit-norm keys.
    c.l2norm = flags.has("l2norm");
    return dump_inputs(flags.get("dump-inputs"), c);
  }

  // Which backend runs, and why (the same decision the call makes).
  {
    testing::Case probe = c;
    probe.seq_lens = {1};
    // The probe lives where the run will (GPU copies when run_case uses them),
    // so the backend printed is the backend that runs.
    testing::Workload w(probe, testing::runs_on_device(backend));
    if (!w.status().ok()) return usage_error("run", w.status().message());
    w.args().backend = backend;
    Choice choice;
    if (Status s = choose_backend(Op::kPrefill, w.args(), &choice); !s.ok()) {
      // Validation errors of the shape (e.g. HV % H) surface here.
      return usage_error("run", s.message());
    }
    std::printf(
        "gdn run: prefill of %lld tokens in %zu sequences, H=%lld HV=%lld K=%lld V=%lld, %s inputs, "
        "%s state\n",
        static_cast<long long>(T), c.seq_lens.size(), static_cast<long long>(c.H),
        static_cast<long long>(c.HV), static_cast<long long>(c.K), static_cast<long long>(c.V),
        dtype_name(c.io), dtype_name(c.state));
    std::printf("backend: %s (%s%s)\n", backend_name(choice.backend), choice.fell_back ? "fell back: " : "",
                choice.reason.c_str());
  }
  const testing::CaseResult r = testing::run_case(c, backend, static_cast<int>(threads), false);
  if (!r.status.ok()) return usage_error("run", r.status.message());
  Shape shape;
  shape.seq_lens = c.seq_lens;
  shape.H = c.H, shape.HV = c.HV, shape.K = c.K, shape.V = c.V;
  std::printf(
      "time: %.2f ms, %.1f GFLOP/s (host clock around one call and its completion; the first call\n"
      "on a GPU includes one-time setup, see gdn bench for timings)\n",
      r.ms, flops(shape) / (r.ms * 1e6));
  std::printf("error vs float64 reference: out %s; final state %s (tolerance %.0e, %.0e)\n",
              testing::describe(r.out).c_str(), testing::describe(r.state).c_str(), c.tol_o, c.tol_state);
  if (!r.passed) {
    std::printf("FAIL: %s\n", r.failure.c_str());
    return kExitFail;
  }
  std::printf("PASS\n");
  return kExitOk;
}

}  // namespace gdn::cli
