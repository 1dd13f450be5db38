#include "worker.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "worker_wire.hpp"

extern char** environ;

namespace vitals {

namespace {

using namespace wire;

std::mutex g_pool_mutex;
// Never destroyed: reader threads may still look a worker up while the process exits.
auto& g_pool = *new std::map<std::pair<void*, std::string>, std::weak_ptr<Worker>>;
std::atomic<bool> g_stopping{false};

// A copy of `fd` numbered 10 or above, close-on-exec: never one of the numbers the child's fds
// are moved to (0-3), whatever the agent has open.
int high_fd(int fd) {
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  ::close(fd);
  return copy;
}

std::string plain_text(const std::string& s) {
  return s.substr(0, 2048);
}

}  // namespace

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    const char* text = strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" +
           (abbrev ? std::string("SIG") + abbrev + ": " : std::string()) +
           (text ? text : "unknown") + ")";
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (wait status " + std::to_string(status) + ")";
}

std::shared_ptr<Worker> Worker::of(const Plugin& plugin, uint64_t data_limit,
                                   const std::string& solo) {
  // Reader threads log; at exit the loggers are destroyed under them. Registered after spdlog's
  // registry was made, this runs before it is destroyed, and the readers fall silent.
  static const bool quiet_at_exit = (std::atexit([] { g_stopping = true; }), true);
  (void)quiet_at_exit;
  std::lock_guard lock(g_pool_mutex);
  std::erase_if(g_pool, [](const auto& entry) { return entry.second.expired(); });
  auto& slot = g_pool[{plugin.handle, solo}];
  if (auto existing = slot.lock()) return existing;
  auto w = std::make_shared<Worker>(plugin.desc.name, plugin.path, data_limit);
  if (!solo.empty()) w->crashes_in_row_ = 1;  // its next crash waits 1 s
  slot = w;
  return w;
}

void Worker::kill_all() {
  g_stopping = true;
  std::vector<std::shared_ptr<Worker>> all;
  {
    std::lock_guard lock(g_pool_mutex);
    for (auto& [handle, weak] : g_pool)
      if (auto w = weak.lock()) all.push_back(w);
  }
  for (auto& w : all) {
    std::lock_guard lock(w->mutex_);
    w->retiring_ = true;
    w->kill_process("the agent is stopping");
  }
}

Worker::Worker(std::string plugin_name, std::string plugin_path, uint64_t data_limit)
    : plugin_name_(std::move(plugin_name)),
      plugin_path_(std::move(plugin_path)),
      data_limit_(data_limit) {}

uint32_t Worker::join(const std::string& probe, std::string values, Secrets secrets, LogFn log) {
  std::lock_guard lock(mutex_);
  const uint32_t id = next_id_++;
  Member& m = members_[id];
  m.probe = probe;
  m.values = std::move(values);
  m.secrets = std::move(secrets);
  m.log = std::move(log);
  return id;
}

