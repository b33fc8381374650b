// Host ceilings for the roofline: copy bandwidth (memcpy of a buffer far
// larger than the caches, bytes read plus bytes written) and fp32 matrix
// product rate (one 1024^3 product per thread, all threads at once, best of 8
// after a warm-up; fewer or smaller products read low on a busy machine).
#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "gdn/cost.h"

namespace gdn::cli {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Ceilings measure_host_ceilings(int threads) {
  Ceilings c;
  threads = std::max(1, threads);
  {
    const size_t n = size_t{256} << 20;
    std::vector<char> a(n, 1), b(n, 2);
    double best = 0;
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> ts;
      const size_t part = n / static_cast<size_t>(threads);
      for (int t = 0; t < threads; ++t)
        ts.emplace_back([&, t] { std::memcpy(b.data() + t * part, a.data() + t * part, part); });
      for (auto& t : ts) t.join();
      best = std::max(best, 2.0 * static_cast<double>(part * threads) / seconds_since(t0) / 1e9);
    }
    c.copy_gbps = best;
  }
  {
    const int n = 1024;
    using M = Eigen::MatrixXf;
    std::vector<M> A(threads, M::Random(n, n)), B(threads, M::Random(n, n)), C(threads, M::Zero(n, n));
    double best = 0;
    for (int rep = 0; rep < 9; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::thread> ts;
      for (int t = 0; t < threads; ++t) ts.emplace_back([&, t] { C[t].noalias() = A[t] * B[t]; });
      for (auto& t : ts) t.join();
      if (rep > 0) best = std::max(best, 2.0 * n * n * n * threads / seconds_since(t0) / 1e9);
    }
    c.matmul_gflops = best;
  }
  c.what = "host: memcpy of 256 MiB and fp32 1024^3 products on " + std::to_string(threads) + " threads";
  return c;
}

}  // namespace gdn::cli
