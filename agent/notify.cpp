#include "notify.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent.hpp"
#include "liveness.hpp"
#include "readiness.hpp"

namespace vitals {

namespace {

constexpr Millis kNotifyDefaultInterval{10};
constexpr Millis kComingUpInterval{2};  // see Pace
constexpr Millis kSettleAfter{1000};    // a failure unchanged for this long is settled
constexpr Millis kBackoffCap{1000};     // the slowest pace on a settled failure (or start_interval)

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "vitals notify: %s\n", message.c_str());
  return code;
}

// The poller tells PROG, which waits before it execs, whether the probe loaded: one byte, the exit
// code (kOk: go on).
void send_verdict(int fd, int code) {
  const unsigned char c = static_cast<unsigned char>(code);
  while (write(fd, &c, 1) < 0 && errno == EINTR) {
  }
  close(fd);
}

// Watches PROG from the poller, which is not its child. A pidfd (Linux 5.3+) becomes readable when
// PROG exits. Without pidfd_open (ENOSYS on older kernels, or a seccomp filter), PROG's /proc/<pid>
// directory, opened the same way while PROG is blocked, keeps naming that process and never a later
// one with the same pid: it is checked every kProcPoll, and PROG has exited once its stat says
// zombie or the directory answers ESRCH (reaped).
class ProgWatch {
 public:
  bool open(pid_t pid, std::string& error) {
    pid_ = pid;
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd_ >= 0) return true;
    const std::string pidfd_error = strerror(errno);
    procfd_ = ::open(("/proc/" + std::to_string(pid)).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd_ >= 0) return true;
    error =
        "pidfd_open: " + pidfd_error + "; /proc/" + std::to_string(pid) + ": " + strerror(errno);
    return false;
  }

  // True once PROG has exited; waits up to `wait` for it (negative: forever).
  bool exited(Millis wait) const {
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      int n;
      do {
        n = poll(&p, 1, wait.count() < 0 ? -1 : static_cast<int>(wait.count()));
      } while (n < 0 && errno == EINTR);
      return n > 0;
    }
    const auto until = std::chrono::steady_clock::now() + wait;
    for (;;) {
      if (gone()) return true;
      Millis step = kProcPoll;
      if (wait.count() >= 0) {
        const auto left = std::chrono::ceil<Millis>(until - std::chrono::steady_clock::now());
        if (left <= Millis(0)) return false;
        step = std::min(step, left);
      }
      std::this_thread::sleep_for(step);
    }
  }

  // Sends PROG a signal (liveness); false once PROG is gone. Through the pidfd, never a later
  // process with the same pid; without one, only while /proc/<pid> still names PROG.
  bool signal(int sig) const {
    if (pidfd_ >= 0) return syscall(SYS_pidfd_send_signal, pidfd_, sig, nullptr, 0) == 0;
    return !gone() && kill(pid_, sig) == 0;
  }
  pid_t pid() const { return pid_; }

 private:
  static constexpr Millis kProcPoll{50};

  bool gone() const {
    const int fd = openat(procfd_, "stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ESRCH || errno == ENOENT;
    char buf[512];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return n == 0 || errno == ESRCH;
    buf[n] = '\0';
    const char* end = std::strrchr(buf, ')');  // "pid (comm) state ...": comm may hold anything
    return end && end[1] == ' ' && (end[2] == 'Z' || end[2] == 'X');
  }

  int pidfd_ = -1, procfd_ = -1;
  pid_t pid_ = 0;
};

// The poller's pace. While results change, on a warn (progress in flight, such as a model load)
// and while nothing answers at all (a failure at stage `reachable` or `connect`: the service is not
// listening yet, which costs it nothing), it runs every start_interval. Any other failure (fail or
// unknown) that stays the same (status, stage and message) for kSettleAfter is settled: the server
// answered, and will answer the same (a wrong password). From then on the wait doubles after each
// further identical run, up to max(start_interval, kBackoffCap), so it is not hammered. Any change
// returns to start_interval at once.
// Unless the user chose a start_interval, the service coming up is followed closer: a failure at
// `reachable`, `connect` or `accepting` (PostgreSQL's "starting up") is retried every kComingUp
// for its first kSettleAfter, since readiness is then a moment away.
class Pace {
 public:
  Pace(Millis start_interval, Millis coming_up)
      : base_(start_interval),
        coming_up_(coming_up),
        cap_(std::max(start_interval, kBackoffCap)),
        wait_(base_) {}

