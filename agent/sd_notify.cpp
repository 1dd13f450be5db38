#include "sd_notify.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace vitals {

namespace {

using Micros = std::chrono::microseconds;

constexpr const char* kVariables[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
constexpr Millis kStatusEvery{1000};  // how often the summary is looked at without a result
constexpr Millis kCoalesce{100};      // results closer together than this make one STATUS=

// A positive decimal number, all of `text`.
std::optional<long long> positive(const char* text) {
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(text, &end, 10);
  if (errno || end == text || *end || n <= 0) return std::nullopt;
  return n;
}

// One datagram to `socket`, with credentials naming `as_pid` and/or the fd `pass` attached.
ssize_t send_datagram(const std::string& socket, const std::string& message, pid_t as_pid,
                      int pass) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket.data(), socket.size());  // checked by from_environment
  if (socket[0] == '@') addr.sun_path[0] = '\0';             // abstract: no terminating NUL
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket.size() +
                                          (socket[0] == '@' ? 0 : 1));
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const timeval limit{1, 0};  // a full queue (a manager that does not read) blocks this long
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);

  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr m{};
  m.msg_name = &addr;
  m.msg_namelen = len;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int))] = {};
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  std::size_t used = 0;
  if (as_pid > 0) {
    const ucred who{as_pid, getuid(), getgid()};
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_CREDENTIALS;
    c->cmsg_len = CMSG_LEN(sizeof who);
    std::memcpy(CMSG_DATA(c), &who, sizeof who);
    used += CMSG_SPACE(sizeof who);
    c = CMSG_NXTHDR(&m, c);
  }
  if (pass >= 0) {
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof pass);
    std::memcpy(CMSG_DATA(c), &pass, sizeof pass);
    used += CMSG_SPACE(sizeof pass);
  }
  m.msg_controllen = used;
  if (used == 0) m.msg_control = nullptr;
  ssize_t n;
  do {
    n = sendmsg(fd, &m, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  const int saved = errno;
  close(fd);
  errno = saved;
  return n;
}

}  // namespace

std::optional<SdNotify> SdNotify::from_environment(std::string& error) {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (!socket || !*socket) return std::nullopt;
  const std::string name = socket;
  if (name[0] != '/' && name[0] != '@') {
    error =
        "NOTIFY_SOCKET must be an absolute path or an abstract socket name starting with @, "
        "not '" +
        name + "'";
    return std::nullopt;
  }
  if (name.size() > sizeof(sockaddr_un::sun_path) - 1) {
    error = "NOTIFY_SOCKET is longer than a socket address holds (" +
            std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes): " + name;
    return std::nullopt;
  }
  std::optional<Micros> watchdog;
  if (const char* usec = std::getenv("WATCHDOG_USEC"); usec && *usec) {
    const auto n = positive(usec);
    if (!n) {
      error = std::string("WATCHDOG_USEC must be a positive number of microseconds, not '") + usec +
              "'";
      return std::nullopt;
    }
    const char* pid = std::getenv("WATCHDOG_PID");
    const auto owner = pid && *pid ? positive(pid) : std::optional<long long>(getpid());
    if (!owner) {
      error = std::string("WATCHDOG_PID must be a process id, not '") + pid + "'";
      return std::nullopt;
    }
    if (*owner == getpid()) watchdog = Micros(*n);  // else the watchdog is another process's
  }
  return SdNotify(name, watchdog);
}

bool SdNotify::send(const std::string& message, std::string& error, pid_t as_pid,
                    bool* as_self) const {
  if (as_self) *as_self = as_pid <= 0 || as_pid == getpid();
  const pid_t pid = as_pid == getpid() ? 0 : as_pid;
  ssize_t n = send_datagram(socket_, message, pid, -1);
  if (n < 0 && errno == EPERM && pid > 0) {  // not root: our own credentials then
    if (as_self) *as_self = true;
    n = send_datagram(socket_, message, 0, -1);
  }
  if (n < 0) error = std::strerror(errno);
  return n >= 0;
}

