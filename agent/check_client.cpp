// The half of `vitals check` that needs libc alone (check.hpp): the static front end answers a
// HEALTHCHECK with it before any C++ runtime initialisation beyond std::string (no iostreams, no
// locale, no CLI11, no yaml-cpp), and the core library uses its HTTP client for `check` and
// `status`. No name resolution here (check.cpp has it): getaddrinfo() in a static executable would
// load glibc's NSS modules at run time.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "check.hpp"
#include "config.hpp"
#include "paths.hpp"
#include "text.hpp"

namespace vitals {

namespace {

constexpr int kOk = 0, kFail = 1;
constexpr long kDeadlineMs = 2000;
constexpr size_t kMaxConfigBytes = 1 << 20;  // as the agent's read_text()

long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
}

// One line on stdout with one write(): no stdio buffer to set up. The exit code is the agent's
// answer whether or not the line could be written (a HEALTHCHECK may close stdout).
int say(int code, const std::string& line) {
  std::string out = line.substr(0, std::min<size_t>(line.find('\0'), 4095)) + "\n";
  [[maybe_unused]] const ssize_t written = write(STDOUT_FILENO, out.data(), out.size());
  return code;
}

// ASCII classes without the C library's locale tables (one page fewer to fault in).
bool digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
bool letter(unsigned char c) {
  return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
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

// strerror() in the lower case of the rest of the message: "connection refused".
std::string reason(int err) {
  std::string r = std::strerror(err);
  if (!r.empty()) r[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(r[0])));
  return r;
}

// The lines of a text, one at a time, without their '\n'.
struct Lines {
  std::string_view text;
  size_t at = 0;
  bool next(std::string_view& line) {
    if (at >= text.size()) return false;
    size_t nl = text.find('\n', at);
    if (nl == text.npos) nl = text.size();
    line = text.substr(at, nl - at);
    at = nl + 1;
    return true;
  }
};

// A line YAML surely sees as nothing: empty, or a comment from its first column.
bool empty_or_comment(std::string_view line) {
  return line.empty() || line[0] == '#';
}

// No control characters but tabs (a parser may refuse them even in a comment).
bool printable(std::string_view line) {
  for (const unsigned char c : line)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  return true;
}

// `KEY: VALUE` from the first column, KEY a name, VALUE nothing or a plain scalar of letters,
// digits and ._-:${} (no quotes, flow, anchors, tags or spaces), then at most spaces and a comment.
bool plain_entry(std::string_view line, std::string_view& key, std::string_view& value) {
  const size_t colon =
      line.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
  if (colon == 0 || colon == line.npos || line[colon] != ':' || digit(line[0])) return false;
  key = line.substr(0, colon);
  const size_t start = line.find_first_not_of(' ', colon + 1);
  if (start == line.npos || line[start] == '#') {
    value = {};
    return start == line.npos || start > colon + 1;
  }
  if (start == colon + 1) return false;
  size_t end = line.find(' ', start);
  if (end == line.npos) end = line.size();
  value = line.substr(start, end - start);
  const size_t rest = line.find_first_not_of(' ', end);
  if (rest != line.npos && line[rest] != '#') return false;
  const unsigned char first = value[0];
  return (letter(first) || digit(first) || first == '$') && value.back() != ':' &&
         value.find_first_not_of(
             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
             "0123456789._-:${}") == value.npos;
}

// Reads a whole regular file of at most kMaxConfigBytes; false otherwise (check_main reports why).
// Anything else (a FIFO, a device) is not even opened: opening a FIFO would let its writer in and
// closing it would lose what it wrote, before the core reads it.
bool read_small_file(const std::string& path, std::string& text) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
            static_cast<size_t>(st.st_size) <= kMaxConfigBytes;
  if (ok) {
    text.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < text.size()) {
      const ssize_t n = read(fd, text.data() + got, text.size() - got);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    ok = got == text.size();
  }
  close(fd);
  return ok;
}

// HOST as a numeric IPv4 or IPv6 address, with PORT: what the quick path connects to. False for
// anything else (a host name).
bool numeric_address(const std::string& host, int port, sockaddr_storage& addr, socklen_t& len) {
  addr = {};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    len = sizeof *v6;
    return true;
  }
  return false;
}

}  // namespace

