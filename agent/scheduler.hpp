// Runs every probe in the background on its own schedule. One scheduler thread owns all timing:
// a timer heap of when each probe is next due and of when each run in flight is given up on. A
// due run is handed to a pool of runner threads that call the plugin; the pool grows when every
// runner is busy (a probe's run never waits for another probe's) and shrinks when runners stay
// idle, so a thousand fast probes need a handful of threads, not a thousand.
// A run that has not returned by give_up_at(its deadline) (probe.hpp: the deadline the plugin was
// given, plus a short grace) is recorded as a `timeout` failure by the scheduler, its late result
// is discarded, and the probe is not started again until the run has returned: a hung plugin
// holds one runner and delays nothing else.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
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

  // Replaces the probe set. Probes present in both (same object) keep their schedule.
  void set_probes(const std::vector<std::shared_ptr<Probe>>& probes);
  // Adds one probe (not yet in the set): it runs at once if the scheduler is running.
  void add(const std::shared_ptr<Probe>& probe);
  void start();
  // Stops the scheduler; waits at most `grace` for runs in flight, leaving hung ones behind.
  void stop(Millis grace);
  // Last time the scheduler loop went round (at least once a second while it lives).
  SteadyTime heartbeat() const;
  // Runner threads alive now (busy or idle).
  int runners() const;

 private:
  struct Core;  // shared with the threads, so a run returning after stop() touches live memory
  std::shared_ptr<Core> core_;
};

}  // namespace vitals