  // Records a run that did not pass, observed at `at`; `result` is what identifies it. True when
  // this run made the failure settled (once per settled failure, not per run).
  bool record(Status status, const std::string& stage, const std::string& result, SteadyTime at) {
    if (status == Status::Warn || result != result_) {
      result_ = result;
      since_ = at;
      settled_ = false;
    }
    const bool recent = at - since_ < kSettleAfter;
    const bool unanswered = stage == "reachable" || stage == "connect";
    if (status != Status::Warn && recent && (unanswered || stage == "accepting")) {
      wait_ = coming_up_;
      return false;
    }
    if (status == Status::Warn || unanswered || !settled_) {
      wait_ = base_;
      settled_ = status != Status::Warn && !unanswered && !recent;
      return settled_;
    }
    wait_ = std::min(wait_ * 2, cap_);
    return false;
  }

  Millis wait() const { return wait_; }  // from the start of one run to the start of the next
  Millis cap() const { return cap_; }

 private:
  Millis base_, coming_up_, cap_, wait_;
  std::string result_;
  SteadyTime since_{};
  bool settled_ = false;
};

// The probe's one run in flight. The poller keeps the rule `vitals run` keeps: never a second run
// of a probe while one is in flight. A run still going after its timeout (and the grace run_guarded
// also gives) is reported as a timeout and left to finish; the next run starts only once it has
// returned, and its late result is discarded. Runs happen on one runner thread, started with the
// first run and kept: a thread per run cost more than the run itself (a refused connection).
class Flight {
 public:
  explicit Flight(std::shared_ptr<Probe> probe) : probe_(std::move(probe)) {}
  ~Flight() {
    if (!runner_.joinable()) return;
    std::unique_lock lock(s_->mutex);
    s_->stop = true;
    s_->wake.notify_all();
    const bool idle = !s_->busy;
    lock.unlock();
    if (idle)
      runner_.join();
    else
      runner_.detach();  // hung in the plugin: left to process exit
  }

