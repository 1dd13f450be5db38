// postgres: how far a real client gets, stage by stage, under the probe's own deadline.
//
//   reachable -> accepting -> auth -> query -> extensions -> role
//
// Built on libpq's non-blocking API: names are resolved here (getaddrinfo_a, bounded by the
// deadline) and handed to libpq as `hostaddr`, the connection is driven with PQconnectPoll and
// ppoll(), and queries go out with PQsendQuery under `statement_timeout` = the time left. One
// connection is kept between runs; every run proves it with the real query, and a connection that
// fails is dropped and, if time is left, replaced in the same run (so reachable/auth are
// re-proven).
#include <vitals/net.hpp>
#include <vitals/probe.hpp>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>

namespace {

constexpr const char* kRedacted = "[redacted]";

const vitals_option kOptions[] = {
    {"dsn", VITALS_OPT_STRING, nullptr,
     "libpq connection string, key=value or postgresql:// URI (the password in it is secret)", 1,
     1},
    {"password_file", VITALS_OPT_STRING, nullptr,
     "file whose first line is the password, read at every connect (contents are secret)", 0, 0},
    {"query", VITALS_OPT_STRING, "SELECT 1", "query that must round-trip on every run", 0, 0},
    {"require_extensions", VITALS_OPT_LIST, nullptr,
     "extensions that must be installed in the database, e.g. [vector]", 0, 0},
    {"expect_role", VITALS_OPT_STRING, "any",
     "primary | replica | any: what pg_is_in_recovery() must say", 0, 0},
};

enum class Role { kAny, kPrimary, kReplica };

// A failed step: the stage it names, a one-line message, and whether the connection is unusable.
struct Failure {
  const char* stage;
  std::string message;
  bool broken = false;
};

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws) == std::string::npos ? s.size() : s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

std::string first_line(const std::string& s) {
  const std::string t = trim(s);
  return t.substr(0, t.find('\n'));
}

std::string lower_first(std::string s) {
  // Only "Connection refused"-style sentences; keep acronyms ("SSL ...") as they are.
  if (s.size() > 1 && std::isupper(static_cast<unsigned char>(s[0])) &&
      std::islower(static_cast<unsigned char>(s[1])))
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(s);
  while (std::getline(in, cur, sep)) out.push_back(cur);
  if (!s.empty() && s.back() == sep) out.emplace_back();
  return out;
}

std::string join(const std::vector<std::string>& v, char sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? std::string(1, sep) : "") + v[i];
  return out;
}

std::string ms_text(uint64_t ns) {
  return std::to_string(ns / 1000000) + "ms";
}

// "15.20 (Debian 15.20-0+deb12u1)" -> "15.20"
std::string short_version(const char* v) {
  const std::string s = v ? v : "?";
  return s.substr(0, s.find(' '));
}

bool is_socket_path(const std::string& h) {
  return !h.empty() && (h[0] == '/' || h[0] == '@');
}

bool is_numeric_address(const std::string& h) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, h.c_str(), buf) == 1 || inet_pton(AF_INET6, h.c_str(), buf) == 1;
}

enum class Ready { kYes, kTimeout };

// Waits until fd is readable/writable (or in error: libpq finds out which) or end_ns passes.
Ready wait_fd(int fd, bool read, bool write, uint64_t end_ns) {
  pollfd p{fd, static_cast<short>((read ? POLLIN : 0) | (write ? POLLOUT : 0)), 0};
  for (;;) {
    const uint64_t now = vitals::monotonic_ns();
    if (now >= end_ns) return Ready::kTimeout;
    const uint64_t left = end_ns - now;
    timespec ts{static_cast<time_t>(left / 1000000000ull), static_cast<long>(left % 1000000000ull)};
    const int n = ppoll(&p, 1, &ts, nullptr);
    if (n > 0) return Ready::kYes;
    if (n == 0) return Ready::kTimeout;
    if (errno != EINTR) return Ready::kYes;  // let libpq report the socket's error
  }
}

