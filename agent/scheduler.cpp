#include "scheduler.hpp"

#include <sys/prctl.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <queue>
#include <string>
#include <thread>

namespace vitals {

namespace {

// A runner idle this long exits (the pool keeps one). The runner idle the shortest is handed the
// next run, so runners beyond what the probes need are the ones that stay idle.
constexpr Millis kRunnerIdleExit{5'000};
// Runs due together are handed to one runner, which takes them one after another (each hand-off is
// a wake-up). When the run first in line has waited kQueueWait, one more runner is called: an idle
// one, or, while fewer than kEagerRunners exist or no run has returned meanwhile (every runner is
// stuck in a plugin), a new one; at most one each kQueueWait. Fast probes are so run by a few
// runners with few wake-ups; probes that block get a runner each. (Growing faster feeds on
// itself: on a loaded machine busy runners look stuck, and more runners contend for the lock.)
constexpr int kEagerRunners = 4;
constexpr std::chrono::microseconds kQueueWait{1000};
// The scheduler thread's timer slack: runs due within this much of each other are started by one
// wake-up. The schedule is kept on its grid (each next run is due an interval after the previous
// one was due, not after it started), so the slack never accumulates.
constexpr long kTimerSlackNs = 2'000'000;
constexpr long kRunnerTimerSlackNs = 50'000;  // the kernel's default: plugins' waits keep theirs

}  // namespace

// One probe's place in the schedule.
struct ScheduleSlot {
  std::shared_ptr<Probe> probe;
  // All below guarded by Core::mutex.
  bool busy = false;       // a run is in flight (handed to the runners, or running)
  bool timed_out = false;  // the scheduler gave up on the run in flight
  bool finishing = false;  // the run returned in time and is being recorded
  bool phased = false;     // the steady-state phase offset has been applied
  bool retired = false;    // removed from the set
  bool waited = false;     // the wait for `previous` has been recorded as a failure
  // A retired slot of the same probe name whose run is still in flight (a reload changed a hung
  // probe): this one does not start until that run returns, so a probe holds at most one hung run.
  std::shared_ptr<ScheduleSlot> previous;
  SteadyTime next_due{};
  SteadyTime due{};       // when the run in flight was due: the next one is due an interval later
  SteadyTime started{};   // when it was handed to the runners
  SteadyTime deadline{};  // of the run in flight: what the plugin is given
};

// A timer of the heaps below. Stale timers are skipped when they come up: `key` is the slot's
// next_due (due timers) or started (give-up timers) when it was pushed.
struct Timer {
  SteadyTime at;
  std::shared_ptr<ScheduleSlot> slot;
  SteadyTime key;
  bool operator>(const Timer& o) const { return at > o.at; }
};
using TimerHeap = std::priority_queue<Timer, std::vector<Timer>, std::greater<>>;

// A runner waiting for work, until the scheduler calls it to take runs from the queue.
struct IdleRunner {
  std::condition_variable cv;
  bool called = false;
};

struct Queued {
  SteadyTime since;
  std::shared_ptr<ScheduleSlot> slot;
};

struct Scheduler::Core {
  Core(Millis start_period, std::function<void()> on_result)
      : start_period(start_period), on_result(std::move(on_result)) {}

  const Millis start_period;
  const std::function<void()> on_result;
  const SteadyTime started = std::chrono::steady_clock::now();
  std::atomic<SteadyTime::rep> heartbeat{started.time_since_epoch().count()};

  std::mutex mutex;
  std::condition_variable wake;  // the scheduler thread
  std::condition_variable runners_gone;
  std::vector<std::shared_ptr<ScheduleSlot>> slots;
  std::vector<std::shared_ptr<ScheduleSlot>> draining;  // retired, with a run still in flight
  TimerHeap due;                                        // when each slot is next due
  TimerHeap give_up;                                    // when each run in flight is given up on
  std::deque<Queued> ready;                             // due runs no runner has taken yet
  std::vector<IdleRunner*> idle;                        // the most recently idle last
  SteadyTime planned_wake = SteadyTime::max();          // when the scheduler thread will look again
  SteadyTime grown{};                                   // when the pool last grew for waiting runs
  SteadyTime returned{};                                // when a run last returned from its plugin
  int runners = 0;
  bool running = false, stopping = false;
  std::thread thread;