  // Starts a run once the previous one has returned, and waits for its result, or its timeout.
  RunResult run() {
    std::unique_lock lock(s_->mutex);
    s_->returned.wait(lock, [&] { return !s_->busy; });
    const auto started = std::chrono::steady_clock::now();
    s_->busy = s_->pending = true;
    if (runner_.joinable())
      s_->wake.notify_all();
    else
      runner_ = std::thread(work, s_, probe_);
    if (s_->returned.wait_for(lock, probe_->config().timeout + kReturnGrace,
                              [&] { return !s_->busy; }))
      return std::move(s_->result);
    return probe_->timeout_result(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }

  bool idle() const {
    std::lock_guard lock(s_->mutex);
    return !s_->busy;
  }

  // Waits until no run is in flight, or `until` (none: forever); true once none is.
  bool wait_idle(std::optional<SteadyTime> until) {
    std::unique_lock lock(s_->mutex);
    if (!until) {
      s_->returned.wait(lock, [&] { return !s_->busy; });
      return true;
    }
    return s_->returned.wait_until(lock, *until, [&] { return !s_->busy; });
  }

 private:
  static constexpr Millis kReturnGrace{100};  // as Probe::run_guarded
  struct Shared {
    std::mutex mutex;
    std::condition_variable wake, returned;
    bool pending = false;  // a run asked for, not yet started by the runner
    bool busy = false;     // a run asked for or in progress
    bool stop = false;
    RunResult result;
  };

  static void work(std::shared_ptr<Shared> s, std::shared_ptr<Probe> probe) {
    std::unique_lock lock(s->mutex);
    for (;;) {
      s->wake.wait(lock, [&] { return s->pending || s->stop; });
      if (!s->pending) return;
      s->pending = false;
      lock.unlock();
      RunResult r = probe->run_once();
      lock.lock();
      s->result = std::move(r);
      s->busy = false;
      s->returned.notify_all();
    }
  }

  std::shared_ptr<Probe> probe_;
  std::shared_ptr<Shared> s_ = std::make_shared<Shared>();  // outlives a run left behind
  std::thread runner_;
};

// Ends the poller. Nothing a plugin started may outlive it (an exec probe's command, in a run left
// behind when PROG exits or at the deadline): every child of the poller is killed first, with its
// process group if it leads one.
[[noreturn]] void leave() {
  const pid_t self = getpid();
  if (DIR* proc = opendir("/proc")) {
    while (const dirent* e = readdir(proc)) {
      const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
      if (pid <= 0) continue;
      std::ifstream f(std::string("/proc/") + e->d_name + "/stat");
      std::string stat;
      std::getline(f, stat);
      const auto comm_end = stat.rfind(')');  // "pid (comm) state ppid ...": comm may hold anything
      if (comm_end == std::string::npos) continue;
      std::istringstream rest(stat.substr(comm_end + 1));
      char state = 0;
      pid_t ppid = 0;
      if (!(rest >> state >> ppid) || ppid != self) continue;
      kill(getpgid(pid) == pid ? -pid : pid, SIGKILL);
    }
    closedir(proc);
  }
  spdlog::default_logger()->flush();
  _exit(0);
}

// --liveness (or the probe's `liveness:` map): the poller stays after readiness and restarts a
// wedged PROG (agent/liveness.hpp); `state_file` keeps its restarts.
struct Liveness {
  LivenessConfig config;
  std::string state_file;
};

// The poller. It is not PROG's child (see cmd_notify), and watches PROG through ProgWatch.
// It first loads the probe and sends its verdict on `verdict_fd`.
void poll_until_ready(const std::string& config_path, const std::string& name,
                      ReadinessNotifier& notifier, const ProgWatch& prog,
                      std::optional<Millis> deadline, int verdict_fd,
                      const std::optional<Liveness>& liveness) {
  // PROG's exit ends the poller at once, even in the middle of a probe run.
  std::thread([prog] {
    prog.exited(Millis(-1));
    leave();
  }).detach();
  std::vector<std::string> errors;
  auto prepared = prepare(config_path, {}, errors, name);
  if (!prepared) {
    for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    send_verdict(verdict_fd, kPermanent);
    return;
  }
  send_verdict(verdict_fd, kOk);
  apply_log_level(prepared->config);  // as `vitals run` does: the container's `warn` hides info
  std::shared_ptr<Probe> probe = prepared->probes.front();
  const bool chosen = probe->config().start_interval_set;
  const Millis interval = chosen ? probe->config().start_interval : kNotifyDefaultInterval;
  const auto start = std::chrono::steady_clock::now();
  Pace pace(interval, chosen ? interval : kComingUpInterval);
  Flight flight(probe);
  bool said_hung = false;
  std::string last;
  for (;;) {
    const auto run_start = std::chrono::steady_clock::now();
    const RunResult r = flight.run();
    if (prog.exited(Millis(0))) return;  // never notify for a dead service
    if (r.timed_out && !said_hung) {     // once: each timeout also shows as the run's result
      said_hung = true;
      spdlog::info(
          "probe {}: run still going after its {} timeout; not started again until it "
          "returns",
          name, format_duration(probe->config().timeout));
    }
    if (r.status == Status::Pass) {
      const double after_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      std::string why;
      if (!notifier.notify(why)) {
        spdlog::error(
            "probe {} passed after {:.0f}ms, but unable to {}: {}; the supervisor does not know "
            "the service is ready",
            name, after_ms, notifier.action(), why);
        return;
      }
      spdlog::info("probe {} passed after {:.0f}ms (that run took {:.1f}ms): ready", name, after_ms,
                   r.duration_s * 1000);
      if (!liveness) {
        // What is left (cleanup, exit) yields to the supervisor acting on the newline: on a busy
        // machine it otherwise delayed s6-svwait by a few ms (bench/readiness.sh).
        sched_param idle{};
        sched_setscheduler(0, SCHED_IDLE, &idle);
        return;
      }
      LivenessTarget target{[&] { return flight.idle(); }, [&] { return flight.run(); },
                            [&](Millis wait) { return prog.exited(wait); },
                            [&](int sig) { return prog.signal(sig); }, prog.pid()};
      keep_alive(probe->config(), liveness->config, liveness->state_file, target);
      return;
    }
    const std::string now = std::string(to_string(r.status)) + " at " + r.stage + ": " + r.message;
    if (now != last) spdlog::info("probe {} not ready yet: {}", name, now);
    last = now;
    const auto run_end = std::chrono::steady_clock::now();
    if (deadline && run_end - start >= *deadline) {
      spdlog::error("giving up: probe {} did not pass within {} (last: {})", name,
                    format_duration(*deadline), now);
      return;
    }
    if (pace.record(r.status, r.stage, now, run_end))
      spdlog::warn("probe {} not ready after {:.1f}s: {}; retrying every {} {}", name,
                   std::chrono::duration<double>(run_end - start).count(), now,
                   format_duration(pace.cap()),
                   deadline ? "until the " + format_duration(*deadline) + " deadline"
                            : std::string("until it passes (no --deadline)"));
    auto next = run_start + pace.wait();
    if (deadline) next = std::min(next, start + *deadline);  // one last run at the deadline
    const auto left = std::chrono::ceil<Millis>(next - std::chrono::steady_clock::now());
    if (prog.exited(std::max(left, Millis(0)))) return;  // PROG died while we waited
    if (flight.idle()) continue;
    // PROG's exit still ends the poller while it waits here (the watcher thread).
    if (!flight.wait_idle(deadline ? std::optional(start + *deadline) : std::nullopt)) {
      spdlog::error("giving up: probe {} did not pass within {} (last: {}, still running)", name,
                    format_duration(*deadline), now);
      return;
    }
    spdlog::debug("probe {}: the late run has returned; its result is discarded", name);
  }
}

}  // namespace

