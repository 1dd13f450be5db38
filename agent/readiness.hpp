// s6 readiness notification: write one "\n" to the notification fd, then close it, exactly once.
// Or, for `vitals notify` under systemd, READY=1 on NOTIFY_SOCKET.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <optional>
#include <string>

#include "sd_notify.hpp"

namespace vitals {

// The fd to notify on: --notify-fd, else the number in ./notification-fd, else the config's.
// Returns nullopt when none is set; sets `error` if ./notification-fd exists but is invalid.
std::optional<int> resolve_notify_fd(std::optional<int> flag, std::optional<int> config,
                                     std::string& error);
// Empty if fd is open for writing; else why not, naming the fd ("notification-fd 3 is open
// read-only"), so a newline that could never be delivered is refused before anything starts.
std::string notify_fd_problem(int fd);

class ReadinessNotifier {
 public:
  explicit ReadinessNotifier(std::optional<int> fd) : fd_(fd.value_or(-1)) {}
  // systemd instead: READY=1 on behalf of `main_pid`, the service's main process (see notify()).
  ReadinessNotifier(SdNotify sd, pid_t main_pid)
      : fd_(-1), sd_(std::move(sd)), main_pid_(main_pid) {}
  // Writes "\n" and closes the fd (or sends READY=1) the first time it is called; later calls do
  // nothing. Returns true if this call delivered it; if that failed, sets error.
  bool notify(std::string& error);
  // True while there is an fd (or a socket) that has not been notified yet.
  bool pending() const { return (fd_ >= 0 || sd_) && !done_; }
  // What notify() does, for messages: "write the readiness newline to notification-fd 3".
  std::string action() const;

 private:
  int fd_;
  std::optional<SdNotify> sd_;
  pid_t main_pid_ = 0;
  std::atomic<bool> done_{false};
};

}  // namespace vitals