// Removes every known secret (and anything shaped like one) from text the probe hands out.
class Scrubber {
 public:
  void add(const std::string& secret) {
    if (secret.empty()) return;
    if (std::find(secrets_.begin(), secrets_.end(), secret) != secrets_.end()) return;
    secrets_.push_back(secret);
    std::sort(secrets_.begin(), secrets_.end(),
              [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  }
  std::string operator()(std::string text) const {
    for (const auto& s : secrets_) {
      for (size_t pos = text.find(s); pos != std::string::npos; pos = text.find(s, pos)) {
        text.replace(pos, s.size(), kRedacted);
        pos += std::strlen(kRedacted);
      }
    }
    static const std::regex uri_password(R"((://[^:/@\s"]*:)[^@\s"]*@)");
    static const std::regex kv_password(R"((password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s"&]+))",
                                        std::regex::icase);
    text = std::regex_replace(text, uri_password, std::string("$1") + kRedacted + "@");
    text = std::regex_replace(text, kv_password, std::string("$1") + kRedacted);
    return text;
  }

 private:
  std::vector<std::string> secrets_;
};

// A name lookup in flight (glibc getaddrinfo_a). Owned here until glibc is done with it.
struct Lookup {
  gaicb cb{};
  addrinfo hints{};
  std::string name;
  Lookup(const std::string& n) : name(n) {
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    cb.ar_name = name.c_str();
    cb.ar_request = &hints;
  }
  Lookup(const Lookup&) = delete;
  Lookup& operator=(const Lookup&) = delete;
  ~Lookup() {
    if (cb.ar_result) freeaddrinfo(cb.ar_result);
  }
  bool done() { return gai_error(&cb) != EAI_INPROGRESS; }
};

std::string address_text(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof buf);
  return buf;
}

// libpq's verbose error text ("FATAL:  57P01: terminating connection ...") as one plain line.
std::string plain_error(const std::string& raw) {
  static const std::regex server_error(R"((?:FATAL|ERROR|PANIC):\s+([0-9A-Z]{5}):\s+([^\n]*))");
  std::smatch m;
  if (std::regex_search(raw, m, server_error)) return trim(m[2]) + " (SQLSTATE " + m[1].str() + ")";
  return first_line(raw);
}

// Turns "the database system is starting up" into "server is starting up".
std::string server_phrase(const std::string& text) {
  static const std::string prefix = "the database system ";
  if (text.rfind(prefix, 0) == 0) return "server " + text.substr(prefix.size());
  return text;
}

class PostgresProbe {
 public:
  PostgresProbe(const vitals::Options& o, const vitals::Host& host)
      : host_(host),
        password_file_(o.str("password_file")),
        query_(o.str("query", "SELECT 1")),
        extensions_(o.list("require_extensions")) {
    const std::string dsn = o.str("dsn");
    add_uri_password_guess(dsn);
    if (const char* env = std::getenv("PGPASSWORD")) scrub_.add(env);

    char* err = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(dsn.c_str(), &err);
    if (!parsed) {
      const std::string why = err ? first_line(err) : "out of memory";
      if (err) PQfreemem(err);
      throw std::runtime_error("invalid dsn: " + scrub_(why));
    }
    for (PQconninfoOption* p = parsed; p->keyword; ++p) {
      if (!p->val) continue;
      params_.emplace_back(p->keyword, p->val);
      if (std::string(p->keyword) == "password") scrub_.add(p->val);
    }
    PQconninfoFree(parsed);

    for (const auto& port : split(param("port"), ',')) {
      if (!port.empty() && port.find_first_not_of("0123456789") != std::string::npos)
        throw std::runtime_error("invalid dsn: port \"" + port + "\" is not a number");
    }
    if (!password_file_.empty() && has_param("password"))
      throw std::runtime_error("set the password in dsn or in password_file, not both");
    if (trim(query_).empty()) throw std::runtime_error("query must not be empty");
    const std::string role = o.str("expect_role", "any");
    if (role == "primary")
      role_ = Role::kPrimary;
    else if (role == "replica")
      role_ = Role::kReplica;
    else if (role != "any")
      throw std::runtime_error("expect_role must be primary, replica or any, not \"" + role + "\"");
    for (const auto& e : extensions_)
      if (trim(e).empty()) throw std::runtime_error("require_extensions must not contain \"\"");
  }

  PostgresProbe(const PostgresProbe&) = delete;
  PostgresProbe& operator=(const PostgresProbe&) = delete;