// A connected socket to one address within the deadline, or -1 with `error` set.
int connect_to(const sockaddr* addr, socklen_t len, const std::string& where, long deadline,
               std::string& error) {
  const int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = std::string("unable to create a socket: ") + std::strerror(errno);
    return -1;
  }
  int soerr = 0;
  if (connect(fd, addr, len) != 0 && errno != EINPROGRESS) {
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

int connect_numeric(const std::string& host, int port, const std::string& where, long deadline,
                    std::string& error) {
  sockaddr_storage addr;
  socklen_t len = 0;
  if (numeric_address(host, port, addr, len))
    return connect_to(reinterpret_cast<sockaddr*>(&addr), len, where, deadline, error);
  error = "unable to connect to " + where + ": not a numeric address";
  return -1;
}

bool check_host_port(const std::string& hostport, std::string& host, int& port) {
  if (!split_host_port(hostport, host, port)) return false;
  if (host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  return true;
}

int agent_get(Connector connect, const std::string& host, int port, const std::string& target,
              std::string& body, std::string& error) {
  const long deadline = now_ms() + kDeadlineMs;
  const std::string where =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  const int fd = connect(host, port, where, deadline, error);
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
  // "HTTP/1.1 200 OK": HTTP/<digit>.<digit>, a space, three digits, then a space or the line's end.
  const auto at = [&](size_t i) { return i < resp.size() ? resp[i] : '\0'; };
  if (resp.rfind("HTTP/", 0) != 0 || !digit(at(5)) || at(6) != '.' || !digit(at(7)) ||
      at(8) != ' ' || !digit(at(9)) || !digit(at(10)) || !digit(at(11)) ||
      (at(12) != ' ' && at(12) != '\r' && at(12) != '\n')) {
    error = "malformed answer from " + where;
    return -1;
  }
  const int status = (at(9) - '0') * 100 + (at(10) - '0') * 10 + (at(11) - '0');
  const size_t header_end = resp.find("\r\n\r\n");
  body = header_end == std::string::npos ? "" : resp.substr(header_end + 4);
  return status;
}

int ask_agent(Connector connect, const std::string& host, int port, const std::string& probe,
              bool ready) {
  const std::string target = ready           ? "/readyz?format=line"
                             : probe.empty() ? "/health?format=line"
                                             : "/health/" + url_encode(probe) + "?format=line";
  std::string body, error;
  const int status = agent_get(connect, host, port, target, body, error);
  if (status < 0) return say(kFail, "unreachable: " + error);
  if (status == 404 && !probe.empty()) return say(kFail, "no such probe: " + probe);
  body = trim(body.substr(0, body.find('\n')));
  if (body.empty()) body = "HTTP " + std::to_string(status);
  return say(status == 200 ? kOk : kFail, body);
}

std::optional<QuickCommandLine> quick_command_line(int argc, char** argv) {
  if (argc < 2) return std::nullopt;
  QuickCommandLine r;
  r.command = argv[1];
  const bool check = r.command == "check";
  if (!check && r.command != "run") return std::nullopt;
  bool seen_config = false, seen_url = false, seen_probe = false, seen_fd = false;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (check && arg == "--ready") {
      if (r.ready) return std::nullopt;
      r.ready = true;
      continue;
    }
    std::string_view name = arg, value;
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != arg.npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    }
    if (value.empty() || value[0] == '-') return std::nullopt;
    bool* seen = nullptr;
    std::string* field = nullptr;
    if (name == "-c" || name == "--config") {
      seen = &seen_config, field = &r.config;
    } else if (check && name == "--url") {
      seen = &seen_url, field = &r.url;
    } else if (check && name == "--probe") {
      seen = &seen_probe, field = &r.probe;
    } else if (!check && name == "--notify-fd") {
      seen = &seen_fd, field = &r.notify_fd;
    } else {
      return std::nullopt;
    }
    if (*seen) return std::nullopt;
    *seen = true;
    *field = value;
  }
  if (r.ready && seen_probe) return std::nullopt;
  if (seen_fd) {  // as parse_command_line() takes it: a number from 3 to 2^20
    if (r.notify_fd.size() > 7 ||
        !std::all_of(r.notify_fd.begin(), r.notify_fd.end(), [](char c) { return digit(c); }))
      return std::nullopt;
    const long fd = std::stol(r.notify_fd);
    if (fd < 3 || fd > 1 << 20) return std::nullopt;
  }
  return r;
}

std::optional<std::string> quick_listen(std::string_view text) {
  Lines lines{text};
  std::string_view line, key, value;
  for (;;) {
    if (!lines.next(line)) return std::nullopt;  // no `listen`: check_main applies the default
    if (!printable(line)) return std::nullopt;
    if (empty_or_comment(line)) continue;
    if (!plain_entry(line, key, value)) return std::nullopt;
    if (key == "listen") break;
  }
  if (value.empty()) return std::nullopt;
  // The value ends on its line: the next line YAML reads is a new top-level key (or the end).
  while (lines.next(line)) {
    if (!printable(line)) return std::nullopt;
    if (empty_or_comment(line)) continue;
    if (!letter(line[0]) && line[0] != '_') return std::nullopt;
    break;
  }
  std::string why, host;
  int port = 0;
  std::optional<std::string> listen = expand_env(value, why);
  if (!listen || !split_host_port(*listen, host, port)) return std::nullopt;
  return listen;
}

std::optional<std::string> quick_config_listen(const std::string& path) {
  std::string text;
  if (!read_small_file(path.empty() ? default_config_path() : path, text)) return std::nullopt;
  return quick_listen(text);
}

std::optional<int> quick_check(int argc, char** argv) {
  const std::optional<QuickCommandLine> r = quick_command_line(argc, argv);
  if (!r || r->command != "check") return std::nullopt;
  std::string listen = Config{}.listen;
  if (!r->url.empty()) {  // as agent_address() takes it
    const bool http = r->url.rfind("http://", 0) == 0;
    if (!http && r->url.find("://") != std::string::npos) return std::nullopt;
    const std::string rest = http ? r->url.substr(7) : r->url;
    listen = rest.substr(0, rest.find('/'));
  } else if (!r->config.empty() || access(default_config_path().c_str(), R_OK) == 0) {
    std::optional<std::string> found = quick_config_listen(r->config);
    if (!found) return std::nullopt;
    listen = *found;
  }
  std::string host;
  int port = 0;
  sockaddr_storage addr;
  socklen_t len = 0;
  if (!check_host_port(listen, host, port) || !numeric_address(host, port, addr, len))
    return std::nullopt;
  return ask_agent(connect_numeric, host, port, r->probe, r->ready);
}

int cannot_start(bool check, const std::string& why) {
  if (check) return say(kFail, why);
  std::fprintf(stderr, "vitals: fatal: %s\n", why.c_str());
  return 111;
}

}  // namespace vitals
