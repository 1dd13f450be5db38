#include "check.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "command_line.hpp"
#include "config.hpp"
#include "paths.hpp"

namespace vitals {

namespace {

constexpr int kOk = 0, kFail = 1;
constexpr long kDeadlineMs = 2000;

long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
}

int say(int code, const std::string& line) {
  std::string out = line.size() > 4095 ? line.substr(0, 4095) : line;
  std::printf("%s\n", out.c_str());
  return code;
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

// HOST:PORT as the agent splits it, with a wildcard host replaced by the loopback address.
bool split(const std::string& hostport, std::string& host, int& port) {
  if (!split_host_port(hostport, host, port)) return false;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  return true;
}

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

bool wait_fd(int fd, short events, long deadline) {
  for (;;) {
    const long left = deadline - now_ms();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int n = poll(&p, 1, static_cast<int>(left));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// One HTTP/1.0 GET within the deadline. Returns the status code, or -1 with `error` set.
// strerror() in the lower case of the rest of the message: "connection refused".
std::string reason(int err) {
  std::string r = std::strerror(err);
  if (!r.empty()) r[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(r[0])));
  return r;
}

// A connected socket to one address within the deadline, or -1 with `error` set.
int connect_to(const addrinfo& a, const std::string& where, long deadline, std::string& error) {
  const int fd = socket(a.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("unable to create a socket: ") + std::strerror(errno);
    return -1;
  }
  int soerr = 0;
  if (connect(fd, a.ai_addr, a.ai_addrlen) != 0 && errno != EINPROGRESS) {
    soerr = errno;
  } else if (!wait_fd(fd, POLLOUT, deadline)) {
    error = "unable to connect to " + where + ": timed out";
    close(fd);
    return -1;
  } else {
    socklen_t soerr_len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len);
  }
  if (soerr) {
    error = "unable to connect to " + where + ": " + reason(soerr);
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int agent_get(const std::string& host, int port, const std::string& target, std::string& body,
              std::string& error) {
  const long deadline = now_ms() + kDeadlineMs;
  const std::string where =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  // A host name as the agent's listener takes it (resolved): every address is tried in turn.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found)) {
    error = "unable to resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (const addrinfo* a = found; a && fd < 0; a = a->ai_next)
    fd = connect_to(*a, where, deadline, error);
  freeaddrinfo(found);
  if (fd < 0) return -1;
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  const std::string req = "GET " + target + " HTTP/1.0\r\nHost: " + where +
                          "\r\nUser-Agent: vitals-check\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_fd(fd, POLLOUT, deadline)) break;
    } else {
      break;
    }
  }
  if (sent < req.size()) {
    error = "unable to send to " + where;
    return -1;
  }
  std::string resp;
  char buf[4096];
  while (resp.size() < 8 * 1024 * 1024) {  // `status` reads /health with history
    if (!wait_fd(fd, POLLIN, deadline)) {
      error = "no answer from " + where + " within 2s";
      return -1;
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0)
      resp.append(buf, static_cast<size_t>(n));
    else if (n == 0)
      break;
    else if (errno != EAGAIN && errno != EINTR)
      break;
  }
  int status = 0;
  if (std::sscanf(resp.c_str(), "HTTP/%*d.%*d %d", &status) != 1) {
    error = "malformed answer from " + where;
    return -1;
  }
  const size_t header_end = resp.find("\r\n\r\n");
  body = header_end == std::string::npos ? "" : resp.substr(header_end + 4);
  return status;
}

std::string check_listen(const std::string& config_path, std::string& error) {
  ListenResult r = load_listen(config_path);  // the agent's own code, with a static yaml-cpp
  if (!r.listen) error = r.errors.empty() ? config_path + ": unreadable" : r.errors.front();
  return r.listen.value_or("");
}

bool agent_address(const std::string& config, const std::string& url, std::string& host, int& port,
                   std::string& error) {
  std::string listen;
  if (!url.empty()) {
    std::string rest = url;
    if (rest.rfind("http://", 0) == 0) {
      rest = rest.substr(7);
    } else if (rest.find("://") != std::string::npos) {
      error = "--url must be http://HOST:PORT";
      return false;
    }
    listen = rest.substr(0, rest.find('/'));
  } else if (!config.empty() || access(default_config_path().c_str(), R_OK) == 0) {
    listen = check_listen(config.empty() ? default_config_path() : config, error);
    if (listen.empty()) return false;
  } else {
    listen = Config{}.listen;
  }
  if (split(listen, host, port)) return true;
  error = "invalid address '" + listen + "'";
  return false;
}

int run_check(int argc, char** argv) {
  const CommandLine cl = parse_command_line(argc, argv);
  if (cl.exit) return *cl.exit;  // help (0) or a usage error (1), said on stdout
  const std::string &config = cl.config, &url = cl.url, &probe = cl.probe;
  const bool ready = cl.ready;

  std::string host, error;
  int port = 0;
  if (!agent_address(config, url, host, port, error)) return say(kFail, "usage error: " + error);

  const std::string target = ready           ? "/readyz?format=line"
                             : probe.empty() ? "/health?format=line"
                                             : "/health/" + url_encode(probe) + "?format=line";
  std::string body;
  const int status = agent_get(host, port, target, body, error);
  if (status < 0) return say(kFail, "unreachable: " + error);
  if (status == 404 && !probe.empty()) return say(kFail, "no such probe: " + probe);
  body = trim(body.substr(0, body.find('\n')));
  if (body.empty()) body = "HTTP " + std::to_string(status);
  return say(status == 200 ? kOk : kFail, body);
}

}  // namespace vitals
