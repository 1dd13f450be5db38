// One configured probe: its plugin instance, its state after thresholds, and its counters.
#pragma once

#include <spdlog/logger.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "history.hpp"
#include "options.hpp"
#include "plugin_host.hpp"
#include "worker.hpp"

namespace vitals {

enum class Status { Pass, Warn, Fail, Unknown };
const char* to_string(Status s);

using SteadyTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

struct Number {
  std::string name, help;
  uint32_t unit = VITALS_UNIT_COUNT;
  double value = 0;
};

struct RunResult {
  Status status = Status::Unknown;  // pass, warn or fail
  std::string stage, message;
  std::vector<Number> numbers;
  double duration_s = 0;
  WallTime checked_at{};
  SteadyTime checked_mono{};
  bool timed_out = false;
  bool crashed = false;  // its worker process ended during the run
};

// Bucket upper bounds (seconds) of vitals_probe_run_duration_seconds.
inline constexpr std::array<double, 12> kDurationBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                            0.1,   0.25,   0.5,   1,    2.5,   5};

// A probe's /health fields that change only when it records a result, rendered then (health.cpp:
// render_probe_fields), so answering /health copies them instead of formatting every probe.
struct ProbeJson {
  std::string head[2];  // ,"plugin":… through "checked_at" (or nulls); [1] with "message"
  std::string tail;     // ,"since":… through "consecutive_successes"
};

struct ProbeState {
  Status effective = Status::Unknown;  // after thresholds
  // Shared, never changed: copying a state (a /health snapshot of every probe) copies no strings.
  std::shared_ptr<const RunResult> last;
  int consecutive_failures = 0;
  int consecutive_successes = 0;
  WallTime since{};  // last change of `effective`
  bool ever_passed = false;
  std::optional<WallTime> last_success;
  uint64_t runs_pass = 0, runs_warn = 0, runs_fail = 0, timeouts = 0, crashes = 0;
  std::array<uint64_t, kDurationBuckets.size()> buckets{};  // cumulative counts per bound
  double duration_sum = 0;
  std::shared_ptr<History> history;  // shared by copies: a snapshot reads it without copying it
  std::shared_ptr<const ProbeJson> json;  // of this state (set by the Probe)
};

// Kubernetes threshold semantics; the first result sets the state directly. Returns true if
// the effective status changed.
bool apply_result(ProbeState& state, const RunResult& result, int failure_threshold,
                  int success_threshold);

// A run's deadline, one definition for the plugin, the runner and the scheduler: the plugin is
// given `deadline` (start + timeout) and should return by then; its own result stands if it
// returns by give_up_at(deadline), a moment later (a plugin that keeps its deadline returns just
// after it, later still on a loaded machine). Past that the run is a `timeout`.
inline constexpr Millis kReturnGrace{100};
inline SteadyTime give_up_at(SteadyTime deadline) {
  return deadline + kReturnGrace;
}

class Probe : public std::enable_shared_from_this<Probe> {
 public:
  // `worker`: run in that worker process (isolation: process); null: on threads of the agent.
  Probe(ProbeConfig config, std::shared_ptr<const Plugin> plugin, BoundOptions options,
        std::shared_ptr<Worker> worker = nullptr);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Calls the plugin's create() (on a thread of its own, or in its worker process) under the
  // deadline a run would have:
  // false with a one-line reason (secrets scrubbed). `hung`: create() had not returned by
  // give_up_at(deadline) (or, in a worker, crashed): the probe is still usable, its runs fail
  // with stage `create` (in a worker they try create() again). Needs a shared_ptr owner.
  bool create(std::string& error, bool& hung);
  // The deadline of a run starting at `start`: start + timeout.
  SteadyTime deadline_from(SteadyTime start) const { return start + config_.timeout; }
  // Runs the plugin once with that deadline; a timeout result if it returns after
  // give_up_at(deadline). Does not record.
  RunResult run_once(SteadyTime deadline);
  RunResult run_once() { return run_once(deadline_from(std::chrono::steady_clock::now())); }
  // run_once() on a thread of its own, waiting until give_up_at(its deadline): a hung plugin is
  // reported as a timeout and left behind (for one-shot callers: `vitals once`, `vitals notify`).
  RunResult run_guarded(std::shared_ptr<Probe> self);
  // A failure with stage `timeout`, for a run the host gave up on.
  RunResult timeout_result(double elapsed_s) const;
  // Applies thresholds, counts, logs state changes.
  void record(const RunResult& result);

  // A log line from the plugin (vitals_host.log), secrets scrubbed.
  void plugin_log(int level, const std::string& message);

  ProbeState state() const;
  bool ever_passed() const;
  // How many results every probe of the process has recorded: a view of them is current while
  // this has not moved.
  static std::uint64_t records() { return records_.load(std::memory_order_relaxed); }
  // effective_now() == Pass, without copying the state.
  bool passing_now(SteadyTime now) const;
  // The status /health shows: unknown if the last result is older than 2*interval+timeout (plus
  // the kill grace for an isolated probe).
  Status effective_now(const ProbeState& s, SteadyTime now) const;
  const ProbeConfig& config() const { return config_; }
  const Plugin& plugin() const { return *plugin_; }
  bool isolated() const { return isolated_; }
  spdlog::logger& log() { return *log_; }

 private:
  ProbeConfig config_;
  std::shared_ptr<const Plugin> plugin_;
  BoundOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  vitals_host host_{};
  void* instance_ = nullptr;
  const bool isolated_;
  std::string create_error_;        // on threads: create() hung, the runs fail with this
  std::shared_ptr<Worker> worker_;  // changed only by the one call in flight (run or create)
  uint32_t worker_id_ = 0;          // this probe's id in worker_, once joined
  void join_worker();
  // After a crash found this probe alone in a shared worker: moves it to a worker of its own.
  void quarantine(const WorkerReply& reply);
  RunResult from_plugin(vitals_result& raw, double elapsed_s, SteadyTime end) const;
  RunResult from_worker(WorkerReply& reply, SteadyTime deadline);
  mutable std::mutex mutex_;
  ProbeState state_;
  static std::atomic<std::uint64_t> records_;
};

}  // namespace vitals