bool SdNotify::barrier(Millis timeout, std::string& error) const {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    error = std::strerror(errno);
    return false;
  }
  const ssize_t n = send_datagram(socket_, "BARRIER=1\n", 0, p[1]);
  if (n < 0) error = std::strerror(errno);
  close(p[1]);
  bool done = false;
  if (n >= 0) {  // the manager closes its copy of the write end: POLLHUP
    pollfd hup{p[0], 0, 0};
    int r;
    do {
      r = poll(&hup, 1, static_cast<int>(timeout.count()));
    } while (r < 0 && errno == EINTR);
    done = r > 0;
    if (!done) error = "no answer to BARRIER=1 within " + format_duration(timeout);
  }
  close(p[0]);
  return done;
}

std::optional<Micros> SdNotify::watchdog_interval() const {
  if (!watchdog_) return std::nullopt;
  return std::max(*watchdog_ / 2, Micros(1));
}

void unset_sd_environment() {
  for (const char* v : kVariables) unsetenv(v);
}

std::string monotonic_usec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return "MONOTONIC_USEC=" +
         std::to_string(static_cast<long long>(ts.tv_sec) * 1'000'000 + ts.tv_nsec / 1000);
}

void AgentSdNotifier::start(Sources sources) {
  sources_ = std::move(sources);
  thread_ = std::thread([this] { loop(); });
}

void AgentSdNotifier::stop() {
  {
    std::lock_guard lock(wake_mutex_);
    finished_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void AgentSdNotifier::update(bool ready) {
  if (ready) ready_ = true;
  {
    std::lock_guard lock(wake_mutex_);
    changed_ = true;
  }
  wake_.notify_all();
}

void AgentSdNotifier::loop() {
  const auto interval = sd_.watchdog_interval();
  auto next_ping = std::chrono::steady_clock::now();
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const bool ping = interval && now >= next_ping;
    if (ping) next_ping = now + *interval;
    refresh(ping);
    auto until = now + kStatusEvery;
    if (interval) until = std::min(until, next_ping);
    std::unique_lock lock(wake_mutex_);
    wake_.wait_until(lock, until, [this] { return changed_ || finished_; });
    if (changed_)  // a burst of results makes one STATUS=
      wake_.wait_until(lock, std::min(until, now + kCoalesce), [this] { return finished_; });
    if (finished_) return;
    changed_ = false;
  }
}

void AgentSdNotifier::refresh(bool ping) {
  std::string status = sources_.status();
  while (!status.empty() && status.back() == '\n') status.pop_back();
  const bool alive = !ping || sources_.alive();
  std::lock_guard lock(send_mutex_);
  if (stopping_) return;
  const bool ready = ready_ && !ready_sent_;
  std::string message;
  if (ready) message += "READY=1\n";
  if (status != last_status_) message += "STATUS=" + status + "\n";
  if (ping && alive) message += "WATCHDOG=1\n";
  if (ping && alive == pings_withheld_) {
    pings_withheld_ = !alive;
    if (alive)
      spdlog::info("the scheduler is going round again: watchdog pings resumed");
    else
      spdlog::error("the scheduler has stopped going round: withholding systemd's watchdog pings");
  }
  if (message.empty() || !send_locked(message)) return;
  last_status_ = status;
  if (ready) {
    ready_sent_ = true;
    spdlog::info("ready: notified systemd");
  }
}

bool AgentSdNotifier::send_locked(const std::string& message) {
  std::string error;
  if (sd_.send(message, error)) {
    if (!last_error_.empty())
      spdlog::info("notifying systemd on NOTIFY_SOCKET {} again", sd_.socket());
    last_error_.clear();
    return true;
  }
  if (error != last_error_)
    spdlog::error("unable to notify systemd on NOTIFY_SOCKET {}: {}", sd_.socket(), error);
  last_error_ = error;
  return false;
}

void AgentSdNotifier::reloading() {
  std::lock_guard lock(send_mutex_);
  if (ready_sent_ && !stopping_)
    reloading_ = send_locked("RELOADING=1\n" + monotonic_usec() + "\n");
}

void AgentSdNotifier::reloaded() {
  std::lock_guard lock(send_mutex_);
  if (!reloading_ || stopping_) return;
  reloading_ = false;
  send_locked("READY=1\n");
}

void AgentSdNotifier::stopping() {
  std::lock_guard lock(send_mutex_);
  if (stopping_) return;
  stopping_ = true;
  send_locked("STOPPING=1\n");
}

}  // namespace vitals
