#include "agent.hpp"

#include <malloc.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "http.hpp"
#include "liveness.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "readiness.hpp"
#include "scheduler.hpp"
#include "sd_notify.hpp"
#include "worker.hpp"

namespace vitals {

std::vector<std::string> plugin_dirs_for(const Config& c) {
  if (c.plugin_dirs.empty()) return {PluginHost::default_dir()};
  return c.plugin_dirs;
}

namespace {

// A plugin of the installed plugin folder (built with vitals), not one from anywhere else.
bool is_builtin(const Plugin& plugin) {
  std::error_code ec;
  const auto dir = std::filesystem::canonical(PluginHost::default_dir(), ec);
  return !ec && std::filesystem::canonical(plugin.path, ec).parent_path() == dir && !ec;
}

// The sanitizers' shadow memory needs terabytes of address space: no limit under them.
uint64_t worker_memory_limit(const Config& c) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  (void)c;
  return 0;
#else
  return c.worker_memory_limit;
#endif
}

}  // namespace

std::optional<Prepared> prepare(const std::string& config_path,
                                const std::vector<std::shared_ptr<Probe>>& previous,
                                std::vector<std::string>& errors, const std::string& only_probe) {
  ConfigResult parsed = load_config(config_path);
  if (!parsed.config) {
    errors = parsed.errors;
    return std::nullopt;
  }
  return prepare(std::move(*parsed.config), previous, errors, only_probe);
}

namespace {

// The probe `pc` of `out.config`, created with its plugin (loaded now if need be), or one of
// `previous` it is the same as; null with `errors` if it cannot be.
std::shared_ptr<Probe> make_probe(Prepared& out, const ProbeConfig& pc,
                                  const std::vector<std::shared_ptr<Probe>>& previous,
                                  std::vector<std::string>& errors) {
  const Config& c = out.config;
  const std::string where = c.file + ":" + std::to_string(pc.line) + ": probes." + pc.name;
  const Plugin* plugin = out.plugins->load_named(plugin_dirs_for(c), pc.plugin);
  const bool isolated = plugin && c.isolation_for(pc, is_builtin(*plugin)) == Isolation::Process;
  // A probe is kept, with its history, if neither its definition nor its plugin's file changed.
  auto reused = std::find_if(previous.begin(), previous.end(), [&](const auto& p) {
    return plugin && p->plugin().handle == plugin->handle && p->config().same_definition(pc) &&
           p->isolated() == isolated;
  });
  if (reused != previous.end()) {
    (*reused)->state().history->resize(pc.history);  // `history:` may have changed
    return *reused;
  }
  if (!plugin) {
    if (const Refusal* r = out.plugins->refusal_for(pc.plugin)) {
      errors.push_back(where + ".plugin: plugin '" + pc.plugin + "' was refused (" + r->reason +
                       "): " + r->message + " [" + r->path + "]");
    } else {
      std::vector<std::string> sorted;
      for (const auto& p : out.plugins->plugins()) sorted.push_back(p->desc.name);
      std::sort(sorted.begin(), sorted.end());
      std::string names;
      for (const auto& n : sorted) names += (names.empty() ? "" : ", ") + n;
      errors.push_back(where + ".plugin: no plugin '" + pc.plugin + "' in " +
                       out.plugins->dirs_text() +
                       "; available: " + (names.empty() ? "(none)" : names));
    }
    return nullptr;
  }
  BoundOptions options;
  if (!bind_options(pc, plugin->desc, c.file, options, errors)) return nullptr;
  std::shared_ptr<const Plugin> keep(out.plugins, plugin);  // the host owns the plugin
  auto probe =
      std::make_shared<Probe>(pc, keep, std::move(options),
                              isolated ? Worker::of(*plugin, worker_memory_limit(c)) : nullptr);
  std::string why;
  bool hung = false;
  if (!probe->create(why, hung)) {
    if (!hung) {
      errors.push_back(where + ".options: " + why);
      return nullptr;
    }
    // Kept: it fails with stage `create`, and the agent serves the others.
    spdlog::warn("{}: {}", where, why);
  }
  return probe;
}

}  // namespace