int cmd_notify(const CommandLine& cl) {
  const std::string &config_path = cl.config, &name = cl.probe;
  const std::optional<int> fd_flag = cl.notify_fd;
  std::optional<Millis> deadline;
  if (!cl.deadline.empty() && !(deadline = parse_duration(cl.deadline)))
    return fail(kPermanent, "invalid --deadline '" + cl.deadline + "'; use e.g. 30s");
  const bool liveness_flag = cl.liveness;

  // The notification fd first (its number may come from the config); the probe itself (plugin,
  // options, create) loads in the poller, and PROG starts only once it has.
  ConfigResult c = load_config(config_path);
  if (!c.config) {
    for (const auto& e : c.errors) std::fprintf(stderr, "%s\n", e.c_str());
    return kPermanent;
  }
  std::string why;
  const auto fd = resolve_notify_fd(fd_flag, c.config->notify_fd, why);
  if (!why.empty()) return fail(kPermanent, why);
  // No s6 fd: systemd's socket (Type=notify, NotifyAccess=all), if there is one.
  const auto sd = fd ? std::nullopt : SdNotify::from_environment(why);
  if (!why.empty()) return fail(kPermanent, why);
  if (!fd && !sd)
    return fail(kPermanent,
                "no notification fd: pass --notify-fd, run from a service directory with "
                "notification-fd, or under systemd (NOTIFY_SOCKET)");
  if (fd && !(why = notify_fd_problem(*fd)).empty()) return fail(kTemporary, why);
  // Liveness (--liveness or the probe's `liveness:` map, whose numbers win over the defaults)
  // needs a folder to keep the restarts in, checked before PROG starts.
  std::optional<Liveness> liveness;
  const ProbeConfig* pc = c.config->probe(name);  // missing: the poller says so
  if (pc && (liveness_flag || pc->liveness)) {
    if (why = prepare_state_dir(c.config->state_dir); !why.empty()) return fail(kPermanent, why);
    liveness =
        Liveness{pc->liveness.value_or(LivenessConfig{}), liveness_file(c.config->state_dir, name)};
  }

  // Double fork: PROG forks A, A forks the poller B and exits, PROG reaps A and execs. B is never
  // PROG's child, so a daemon that reaps unknown children as crashed workers (the postmaster
  // treats any child killed by a signal as a crash of a backend) never sees it. A opens its watch
  // on PROG while PROG is blocked waiting for A, so it cannot refer to another process. PROG then
  // waits for B's verdict on the probe: a configuration error exits 100 before PROG starts.
  int verdict[2];
  if (pipe2(verdict, O_CLOEXEC) != 0)
    return fail(kTemporary, std::string("unable to create a pipe: ") + strerror(errno));
  const pid_t prog = getpid();
  const pid_t a = fork();
  if (a < 0) return fail(kTemporary, std::string("unable to fork: ") + strerror(errno));
  if (a == 0) {
    close(verdict[0]);
    ProgWatch watch;
    if (std::string why_not; !watch.open(prog, why_not)) {
      fail(kTemporary, "unable to watch PROG (pid " + std::to_string(prog) + "): " + why_not);
      send_verdict(verdict[1], kTemporary);
      _exit(0);
    }
    if (fork() == 0) {
      auto notifier = fd ? std::make_unique<ReadinessNotifier>(fd)
                         : std::make_unique<ReadinessNotifier>(*sd, prog);
      poll_until_ready(config_path, name, *notifier, watch, deadline, verdict[1], liveness);
      leave();
    }
    _exit(0);
  }
  close(verdict[1]);
  int status = 0;
  while (waitpid(a, &status, 0) < 0 && errno == EINTR) {
  }
  unsigned char code = 0;
  ssize_t n;
  do {
    n = read(verdict[0], &code, 1);
  } while (n < 0 && errno == EINTR);
  close(verdict[0]);
  if (n != 1) return fail(kTemporary, "the poller exited before loading probe " + name);
  if (code != kOk) return code;
  if (fd) close(*fd);      // only the poller may write to it
  unset_sd_environment();  // PROG must not announce itself ready (Debian's PostgreSQL would)
  // PROG starts with default dispositions: vitals ignores SIGPIPE for itself, and an ignored signal
  // would stay ignored across exec (a blocked mask too).
  signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  // The system call itself: under ASan, sigprocmask() left PROG with most signals blocked.
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, _NSIG / 8);
  std::vector<char*> args = cl.prog;
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::fprintf(stderr, "vitals notify: unable to exec %s: %s\n", args[0], strerror(errno));
  return kTemporary;
}

}  // namespace vitals
