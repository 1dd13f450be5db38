#include "scheduler.hpp"

#include <algorithm>
#include <functional>
#include <string>

namespace vitals {

struct Scheduler::Slot {
  std::shared_ptr<Probe> probe;
  // All below guarded by Scheduler::mutex_.
  bool busy = false;       // a run is in flight
  bool go = false;         // the runner should start a run
  bool timed_out = false;  // the scheduler gave up on the run in flight
  bool finishing = false;  // the run returned in time and is being recorded
  bool phased = false;     // the steady-state phase offset has been applied
  bool retired = false;    // removed from the set: the runner exits
  bool waited = false;     // the wait for `previous` has been recorded as a failure
  // A retired slot of the same probe name whose run is still in flight (a reload changed a hung
  // probe): this one does not start until that run returns, so a probe holds at most one hung run.
  std::shared_ptr<Slot> previous;
  SteadyTime next_due{};
  SteadyTime started{};
  SteadyTime deadline{};  // of the run in flight: what the plugin is given
  std::condition_variable cv;
  std::thread thread;
};

Millis phase_offset(const std::string& name, Millis interval) {
  const auto span = std::min<Millis::rep>(interval.count() / 2, 1000);
  return span > 0 ? Millis(static_cast<Millis::rep>(std::hash<std::string>{}(name) % span))
                  : Millis(0);
}

Scheduler::Scheduler(Millis start_period, std::function<void()> on_result)
    : start_period_(start_period), on_result_(std::move(on_result)) {
  heartbeat_ = std::chrono::steady_clock::now().time_since_epoch().count();
}

Scheduler::~Scheduler() {
  stop(Millis(1000));
}

Millis Scheduler::interval_for(const Probe& p) const {
  const bool starting = std::chrono::steady_clock::now() - started_ < start_period_;
  if (starting && !p.state().ever_passed) return p.config().start_interval;
  return p.config().interval;
}

void Scheduler::set_probes(const std::vector<std::shared_ptr<Probe>>& probes) {
  std::vector<std::shared_ptr<Slot>> retired;
  {
    std::lock_guard lock(mutex_);
    for (const auto& s : slots_) {
      if (std::find(probes.begin(), probes.end(), s->probe) == probes.end()) {
        s->retired = true;
        s->cv.notify_one();
        retired.push_back(s);
        if (s->busy) draining_.push_back(s);
      }
    }
    std::erase_if(draining_, [](const auto& s) { return !s->busy; });
    std::vector<std::shared_ptr<Slot>> next;
    for (const auto& p : probes) {
      auto it =
          std::find_if(slots_.begin(), slots_.end(), [&](const auto& s) { return s->probe == p; });
      if (it != slots_.end()) {
        next.push_back(*it);
        continue;
      }
      auto slot = std::make_shared<Slot>();
      slot->probe = p;
      slot->next_due = std::chrono::steady_clock::now();
      for (const auto& d : draining_)
        if (d->probe->config().name == p->config().name) slot->previous = d;
      if (thread_.joinable()) slot->thread = std::thread(&Scheduler::runner, this, slot);
      next.push_back(slot);
    }
    slots_ = std::move(next);
  }
  wake_.notify_one();
  for (auto& s : retired) {
    // A hung run keeps its runner (and the probe it owns) alive; never wait for it.
    if (s->thread.joinable()) s->thread.detach();
  }
}

void Scheduler::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  for (auto& s : slots_) s->thread = std::thread(&Scheduler::runner, this, s);
  thread_ = std::thread(&Scheduler::loop, this);
}

void Scheduler::stop(Millis grace) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || !thread_.joinable()) return;
    stopping_ = true;
    for (auto& s : slots_) {
      s->retired = true;
      s->cv.notify_one();
    }
  }
  wake_.notify_one();
  thread_.join();
  const SteadyTime until = std::chrono::steady_clock::now() + grace;
  while (runners_alive_ > 0 && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(Millis(5));
  std::lock_guard lock(mutex_);
  for (auto& s : slots_) {
    if (!s->thread.joinable()) continue;
    if (s->busy)
      s->thread.detach();  // hung in a plugin: leave it to process exit
    else
      s->thread.join();
  }
}

void Scheduler::loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    const SteadyTime now = std::chrono::steady_clock::now();
    heartbeat_ = now.time_since_epoch().count();
    SteadyTime wake_at = now + Millis(1000);
    std::vector<std::shared_ptr<Slot>> timed_out, waiting;
    for (auto& s : slots_) {
      if (s->previous && !s->previous->busy) s->previous.reset();
      if (s->busy) {
        // The same limit run_once() applies: a run that returns by then keeps its own result.
        const SteadyTime give_up = give_up_at(s->deadline);
        if (s->finishing) continue;
        if (!s->timed_out && now >= give_up) {
          s->timed_out = true;
          timed_out.push_back(s);
        } else if (!s->timed_out) {
          wake_at = std::min(wake_at, give_up);
        }
      } else if (s->previous) {
        // Woken by the previous run's runner when it returns.
        if (!s->waited) waiting.push_back(s);
        s->waited = true;
      } else if (now >= s->next_due) {
        s->busy = true;
        s->go = true;
        s->timed_out = false;
        s->started = now;
        s->deadline = s->probe->deadline_from(now);
        s->cv.notify_one();
        wake_at = std::min(wake_at, give_up_at(s->deadline));
      } else {
        wake_at = std::min(wake_at, s->next_due);
      }
    }
    if (!timed_out.empty() || !waiting.empty()) {
      lock.unlock();
      for (auto& s : waiting) {
        RunResult r = s->probe->timeout_result(0);
        r.message = "not started: the run of its previous definition is still going";
        s->probe->record(r);
        s->probe->log().warn("not started until the run of its previous definition returns");
        on_result_();
      }
      for (auto& s : timed_out) {
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s->started).count();
        s->probe->record(s->probe->timeout_result(elapsed));
        s->probe->log().warn(
            "run still going after its {} timeout; not started again until it returns",
            format_duration(s->probe->config().timeout));
        on_result_();
      }
      lock.lock();
      continue;
    }
    wake_.wait_until(lock, wake_at);
  }
}

void Scheduler::runner(std::shared_ptr<Slot> slot) {
  ++runners_alive_;
  std::unique_lock lock(mutex_);
  for (;;) {
    slot->cv.wait(lock, [&] { return slot->go || slot->retired; });
    if (slot->retired) break;
    slot->go = false;
    const SteadyTime deadline = slot->deadline;  // set when the scheduler started the run
    lock.unlock();
    const RunResult result = slot->probe->run_once(deadline);
    lock.lock();
    const bool accepted = !slot->timed_out;
    slot->finishing = true;  // from here on the scheduler no longer times this run out
    lock.unlock();
    if (accepted) {
      slot->probe->record(result);
      on_result_();
    } else {
      slot->probe->log().info("late run finished after {:.0f}ms; result discarded",
                              result.duration_s * 1000);
    }
    const Millis interval = interval_for(*slot->probe);
    lock.lock();
    slot->busy = false;
    slot->finishing = false;
    slot->next_due = std::max(slot->started + interval, std::chrono::steady_clock::now());
    if (!slot->phased && interval == slot->probe->config().interval) {
      // Probes configured together would otherwise run in lockstep, every interval at once;
      // a fixed per-probe offset spreads them (applied once, on entering the steady interval).
      slot->phased = true;
      slot->next_due += phase_offset(slot->probe->config().name, interval);
    }
    wake_.notify_one();
  }
  --runners_alive_;
}

}  // namespace vitals
