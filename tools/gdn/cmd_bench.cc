// gdn bench: times the rows of a suite file (bench/suite.json) on one backend
// and reports time, GFLOP/s, GB/s, the fraction of the roofline floor
// (DESIGN section 7) and, when the device matches a baseline file, the
// speedup over it.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gdn/commands.h"
#include "gdn/cost.h"
#if GDN_WITH_CUDA
#include "gdn/gpu_bench.h"
#endif
#include "testing/harness.h"

namespace gdn::cli {
namespace {

using nlohmann::json;

constexpr const char* kHelp =
    "usage: gdn bench --suite FILE [--rows NAME,NAME,...] [--backend B] [--json OUT]\n"
    "                 [--reps N] [--max-seconds S] [--threads N] [--baseline FILE]\n"
    "\n"
    "Times each row of the suite (prefill and decode entries; a decode entry with\n"
    "tokens_per_seq > 1 runs verify) after a warm-up call and prints the median time,\n"
    "GFLOP/s, GB/s, the fraction of the roofline floor measured on this machine, and the\n"
    "speedup over the baseline when its device matches.\n"
    "Progress goes to stderr.\n"
    "  --rows         comma-separated row names, or prefill / decode for every row of the\n"
    "                 suite's prefill or decode (and verify) entries (default: every row)\n"
    "  --reps N       timed calls per row (default 5 on the host, 50 on a GPU)\n"
    "  --max-seconds  stop timing a row after this many seconds (default 10)\n"
    "  --baseline F   baseline times (default: the bench/baselines/fla-*.json beside the suite\n"
    "                 measured on this device)\n";

struct Row {
  std::string name;
  Shape shape;
  testing::Case spec;
};

std::string host_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      std::string n = line.substr(colon + 2);
      return n + " (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
    }
  return "host (" + std::to_string(std::thread::hardware_concurrency()) + " threads)";
}

