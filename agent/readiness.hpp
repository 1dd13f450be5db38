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
// Empty if fd is open for writing; else why not, naming the fd ("notification-fd 3 is open
// read-only"), so a newline that could never be delivered is refused before anything starts.
std::string notify_fd_problem(int fd);

class ReadinessNotifier {
 public:
  explicit ReadinessNotifier(std::optional<int> fd) : fd_(fd.value_or(-1)) {}
  // Writes "\n" and closes the fd the first time it is called; later calls do nothing.
  // Returns true if this call delivered the newline; if the write failed, sets error.
  bool notify(std::string& error);
  // True while there is an fd that has not been notified yet.
  bool pending() const { return fd_ >= 0 && !done_; }

 private:
  int fd_;
  std::atomic<bool> done_{false};
};

}  // namespace vitals
