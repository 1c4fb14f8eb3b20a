// Timing helpers of the in-process benches (not a test).
#pragma once
#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <vector>

namespace bench {

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
// Process CPU time (all threads): unlike wall time, not inflated when another process
// shares the cores.
inline double cpu_s() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

struct Timing {
  double wall = 0, cpu = 0;  // medians, seconds
};

// Runs the functions round-robin, `repeat` rounds, and returns each one's median: what the
// ratios compare was measured under the same machine conditions (a drift in the machine's
// speed over the run hits every function alike, not the one that happened to run last).
inline std::vector<Timing> interleaved_medians(const std::vector<std::function<void()>>& fns, int repeat) {
  std::vector<std::vector<double>> wall(fns.size()), cpu(fns.size());
  for (int i = 0; i < repeat; ++i)
    for (size_t f = 0; f < fns.size(); ++f) {
      const double t0 = now_s(), c0 = cpu_s();
      fns[f]();
      wall[f].push_back(now_s() - t0);
      cpu[f].push_back(cpu_s() - c0);
    }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<Timing> out;
  for (size_t f = 0; f < fns.size(); ++f) out.push_back({median(wall[f]), median(cpu[f])});
  return out;
}

}  // namespace bench