  Millis interval_for(const Probe& p) const {
    const bool starting = std::chrono::steady_clock::now() - started < start_period;
    if (starting && !p.ever_passed()) return p.config().start_interval;
    return p.config().interval;
  }

  void schedule(const std::shared_ptr<ScheduleSlot>& s) {  // with mutex held
    due.push({s->next_due, s, s->next_due});
    if (s->next_due < planned_wake) wake.notify_one();
  }

  // Hands a due slot to the runners, starting one more if none is idle for it.
  void dispatch(const std::shared_ptr<ScheduleSlot>& s, SteadyTime now,
                std::shared_ptr<Core> self) {
    s->busy = true;
    s->timed_out = false;
    s->due = s->next_due;
    s->started = now;
    s->deadline = s->probe->deadline_from(now);
    give_up.push({give_up_at(s->deadline), s, now});
    ready.push_back({now, s});
    if (ready.size() == 1) call_runner(self);  // later ones follow it
  }

  // One more runner for the queue: an idle one, or a new one if the pool may grow.
  void call_runner(const std::shared_ptr<Core>& self) {
    if (!idle.empty()) {
      IdleRunner* r = idle.back();
      idle.pop_back();
      r->called = true;
      r->cv.notify_one();
    } else if (runners < kEagerRunners ||
               std::chrono::steady_clock::now() - returned >= kQueueWait) {
      spawn(self);
    }
  }

  // Runs waiting longer than kQueueWait: every runner is busy, maybe blocked in a plugin.
  void grow(SteadyTime now, const std::shared_ptr<Core>& self) {
    if (ready.empty() || now - ready.front().since < kQueueWait || now - grown < kQueueWait) return;
    grown = now;
    call_runner(self);
  }

  void spawn(std::shared_ptr<Core> self) {
    ++runners;
    std::thread(&Core::runner, this, std::move(self)).detach();
  }

  // A slot for a probe new to the set, scheduled at once if running; it waits for the run of
  // the probe it replaces (same name, still draining), if any.
  std::shared_ptr<ScheduleSlot> new_slot(const std::shared_ptr<Probe>& p) {
    auto slot = std::make_shared<ScheduleSlot>();
    slot->probe = p;
    slot->next_due = std::chrono::steady_clock::now();
    for (const auto& d : draining)
      if (d->probe->config().name == p->config().name) slot->previous = d;
    if (running) schedule(slot);
    return slot;
  }

