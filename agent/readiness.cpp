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

bool fd_is_open(int fd, std::string& error) {
  if (fcntl(fd, F_GETFD) >= 0) return true;
  error = std::strerror(errno);
  return false;
}

bool ReadinessNotifier::notify() {
  if (fd_ < 0 || done_.exchange(true)) return false;
  ssize_t n;
  do {
    n = write(fd_, "\n", 1);
  } while (n < 0 && errno == EINTR);
  close(fd_);
  return n == 1;
}

}  // namespace vitals