void Worker::leave(uint32_t id) {
  std::lock_guard lock(mutex_);
  auto it = members_.find(id);
  if (it == members_.end()) return;
  if (usable() && it->second.created_in == generation_) {
    const Header h{Type::Destroy, id};
    (void)!::send(sock_, &h, sizeof h, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
  members_.erase(it);
  if (members_.empty() && usable()) {
    retiring_ = true;
    kill_process("no probe uses it any more");
  }
}

bool Worker::start(std::string& error) {
  int pair[2], out[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    error = std::string("socketpair: ") + std::strerror(errno);
    return false;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + std::strerror(errno);
    ::close(pair[0]);
    ::close(pair[1]);
    return false;
  }
  const int child_sock = high_fd(pair[1]), child_out = high_fd(out[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, child_out, 1);
  posix_spawn_file_actions_adddup2(&fa, child_out, 2);
  posix_spawn_file_actions_adddup2(&fa, child_sock, kWorkerFd);
  posix_spawn_file_actions_addclosefrom_np(&fa, kWorkerFd + 1);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);    // the agent blocks its shutdown signals
  posix_spawnattr_setsigdefault(&attr, &all);  // and ignores SIGPIPE
  posix_spawnattr_setpgroup(&attr, 0);         // a terminal's ^C goes to the agent, which ends it
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  const std::string limit = std::to_string(data_limit_);
  std::vector<char*> argv = {const_cast<char*>("vitals"),
                             const_cast<char*>("worker"),
                             const_cast<char*>("--plugin"),
                             const_cast<char*>(plugin_path_.c_str()),
                             const_cast<char*>("--data-limit"),
                             const_cast<char*>(limit.c_str()),
                             nullptr};
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(child_sock);
  ::close(child_out);
  if (rc != 0) {
    error = std::string("unable to start a worker: ") + std::strerror(rc);
    ::close(pair[0]);
    ::close(out[0]);
    return false;
  }
  alive_ = true;
  pid_ = pid;
  sock_ = pair[0];
  ++generation_;
  kill_reason_.clear();
  retiring_ = false;
  std::thread(&Worker::reader, shared_from_this(), pid, pair[0], out[0], generation_).detach();
  spdlog::debug("plugin {}: worker {} started", plugin_name_, pid);
  return true;
}

void Worker::kill_process(const std::string& reason) {
  if (!alive_ || !kill_reason_.empty()) return;
  kill_reason_ = reason;
  ::kill(pid_, SIGKILL);
}

WorkerReply Worker::call(Lock& lock, uint32_t id, const std::string& message, SteadyTime give_up,
                         const std::string& hang_reason) {
  Member& m = members_.at(id);
  m.reply.reset();
  m.in_call = true;
  const uint64_t generation = generation_;
  if (::send(sock_, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
    kill_process(std::string("unable to reach it: ") + std::strerror(errno));
  const bool hung =
      !cv_.wait_until(lock, give_up + kKillGrace, [&] { return m.reply.has_value(); });
  if (hung && generation == generation_) {
    kill_process(hang_reason);
    // The reader answers every call in flight once the process is gone.
    cv_.wait_for(lock, std::chrono::seconds(5), [&] { return m.reply.has_value(); });
  }
  m.in_call = false;
  std::optional<WorkerReply> reply = std::move(m.reply);
  m.reply.reset();
  if (hung || !reply) {
    WorkerReply r{WorkerReply::Kind::Hung, hang_reason};
    r.culprit = reply && reply->culprit;
    return r;
  }
  return std::move(*reply);
}

WorkerReply Worker::create(uint32_t id, SteadyTime give_up) {
  Lock lock(mutex_);
  std::string error;
  if (!usable() && !start(error)) return {WorkerReply::Kind::Crashed, error};
  Member& m = members_.at(id);
  std::string message(sizeof(Header), '\0');
  const Header h{Type::Create, id};
  std::memcpy(message.data(), &h, sizeof h);
  message += m.values;
  const uint64_t generation = generation_;
  WorkerReply r = call(lock, id, message, give_up, "create() of probe " + m.probe + " hung");
  if (r.kind == WorkerReply::Kind::Ok) m.created_in = generation;
  return r;
}

WorkerReply Worker::run(uint32_t id, SteadyTime deadline, SteadyTime give_up) {
  {
    Lock lock(mutex_);
    if (!usable() && !retiring_) {
      const SteadyTime now = std::chrono::steady_clock::now();
      if (now < next_start_) {
        const auto wait = std::chrono::ceil<std::chrono::seconds>(next_start_ - now);
        return {WorkerReply::Kind::Crashed, "plugin " + plugin_name_ + "'s worker " + last_crash_ +
                                                " (" + std::to_string(crashes_in_row_) +
                                                " crashes in a row); next start in " +
                                                std::to_string(wait.count()) + "s"};
      }
    }
    if (members_.at(id).created_in == generation_ && usable()) {
      RunRequest req{{Type::Run, id}, 0};
      req.deadline_ns = static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch())
              .count());
      const std::string message(reinterpret_cast<const char*>(&req), sizeof req);
      WorkerReply r = call(lock, id, message, give_up,
                           "stopped: probe " + members_.at(id).probe + " hung past its deadline");
      if (r.kind == WorkerReply::Kind::Ok) crashes_in_row_ = 0;
      return r;
    }
  }
  // Not created in this process (a new process, or none yet): create it, then run.
  WorkerReply created = create(id, give_up);
  if (created.kind != WorkerReply::Kind::Ok) {
    created.during_create = true;
    if (created.kind == WorkerReply::Kind::Hung)
      created.message = "create() did not return; its worker was killed";
    return created;
  }
  return run(id, deadline, give_up);
}

void Worker::reader(pid_t pid, int sock, int err, uint64_t generation) {
  std::string buf(kMaxMessage, '\0'), pending;
  pollfd fds[2] = {{sock, POLLIN, 0}, {err, POLLIN, 0}};
  auto read_stderr = [&](int timeout_ms) {
    char chunk[4096];
    while (fds[1].fd >= 0) {
      pollfd one{fds[1].fd, POLLIN, 0};  // not &fds[1]: GCC 12 + ASan misread it as an overflow
      if (poll(&one, 1, timeout_ms) <= 0) break;
      const ssize_t n = ::read(err, chunk, sizeof chunk);
      if (n <= 0) {
        fds[1].fd = -1;
        break;
      }
      pending.append(chunk, static_cast<size_t>(n));
      for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
        on_stderr(pending.substr(0, nl));
        pending.erase(0, nl + 1);
      }
      if (pending.size() > 4096) {
        on_stderr(pending);
        pending.clear();
      }
      if (timeout_ms == 0) break;
    }
  };
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) read_stderr(0);
    if (fds[0].revents & POLLIN) {
      const ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
      if (n > 0) {
        on_message(buf.data(), static_cast<size_t>(n), generation);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & (POLLHUP | POLLERR)) break;
  }
  // What it printed last (an abort's message, a sanitizer's report) comes before its end is told.
  read_stderr(200);
  if (!pending.empty()) on_stderr(pending);
  int status = 0;
  pid_t got;
  while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  ::close(sock);
  ::close(err);
  on_exit(got == pid ? std::optional<int>(status) : std::nullopt, generation);
}

