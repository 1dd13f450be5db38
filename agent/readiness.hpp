// s6 readiness notification: write one "\n" to the notification fd, then close it, exactly once.
#pragma once

#include <atomic>
#include <optional>
#include <string>

namespace vitals {

// The fd to notify on: --notify-fd, else the number in ./notification-fd, else the config's.
// Returns nullopt when none is set; sets `error` if ./notification-fd exists but is invalid.
std::optional<int> resolve_notify_fd(std::optional<int> flag, std::optional<int> config,
                                     std::string& error);
// True if fd is open (fcntl F_GETFD); otherwise sets error to strerror.
bool fd_is_open(int fd, std::string& error);

class ReadinessNotifier {
 public:
  explicit ReadinessNotifier(std::optional<int> fd) : fd_(fd.value_or(-1)) {}
  // Writes "\n" and closes the fd the first time it is called; later calls do nothing.
  // Returns true if this call notified.
  bool notify();
  // True while there is an fd that has not been notified yet.
  bool pending() const { return fd_ >= 0 && !done_; }

 private:
  int fd_;
  std::atomic<bool> done_{false};
};

}  // namespace vitals
