// gdn info: devices, backends built, and the routing table for this machine.
#include <iostream>
#include <string>
#include <thread>

#include "gdn/commands.h"
#include "gdn/dispatch.h"

namespace gdn::cli {

int usage_error(const char* cmd, const std::string& message) {
  std::cerr << "gdn " << cmd << ": " << message << "\n";
  return kExitUsage;
}

bool backend_flag(const Flags& flags, Backend* backend, std::string* error) {
  const std::string name = flags.get("backend", "auto");
  if (parse_backend(name, backend)) return true;
  *error = "--backend: unknown backend '" + name + "' (expected auto, reference, cpu, cuda or sm90)";
  return false;
}

int cmd_info(int argc, char** argv) {
  Flags flags(argc, argv, {}, {});
  if (flags.help()) {
    std::cout << "usage: gdn info\n\nPrints the library version, the CUDA devices, the backends this\n"
                 "build contains, and which backend auto picks for each kind of call.\n";
    return kExitOk;
  }
  if (!flags.ok()) return usage_error("info", flags.error());
  const BuildInfo build = build_info();
  std::cout << "gdn " << version() << "\n";
  std::cout << "backends built: reference, cpu" << (build.cuda ? ", cuda" : "")
            << (build.sm90 ? ", sm90" : "") << "\n";
  std::cout << "host: " << std::thread::hardware_concurrency() << " hardware threads\n";
  const int count = device_count();
  std::cout << "CUDA devices: " << count << "\n";
  for (int i = 0; i < count; ++i) {
    const DeviceInfo d = device_info(i);
    std::cout << "  [" << i << "] " << d.name << ", sm_" << d.cc_major << d.cc_minor << ", " << d.num_sms
              << " SMs, " << d.smem_per_block_optin / 1024 << " KiB shared memory per block\n";
  }
  std::cout << "routing (auto; GDN_PREFILL_BACKEND / GDN_DECODE_BACKEND override):\n";
  for (int where = 0; where <= (count > 0 ? 1 : 0); ++where) {
    for (Op op : {Op::kPrefill, Op::kDecode, Op::kVerify}) {
      for (int64_t hd : {64, 128, 96, 0}) {
        // hd 0: a prefill of short sequences (16 tokens each), K = V = 128.
        if (hd == 0 && op != Op::kPrefill) continue;
        Problem p;
        p.op = op;
        p.T = hd == 0 ? 64 : 1024, p.N = 4, p.H = 16, p.HV = 32, p.K = p.V = hd == 0 ? 128 : hd;
        p.on_device = where == 1;
        p.device_ordinal = where == 1 ? 0 : -1;
        const DeviceInfo d = where == 1 ? device_info(0) : DeviceInfo{};
        const Route r = route(Backend::kAuto, false, p, d, build);
        std::cout << "  " << op_name(op) << ", K=V=" << p.K << (hd == 0 ? ", 4 x 16 tokens" : "")
                  << ", data in " << (where ? "GPU 0" : "host") << " memory -> ";
        if (r.status.ok())
          std::cout << backend_name(r.backend) << " (" << r.reason << ")\n";
        else
          std::cout << "none (" << r.status.message() << ")\n";
      }
    }
  }
  return kExitOk;
}

}  // namespace gdn::cli
