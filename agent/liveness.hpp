// Liveness: `vitals notify --liveness` restarts a service that is alive but wedged.
//
// After the service was ready, the poller keeps running its probe every `interval`; after
// `liveness.after` failed runs in a row it ends PROG (the service's ./down-signal, else SIGTERM,
// then SIGKILL after ./timeout-kill or 10 s) and exits; the supervisor starts ./run again, whose
// new `vitals notify` signals readiness only once the probe passes again. Each restart is kept in a
// small state file, <state_dir>/<probe>.liveness, which outlives PROG, the poller and the agent:
// the next poller reads its restart budget there (at most `max_restarts` within `within`), and
// `vitals run` reads it for /health and /metrics.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "probe.hpp"

namespace vitals {

// What the state file holds. Times of the budget window are steady (CLOCK_MONOTONIC, shared by
// every process of the machine), so a clock change cannot refill or drain the budget.
struct LivenessRecord {
  uint64_t restarts = 0;       // by vitals, since the state file was made (/run: since boot)
  std::vector<double> recent;  // steady seconds of the restarts still within the last `within`
  std::optional<WallTime> last_restart;
  std::string last_reason;  // "fail at STAGE: MESSAGE" of the run that made vitals restart it
  std::optional<WallTime> gave_up;  // when the budget stopped a restart (the latest time)
  bool operator==(const LivenessRecord&) const = default;
};

// <state_dir>/<probe>.liveness (probe names have no '/').
std::string liveness_file(const std::string& state_dir, const std::string& probe);
// Creates the folder if needed; empty if it can be written, else why not (one line).
std::string prepare_state_dir(const std::string& dir);
// The record, or nullopt if there is no such file. Lines it does not know are skipped.
std::optional<LivenessRecord> read_liveness(const std::string& path);
std::string format_liveness(const LivenessRecord& r);
// Replaces the file in one rename, so a reader never sees half of it. False with the reason.
bool write_liveness(const std::string& path, const LivenessRecord& r, std::string& error);

// What the poller hands to the liveness loop: PROG and the probe's one run in flight.
struct LivenessTarget {
  std::function<bool()> idle;               // no run in flight
  std::function<RunResult()> run;           // starts a run and waits for it (or its timeout)
  std::function<bool(Millis)> prog_exited;  // waits up to that long for PROG's exit
  std::function<bool(int)> signal_prog;     // false if PROG is gone
  int pid = 0;                              // PROG's, for the log
};

// Watches the service after its readiness (see above). Returns when vitals gives up (the budget
// is spent); PROG's exit ends the poller itself (its watcher thread), as before readiness.
void keep_alive(const ProbeConfig& probe, const LivenessConfig& liveness,
                const std::string& state_file, LivenessTarget& target);

// The agent's view of the state files: re-read when one changed, never on a request.
class LivenessFiles {
 public:
  // Reads the files of these probes that changed since the last call: one stat of the folder if
  // nothing was written there since (files are replaced by rename), else one stat a probe.
  void refresh(const std::string& state_dir, const std::vector<std::string>& probes);
  std::map<std::string, LivenessRecord> records() const;

 private:
  struct Seen {
    long long mtime_ns = -1;
    unsigned long long inode = 0;
    LivenessRecord record;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Seen> seen_;
  std::string dir_;
  std::vector<std::string> probes_;
  long long dir_mtime_ns_ = -1;
  long long scanned_ns_ = 0;  // wall clock of the last full scan
};

}  // namespace vitals
