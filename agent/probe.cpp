#include "probe.hpp"

#include "health.hpp"

#include "worker_wire.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cmath>
#include <functional>
#include <future>
#include <thread>

namespace vitals {

namespace {

// Plugins log through the host, which names the logger and scrubs the probe's secrets.
void host_log(void* ctx, int level, const char* message) {
  static_cast<Probe*>(ctx)->plugin_log(level, message ? message : "");
}

uint64_t to_ns(SteadyTime t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

std::shared_ptr<spdlog::logger> probe_logger(const std::string& name) {
  const std::string logger_name = "probe." + name;
  if (auto existing = spdlog::get(logger_name)) return existing;
  auto log =
      std::make_shared<spdlog::logger>(logger_name, spdlog::default_logger()->sinks().begin(),
                                       spdlog::default_logger()->sinks().end());
  log->set_level(spdlog::default_logger()->level());
  spdlog::register_logger(log);
  return log;
}

}  // namespace

std::atomic<std::uint64_t> Probe::records_{0};

const char* to_string(Status s) {
  switch (s) {
    case Status::Pass:
      return "pass";
    case Status::Warn:
      return "warn";
    case Status::Fail:
      return "fail";
    case Status::Unknown:
      return "unknown";
  }
  return "unknown";
}

bool apply_result(ProbeState& s, const RunResult& r, int failure_threshold, int success_threshold) {
  const Status before = s.effective;
  if (r.status == Status::Fail) {
    ++s.consecutive_failures;
    s.consecutive_successes = 0;
    if (s.effective == Status::Unknown || s.consecutive_failures >= failure_threshold)
      s.effective = Status::Fail;
  } else {
    ++s.consecutive_successes;
    s.consecutive_failures = 0;
    if (s.effective != Status::Fail || s.consecutive_successes >= success_threshold)
      s.effective = r.status;
  }
  return s.effective != before;
}

Probe::Probe(ProbeConfig config, std::shared_ptr<const Plugin> plugin, BoundOptions options,
             std::shared_ptr<Worker> worker)
    : config_(std::move(config)),
      plugin_(std::move(plugin)),
      options_(std::move(options)),
      log_(probe_logger(config_.name)),
      isolated_(worker != nullptr),
      worker_(std::move(worker)) {
  host_.struct_size = sizeof host_;
  host_.host_ctx = this;
  host_.log = &host_log;
  state_.since = std::chrono::system_clock::now();
  state_.history = std::make_shared<History>(config_.history);
  state_.json = std::make_shared<const ProbeJson>(render_probe_fields(config_, state_));
}

Probe::~Probe() {
  if (worker_ && worker_id_) worker_->leave(worker_id_);
  if (instance_) plugin_->desc.destroy(instance_);
}

void Probe::plugin_log(int level, const std::string& message) {
  const auto lvl = level >= VITALS_LOG_ERROR  ? spdlog::level::err
                   : level == VITALS_LOG_WARN ? spdlog::level::warn
                   : level == VITALS_LOG_INFO ? spdlog::level::info
                                              : spdlog::level::debug;
  log_->log(lvl, "{}", safe_text(message, options_.secrets()));
}

namespace {

// Calls fn on a thread of its own and waits until `give_up`; false if fn is still going then. A
// plugin call cannot be cancelled: one still going is left behind, with what fn captured.
bool call_until(SteadyTime give_up, std::function<void()> fn) {
  auto task = std::make_shared<std::packaged_task<void()>>(std::move(fn));
  auto done = task->get_future();
  std::thread thread([task] { (*task)(); });
  if (done.wait_until(give_up) == std::future_status::ready) {
    // Let the thread finish exiting (and run its libraries' thread-exit cleanup, e.g. OpenSSL's
    // per-thread state) before the caller goes on, maybe to exit().
    thread.join();
    return true;
  }
  thread.detach();
  return false;
}

}  // namespace

bool Probe::create(std::string& error, bool& hung) {
  struct Outcome {
    int rc = -1;
    char err[512] = {0};
    void* instance = nullptr;
    std::atomic<bool> abandoned{false};
  };
  auto out = std::make_shared<Outcome>();
  const SteadyTime deadline = deadline_from(std::chrono::steady_clock::now());
  if (worker_) {
    join_worker();
    WorkerReply r = worker_->create(worker_id_, give_up_at(deadline));
    quarantine(r);
    // Hung or crashed: the probe is kept; its runs create the instance again, in a new worker.
    hung = r.kind == WorkerReply::Kind::Hung || r.kind == WorkerReply::Kind::Crashed;
    if (r.kind == WorkerReply::Kind::Hung)
      error = std::string("create() of plugin ") + plugin_->desc.name + " did not return within " +
              format_duration(config_.timeout) + "; its worker was killed";
    else if (r.kind == WorkerReply::Kind::Crashed)
      error = "create() crashed: " + safe_text(r.message, options_.secrets());
    else if (r.kind == WorkerReply::Kind::CreateFailed)
      error = safe_text(r.message, options_.secrets());
    return r.kind == WorkerReply::Kind::Ok;
  }
  hung = !call_until(give_up_at(deadline), [self = shared_from_this(), out] {
    const auto values = self->options_.c_values();
    out->rc = self->plugin_->desc.create(&self->host_, values.data(),
                                         static_cast<uint32_t>(values.size()), &out->instance,
                                         out->err, sizeof out->err);
    // Returned after the host gave up on it: nobody will use this instance.
    if (out->abandoned && out->rc == 0 && out->instance) self->plugin_->desc.destroy(out->instance);
  });
  if (hung) {
    out->abandoned = true;
    error = std::string("create() of plugin ") + plugin_->desc.name + " did not return within " +
            format_duration(config_.timeout);
    create_error_ = error;  // the thread cannot be taken back: the probe fails until a reload
    return false;
  }
  instance_ = out->instance;
  if (out->rc != 0) {
    instance_ = nullptr;
    out->err[sizeof out->err - 1] = '\0';
    error = safe_text(out->err[0] ? out->err : "create failed", options_.secrets());
    return false;
  }
  return true;
}

void Probe::join_worker() {
  const auto values = options_.c_values();
  std::weak_ptr<Probe> weak = weak_from_this();
  worker_id_ = worker_->join(
      config_.name, wire::encode_values(values.data(), static_cast<uint32_t>(values.size())),
      options_.secrets(), [weak](int level, const std::string& text) {
        if (auto self = weak.lock()) self->plugin_log(level, text);
      });
}

void Probe::quarantine(const WorkerReply& reply) {
  if (!reply.culprit) return;
  worker_->leave(worker_id_);
  worker_ = Worker::of(*plugin_, worker_->data_limit(), config_.name);
  join_worker();
}

RunResult Probe::run_once(SteadyTime deadline) {
  if (worker_) {
    WorkerReply reply = worker_->run(worker_id_, deadline, give_up_at(deadline));
    quarantine(reply);
    return from_worker(reply, deadline);
  }
  if (!create_error_.empty()) {
    RunResult r;
    r.status = Status::Fail;
    r.stage = "create";
    r.message = create_error_;
    r.checked_at = std::chrono::system_clock::now();
    r.checked_mono = std::chrono::steady_clock::now();
    return r;
  }
  vitals_result raw{};
  raw.struct_size = sizeof raw;
  const SteadyTime start = std::chrono::steady_clock::now();
  plugin_->desc.run(instance_, to_ns(deadline), &raw);
  const SteadyTime end = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(end - start).count();
  if (end > give_up_at(deadline)) return timeout_result(elapsed);
  return from_plugin(raw, elapsed, end);
}

RunResult Probe::from_worker(WorkerReply& reply, SteadyTime deadline) {
  using Kind = WorkerReply::Kind;
  if (reply.kind == Kind::Ok) {
    const SteadyTime end{std::chrono::nanoseconds(reply.end_ns)};
    const double elapsed = static_cast<double>(reply.end_ns - reply.start_ns) / 1e9;
    if (end > give_up_at(deadline)) return timeout_result(elapsed);
    return from_plugin(reply.result, elapsed, end);
  }
  if (reply.kind == Kind::Hung && !reply.during_create) {
    RunResult r = timeout_result(std::chrono::duration<double>(config_.timeout).count());
    r.message += "; its worker was killed";
    return r;
  }
  RunResult r;
  r.status = Status::Fail;
  r.stage = reply.during_create ? "create" : "crashed";
  r.message = safe_text(reply.message, options_.secrets());
  r.crashed = reply.died_in_call;
  r.checked_at = std::chrono::system_clock::now();
  r.checked_mono = std::chrono::steady_clock::now();
  return r;
}

RunResult Probe::from_plugin(vitals_result& raw, double elapsed, SteadyTime end) const {
  RunResult r;
  r.status = raw.status == VITALS_PASS   ? Status::Pass
             : raw.status == VITALS_WARN ? Status::Warn
                                         : Status::Fail;
  raw.stage[sizeof raw.stage - 1] = '\0';
  raw.message[sizeof raw.message - 1] = '\0';
  r.stage = safe_text(raw.stage, options_.secrets());
  r.message = safe_text(raw.message, options_.secrets());
  for (uint32_t i = 0; i < std::min<uint32_t>(raw.number_count, VITALS_NUMBERS_MAX); ++i) {
    vitals_number& n = raw.numbers[i];
    n.name[sizeof n.name - 1] = '\0';
    n.help[sizeof n.help - 1] = '\0';
    if (!n.name[0] || !std::isfinite(n.value)) continue;
    r.numbers.push_back({n.name, n.help, n.unit, n.value});
  }
  r.duration_s = elapsed;
  r.checked_at = std::chrono::system_clock::now();
  r.checked_mono = end;
  return r;
}

RunResult Probe::run_guarded(std::shared_ptr<Probe> self) {
  const SteadyTime deadline = deadline_from(std::chrono::steady_clock::now());
  auto out = std::make_shared<RunResult>();
  // A hung run is left behind, as the scheduler leaves one.
  if (call_until(give_up_at(deadline), [self, deadline, out] { *out = self->run_once(deadline); }))
    return *out;
  return timeout_result(std::chrono::duration<double>(config_.timeout).count());
}

RunResult Probe::timeout_result(double elapsed_s) const {
  RunResult r;
  r.status = Status::Fail;
  r.stage = "timeout";
  r.message = "did not finish within " + format_duration(config_.timeout);
  r.duration_s = elapsed_s;
  r.checked_at = std::chrono::system_clock::now();
  r.checked_mono = std::chrono::steady_clock::now();
  r.timed_out = true;
  return r;
}

void Probe::record(const RunResult& r) {
  std::unique_lock lock(mutex_);
  const Status before = state_.effective;
  const bool changed =
      apply_result(state_, r, config_.failure_threshold, config_.success_threshold);
  if (changed) state_.since = r.checked_at;
  if (r.status == Status::Pass) {
    state_.ever_passed = true;
    state_.last_success = r.checked_at;
  } else if (r.status == Status::Warn) {
    state_.last_success = r.checked_at;
  }
  (r.status == Status::Pass   ? state_.runs_pass
   : r.status == Status::Warn ? state_.runs_warn
                              : state_.runs_fail)++;
  if (r.timed_out || r.stage == "timeout") ++state_.timeouts;  // host- or plugin-detected
  if (r.crashed) ++state_.crashes;
  for (size_t i = 0; i < kDurationBuckets.size(); ++i)
    if (r.duration_s <= kDurationBuckets[i]) ++state_.buckets[i];
  state_.duration_sum += r.duration_s;
  state_.last = std::make_shared<const RunResult>(r);
  state_.json = std::make_shared<const ProbeJson>(render_probe_fields(config_, state_));
  records_.fetch_add(1, std::memory_order_relaxed);
  state_.history->record(r.checked_at, r.status, r.duration_s, r.stage, r.message, before,
                         state_.effective);
  lock.unlock();

  if (changed) {
    const auto level = r.status == Status::Fail ? spdlog::level::warn : spdlog::level::info;
    log_->log(level, "{} -> {} at {}: {}", to_string(before), to_string(r.status), r.stage,
              r.message);
  } else {
    log_->debug("{} at {} in {:.1f}ms: {}", to_string(r.status), r.stage, r.duration_s * 1000,
                r.message);
  }
}

ProbeState Probe::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

bool Probe::ever_passed() const {
  std::lock_guard lock(mutex_);
  return state_.ever_passed;
}

bool Probe::passing_now(SteadyTime now) const {
  std::lock_guard lock(mutex_);
  return effective_now(state_, now) == Status::Pass;
}

Status Probe::effective_now(const ProbeState& s, SteadyTime now) const {
  if (!s.last) return Status::Unknown;
  // An isolated run that hangs holds its probe until its worker is killed, a grace later.
  const Millis grace = isolated_ ? kKillGrace : Millis(0);
  if (now - s.last->checked_mono > 2 * config_.interval + config_.timeout + grace)
    return Status::Unknown;
  return s.effective;
}

}  // namespace vitals