std::optional<Prepared> prepare(Config config, const std::vector<std::shared_ptr<Probe>>& previous,
                                std::vector<std::string>& errors, const std::string& only_probe,
                                const ProbesCreated& created) {
  Prepared out{std::move(config), std::make_shared<PluginHost>(), {}};
  const Config& c = out.config;
  if (!only_probe.empty() && !c.probe(only_probe)) {
    std::string names;
    for (const auto& p : c.probes) names += (names.empty() ? "" : ", ") + p.name;
    errors.push_back(c.file + ": no probe named '" + only_probe +
                     "'; probes: " + (names.empty() ? "(none)" : names));
    return std::nullopt;
  }
  // Made in the order their first results are due; kept, and errors told, in the config's.
  const std::size_t n = c.probes.size();
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < n; ++i)
    if (only_probe.empty() || c.probes[i].name == only_probe) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return c.probes[a].start_interval < c.probes[b].start_interval;
  });
  std::vector<std::shared_ptr<Probe>> made(n);
  std::vector<std::vector<std::string>> problems(n);
  bool failed = false;  // once a probe cannot be made, no more are started
  for (const std::size_t i : order) {
    made[i] = make_probe(out, c.probes[i], previous, problems[i]);
    failed |= !made[i];
    const bool fresh = std::find(previous.begin(), previous.end(), made[i]) == previous.end();
    if (created && !failed && fresh) created(made[i]);
  }
  for (std::size_t i = 0; i < n; ++i) {
    errors.insert(errors.end(), problems[i].begin(), problems[i].end());
    if (made[i]) out.probes.push_back(made[i]);
  }
  if (!errors.empty()) return std::nullopt;
  return out;
}

