#include "readiness.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

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
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) return name + " is not open: " + std::strerror(errno);
  if ((flags & O_ACCMODE) == O_RDONLY) return name + " is open read-only";
  return "";
}

bool ReadinessNotifier::notify(std::string& error) {
  if (fd_ < 0 || done_.exchange(true)) return false;
  ssize_t n;
  do {
    n = write(fd_, "\n", 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) error = n < 0 ? std::strerror(errno) : "nothing written";
  close(fd_);
  return n == 1;
}

}  // namespace vitals
