// What answering GET /health costs the agent with N probes (default 2000): Health::snapshot()
// and render_health_json(), timed apart, median of 51 repetitions each. Run by hand:
//   cmake --build build --target health_render_bench && build/bench/health_render_bench [N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "health.hpp"

using namespace vitals;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  spdlog::set_level(spdlog::level::off);
  auto plugin = std::make_shared<Plugin>();
  std::vector<std::shared_ptr<Probe>> probes;
  for (int i = 0; i < n; ++i) {
    ProbeConfig c;
    c.name = "tcp" + std::to_string(i);
    c.plugin = "tcp";
    auto p = std::make_shared<Probe>(c, plugin, BoundOptions{});
    RunResult r;  // what the tcp plugin says
    r.status = Status::Pass;
    r.stage = "connect";
    r.message = "connected to 127.0.0.1:46675";
    r.numbers.push_back(
        {"connect", "Time to establish the TCP connection.", VITALS_UNIT_SECONDS, 0.0001});
    r.duration_s = 0.00012;
    r.checked_at = std::chrono::system_clock::now();
    r.checked_mono = std::chrono::steady_clock::now();
    p->record(r);
    probes.push_back(p);
  }
  Health health;
  health.set_probes(probes, Millis(0), true);
  std::vector<double> snap_ms, render_ms;
  std::size_t bytes = 0;
  for (int rep = 0; rep < 51; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    const Snapshot s = health.snapshot();
    const auto t1 = std::chrono::steady_clock::now();
    bytes = render_health_json(s, "0.0.0").size();
    const auto t2 = std::chrono::steady_clock::now();
    snap_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    render_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::printf("%d probes: snapshot %.3f ms, render %.3f ms (%zu bytes), medians of 51\n", n,
              median(snap_ms), median(render_ms), bytes);
  return 0;
}