  void loop(std::shared_ptr<Core> self);
  void runner(std::shared_ptr<Core> self);
  void run(const std::shared_ptr<ScheduleSlot>& s, std::unique_lock<std::mutex>& lock);
};

Millis phase_offset(const std::string& name, Millis interval) {
  const auto span = std::min<Millis::rep>(interval.count() / 2, 1000);
  return span > 0 ? Millis(static_cast<Millis::rep>(std::hash<std::string>{}(name) % span))
                  : Millis(0);
}

Scheduler::Scheduler(Millis start_period, std::function<void()> on_result)
    : core_(std::make_shared<Core>(start_period, std::move(on_result))) {}

Scheduler::~Scheduler() {
  stop(Millis(1000));
}

SteadyTime Scheduler::heartbeat() const {
  return SteadyTime(SteadyTime::duration(core_->heartbeat.load()));
}

int Scheduler::runners() const {
  std::lock_guard lock(core_->mutex);
  return core_->runners;
}

void Scheduler::set_probes(const std::vector<std::shared_ptr<Probe>>& probes) {
  Core& c = *core_;
  std::lock_guard lock(c.mutex);
  for (const auto& s : c.slots) {
    if (std::find(probes.begin(), probes.end(), s->probe) != probes.end()) continue;
    s->retired = true;
    if (s->busy) c.draining.push_back(s);
  }
  std::erase_if(c.draining, [](const auto& s) { return !s->busy; });
  // Timers and queued runs of retired slots go now, so their probes are released at once.
  const auto live = [](TimerHeap& heap) {
    std::vector<Timer> keep;
    for (; !heap.empty(); heap.pop())
      if (!heap.top().slot->retired || heap.top().slot->busy) keep.push_back(heap.top());
    heap = TimerHeap(std::greater<>(), std::move(keep));
  };
  live(c.due);
  live(c.give_up);
  std::erase_if(c.ready, [](const Queued& q) {
    if (!q.slot->retired) return false;
    q.slot->busy = false;  // never started
    return true;
  });
  std::vector<std::shared_ptr<ScheduleSlot>> next;
  for (const auto& p : probes) {
    auto it =
        std::find_if(c.slots.begin(), c.slots.end(), [&](const auto& s) { return s->probe == p; });
    next.push_back(it != c.slots.end() ? *it : c.new_slot(p));
  }
  c.slots = std::move(next);
}

void Scheduler::add(const std::shared_ptr<Probe>& probe) {
  Core& c = *core_;
  std::lock_guard lock(c.mutex);
  c.slots.push_back(c.new_slot(probe));
}

void Scheduler::start() {
  Core& c = *core_;
  std::lock_guard lock(c.mutex);
  if (c.running || c.stopping) return;
  c.running = true;
  for (auto& s : c.slots) c.due.push({s->next_due, s, s->next_due});
  c.thread = std::thread(&Core::loop, &c, core_);
  // The runner the pool keeps, from the start: creating a thread waits while another thread
  // loads a shared object (glibc), as the agent loads plugins while its first probes run.
  if (c.runners == 0) c.spawn(core_);
}

void Scheduler::stop(Millis grace) {
  Core& c = *core_;
  std::unique_lock lock(c.mutex);
  if (c.stopping || !c.running) return;
  c.stopping = true;
  for (auto& s : c.slots) s->retired = true;
  c.ready.clear();
  c.wake.notify_one();
  for (IdleRunner* r : c.idle) r->cv.notify_one();
  lock.unlock();
  c.thread.join();
  lock.lock();
  // Runners finish the run they are in and exit (a run in a worker process returns at once:
  // SIGTERM killed the workers); one still in a plugin after `grace` is left behind (it holds
  // the core, so its return finds live memory, and it records and logs nothing then).
  c.runners_gone.wait_for(lock, grace, [&] { return c.runners == 0; });
}

void Scheduler::Core::loop(std::shared_ptr<Core> self) {
  prctl(PR_SET_TIMERSLACK, kTimerSlackNs);
  std::unique_lock lock(mutex);
  while (!stopping) {
    const SteadyTime now = std::chrono::steady_clock::now();
    heartbeat = now.time_since_epoch().count();
    std::vector<std::shared_ptr<ScheduleSlot>> timed_out, waiting;
    // Runs past their give-up time (a timer is stale if its run has returned since).
    while (!give_up.empty() && give_up.top().at <= now) {
      auto t = give_up.top();
      give_up.pop();
      ScheduleSlot& s = *t.slot;
      if (s.busy && s.started == t.key && !s.timed_out && !s.finishing) {
        s.timed_out = true;                           // its late result is discarded
        if (!s.retired) timed_out.push_back(t.slot);  // a removed probe is no longer reported
      }
    }
    // Due runs (a timer is stale if the slot was rescheduled or retired since).
    while (!due.empty() && due.top().at <= now) {
      auto t = due.top();
      due.pop();
      auto& s = t.slot;
      if (s->retired || s->busy || s->next_due != t.key) continue;
      if (s->previous && !s->previous->busy) s->previous.reset();
      if (s->previous) {
        // Parked: run() schedules it when the previous run returns.
        if (!s->waited) waiting.push_back(s);
        s->waited = true;
        continue;
      }
      dispatch(s, now, self);
    }
    grow(now, self);
    if (!timed_out.empty() || !waiting.empty()) {
      lock.unlock();
      for (auto& s : waiting) {
        RunResult r = s->probe->timeout_result(0);
        r.message = "not started: the run of its previous definition is still going";
        s->probe->record(r);
        s->probe->log().warn("not started until the run of its previous definition returns");
        on_result();
      }
      for (auto& s : timed_out) {
        const double elapsed =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - s->started).count();
        s->probe->record(s->probe->timeout_result(elapsed));
        s->probe->log().warn(
            "run still going after its {} timeout; not started again until it returns",
            format_duration(s->probe->config().timeout));
        on_result();
      }
      lock.lock();
      continue;
    }
    planned_wake = now + Millis(1000);
    if (!due.empty()) planned_wake = std::min(planned_wake, due.top().at);
    if (!give_up.empty()) planned_wake = std::min(planned_wake, give_up.top().at);
    if (!ready.empty())
      planned_wake = std::min(planned_wake, std::max(ready.front().since, grown) + kQueueWait);
    wake.wait_until(lock, planned_wake);
    planned_wake = SteadyTime::min();  // awake: nobody needs to wake this thread
  }
}

void Scheduler::Core::runner(std::shared_ptr<Core> /*holds the core while this runs*/) {
  prctl(PR_SET_TIMERSLACK, kRunnerTimerSlackNs);
  IdleRunner me;
  std::unique_lock lock(mutex);
  while (!stopping) {
    if (ready.empty()) {
      me.called = false;
      idle.push_back(&me);
      me.cv.wait_for(lock, kRunnerIdleExit, [&] { return me.called || stopping; });
      if (!me.called) {
        std::erase(idle, &me);
        if (runners > 1) break;  // idle for long: the pool shrinks, keeping one
      }
      continue;  // called: the scheduler took this runner off `idle`
    }
    const std::shared_ptr<ScheduleSlot> s = std::move(ready.front().slot);
    ready.pop_front();
    run(s, lock);
  }
  --runners;
  runners_gone.notify_all();
}

// Runs the slot's plugin once (the lock is released meanwhile), records the result if the run
// returned in time, and schedules the next run.
void Scheduler::Core::run(const std::shared_ptr<ScheduleSlot>& s,
                          std::unique_lock<std::mutex>& lock) {
  const SteadyTime deadline = s->deadline;  // set when the run was dispatched
  lock.unlock();
  const RunResult result = s->probe->run_once(deadline);
  lock.lock();
  returned = std::chrono::steady_clock::now();
  // After stop() nothing is recorded or logged: the agent, and at exit the log's sinks, may be
  // gone (a run left hung in a plugin returns whenever it does).
  if (stopping) return;
  const bool accepted = !s->timed_out;
  s->finishing = true;  // from here on the scheduler no longer times this run out
  lock.unlock();
  if (accepted) {
    s->probe->record(result);
    on_result();
  } else {
    s->probe->log().info("late run finished after {:.0f}ms; result discarded",
                         result.duration_s * 1000);
  }
  const Millis interval = interval_for(*s->probe);
  lock.lock();
  s->busy = false;
  s->finishing = false;
  if (s->retired) {
    // A slot parked until this run returned (a reload changed this probe) starts now.
    for (auto& o : slots) {
      if (o->previous != s) continue;
      o->previous.reset();
      o->next_due = std::chrono::steady_clock::now();
      schedule(o);
    }
    return;
  }
  s->next_due = std::max(s->due + interval, std::chrono::steady_clock::now());
  if (!s->phased && interval == s->probe->config().interval) {
    // Probes configured together would otherwise run in lockstep, every interval at once;
    // a fixed per-probe offset spreads them (applied once, on entering the steady interval).
    s->phased = true;
    s->next_due += phase_offset(s->probe->config().name, interval);
  }
  schedule(s);
}

}  // namespace vitals
