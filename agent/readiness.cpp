#include "readiness.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <spdlog/spdlog.h>

#include "listener.hpp"

namespace vitals {

std::optional<int> resolve_notify_fd(std::optional<int> flag, std::optional<int> config,
                                     std::string& error) {
  if (flag) return flag;
  std::ifstream f("notification-fd");
  if (f) {
    long long fd = -1;
    if (!(f >> fd) || fd < 3 || fd > 1 << 20) {
      error = "./notification-fd must hold a file descriptor number of 3 or more";
      return std::nullopt;
    }
    return static_cast<int>(fd);
  }
  return config;
}

std::string notify_fd_problem(int fd) {
  const std::string name = "notification-fd " + std::to_string(fd);
  // The listening socket `vitals run` opened before the core loaded took the lowest free number:
  // if that is this one, it was not open either.
  if (fd == adopted_listener_fd()) return name + " is not open: " + std::strerror(EBADF);
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return name + " is not open: " + std::strerror(errno);
  if ((flags & O_ACCMODE) == O_RDONLY) return name + " is open read-only";
  return "";
}

// systemd files a notification under the unit of the process that sent it, which it finds from the
// sender's pid when it reads the datagram. The poller of `vitals notify` sends for PROG (the unit's
// main process) and exits at once: it names PROG as the sender where the kernel lets it (root), and
// otherwise waits until systemd has read the message (BARRIER=1), while it can still be found.
bool ReadinessNotifier::notify(std::string& error) {
  if (!pending() || done_.exchange(true)) return false;
  if (sd_) {
    bool as_self = false;
    if (!sd_->send("READY=1\n", error, main_pid_, &as_self)) return false;
    std::string late;  // a proxy that forwards READY=1 only (runc's) ignores a barrier: no error
    if (as_self && !sd_->barrier(Millis(5000), late))
      spdlog::debug("BARRIER=1 after READY=1 on NOTIFY_SOCKET {}: {}", sd_->socket(), late);
    return true;
  }
  ssize_t n;
  do {
    n = write(fd_, "\n", 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) error = n < 0 ? std::strerror(errno) : "nothing written";
  close(fd_);
  return n == 1;
}

std::string ReadinessNotifier::action() const {
  if (sd_) return "send READY=1 on NOTIFY_SOCKET " + sd_->socket();
  return "write the readiness newline to notification-fd " + std::to_string(fd_);
}

}  // namespace vitals
