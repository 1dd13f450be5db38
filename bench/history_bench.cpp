// The probe path's cost of recording history: Probe::record() (thresholds, counters, the history
// ring, a debug log call) timed with `history: 0` and `history: 120`, alternately, in batches.
// Prints the median nanoseconds per record() of each and their difference. Run by
// bench/history_cost.sh; nothing here runs a plugin.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "probe.hpp"

using namespace vitals;

namespace {

constexpr int kBatch = 10'000;
constexpr int kBatches = 101;

double batch_ns(Probe& probe, std::vector<RunResult>& results) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kBatch; ++i) probe.record(results[i % results.size()]);
  const auto end = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(end - start).count() / kBatch;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main() {
  spdlog::set_level(spdlog::level::off);  // state changes are logged: time the recording only
  auto plugin = std::make_shared<Plugin>();
  std::vector<std::unique_ptr<Probe>> probes;
  for (std::size_t history : {std::size_t{0}, std::size_t{120}}) {
    ProbeConfig c;
    c.name = "bench" + std::to_string(history);
    c.history = history;
    probes.push_back(std::make_unique<Probe>(c, plugin, BoundOptions{}));
  }
  // A realistic result: a 120-byte message, and a transition every 50 runs.
  std::vector<RunResult> results(100);
  for (std::size_t i = 0; i < results.size(); ++i) {
    results[i].status = i % 50 < 3 ? Status::Fail : Status::Pass;
    results[i].stage = "query";
    results[i].message = std::string(120, 'm');
    results[i].duration_s = 0.002;
    results[i].checked_at = std::chrono::system_clock::now();
    results[i].checked_mono = std::chrono::steady_clock::now();
  }
  std::vector<double> off, on;
  for (int b = 0; b < kBatches; ++b) {  // alternate, so machine noise hits both alike
    off.push_back(batch_ns(*probes[0], results));
    on.push_back(batch_ns(*probes[1], results));
  }
  const double m_off = median(off), m_on = median(on);
  std::printf(
      "record() median of %d batches of %d: history 0: %.0f ns, history 120: %.0f ns, "
      "difference %+.0f ns per run (%.2fx)\n",
      kBatches, kBatch, m_off, m_on, m_on - m_off, m_on / m_off);
  std::printf(
      "memory at history 120: runs %zu B (%zu B each), transitions at most %zu B (%zu B each, "
      "allocated as they happen)\n",
      120 * sizeof(HistoryRun), sizeof(HistoryRun), 120 * sizeof(HistoryTransition),
      sizeof(HistoryTransition));
  return 0;
}