namespace {

spdlog::level::level_enum to_spdlog(LogLevel l) {
  switch (l) {
    case LogLevel::Trace:
      return spdlog::level::trace;
    case LogLevel::Debug:
      return spdlog::level::debug;
    case LogLevel::Info:
      return spdlog::level::info;
    case LogLevel::Warn:
      return spdlog::level::warn;
    case LogLevel::Error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// How long a stop may take once SIGTERM or SIGINT arrived: past it, a plugin call that does not
// return (a create() during startup or a reload, a destroy()) is left behind and the agent exits.
constexpr Millis kStopGrace{3000};

sigset_t agent_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  return set;
}

// Logs the version of each plugin loaded; after a reload, of each one new or replaced.
void log_plugins(const PluginHost& now, const PluginHost* before) {
  std::string added;
  for (const auto& p : now.plugins()) {
    const Plugin* old = before ? before->find(p->desc.name) : nullptr;
    if (old && old->handle == p->handle) continue;
    const std::string version = p->desc.version ? p->desc.version : "?";
    if (old) {
      spdlog::info("plugin {} {} reloaded from {} (was {})", p->desc.name, version, p->path,
                   old->desc.version ? old->desc.version : "?");
    } else {
      added += (added.empty() ? "" : ", ") + std::string(p->desc.name) + " " + version;
    }
  }
  if (!added.empty()) spdlog::info("plugins loaded from {}: {}", now.dirs_text(), added);
}

class Agent {
 public:
  Agent(std::string path, std::optional<int> notify_flag, std::optional<SdNotify> sd)
      : path_(std::move(path)), notify_flag_(notify_flag) {
    if (sd) systemd_ = std::make_unique<AgentSdNotifier>(std::move(*sd));
  }

  // The signals are blocked in every thread (cli.cpp blocks them before any thread starts): one
  // thread takes them from the start, so SIGTERM is heard even while startup is stuck in a plugin.
  int run() {
    std::thread signals([this] { take_signals(); });
    const int code = serve();
    release();
    {
      std::lock_guard lock(mutex_);
      finished_ = true;
    }
    wake_.notify_all();
    pthread_kill(signals.native_handle(), SIGHUP);  // ends its sigwait
    signals.join();
    return code;
  }

 private:
  void take_signals() {
    const sigset_t set = agent_signals();
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      std::unique_lock lock(mutex_);
      if (finished_) return;
      if (sig == SIGHUP) {
        reload_requested_ = true;  // several SIGHUPs before the reload starts make one reload
        wake_.notify_all();
        continue;
      }
      spdlog::info("received {}, stopping", strsignal(sig));
      if (systemd_) systemd_->stopping();
      stop_requested_ = true;
      wake_.notify_all();
      Worker::kill_all();  // no call waits on a plugin in a worker process
      if (wake_.wait_for(lock, kStopGrace, [this] { return finished_; })) return;
      spdlog::warn("still stopping after {}: a plugin call has not returned; exiting without it",
                   format_duration(kStopGrace));
      spdlog::default_logger()->flush();
      std::_Exit(kOk);
    }
  }

  bool stop_requested() {
    std::lock_guard lock(mutex_);
    return stop_requested_;
  }

  // Starts the agent and serves until SIGTERM or SIGINT; reloads on SIGHUP.
  int serve() {
    ConfigResult parsed = load_config(path_);
    if (!parsed.config) {
      for (const auto& e : parsed.errors) spdlog::error("{}", e);
      return kPermanent;
    }
    const Config& config = *parsed.config;
    apply_log_level(config);

    std::string why;
    const auto fd = resolve_notify_fd(notify_flag_, config.notify_fd, why);
    if (!why.empty()) {
      spdlog::error("{}", why);
      return kPermanent;
    }
    if (fd && !(why = notify_fd_problem(*fd)).empty()) {
      spdlog::critical("{}", why);
      return kTemporary;
    }
    notifier_ = std::make_unique<ReadinessNotifier>(fd);

    // Listening first (`vitals run` opened the socket before it loaded this library; the server
    // takes it over): loading the plugins and creating the probes is the rest of a start
    // (bench/coldstart.sh). Connections wait in the backlog meanwhile; they are served from
    // http->start() on, once the probes are in.
    std::unique_ptr<HttpServer> http;
    try {
      http = std::make_unique<HttpServer>(
          config.listen,
          HttpBackend{[this] { return health_.snapshot(); }, [this] { return facts(); },
                      [this] { return alive(); }, [this] { return health_.generation(); }});
    } catch (const std::exception& e) {
      spdlog::critical("unable to listen on {}: {}", config.listen, e.what());
      return kTemporary;
    }

    // Each probe starts as soon as it is created, the shortest start_interval first (prepare):
    // a plugin slow to load holds back only the probes after it. Readiness is judged, and
    // /health answered, once every probe is in. Plugins no probe uses are not loaded: loading
    // one would stall every thread's next access to a shared object's thread-local storage
    // (glibc's dl_load_tls_lock), the first /health among them, and map code nobody runs.
    scheduler_ = std::make_unique<Scheduler>(config.start_period, [this] {
      if (installed_) check_ready();
    });
    scheduler_->start();
    std::vector<std::string> errors;
    auto prepared = prepare(std::move(*parsed.config), {}, errors, "", [this](const auto& probe) {
      if (!stop_requested()) scheduler_->add(probe);  // none after SIGTERM
    });
    if (!prepared) {
      for (const auto& e : errors) spdlog::error("{}", e);
      return kPermanent;
    }
    if (stop_requested()) return kOk;
    install(*prepared);
    facts_.version = VITALS_VERSION;
    facts_.process_start = health_.started_at();
    facts_.last_reload_success = std::chrono::system_clock::now();

    http->start();
    if (systemd_)
      systemd_->start(
          {[this] { return render_line(health_.snapshot()); }, [this] { return alive(); }});
    listen_ = prepared->config.listen;
    spdlog::info("vitals {} listening on {} (at most {} connections) with {} probe(s)",
                 VITALS_VERSION, listen_, http->max_connections(), prepared->config.probes.size());
    installed_ = true;  // serving: readiness may be told from now on
    check_ready();
    log_plugins(*prepared->plugins, nullptr);
    current_ = std::move(*prepared);

    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return stop_requested_ || reload_requested_; });
      if (stop_requested_) break;
      reload_requested_ = false;
      lock.unlock();
      if (systemd_) systemd_->reloading();
      reload();
      if (systemd_) systemd_->reloaded();
      lock.lock();
    }
    lock.unlock();
    if (systemd_) systemd_->stop();
    http->stop();
    scheduler_->stop(Millis(500));
    return kOk;
  }

  // Drops every probe (its plugin's destroy() runs) while a stop is still under kStopGrace.
  void release() {
    scheduler_.reset();
    health_.set_probes({}, Millis(0), false);
    current_.reset();
  }

  void install(const Prepared& p) {
    health_.set_probes(p.probes, p.config.start_period, p.config.details_exposed());
    scheduler_->set_probes(p.probes);
    std::lock_guard lock(liveness_mutex_);
    state_dir_ = p.config.state_dir;
    liveness_refreshed_ = SteadyTime{};
  }

  // The restarts `vitals notify --liveness` keeps in state files (other processes): read after a
  // probe result, at most once a second, so /health and /metrics answer from memory.
  void refresh_liveness() {
    std::string dir;
    {
      std::lock_guard lock(liveness_mutex_);
      const auto now = std::chrono::steady_clock::now();
      if (now - liveness_refreshed_ < Millis(1000)) return;
      liveness_refreshed_ = now;
      dir = state_dir_;
    }
    std::vector<std::string> names;
    for (const auto& p : health_.probes()) names.push_back(p->config().name);
    liveness_.refresh(dir, names);
    health_.set_liveness(liveness_.records());
  }

  void reload() {
    std::vector<std::string> errors;
    auto next = prepare(path_, health_.probes(), errors);
    std::lock_guard lock(facts_mutex_);
    if (!next) {
      facts_.last_reload_successful = false;
      for (const auto& e : errors)
        spdlog::error("reload rejected, keeping the running config: {}", e);
      return;
    }
    if (next->config.listen != listen_)
      spdlog::warn("listen changed to {}; it takes effect at the next restart",
                   next->config.listen);
    apply_log_level(next->config);
    log_plugins(*next->plugins, current_ ? current_->plugins.get() : nullptr);
    install(*next);
    current_ = std::move(*next);
    facts_.last_reload_successful = true;
    facts_.last_reload_success = std::chrono::system_clock::now();
    spdlog::info("reloaded {} with {} probe(s)", path_, current_->config.probes.size());
    check_ready();
  }

  // After each recorded result, a start and a reload: the first time the agent is ready, the
  // "has been ready" latch is set (it ends the start period's grace) and s6 and systemd are
  // notified (systemd also hears of every change of the summary).
  void check_ready() {
    refresh_liveness();
    const bool ready = health_.latch_ready();
    if (systemd_) systemd_->update(ready);
    if (!ready || !notifier_ || !notifier_->pending()) return;
    std::string why;
    if (notifier_->notify(why))
      spdlog::info("ready: notified s6");
    else if (!why.empty())
      spdlog::error("ready, but unable to notify s6: {}", why);
  }

  AgentFacts facts() {
    std::lock_guard lock(facts_mutex_);
    return facts_;
  }

  bool alive() const {
    return std::chrono::steady_clock::now() - scheduler_->heartbeat() < Millis(5000);
  }

  std::string path_;
  std::optional<int> notify_flag_;
  Health health_;
  std::unique_ptr<ReadinessNotifier> notifier_;
  std::unique_ptr<AgentSdNotifier> systemd_;  // under systemd (NOTIFY_SOCKET)
  std::unique_ptr<Scheduler> scheduler_;
  std::optional<Prepared> current_;
  std::string listen_;
  std::mutex facts_mutex_;
  AgentFacts facts_;
  LivenessFiles liveness_;
  std::mutex liveness_mutex_;  // guards the two below
  std::string state_dir_;
  SteadyTime liveness_refreshed_{};
  std::mutex mutex_;  // guards the requests below, between the signal thread and serve()
  std::condition_variable wake_;
  bool stop_requested_ = false;
  bool reload_requested_ = false;
  bool finished_ = false;
  std::atomic<bool> installed_{false};  // every probe of the first config is in health_
};

}  // namespace

void apply_log_level(const Config& c) {
  const auto level = to_spdlog(c.log_level);
  spdlog::set_level(level);
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level); });
}

int run_agent(const std::string& config_path, std::optional<int> notify_fd_flag) {
  // A /health answer with many probes takes a few hundred KB (its snapshot, its body). Above
  // glibc's default 128 KiB each such block is a fresh mmap, every page of it faulted in again
  // on every request: most of the cost of the answer. Kept in the heap, they are reused.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  std::string why;
  auto sd = SdNotify::from_environment(why);
  unset_sd_environment();  // no child (an exec probe's command, a worker) announces itself
  if (!why.empty()) {
    spdlog::error("{}", why);
    return kPermanent;
  }
  Agent agent(config_path, notify_fd_flag, std::move(sd));
  return agent.run();
}

}  // namespace vitals