bool load_rows(const std::string& path, std::vector<Row>* rows, std::string* err) {
  std::ifstream f(path);
  if (!f) {
    *err = "--suite: cannot open '" + path + "'";
    return false;
  }
  json j;
  try {
    f >> j;
    for (const json& r : j.value("prefill", json::array())) {
      Row row;
      row.name = r.at("name").get<std::string>();
      row.shape.op = Op::kPrefill;
      row.shape.H = r.at("h").get<int64_t>();
      row.shape.HV = r.at("hv").get<int64_t>();
      row.shape.K = r.at("k").get<int64_t>();
      row.shape.V = r.at("v").get<int64_t>();
      row.shape.seq_lens = r.at("seq_lens").get<std::vector<int64_t>>();
      rows->push_back(row);
    }
    for (const json& r : j.value("decode", json::array())) {
      Row row;
      row.name = r.at("name").get<std::string>();
      const int64_t batch = r.at("batch").get<int64_t>(), tps = r.at("tokens_per_seq").get<int64_t>();
      row.shape.op = tps == 1 ? Op::kDecode : Op::kVerify;
      row.shape.H = r.at("h").get<int64_t>();
      row.shape.HV = r.at("hv").get<int64_t>();
      row.shape.K = r.at("k").get<int64_t>();
      row.shape.V = r.at("v").get<int64_t>();
      row.shape.seq_lens.assign(static_cast<size_t>(batch), tps);
      row.shape.write_state = r.value("write_final_state", true);
      row.shape.intermediate_states = r.value("intermediate_states", false);
      if (row.shape.intermediate_states && tps < 2)
        throw std::runtime_error("row '" + row.name +
                                 "': intermediate_states needs tokens_per_seq >= 2 (verify)");
      row.spec.pool_rows = r.at("pool_slots").get<int64_t>();
      row.spec.write_final = row.shape.write_state;
      row.spec.intermediate = row.shape.intermediate_states;
      rows->push_back(row);
    }
  } catch (const std::exception& e) {
    *err = "--suite: '" + path + "' is not a suite file: " + e.what();
    return false;
  }
  for (Row& row : *rows) {
    testing::Case& c = row.spec;
    c.name = row.name;
    c.op = row.shape.op;
    c.seq_lens = row.shape.seq_lens;
    c.H = row.shape.H, c.HV = row.shape.HV, c.K = row.shape.K, c.V = row.shape.V;
    c.io = DType::kBF16;
    c.state = DType::kF32;
    c.l2norm = true;
    c.initial_state = true;
    c.pool = row.shape.op != Op::kPrefill;  // decode rows: a state pool, as engines use
    c.pool_padding = false;
    c.fixed_len = true;
  }
  return true;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  Flags flags(argc, argv, {"suite", "rows", "backend", "json", "reps", "max-seconds", "threads", "baseline"},
              {});
  if (flags.help()) {
    std::cout << kHelp;
    return kExitOk;
  }
  if (!flags.ok()) return usage_error("bench", flags.error());
  if (!flags.has("suite")) return usage_error("bench", "--suite FILE is required (e.g. bench/suite.json)");
  std::string err;
  Backend backend;
  if (!backend_flag(flags, &backend, &err)) return usage_error("bench", err);
  const bool on_gpu = testing::runs_on_device(backend);
  int64_t reps = 5, max_seconds = 10, threads = 0;
  if (!flags.get_int("reps", on_gpu ? 50 : 5, &reps, &err) ||
      !flags.get_int("max-seconds", 10, &max_seconds, &err) || !flags.get_int("threads", 0, &threads, &err))
    return usage_error("bench", err);
  reps = std::max<int64_t>(1, reps);

  std::vector<Row> all;
  if (!load_rows(flags.get("suite"), &all, &err)) return usage_error("bench", err);
  std::vector<Row> rows;
  if (flags.has("rows")) {
    std::stringstream ss(flags.get("rows"));
    std::string name;
    while (std::getline(ss, name, ',')) {
      auto it = std::find_if(all.begin(), all.end(), [&](const Row& r) { return r.name == name; });
      if (it == all.end() && (name == "prefill" || name == "decode")) {  // every row of that kind
        for (const Row& r : all)
          if ((r.spec.op == Op::kPrefill) == (name == "prefill")) rows.push_back(r);
        continue;
      }
      if (it == all.end()) return usage_error("bench", "--rows: no row named '" + name + "' in the suite");
      rows.push_back(*it);
    }
  } else {
    rows = all;
  }

  // Baseline times, used when the device matches.
#if GDN_WITH_CUDA
  const std::string device = on_gpu ? gpu_name(0) : host_name();
#else
  if (on_gpu) return usage_error("bench", "this gdn was built without CUDA; GPU backends cannot be timed");
  const std::string device = host_name();
#endif
  // The baseline: --baseline, or the file of bench/baselines/fla-*.json
  // (beside the suite) measured on this device.
  std::map<std::string, double> baseline;
  std::string baseline_path;
  const auto read_baseline = [&](const std::string& path, bool must_match, std::string* why) -> bool {
    std::ifstream bf(path);
    if (!bf) return false;
    try {
      json b;
      bf >> b;
      if (b.value("device", "") != device) return false;
      for (auto& [name, r] : b.at("rows").items()) baseline[name] = r.at("graph_ms").get<double>();
      baseline_path = path;
      return true;
    } catch (const std::exception& e) {
      if (must_match) *why = "--baseline: '" + path + "' is not a baseline file: " + e.what();
      return false;
    }
  };
  std::string baseline_err;
  if (const std::string given = flags.get("baseline"); !given.empty()) {
    read_baseline(given, true, &baseline_err);
    if (!baseline_err.empty()) return usage_error("bench", baseline_err);
  } else {
    const std::string suite = flags.get("suite");
    const size_t slash = suite.find_last_of('/');
    const std::filesystem::path dir =
        std::filesystem::path(slash == std::string::npos ? std::string(".") : suite.substr(0, slash)) /
        "baselines";
    std::error_code ec;
    std::vector<std::string> candidates;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("fla-", 0) == 0 && entry.path().extension() == ".json")
        candidates.push_back(entry.path().string());
    }
    std::sort(candidates.begin(), candidates.end());
    for (const std::string& c : candidates)
      if (read_baseline(c, false, &baseline_err)) break;
  }

  const int nthreads =
      threads > 0 ? static_cast<int>(threads) : static_cast<int>(std::thread::hardware_concurrency());
  std::cerr << "gdn bench: measuring " << (on_gpu ? "GPU" : "host") << " ceilings...\n";
  Ceilings ceil;
#if GDN_WITH_CUDA
  if (on_gpu) {
    if (Status s = measure_gpu_ceilings(&ceil); !s.ok()) return usage_error("bench", s.message());
  } else {
    ceil = measure_host_ceilings(nthreads);
  }
#else
  ceil = measure_host_ceilings(nthreads);
