// Aggregation of probe states into the agent's tiered status, and the views rendered from it
// (/health JSON, /health/<probe>, /readyz text, the one-line summary `vitals check` prints).
// Everything here reads memory only: no request ever runs a probe.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "liveness.hpp"
#include "probe.hpp"

namespace vitals {

enum class Overall { Starting, Healthy, Degraded, Unhealthy };
const char* to_string(Overall o);

struct TierInput {
  Tier tier;
  bool gates_readiness;
  Status status;  // effective, after thresholds and staleness
};

// ready = every gating probe is pass (warn is not ready); no gating probes: ready.
bool is_ready(const std::vector<TierInput>& probes);
// First match wins: starting, unhealthy, degraded, healthy.
Overall aggregate(const std::vector<TierInput>& probes, bool ever_ready, bool in_start_period);

struct ProbeView {
  std::shared_ptr<Probe> probe;
  ProbeState state;
  Status status;  // effective_now
  // Restarts by `vitals notify --liveness` (its state file), for probes with liveness.
  std::optional<LivenessRecord> liveness;
};

struct Snapshot {
  std::vector<ProbeView> probes;
  Overall overall = Overall::Starting;
  bool ready = false;
  double uptime_s = 0;
  WallTime now{};
  SteadyTime mono{};
  bool details = true;  // messages may be shown

  const ProbeView* find(std::string_view name) const;
};

class Health {
 public:
  void set_probes(std::vector<std::shared_ptr<Probe>> probes, Millis start_period, bool details);
  std::vector<std::shared_ptr<Probe>> probes() const;
  // Takes a consistent view. Reading never changes state: "has been ready" is only latched by
  // latch_ready(), and a view that is ready now is never `starting`.
  Snapshot snapshot() const;
  // Called after each recorded result (and after probes are installed), never by a request:
  // latches "has been ready" the first time the results make the agent ready. True once latched.
  bool latch_ready();
  WallTime started_at() const { return started_wall_; }
  // Moves whenever a snapshot could differ other than by the clock: a result recorded, the probe
  // set or the liveness records replaced, readiness latched.
  std::uint64_t generation() const { return Probe::records() + changes_.load(); }
  // What the liveness state files said last (the agent refreshes it, never a request).
  void set_liveness(std::map<std::string, LivenessRecord> records);

 private:
  SteadyTime started_ = std::chrono::steady_clock::now();
  WallTime started_wall_ = std::chrono::system_clock::now();
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<Probe>> probes_;
  Millis start_period_{60'000};
  bool details_ = true;
  std::map<std::string, LivenessRecord> liveness_;
  std::atomic<bool> ever_ready_{false};
  std::atomic<std::uint64_t> changes_{0};
  std::size_t ready_cursor_ = 0;  // latch_ready(): where the last scan stopped
};

// The fields of a probe's /health object that only a recorded result changes (ProbeJson).
ProbeJson render_probe_fields(const ProbeConfig& c, const ProbeState& s);

// GET /health: HTTP status 200 (healthy, degraded) or 503 (starting, unhealthy).
int health_http_status(const Snapshot& s);
// With `history` set (?history=N), each probe also carries its newest N runs (`history`) and
// effective-status transitions (`transitions`), newest first.
std::string render_health_json(const Snapshot& s, const std::string& version,
                               std::optional<std::size_t> history = std::nullopt);
std::string render_probe_json(const Snapshot& s, const ProbeView& p,
                              std::optional<std::size_t> history = std::nullopt);
// "<status> ready=<bool> <passing>/<total> [name:stage: message; ...]", at most 4 KiB.
std::string render_line(const Snapshot& s, const ProbeView* only = nullptr);
// kube-apiserver style: "[+]db ok" / "[-]db failed: ..." lines, then "readyz check passed|failed".
std::string render_readyz(const Snapshot& s, bool verbose, const std::vector<std::string>& exclude,
                          bool& ready);

}  // namespace vitals