void Worker::on_message(const char* data, size_t size, uint64_t generation) {
  if (size < sizeof(Header)) return;
  Header h{};
  std::memcpy(&h, data, sizeof h);
  Lock lock(mutex_);
  auto it = members_.find(h.probe);
  if (it == members_.end() || generation != generation_) return;
  Member& m = it->second;
  if (h.type == Type::Log && size >= sizeof(LogHeader)) {
    LogHeader lh{};
    std::memcpy(&lh, data, sizeof lh);
    const LogFn log = m.log;
    lock.unlock();
    if (!g_stopping) log(lh.level, std::string(data + sizeof lh, size - sizeof lh));
    return;
  }
  if (!m.in_call) return;
  if (h.type == Type::Created && size >= sizeof(CreatedReply)) {
    CreatedReply c{};
    std::memcpy(&c, data, sizeof c);
    c.err[sizeof c.err - 1] = '\0';
    m.reply = c.rc == 0 ? WorkerReply{}
                        : WorkerReply{WorkerReply::Kind::CreateFailed,
                                      c.err[0] ? c.err : "create failed"};
  } else if (h.type == Type::Result && size >= sizeof(ResultReply)) {
    ResultReply r{};
    std::memcpy(&r, data, sizeof r);
    m.reply = WorkerReply{};
    m.reply->result = r.result;
    m.reply->start_ns = r.start_ns;
    m.reply->end_ns = r.end_ns;
  } else {
    return;
  }
  cv_.notify_all();
}

void Worker::on_stderr(const std::string& line) {
  if (g_stopping) return;
  Lock lock(mutex_);
  // At most 20 lines a second reach the log; the rest are counted.
  const SteadyTime now = std::chrono::steady_clock::now();
  if (now - stderr_window_ >= std::chrono::seconds(1)) {
    if (stderr_dropped_ > 0)
      spdlog::warn("plugin {}: {} more lines of its worker's output not logged", plugin_name_,
                   stderr_dropped_);
    stderr_window_ = now;
    stderr_lines_ = stderr_dropped_ = 0;
  }
  if (++stderr_lines_ > 20) {
    ++stderr_dropped_;
    return;
  }
  std::string text = plain_text(line), names;
  for (const auto& [id, m] : members_) {
    text = safe_text(text, m.secrets);
    names += (names.empty() ? "" : ", ") + m.probe;
  }
  if (members_.size() == 1) {
    const LogFn log = members_.begin()->second.log;
    lock.unlock();
    log(VITALS_LOG_WARN, "worker output: " + text);
    return;
  }
  lock.unlock();
  spdlog::warn("plugin {} (probes {}): worker output: {}", plugin_name_, names, text);
}

void Worker::on_exit(std::optional<int> status, uint64_t generation) {
  Lock lock(mutex_);
  if (generation != generation_) return;
  alive_ = false;
  sock_ = -1;
  // Our SIGKILL's reason, if that is what ended it: a worker that died on its own meanwhile (its
  // socket closed before its exit was seen: a send failed) is told by its own exit.
  // A status waitpid could not give (never with SIGCHLD at its default: main.cpp) is no exit
  // status at all, and after our SIGKILL most likely that.
  const bool ours =
      !kill_reason_.empty() && (!status || (WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL));
  const std::string what = ours     ? kill_reason_
                           : status ? describe_exit(*status)
                                    : "ended (its exit status is unknown)";
  const bool crash = !retiring_ && !g_stopping;
  std::string in_flight;
  int calls = 0;
  for (auto& [id, m] : members_) {
    if (!m.in_call) continue;
    ++calls;
    in_flight += (in_flight.empty() ? "" : ", ") + m.probe;
    m.reply =
        WorkerReply{WorkerReply::Kind::Crashed,
                    "plugin " + plugin_name_ + "'s worker " + what + " during this run", crash};
  }
  // One call in flight among several probes: that probe moves to a worker of its own, and the
  // crash does not hold the others back.
  const bool culprit_found = crash && calls == 1 && members_.size() > 1;
  if (culprit_found)
    for (auto& [id, m] : members_)
      if (m.in_call) m.reply->culprit = true;
  cv_.notify_all();
  if (!crash) return;  // let go (no probe left, or the agent is stopping): nothing to say
  if (culprit_found) {
    spdlog::warn(
        "plugin {}: worker {} {} while running probe {}; that probe moves to a worker of "
        "its own, a new one starts for the others at their next run",
        plugin_name_, pid_, what, in_flight);
    return;
  }
  ++crashes_in_row_;
  // At once after a first crash, then 1 s doubling to 1 min.
  const std::chrono::seconds backoff(
      crashes_in_row_ <= 1 ? 0 : std::min(1LL << std::min(crashes_in_row_ - 2, 6), 60LL));
  next_start_ = std::chrono::steady_clock::now() + backoff;
  last_crash_ = what;
  spdlog::warn("plugin {}: worker {} {}{}; {}", plugin_name_, pid_, what,
               in_flight.empty() ? "" : " while running probe " + in_flight,
               backoff.count() == 0 ? "a new one starts at the next run"
                                    : "next start in " + std::to_string(backoff.count()) + "s");
}

}  // namespace vitals