  ~PostgresProbe() {
    if (conn_) PQfinish(conn_);
    for (auto& l : lookups_) {
      gai_cancel(&l->cb);
      if (!l->done()) (void)l.release();  // glibc still owns it; leaking beats a use-after-free
    }
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    reap_lookups();
    start_ns_ = vitals::monotonic_ns();
    // Return a little before the host's deadline so our precise answer is not discarded.
    const uint64_t left = static_cast<uint64_t>(d.remaining().count()) * 1000ull;
    const uint64_t margin = std::clamp<uint64_t>(left / 20, 2000000ull, 50000000ull);
    const uint64_t end = start_ns_ + (left > margin ? left - margin : 0);
    query_seconds_.reset();
    role_seen_.reset();

    std::optional<Failure> f;
    bool need_connect = conn_ == nullptr;
    if (conn_) {
      f = check(end);
      if (f && f->broken) {
        drop(f->message);
        // The kept connection died: prove reachable/auth again from scratch if time is left.
        if (vitals::monotonic_ns() + kMinRetryNs < end) {
          f.reset();
          need_connect = true;
        }
      }
    }
    if (need_connect) {
      f = connect(end);
      if (!f) f = check(end);
      if (f && f->broken) drop(f->message);
    }
    report_numbers(r);
    if (f) {
      r.stage(f->stage);
      r.fail(scrub_(f->message));
    } else {
      r.stage("role");
      r.pass(scrub_(pass_message()));
    }
    if (conn_ && PQtransactionStatus(conn_) != PQTRANS_IDLE)
      drop("the query left a transaction open");  // never carry session state into the next run
  }

 private:
  static constexpr uint64_t kMinRetryNs = 5000000ull;  // 5ms: not worth a reconnect below that

  bool has_param(const std::string& key) const { return !param(key).empty(); }
  std::string param(const std::string& key) const {
    for (const auto& [k, v] : params_)
      if (k == key) return v;
    return "";
  }

  // A URI whose percent-encoding is broken fails to parse, and libpq's message quotes the raw
  // password token: learn it from the text before parsing.
  void add_uri_password_guess(const std::string& dsn) {
    const size_t scheme = dsn.find("://");
    if (scheme == std::string::npos) return;
    const size_t at = dsn.find('@', scheme + 3);
    if (at == std::string::npos) return;
    const std::string userinfo = dsn.substr(scheme + 3, at - scheme - 3);
    const size_t colon = userinfo.find(':');
    if (colon != std::string::npos) scrub_.add(userinfo.substr(colon + 1));
  }

  uint64_t elapsed_ns() const { return vitals::monotonic_ns() - start_ns_; }

  void drop(const std::string& why) {
    if (!conn_) return;
    host_.info(scrub_("dropping the connection to " + target(conn_) + ": " + why));
    PQfinish(conn_);
    conn_ = nullptr;
  }

  void reap_lookups() {
    lookups_.erase(std::remove_if(lookups_.begin(), lookups_.end(),
                                  [](const std::unique_ptr<Lookup>& l) { return l->done(); }),
                   lookups_.end());
  }

  static std::string target(PGconn* c) {
    const std::string host = PQhost(c) ? PQhost(c) : "";
    const std::string port = PQport(c) ? PQport(c) : "";
    const std::string addr = PQhostaddr(c) ? PQhostaddr(c) : "";
    if (host.empty() || is_socket_path(host))
      return "socket " + (host.empty() ? std::string("(default)") : host) + "/.s.PGSQL." + port;
    std::string t = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
    if (!addr.empty() && addr != host) t += " (" + addr + ")";
    return t;
  }

