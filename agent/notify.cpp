#include "notify.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "agent.hpp"
#include "readiness.hpp"

namespace vitals {

namespace {

constexpr Millis kNotifyDefaultInterval{10};
constexpr const char* kUsage =
    "usage: vitals notify -c FILE --probe NAME [--notify-fd N] [--deadline D] -- PROG ARGS...";

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "vitals notify: %s\n", message.c_str());
  return code;
}

// The poller: runs in the forked child while PROG runs as the parent process.
int poll_until_ready(const std::string& config_path, const std::string& name, int fd, pid_t prog,
                     std::optional<Millis> deadline) {
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != prog) return 0;  // PROG already gone
  std::vector<std::string> errors;
  auto prepared = prepare(config_path, {}, errors, name);
  if (!prepared) {
    for (const auto& e : errors) spdlog::error("{}", e);
    return kPermanent;
  }
  std::shared_ptr<Probe> probe = prepared->probes.front();
  const Millis interval =
      probe->config().start_interval_set ? probe->config().start_interval : kNotifyDefaultInterval;
  const auto start = std::chrono::steady_clock::now();
  ReadinessNotifier notifier(fd);
  std::string last;
  for (;;) {
    const auto run_start = std::chrono::steady_clock::now();
    const RunResult r = probe->run_guarded(probe);
    if (getppid() != prog) return 0;  // PROG died: never notify for a dead service
    if (r.status == Status::Pass) {
      notifier.notify();
      spdlog::info(
          "probe {} passed after {:.0f}ms: ready", name,
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
      return kOk;
    }
    const std::string now = std::string(to_string(r.status)) + " at " + r.stage + ": " + r.message;
    if (now != last) spdlog::info("probe {} not ready yet: {}", name, now);
    last = now;
    if (deadline && std::chrono::steady_clock::now() - start >= *deadline) {
      spdlog::error("giving up: probe {} did not pass within {} (last: {})", name,
                    format_duration(*deadline), now);
      return kUnhealthy;
    }
    std::this_thread::sleep_until(run_start + interval);
  }
}

}  // namespace

int cmd_notify(int argc, char** argv) {
  std::string config_path, name;
  std::optional<int> fd_flag;
  std::optional<Millis> deadline;
  int i = 2;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--help" || a == "-h") {
      std::printf("%s\n", kUsage);
      return kOk;
    }
    if (i + 1 >= argc) return fail(kPermanent, a + " needs a value (" + kUsage + ")");
    const std::string v = argv[++i];
    if (a == "-c" || a == "--config")
      config_path = v;
    else if (a == "--probe")
      name = v;
    else if (a == "--notify-fd") {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end || n < 3) return fail(kPermanent, "--notify-fd needs a number of 3 or more");
      fd_flag = static_cast<int>(n);
    } else if (a == "--deadline") {
      deadline = parse_duration(v);
      if (!deadline) return fail(kPermanent, "invalid --deadline '" + v + "'; use e.g. 30s");
    } else {
      return fail(kPermanent, "unknown option " + a);
    }
  }
  if (i >= argc) return fail(kPermanent, "missing -- PROG ARGS...");
  if (config_path.empty() || name.empty())
    return fail(kPermanent, "needs -c FILE and --probe NAME");

  // Check what can be checked cheaply before PROG starts; plugins load in the poller.
  ConfigResult c = load_config(config_path);
  if (!c.config) {
    for (const auto& e : c.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return kPermanent;
  }
  if (!c.config->probe(name))
    return fail(kPermanent, config_path + ": no probe named '" + name + "'");
  std::string why;
  const auto fd = resolve_notify_fd(fd_flag, c.config->notify_fd, why);
  if (!why.empty()) return fail(kPermanent, why);
  if (!fd)
    return fail(kPermanent,
                "no notification fd: pass --notify-fd or run from a service directory with "
                "notification-fd");
  if (!fd_is_open(*fd, why))
    return fail(kTemporary, "notification-fd " + std::to_string(*fd) + " is not open: " + why);

  const pid_t prog = getpid();
  const pid_t child = fork();
  if (child < 0) return fail(kTemporary, std::string("unable to fork: ") + strerror(errno));
  if (child == 0) {
    // Always exit 0: the poller is PROG's child, and a daemon such as postgres may treat a child
    // that exits non-zero as a crash. The outcome is in the log.
    poll_until_ready(config_path, name, *fd, prog, deadline);
    spdlog::default_logger()->flush();
    _exit(0);
  }
  close(*fd);  // only the poller may write to it
  execvp(argv[i], argv + i);
  std::fprintf(stderr, "vitals notify: unable to exec %s: %s\n", argv[i], strerror(errno));
  return kTemporary;
}

}  // namespace vitals