#endif
  std::cerr << "  copy " << ceil.copy_gbps << " GB/s, fp32 matmul " << ceil.matmul_gflops << " GFLOP/s\n";

  json out_rows = json::array();
  std::printf("%-30s %-9s %10s %10s %10s %9s %7s %9s\n", "row", "backend", "ms", "ms_graph", "GFLOP/s",
              "GB/s", "floor", "speedup");
  for (size_t i = 0; i < rows.size(); ++i) {
    Row& row = rows[i];
    std::cerr << "[" << i + 1 << "/" << rows.size() << "] " << row.name << "..." << std::flush;
    const Shape& sh = row.shape;
    double t = 0.0, t_graph = -1.0, us_host = -1.0, us_check = -1.0;
    std::string backend_used;
    std::vector<double> ms;
    if (on_gpu) {
#if GDN_WITH_CUDA
      // Enough input copies that rotating through them defeats the L2 cache.
      const double l2 = static_cast<double>(gpu_l2_bytes(0));
      const int copies = static_cast<int>(std::min(8.0, std::max(1.0, std::ceil(2.0 * l2 / bytes(sh)))));
      testing::Workload w(row.spec, true, copies);
      if (!w.status().ok()) return usage_error("bench", row.name + ": " + w.status().message());
      std::vector<Args*> sets;
      for (int copy = 0; copy < copies; ++copy) {
        w.args(copy).backend = backend;
        sets.push_back(&w.args(copy));
      }
      Choice choice;
      if (Status s = choose_backend(row.shape.op, *sets[0], &choice); !s.ok()) {
        std::cerr << " skipped: " << s.message() << "\n";
        std::printf("%-30s %-9s %s\n", row.name.c_str(), "-", ("skipped: " + s.message()).c_str());
        out_rows.push_back({{"name", row.name}, {"skipped", s.message()}});
        continue;
      }
      backend_used = backend_name(choice.backend);
      GpuTiming gt;
      if (Status s = time_on_gpu(row.shape.op, sets, static_cast<int>(reps), &gt); !s.ok())
        return usage_error("bench", row.name + ": " + s.message());
      t = gt.ms_eager;
      t_graph = gt.ms_graph;
      us_host = gt.us_host;
      us_check = gt.us_check;
      ms.push_back(t);
#endif
    } else {
      testing::Workload w(row.spec);
      Args& a = w.args();
      a.backend = backend;
      a.num_threads = static_cast<int>(threads);
      Choice choice;
      if (Status s = choose_backend(row.shape.op, a, &choice); !s.ok())
        return usage_error("bench", row.name + ": " + s.message());
      backend_used = backend_name(choice.backend);
      if (Status s = run(row.shape.op, a); !s.ok())
        return usage_error("bench", row.name + ": " + s.message());
      const auto start = std::chrono::steady_clock::now();
      for (int64_t r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        if (Status s = run(row.shape.op, a); !s.ok())
          return usage_error("bench", row.name + ": " + s.message());
        const auto t1 = std::chrono::steady_clock::now();
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
        if (std::chrono::duration<double>(t1 - start).count() > static_cast<double>(max_seconds)) break;
      }
      t = median(ms);
    }
    // Rates and the roofline use the GPU time of graph replay where there is one.
    const double tr = t_graph > 0 ? t_graph : t;
    const double gflops = flops(sh) / (tr * 1e6), gbps = bytes(sh) / (tr * 1e6);
    const double floor = floor_ms(sh, ceil) / tr;
    json jr = {{"name", row.name},
               {"backend", backend_used},
               {"ms", t},
               {"ms_graph", t_graph > 0 ? json(t_graph) : json(nullptr)},
               {"gflops", gflops},
               {"gbps", gbps},
               {"floor_ms", floor_ms(sh, ceil)},
               {"floor_fraction", floor},
               {"reps", ms.size()}};
    if (us_host >= 0) {
      jr["us_host"] = us_host;
      jr["us_check"] = us_check;
    }
    std::string speedup = "-";
    if (auto it = baseline.find(row.name); it != baseline.end()) {
      jr["speedup_vs_baseline"] = it->second / tr;
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2fx", it->second / tr);
      speedup = buf;
    }
    out_rows.push_back(jr);
    std::cerr << " " << t << " ms" << (t_graph > 0 ? ", graph " + std::to_string(t_graph) + " ms" : "")
              << (us_host >= 0 ? ", host " + std::to_string(us_host) + " us, checks " +
                                     std::to_string(us_check) + " us"
                               : "")
              << "\n";
    char graph[32] = "-";
    if (t_graph > 0) std::snprintf(graph, sizeof graph, "%.4f", t_graph);
    std::printf("%-30s %-9s %10.4f %10s %10.1f %9.1f %6.1f%% %9s\n", row.name.c_str(), backend_used.c_str(),
                t, graph, gflops, gbps, 100.0 * floor, speedup.c_str());
    std::fflush(stdout);
  }
  if (flags.has("json")) {
    std::string v = version();
    const size_t l = v.find('('), r = v.find(')');
    json doc = {
        {"device", device},
        {"commit", l != std::string::npos && r != std::string::npos ? v.substr(l + 1, r - l - 1) : v},
        {"version", v},
        {"timing", on_gpu ? "ms: median end-to-end wall time of a plain call (launch to stream sync); "
                            "ms_graph: median GPU time per call replaying a CUDA graph (CUDA events), "
                            "us_host: the plain call's host part (until it returns), us_check: "
                            "choose_backend() alone (validation and routing); "
                            "inputs rotated across copies to defeat L2; rates and floor use ms_graph"
                          : "host steady_clock around each call, median after one warm-up call"},
        {"ceilings",
         {{"copy_gbps", ceil.copy_gbps}, {"matmul_gflops", ceil.matmul_gflops}, {"how", ceil.what}}},
        {"baseline", baseline.empty() ? json(nullptr) : json(baseline_path)},
        {"rows", out_rows}};
    std::ofstream jf(flags.get("json"));
    if (!jf) return usage_error("bench", "--json: cannot write '" + flags.get("json") + "'");
    jf << doc.dump(1) << "\n";
  }
  return kExitOk;
}

}  // namespace gdn::cli
