// Runs every probe in the background on its own schedule. One scheduler thread owns all timing
// (when each probe is due, and each run's deadline); each probe has a runner thread that calls the
// plugin. A run that has not returned by give_up_at(its deadline) (probe.hpp: the deadline the
// plugin was given, plus a short grace) is recorded as a `timeout` failure by the scheduler, its
// late result is discarded, and the probe is not started again until the run has returned:
// a hung plugin delays nothing else.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "probe.hpp"

namespace vitals {

// A probe's fixed offset within its interval, in [0, min(interval/2, 1s)), from its name.
Millis phase_offset(const std::string& name, Millis interval);

class Scheduler {
 public:
  // on_result is called (from a runner or the scheduler thread) after each recorded result.
  Scheduler(Millis start_period, std::function<void()> on_result);
  ~Scheduler();

  // Replaces the probe set. Probes present in both (same object) keep their runner and schedule.
  void set_probes(const std::vector<std::shared_ptr<Probe>>& probes);
  void start();
  // Stops all runners; waits at most `grace` for runs in flight, leaving hung ones behind.
  void stop(Millis grace);
  // Last time the scheduler loop went round (at least once a second while it lives).
  SteadyTime heartbeat() const { return SteadyTime(SteadyTime::duration(heartbeat_.load())); }

 private:
  struct Slot;
  void loop();
  void runner(std::shared_ptr<Slot> slot);
  Millis interval_for(const Probe& p) const;

  Millis start_period_;
  std::function<void()> on_result_;
  SteadyTime started_ = std::chrono::steady_clock::now();
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Slot>> slots_;
  std::vector<std::shared_ptr<Slot>> draining_;  // retired, with a run still in flight
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<SteadyTime::rep> heartbeat_{0};
  std::atomic<int> runners_alive_{0};
};

}  // namespace vitals
