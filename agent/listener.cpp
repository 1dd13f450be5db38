#include "listener.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "config.hpp"

namespace vitals {

namespace {

std::mutex g_mutex;
std::string g_adopted_for;
std::optional<AdoptedListener> g_adopted;

// strerror() in the lower case of the rest of a message: "address already in use".
std::string reason(int err) {
  std::string r = std::strerror(err);
  if (!r.empty()) r[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(r[0])));
  return r;
}

}  // namespace

int open_listener(const std::string& listen, std::string& error) {
  std::string host;
  int port = 0;
  if (!split_host_port(listen, host, port)) {
    error = "invalid address";
    return -1;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found)) {
    error = gai_strerror(rc);
    error[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(error[0])));
    return -1;
  }
  const addrinfo* a = found;
  for (const addrinfo* i = found; i; i = i->ai_next) {
    if (i->ai_family == AF_INET) {
      a = i;
      break;
    }
  }
  int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int on = 1;
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
    error = reason(errno);
    if (fd >= 0) close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  return fd;
}

void adopt_listener(const std::string& listen, AdoptedListener adopted) {
  std::lock_guard lock(g_mutex);
  if (g_adopted && g_adopted->fd >= 0) close(g_adopted->fd);
  g_adopted_for = listen;
  g_adopted = std::move(adopted);
}

std::optional<AdoptedListener> take_adopted_listener(const std::string& listen) {
  std::lock_guard lock(g_mutex);
  std::optional<AdoptedListener> taken;
  taken.swap(g_adopted);
  if (taken && g_adopted_for != listen) {
    if (taken->fd >= 0) close(taken->fd);
    taken.reset();
  }
  return taken;
}

int adopted_listener_fd() {
  std::lock_guard lock(g_mutex);
  return g_adopted ? g_adopted->fd : -1;
}

}  // namespace vitals