  // Resolves host names to addresses within the deadline and rewrites host/hostaddr/port as
  // parallel lists libpq walks in order. Socket paths and numeric addresses need no lookup.
  std::optional<Failure> expand_hosts(std::vector<std::pair<std::string, std::string>>& kv,
                                      uint64_t end) {
    addr_host_.clear();
    if (has_param("hostaddr") || has_param("service")) return {};
    std::string host_list = param("host");
    if (host_list.empty() && std::getenv("PGHOST")) host_list = std::getenv("PGHOST");
    if (host_list.empty() || std::getenv("PGHOSTADDR")) return {};
    const std::vector<std::string> hosts = split(host_list, ',');
    std::vector<std::string> ports = split(param("port"), ',');
    if (ports.size() > 1 && ports.size() != hosts.size()) return {};  // libpq will say why

    std::vector<std::unique_ptr<Lookup>> pending;
    std::vector<Lookup*> per_host(hosts.size(), nullptr);
    for (size_t i = 0; i < hosts.size(); ++i) {
      if (hosts[i].empty() || is_socket_path(hosts[i]) || is_numeric_address(hosts[i])) continue;
      pending.push_back(std::make_unique<Lookup>(hosts[i]));
      per_host[i] = pending.back().get();
    }
    if (pending.empty()) return {};

    std::vector<gaicb*> list;
    for (auto& l : pending) list.push_back(&l->cb);
    if (const int rc =
            getaddrinfo_a(GAI_NOWAIT, list.data(), static_cast<int>(list.size()), nullptr)) {
      return Failure{"reachable",
                     "unable to start resolving " + host_list + ": " + gai_strerror(rc)};
    }
    for (;;) {
      std::vector<const gaicb*> waiting;
      for (auto& l : pending)
        if (!l->done()) waiting.push_back(&l->cb);
      if (waiting.empty()) break;
      const uint64_t now = vitals::monotonic_ns();
      if (now >= end) {
        std::string names;
        for (auto& l : pending) {
          if (l->done()) continue;
          names += (names.empty() ? "" : ", ") + l->name;
          gai_cancel(&l->cb);
          lookups_.push_back(std::move(l));  // reaped by a later run once glibc lets go
        }
        return Failure{"reachable", "timed out after " + ms_text(elapsed_ns()) +
                                        " resolving host name " + names};
      }
      vitals::gai_pause(end);  // not gai_suspend(): see net.hpp
    }

    std::vector<std::string> out_host, out_addr, out_port;
    std::string first_error;
    for (size_t i = 0; i < hosts.size(); ++i) {
      const std::string port = ports.size() > 1 ? ports[i] : "";
      if (!per_host[i]) {
        out_host.push_back(hosts[i]);
        out_addr.emplace_back();
        out_port.push_back(port);
        continue;
      }
      Lookup& l = *per_host[i];
      if (const int rc = gai_error(&l.cb)) {
        if (first_error.empty())
          first_error = "unable to resolve host name " + l.name + ": " + gai_strerror(rc);
        continue;
      }
      for (addrinfo* ai = l.cb.ar_result; ai; ai = ai->ai_next) {
        out_host.push_back(hosts[i]);
        out_addr.push_back(address_text(ai->ai_addr));
        out_port.push_back(port);
      }
    }
    if (out_host.empty()) return Failure{"reachable", first_error};
    for (size_t i = 0; i < out_host.size(); ++i)
      if (!out_addr[i].empty()) addr_host_[out_addr[i]] = out_host[i];
    for (auto& [k, v] : kv) {
      if (k == "host") v = join(out_host, ',');
      if (k == "port" && ports.size() > 1) v = join(out_port, ',');
    }
    if (!has_param("host")) kv.emplace_back("host", join(out_host, ','));
    kv.emplace_back("hostaddr", join(out_addr, ','));
    return {};
  }

  std::optional<Failure> connect(uint64_t end) {
    std::vector<std::pair<std::string, std::string>> kv = params_;
    if (!password_file_.empty()) {
      std::ifstream in(password_file_);
      std::string pw;
      if (!in || !std::getline(in, pw)) {
        return Failure{"auth", "unable to read password_file " + password_file_ + ": " +
                                   (in ? "file is empty" : std::strerror(errno))};
      }
      if (!pw.empty() && pw.back() == '\r') pw.pop_back();
      scrub_.add(pw);
      kv.emplace_back("password", pw);
    }
    if (auto f = expand_hosts(kv, end)) return f;
    if (!has_param("application_name") && !has_param("fallback_application_name"))
      kv.emplace_back("fallback_application_name", "vitals");

    std::vector<const char*> keys, values;
    for (const auto& [k, v] : kv) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);

    const uint64_t t0 = vitals::monotonic_ns();
    PGconn* c = PQconnectStartParams(keys.data(), values.data(), 0);
    if (!c) return Failure{"reachable", "unable to allocate a libpq connection"};
    PQsetErrorVerbosity(c, PQERRORS_VERBOSE);  // puts the SQLSTATE into the error text
    PQsetNoticeProcessor(
        c, [](void*, const char*) {}, nullptr);

    PostgresPollingStatusType st =
        PQstatus(c) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
      const int fd = PQsocket(c);
      if (fd < 0) {
        st = PGRES_POLLING_FAILED;
        break;
      }
      if (wait_fd(fd, st == PGRES_POLLING_READING, st == PGRES_POLLING_WRITING, end) ==
          Ready::kTimeout) {
        Failure f = connect_timeout(c);
        PQfinish(c);
        return f;
      }
      st = PQconnectPoll(c);
    }
    if (st == PGRES_POLLING_FAILED) {
      Failure f = classify_connect_error(PQerrorMessage(c), PQuser(c) ? PQuser(c) : "");
      PQfinish(c);
      return f;
    }
    PQsetnonblocking(c, 1);
    conn_ = c;
    connect_seconds_ = static_cast<double>(vitals::monotonic_ns() - t0) / 1e9;
    ++connects_;
    const char* version = PQparameterStatus(c, "server_version");
    host_.info(scrub_("connected to " + target(c) + " (PostgreSQL " + short_version(version) +
                      "), connection #" + std::to_string(connects_)));
    return {};
  }

  Failure connect_timeout(PGconn* c) const {
    const std::string after = "timed out after " + ms_text(elapsed_ns());
    switch (PQstatus(c)) {
      case CONNECTION_STARTED:
        return {"reachable", after + " connecting to " + target(c)};
      case CONNECTION_AUTH_OK:
      case CONNECTION_SETENV:
      case CONNECTION_CHECK_WRITABLE:
      case CONNECTION_CHECK_TARGET:
      case CONNECTION_CHECK_STANDBY:
      case CONNECTION_CONSUME:
        return {"auth", after + " waiting for " + target(c) + " to finish the login"};
      default:
        return {"reachable", after + " waiting for " + target(c) + " to answer"};
    }
  }

  // libpq's connection error text (verbose: "FATAL:  28P01: password authentication ...") to a
  // stage and a message. With several addresses the text holds one attempt each; the last counts.
  Failure classify_connect_error(const std::string& raw, const std::string& user) const {
    static const std::regex server_error(R"((?:FATAL|ERROR|PANIC):\s+([0-9A-Z]{5}):\s+([^\n]*))");
    static const std::regex detail_re(R"(\nDETAIL:\s+([^\n]*))");
    static const std::regex attempt(
        R"re(connection to server (?:at "([^"]*)"(?: \(([^)]*)\))?, port (\d+)|on socket "([^"]*)") failed: ([^\n]*))re");

    std::smatch m, last;
    bool found = false;
    for (auto it = raw.cbegin(); std::regex_search(it, raw.cend(), m, server_error);
         it = m.suffix().first) {
      last = m;
      found = true;
    }
    if (found) {
      const std::string code = last[1], text = trim(last[2]);
      std::string detail;
      std::smatch dm;
      const std::string rest(last.suffix().first, raw.cend());
      if (std::regex_search(rest, dm, detail_re) &&
          rest.find("connection to server") > static_cast<size_t>(dm.position(0))) {
        detail = trim(dm[1]);
        if (!detail.empty() && detail.back() == '.') detail.pop_back();
      }
      if (code == "57P03") {
        return {"accepting",
                server_phrase(text) + (detail.empty() ? "" : ": " + lower_first(detail))};
      }
      if (code == "53300") return {"auth", "server refused the login: " + text};
      if (code == "28P01" || code.rfind("28", 0) == 0 || code == "3D000") return {"auth", text};
      return {"auth", "unable to log in: " + text + " (SQLSTATE " + code + ")"};
    }

    std::string where, reason;
    for (auto it = raw.cbegin(); std::regex_search(it, raw.cend(), m, attempt);
         it = m.suffix().first) {
      if (m[4].matched) {
        where = "socket " + m[4].str();
      } else {
        std::string host = m[1], addr = m[2];
        if (auto it = addr_host_.find(host); !m[2].matched && it != addr_host_.end()) {
          addr = host;  // we passed the address as hostaddr: name it as the user wrote it
          host = it->second;
        }
        where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + m[3].str();
        if (!addr.empty() && addr != host) where += " (" + addr + ")";
      }
      reason = trim(m[5]);
    }
    if (where.empty()) reason = first_line(raw);
    // Client-side authentication trouble comes without a SQLSTATE.
    static const std::string sendauth = "fe_sendauth: ";
    if (reason.rfind(sendauth, 0) == 0) {
      return {"auth", reason.substr(sendauth.size()) + " for user \"" + user +
                          "\" (the server asks for one: set it in dsn or password_file)"};
    }
    if (reason.find("password") != std::string::npos || reason.find("SCRAM") != std::string::npos ||
        reason.find("authentication") != std::string::npos)
      return {"auth", reason};
    if (reason.empty()) reason = "no reason given";
    return {"reachable", "unable to connect" + (where.empty() ? std::string() : " to " + where) +
                             ": " + lower_first(reason)};
  }

  using Rows = std::vector<std::vector<std::string>>;

  // Sends one simple query and collects its results, all within end. A SQL error leaves the
  // connection usable; a timeout, a lost connection or a COPY make it `broken`.
  std::optional<Failure> exec(const char* stage, const std::string& sql, const std::string& what,
                              uint64_t end, Rows* rows) {
    PGconn* c = conn_;
    const auto lost = [&](const std::string& why) {
      return Failure{
          stage,
          "lost the connection to " + target(c) + " during " + what + ": " + plain_error(why),
          true};
    };
    const auto timed_out = [&] {
      return Failure{stage, "timed out after " + ms_text(elapsed_ns()) + " waiting for " + what,
                     true};
    };
    if (!PQsendQuery(c, sql.c_str())) return lost(PQerrorMessage(c));
    for (int f; (f = PQflush(c)) != 0;) {
      if (f < 0) return lost(PQerrorMessage(c));
      if (wait_fd(PQsocket(c), true, true, end) == Ready::kTimeout) return timed_out();
      if (!PQconsumeInput(c)) return lost(PQerrorMessage(c));
    }
    std::optional<Failure> error;
    std::string error_raw;
    for (;;) {
      while (!PQisBusy(c)) {
        PGresult* res = PQgetResult(c);
        if (!res) {
          if (PQstatus(c) == CONNECTION_BAD)
            return lost(error_raw.empty() ? std::string(PQerrorMessage(c)) : error_raw);
          return error;
        }
        switch (PQresultStatus(res)) {
          case PGRES_TUPLES_OK:
            if (rows) {
              rows->clear();
              for (int i = 0; i < PQntuples(res); ++i) {
                rows->emplace_back();
                for (int j = 0; j < PQnfields(res); ++j)
                  rows->back().emplace_back(PQgetvalue(res, i, j));
              }
            }
            break;
          case PGRES_COMMAND_OK:
          case PGRES_EMPTY_QUERY:
          case PGRES_SINGLE_TUPLE:
            break;
          case PGRES_COPY_IN:
          case PGRES_COPY_OUT:
          case PGRES_COPY_BOTH:
            PQclear(res);
            return Failure{stage, "unable to run " + what + ": it starts a COPY", true};
          default:
            if (!error) {
              const char* code = PQresultErrorField(res, PG_DIAG_SQLSTATE);
              const char* primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
              std::string text = primary ? primary : first_line(PQresultErrorMessage(res));
              if (code && std::string(code) == "57014" &&
                  text.find("statement timeout") != std::string::npos) {
                text += " (statement_timeout " + std::to_string(statement_timeout_ms_) +
                        "ms, the time left)";
              }
              error_raw = PQresultErrorMessage(res);
              error = Failure{stage, "query failed: " + text +
                                         (code ? " (SQLSTATE " + std::string(code) + ")" : "")};
            }
        }
        PQclear(res);
      }
      if (wait_fd(PQsocket(c), true, false, end) == Ready::kTimeout) return timed_out();
      if (!PQconsumeInput(c)) return lost(PQerrorMessage(c));
    }
  }

  // Stages query -> extensions -> role on the open connection.
  std::optional<Failure> check(uint64_t end) {
    const uint64_t now = vitals::monotonic_ns();
    const uint64_t left_ms = now < end ? (end - now) / 1000000ull : 0;
    // Slightly under the time left, so the server cancels a slow query before we give up on it.
    statement_timeout_ms_ = std::max<uint64_t>(1, left_ms - std::min<uint64_t>(left_ms / 10, 50));
    if (auto f = exec("query", "SET statement_timeout = " + std::to_string(statement_timeout_ms_),
                      "SET statement_timeout", end, nullptr))
      return f;
    const uint64_t q0 = vitals::monotonic_ns();
    if (auto f = exec("query", query_, "the query", end, nullptr)) return f;
    query_seconds_ = static_cast<double>(vitals::monotonic_ns() - q0) / 1e9;

    if (extensions_.empty() && role_ == Role::kAny) return {};
    Rows rows;
    const char* stage = extensions_.empty() ? "role" : "extensions";
    if (auto f = exec(stage,
                      "SELECT 'recovery', pg_is_in_recovery()::text UNION ALL "
                      "SELECT 'extension', extname::text FROM pg_extension",
                      "the extension and role check", end, &rows))
      return f;
    std::vector<std::string> missing = extensions_;
    for (const auto& row : rows) {
      if (row.size() != 2) continue;
      if (row[0] == "recovery") role_seen_ = row[1] == "true" ? Role::kReplica : Role::kPrimary;
      if (row[0] == "extension")
        missing.erase(std::remove(missing.begin(), missing.end(), row[1]), missing.end());
    }
    if (missing.size() == 1)
      return Failure{"extensions", "extension \"" + missing[0] + "\" is not installed"};
    if (!missing.empty()) {
      std::string names;
      for (const auto& m : missing) names += (names.empty() ? "\"" : ", \"") + m + "\"";
      return Failure{"extensions", "extensions " + names + " are not installed"};
    }
    if (role_ == Role::kPrimary && role_seen_ == Role::kReplica)
      return Failure{"role", "server is a replica (in recovery), expected a primary"};
    if (role_ == Role::kReplica && role_seen_ == Role::kPrimary)
      return Failure{"role", "server is a primary (not in recovery), expected a replica"};
    return {};
  }

  std::string pass_message() const {
    const std::string v = short_version(PQparameterStatus(conn_, "server_version"));
    std::string role;
    if (role_seen_) role = *role_seen_ == Role::kReplica ? " replica" : " primary";
    return "PostgreSQL " + v + role + " at " + target(conn_) + ", database \"" + PQdb(conn_) +
           "\" as \"" + PQuser(conn_) + "\"";
  }

  void report_numbers(vitals::Result& r) const {
    if (conn_) {
      r.number("server_version", VITALS_UNIT_COUNT, PQserverVersion(conn_),
               "Server version as an integer, e.g. 150018 for 15.18");
      r.number("connect", VITALS_UNIT_SECONDS, connect_seconds_,
               "Time the current connection took to establish (resolve, TCP, TLS, login)");
    }
    if (query_seconds_)
      r.number("query", VITALS_UNIT_SECONDS, *query_seconds_, "Time the query took this run");
    r.number("connects", VITALS_UNIT_COUNT, static_cast<double>(connects_),
             "Connections this probe opened since the agent started");
  }

  vitals::Host host_;
  std::string password_file_;
  std::string query_;
  std::vector<std::string> extensions_;
  Role role_ = Role::kAny;
  std::vector<std::pair<std::string, std::string>> params_;  // parsed dsn
  Scrubber scrub_;

  PGconn* conn_ = nullptr;
  double connect_seconds_ = 0;
  uint64_t connects_ = 0;
  uint64_t start_ns_ = 0;
  uint64_t statement_timeout_ms_ = 0;
  std::optional<double> query_seconds_;
  std::optional<Role> role_seen_;
  std::vector<std::unique_ptr<Lookup>> lookups_;  // abandoned lookups glibc may still write to
  std::map<std::string, std::string> addr_host_;  // resolved address -> host name, for messages
};

}  // namespace

VITALS_PROBE(
    PostgresProbe, "postgres", "1.0.0",
    "Connect to PostgreSQL with libpq: reachable, accepting, auth, query, extensions, role",
    kOptions)
