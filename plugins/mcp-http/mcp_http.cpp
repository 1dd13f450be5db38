// mcp-http: proves that an HTTP endpoint serves the Model Context Protocol over Streamable HTTP.
//
// A plain GET on an MCP endpoint answers 405/406 or a misleading 200; only the protocol proves the
// server serves MCP. Legacy servers (2025-03-26 .. 2025-11-25) get initialize ->
// notifications/initialized -> ping [-> tools/list] and always a closing DELETE of the session;
// modern servers (2026-07-28) get the single stateless server/discover request [-> tools/list].
// With protocol_version "auto" the probe tries server/discover first, falls back to initialize, and
// remembers which one worked so that later runs cost one exchange.
//
// Stages: reachable -> health (if health_path) -> discover | initialize -> initialized -> ping
//         -> tools (if expect_tools) -> cleanup (DELETE of the session).
#include <vitals/poco_net.hpp>
#include <vitals/probe.hpp>

#include <Poco/Dynamic/Var.h>
#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/String.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <algorithm>
#include <cctype>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace {

using Poco::JSON::Object;
using Poco::Net::HTTPRequest;
using Poco::Net::HTTPResponse;
using std::chrono::microseconds;

constexpr const char* kModernVersion = "2026-07-28";
constexpr const char* kAutoLegacyOffer = "2025-06-18";
const std::vector<std::string> kLegacyVersions = {"2025-11-25", "2025-06-18", "2025-03-26"};
constexpr size_t kMaxBody = 4 * 1024 * 1024;
constexpr const char* kClientName = "vitals-mcp-http";
constexpr const char* kClientVersion = "1.0.0";

const vitals_option kOptions[] = {
    {"url", VITALS_OPT_STRING, nullptr, "MCP endpoint, e.g. http://127.0.0.1:3000/mcp (http only)",
     1, 0},
    {"health_path", VITALS_OPT_STRING, nullptr,
     "Optional path of a plain GET on the same host that must answer 2xx, e.g. /health", 0, 0},
    {"protocol_version", VITALS_OPT_STRING, "auto",
     "auto, 2026-07-28 (server/discover), or a legacy revision to offer in initialize "
     "(2025-11-25, 2025-06-18, 2025-03-26)",
     0, 0},
    {"expect_tools", VITALS_OPT_LIST, nullptr, "Tool names that tools/list must contain", 0, 0},
    {"headers", VITALS_OPT_MAP, nullptr,
     "Extra request headers, e.g. Authorization: Bearer ... (secret: never printed)", 0, 1},
};

// A failure at the current stage; what() is the one-line message.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Era { kModern, kLegacy };

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_token(const std::string& s) {
  static const std::string extra = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || extra.find(static_cast<char>(c)) != std::string::npos;
  });
}

// Session ids may only hold visible ASCII (0x21-0x7E).
bool visible_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x21 && c <= 0x7e; });
}

// A printable, bounded excerpt of a server's text for a message.
std::string excerpt(const std::string& s, size_t max = 120) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string join(const std::vector<std::string>& v, const std::string& sep, size_t max = 20) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i == max) return out + sep + "... (" + std::to_string(v.size()) + " in all)";
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

// Describes a network-level exception for a message ("connection refused", "timed out").
std::string describe(const Poco::Exception& e) {
  if (dynamic_cast<const Poco::TimeoutException*>(&e)) return "timed out";
  if (dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&e)) return "connection refused";
  if (dynamic_cast<const Poco::Net::ConnectionResetException*>(&e)) return "connection reset";
  if (dynamic_cast<const Poco::Net::NoMessageException*>(&e))
    return "connection closed without a response";
  if (dynamic_cast<const Poco::Net::HostNotFoundException*>(&e) ||
      dynamic_cast<const Poco::Net::NoAddressFoundException*>(&e))
    return "cannot resolve host";
  return excerpt(e.displayText(), 200);
}

std::string str_field(const Object::Ptr& o, const std::string& key) {
  if (!o || !o->has(key)) return "";
  const Poco::Dynamic::Var v = o->get(key);
  return v.isString() ? v.extract<std::string>() : "";
}

Object::Ptr obj_field(const Object::Ptr& o, const std::string& key) {
  if (!o || !o->has(key)) return nullptr;
  return o->getObject(key);  // null when not an object
}

Object::Ptr parse_object(const std::string& text) {
  try {
    Poco::JSON::Parser parser;
    const Poco::Dynamic::Var v = parser.parse(text);
    if (v.type() == typeid(Object::Ptr)) return v.extract<Object::Ptr>();
  } catch (const Poco::Exception&) {
  } catch (const std::exception&) {
  }
  return nullptr;
}

bool id_matches(const Object::Ptr& o, int id) {
  if (!o || !o->has("id")) return false;
  const Poco::Dynamic::Var v = o->get("id");
  try {
    if (v.isInteger()) return v.convert<Poco::Int64>() == id;
    if (v.isString()) return v.extract<std::string>() == std::to_string(id);
  } catch (const Poco::Exception&) {
  }
  return false;
}

// The JSON-RPC error of a body, if it has one: (code, message).
std::optional<std::pair<int, std::string>> rpc_error(const Object::Ptr& o) {
  const Object::Ptr err = obj_field(o, "error");
  if (!err) return std::nullopt;
  int code = 0;
  try {
    if (err->has("code")) code = err->get("code").convert<int>();
  } catch (const Poco::Exception&) {
  }
  return std::make_pair(code, str_field(err, "message"));
}

// A watched HTTPClientSession with a separately callable connect (for the `reachable` stage).
class Client : public vitals::WatchedSession<Poco::Net::HTTPClientSession> {
 public:
  using WatchedSession::WatchedSession;
  void open() { reconnect(); }
};

struct Reply {
  int status = 0;
  std::string reason;
  std::string media_type;  // lower case, without parameters
  std::string session_id;
  std::string body;     // raw body when not SSE
  Object::Ptr message;  // the JSON-RPC response carrying our id (JSON or SSE), if any
  bool sse = false;

  std::string status_text() const { return "HTTP " + std::to_string(status) + " " + reason; }
  // "HTTP 400 Bad Request: <JSON-RPC error message or body excerpt>"
  std::string summary() const {
    std::string s = status_text();
    const Object::Ptr o = message ? message : parse_object(body);
    if (auto e = rpc_error(o))
      return s + ": " + excerpt(e->second) + " (" + std::to_string(e->first) + ")";
    const std::string b = excerpt(body, 80);
    return b.empty() ? s : s + ": " + b;
  }
};

// One run's HTTP conversation: a keep-alive connection to the MCP server, JSON and SSE bodies.
// Each call's deadline bounds it as a whole (a watchdog shuts the socket down), DNS included: the
// session connects to an address resolved within the deadline, the Host header names the host.
class Http {
 public:
  Http(const Poco::URI& url, const std::vector<std::pair<std::string, std::string>>& headers,
       const vitals::Deadline& d)
      : url_(url), headers_(headers), dog_(d), client_(dog_, std::string(), url.getPort()) {
    client_.setKeepAlive(true);
  }

  const Poco::URI& url() const { return url_; }
  const std::string& redirect_note() const { return redirect_note_; }
  // True while the last exchange was reading an SSE body (headers already received).
  bool in_sse() const { return in_sse_; }
  // The Mcp-Session-Id of the last response whose headers arrived (even if its body did not).
  const std::string& last_session_id() const { return last_session_id_; }

  void connect(const vitals::Deadline& d) {
    arm(d);
    client_.open();
    check_deadline();
  }

  // GET on the server's origin; the body is discarded.
  Reply get(const std::string& path, const vitals::Deadline& d) {
    HTTPRequest req(HTTPRequest::HTTP_GET, path, HTTPRequest::HTTP_1_1);
    req.set("Accept", "*/*");
    return exchange(req, "", d, -1);
  }

  // POST of one JSON-RPC message to the MCP endpoint, following 307/308 redirects.
  Reply post(const std::string& body, const std::vector<std::pair<std::string, std::string>>& extra,
             const vitals::Deadline& d, int expect_id) {
    for (int hop = 0;; ++hop) {
      HTTPRequest req(HTTPRequest::HTTP_POST, url_.getPathEtc().empty() ? "/" : url_.getPathEtc(),
                      HTTPRequest::HTTP_1_1);
      req.setContentType("application/json");
      req.set("Accept", "application/json, text/event-stream");
      for (const auto& [k, v] : extra) req.set(k, v);
      Reply reply = exchange(req, body, d, expect_id);
      if ((reply.status != 307 && reply.status != 308) || location_.empty()) return reply;
      if (hop == 3) throw Failure("stopped after 3 redirects from " + url_.toString());
      follow(reply.status);
    }
  }

  Reply del(const std::vector<std::pair<std::string, std::string>>& extra,
            const vitals::Deadline& d) {
    HTTPRequest req(HTTPRequest::HTTP_DELETE, url_.getPathEtc().empty() ? "/" : url_.getPathEtc(),
                    HTTPRequest::HTTP_1_1);
    for (const auto& [k, v] : extra) req.set(k, v);
    return exchange(req, "", d, -1);
  }

 private:
  // Sets the deadline of the next step; resolves the host for a new connection.
  void arm(const vitals::Deadline& d) {
    if (d.expired()) throw Poco::TimeoutException("deadline reached");
    dog_.reset(d);
    if (!client_.connected()) {
      try {
        client_.setHost(vitals::resolve(url_.getHost(), d));
      } catch (const vitals::DeadlineExceeded&) {
        throw Poco::TimeoutException("resolving " + url_.getHost());
      } catch (const std::runtime_error&) {
        throw Poco::Net::HostNotFoundException(url_.getHost());
      }
    }
    const Poco::Timespan t(d.remaining_at_least(microseconds(1000)).count());
    client_.setTimeout(t);
    if (client_.connected()) {
      client_.socket().setReceiveTimeout(t);
      client_.socket().setSendTimeout(t);
    }
  }

  void follow(int status) {
    const std::string from = url_.toString();
    Poco::URI next(url_, location_);
    if (next.getScheme() != "http")
      throw Failure("unable to follow redirect " + std::to_string(status) + " from " + from +
                    " to " + excerpt(location_) + ": only http:// is supported");
    if (next.getHost() != url_.getHost() || next.getPort() != url_.getPort()) {
      client_.reset();  // the next arm() resolves the new host
      client_.setPort(next.getPort());
    }
    url_ = next;
    redirect_note_ = "POST " + from + " was redirected (" + std::to_string(status) + ") to " +
                     url_.toString() + "; set url to it";
  }

  // After the deadline the watchdog has shut the socket down: whatever Poco made of it (a reset,
  // a short body, the end of an SSE stream), the step timed out.
  void check_deadline() const {
    if (dog_.fired()) throw Poco::TimeoutException("deadline reached");
  }

  Reply exchange(HTTPRequest& req, const std::string& body, const vitals::Deadline& d,
                 int expect_id) {
    req.setHost(url_.getHost(), url_.getPort());
    req.set("User-Agent", std::string(kClientName) + "/" + kClientVersion);
    for (const auto& [k, v] : headers_) req.set(k, v);
    if (req.getMethod() == HTTPRequest::HTTP_POST)
      req.setContentLength(static_cast<std::streamsize>(body.size()));
    Reply reply;
    in_sse_ = false;
    last_session_id_.clear();
    try {
      arm(d);
      std::ostream& os = client_.sendRequest(req);
      os << body;
      HTTPResponse resp;
      arm(d);
      std::istream& rs = client_.receiveResponse(resp);
      rs.exceptions(std::ios::badbit);
      reply.status = resp.getStatus();
      reply.reason = resp.getReason();
      reply.media_type =
          lower(Poco::trim(resp.getContentType().substr(0, resp.getContentType().find(';'))));
      reply.session_id = resp.get("Mcp-Session-Id", "");
      last_session_id_ = reply.session_id;
      location_ = resp.get("Location", "");
      reply.sse = reply.status == 200 && reply.media_type == "text/event-stream";
      if (reply.sse && expect_id >= 0) {
        in_sse_ = true;
        reply.message = read_sse(rs, d, expect_id);
        check_deadline();
        in_sse_ = false;
        // A body of known length ends by itself: read it out and keep the connection. An open
        // stream (chunked / until close) may never end: drop the connection instead.
        if (resp.hasContentLength())
          read_all(rs, d);
        else
          client_.reset();
      } else {
        reply.body = read_all(rs, d);
        if (reply.status == 200 && reply.media_type == "application/json" && expect_id >= 0) {
          const Object::Ptr o = parse_object(reply.body);
          if (o && id_matches(o, expect_id)) reply.message = o;
        }
      }
      check_deadline();
      return reply;
    } catch (...) {
      client_.reset();
      check_deadline();
      throw;
    }
  }

  std::string read_all(std::istream& rs, const vitals::Deadline& d) {
    std::string out;
    char buf[8192];
    while (rs) {
      arm(d);
      rs.read(buf, sizeof buf);
      out.append(buf, static_cast<size_t>(rs.gcount()));
      if (out.size() > kMaxBody) throw Failure("response body exceeds 4 MiB");
    }
    return out;
  }

  // One SSE line without its terminator (\n, \r\n or \r); false at the end of the stream.
  bool read_line(std::istream& rs, std::string& line, size_t& budget) {
    line.clear();
    for (;;) {
      const int c = rs.get();
      if (c == std::char_traits<char>::eof()) return false;
      if (skip_lf_) {
        skip_lf_ = false;
        if (c == '\n') continue;
      }
      if (c == '\n') return true;
      if (c == '\r') {
        skip_lf_ = true;
        return true;
      }
      line += static_cast<char>(c);
      if (budget-- == 0) throw Failure("SSE stream exceeds 4 MiB without a response");
    }
  }

  // Reads events until the JSON-RPC response with `id`; skips empty (priming) events, comments,
  // notifications and server requests. Null when the stream ends first.
  Object::Ptr read_sse(std::istream& rs, const vitals::Deadline& d, int id) {
    std::string line, data;
    bool has_data = false;
    size_t budget = kMaxBody;
    skip_lf_ = false;
    for (;;) {
      arm(d);
      if (!read_line(rs, line, budget)) return nullptr;
      if (line.empty()) {
        if (has_data && !data.empty()) {
          const Object::Ptr o = parse_object(data);
          if (o && id_matches(o, id) && (o->has("result") || o->has("error"))) return o;
        }
        data.clear();
        has_data = false;
        continue;
      }
      if (line[0] == ':') continue;
      const size_t colon = line.find(':');
      const std::string field = line.substr(0, colon);
      std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      if (field == "data") {
        if (has_data) data += '\n';
        data += value;
        has_data = true;
      }
    }
  }

  Poco::URI url_;
  const std::vector<std::pair<std::string, std::string>>& headers_;
  vitals::SocketWatchdog dog_;
  Client client_;
  std::string location_;
  std::string redirect_note_;
  bool skip_lf_ = false;
  bool in_sse_ = false;
  std::string last_session_id_;
};

class McpHttpProbe {
 public:
  McpHttpProbe(const vitals::Options& o, const vitals::Host& host) : host_(host) {
    vitals::SocketWatchdog::start_thread();  // now, not in the first run
    try {
      url_ = Poco::URI(o.str("url"));
    } catch (const Poco::Exception& e) {
      throw std::runtime_error("url: cannot parse '" + o.str("url") + "': " + e.displayText());
    }
    if (url_.getScheme() == "https")
      throw std::runtime_error("url: https is not supported by mcp-http; use an http:// endpoint");
    if (url_.getScheme() != "http" || url_.getHost().empty())
      throw std::runtime_error("url: expected http://HOST[:PORT]/PATH, got '" + o.str("url") + "'");
    health_path_ = o.str("health_path");
    if (!health_path_.empty() && health_path_[0] != '/')
      throw std::runtime_error("health_path: must start with '/', got '" + health_path_ + "'");
    version_ = o.str("protocol_version", "auto");
    if (version_ != "auto" && version_ != kModernVersion &&
        std::find(kLegacyVersions.begin(), kLegacyVersions.end(), version_) ==
            kLegacyVersions.end())
      throw std::runtime_error("protocol_version: unsupported value '" + version_ +
                               "' (use auto, 2026-07-28, 2025-11-25, 2025-06-18 or 2025-03-26)");
    tools_ = o.list("expect_tools");
    for (const auto& t : tools_)
      if (t.empty()) throw std::runtime_error("expect_tools: tool names must not be empty");
    static const std::vector<std::string> reserved = {
        "accept",       "content-type",   "content-length",       "transfer-encoding",
        "connection",   "mcp-session-id", "mcp-protocol-version", "mcp-method",
        "last-event-id"};
    for (const auto& [k, v] : o.map("headers")) {
      if (!is_token(k)) throw std::runtime_error("headers: invalid header name '" + k + "'");
      if (std::find(reserved.begin(), reserved.end(), lower(k)) != reserved.end())
        throw std::runtime_error("headers: " + k + " is set by the probe and cannot be overridden");
      if (v.find_first_of("\r\n") != std::string::npos)
        throw std::runtime_error("headers: the value of " + k + " contains a line break");
      headers_.emplace_back(k, v);
    }
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    // Keep a slice of the time for closing the session even when a stage runs out of time.
    const uint64_t total_ns = static_cast<uint64_t>(d.remaining().count()) * 1000;
    const uint64_t reserve_ns = std::min<uint64_t>(total_ns / 10, 500'000'000ull);
    const vitals::Deadline work(d.ns() - reserve_ns);

    Http http(url_, headers_, work);
    State st;
    std::optional<std::string> failure;
    try {
      r.stage("reachable");
      try {
        http.connect(work);
      } catch (const Poco::Exception& e) {
        throw Failure("unable to connect to " + url_.getAuthority() + ": " + describe(e));
      }
      if (!health_path_.empty()) check_health(http, work, r);
      handshake(http, work, r, st);
      if (!tools_.empty()) check_tools(http, work, r, st);
    } catch (const Failure& f) {
      failure = f.what();
    } catch (const Poco::Exception& e) {
      failure = "unable to complete " + std::string(r.stage()) + " with " + http.url().toString() +
                ": " + describe(e);
    }

    std::string cleanup_problem;
    if (!st.session.empty()) cleanup_problem = close_session(http, d, st);

    if (failure) {
      std::string msg = *failure;
      if (!cleanup_problem.empty()) msg += "; also " + cleanup_problem;
      r.fail(msg);
      return;
    }
    if (!st.session.empty()) r.stage("cleanup");
    r.number("handshake", VITALS_UNIT_SECONDS, st.handshake_s,
             "Duration of the MCP handshake (initialize + initialized, or server/discover)");
    if (st.ping_s >= 0)
      r.number("ping", VITALS_UNIT_SECONDS, st.ping_s, "Round trip of an MCP ping");
    if (st.tool_count >= 0)
      r.number("tools", VITALS_UNIT_COUNT, st.tool_count, "Number of tools the server lists");

    std::string msg =
        "MCP server " + st.server_name + " " + st.server_version + " speaks " + st.version;
    if (st.era == Era::kModern) msg += " (server/discover)";
    if (!tools_.empty()) msg += "; tools present: " + join(tools_, ", ", 5);
    if (!st.session.empty()) msg += cleanup_problem.empty() ? "; session closed" : "";
    if (!http.redirect_note().empty()) msg += "; " + http.redirect_note();
    if (!cleanup_problem.empty()) {
      r.warn(msg + "; but " + cleanup_problem);
      return;
    }
    r.pass(msg);
  }

 private:
  struct State {
    Era era = Era::kLegacy;
    std::string version, server_name, server_version, session;
    double handshake_s = 0, ping_s = -1;
    int tool_count = -1;
    int next_id = 1;
  };

  static double since(uint64_t start_ns) {
    return static_cast<double>(vitals::monotonic_ns() - start_ns) / 1e9;
  }

  void check_health(Http& http, const vitals::Deadline& d, vitals::Result& r) {
    r.stage("health");
    Reply rep;
    try {
      rep = http.get(health_path_, d);
    } catch (const Poco::Exception& e) {
      throw Failure("unable to GET " + health_path_ + ": " + describe(e));
    }
    if (rep.status < 200 || rep.status > 299)
      throw Failure("health check GET " + health_path_ + " answered " + rep.summary());
  }

  // Headers for requests after a legacy initialize.
  std::vector<std::pair<std::string, std::string>> legacy_headers(const State& st) const {
    std::vector<std::pair<std::string, std::string>> h;
    if (!st.session.empty()) h.emplace_back("Mcp-Session-Id", st.session);
    if (st.version == "2025-06-18" || st.version == "2025-11-25")
      h.emplace_back("MCP-Protocol-Version", st.version);
    return h;
  }

  static std::string modern_body(int id, const std::string& method, Object::Ptr params) {
    Object::Ptr meta = new Object;
    meta->set("io.modelcontextprotocol/protocolVersion", std::string(kModernVersion));
    Object::Ptr info = new Object;
    info->set("name", std::string(kClientName));
    info->set("version", std::string(kClientVersion));
    meta->set("io.modelcontextprotocol/clientInfo", info);
    meta->set("io.modelcontextprotocol/clientCapabilities", Object::Ptr(new Object));
    if (!params) params = new Object;
    params->set("_meta", meta);
    return request_body(id, method, params);
  }

  static std::string request_body(int id, const std::string& method, Object::Ptr params) {
    Object o;
    o.set("jsonrpc", std::string("2.0"));
    if (id >= 0) o.set("id", id);
    o.set("method", method);
    if (params) o.set("params", params);
    std::ostringstream out;
    o.stringify(out);
    return out.str();
  }

  static std::vector<std::pair<std::string, std::string>> modern_headers(
      const std::string& method) {
    return {{"MCP-Protocol-Version", kModernVersion}, {"Mcp-Method", method}};
  }

  // The JSON-RPC response of a request, or a Failure naming what went wrong.
  static Object::Ptr expect_response(const Reply& rep, const std::string& what) {
    if (rep.status != 200) throw Failure("server answered " + what + " with " + rep.summary());
    if (rep.media_type != "application/json" && rep.media_type != "text/event-stream")
      throw Failure("server answered " + what + " with " + rep.status_text() +
                    " and Content-Type '" + (rep.media_type.empty() ? "none" : rep.media_type) +
                    "', not JSON-RPC: not an MCP Streamable HTTP endpoint");
    if (!rep.message) {
      if (rep.sse) throw Failure("the SSE stream ended without a response to " + what);
      throw Failure("server answered " + what + " without a JSON-RPC response carrying its id: " +
                    (excerpt(rep.body, 80).empty() ? "empty body" : excerpt(rep.body, 80)));
    }
    if (str_field(rep.message, "jsonrpc") != "2.0")
      throw Failure("server answered " + what + " without \"jsonrpc\": \"2.0\"");
    if (auto e = rpc_error(rep.message))
      throw Failure("server answered " + what + " with error " + std::to_string(e->first) + ": " +
                    excerpt(e->second));
    const Object::Ptr result = obj_field(rep.message, "result");
    if (!result) throw Failure("server answered " + what + " without a result object");
    return result;
  }

  // Sends a request, turning network errors into a Failure that names the request.
  Reply send(Http& http, const std::string& body,
             const std::vector<std::pair<std::string, std::string>>& headers,
             const vitals::Deadline& d, int id, const std::string& what) {
    try {
      return http.post(body, headers, d, id);
    } catch (const Poco::TimeoutException&) {
      if (http.in_sse())
        throw Failure("timed out waiting for the " + what + " response on the SSE stream from " +
                      http.url().toString() + " (HTTP 200 received, no event carrying its id)");
      throw Failure("timed out waiting for the " + what + " response from " +
                    http.url().toString());
    } catch (const Poco::Exception& e) {
      throw Failure("unable to send " + what + " to " + http.url().toString() + ": " + describe(e));
    }
  }

  void handshake(Http& http, const vitals::Deadline& d, vitals::Result& r, State& st) {
    std::vector<Era> order;
    if (version_ == kModernVersion)
      order = {Era::kModern};
    else if (version_ != "auto")
      order = {Era::kLegacy};
    else if (learned_ == Era::kLegacy)
      order = {Era::kLegacy, Era::kModern};
    else
      order = {Era::kModern, Era::kLegacy};

    for (size_t i = 0; i < order.size(); ++i) {
      const bool last = i + 1 == order.size();
      std::optional<std::string> other_era;  // set when the server speaks the other era
      if (order[i] == Era::kModern)
        other_era = discover(http, d, r, st);
      else
        other_era = initialize(http, d, r, st);
      if (!other_era) {
        st.era = order[i];
        if (version_ == "auto") learned_ = order[i];
        return;
      }
      if (last) throw Failure(*other_era);
      host_.debug("mcp-http: " + *other_era + "; trying " +
                  (order[i + 1] == Era::kModern ? "server/discover" : "initialize"));
    }
  }

  // 2026-07-28: one server/discover. Returns a reason when the server is not a modern one.
  std::optional<std::string> discover(Http& http, const vitals::Deadline& d, vitals::Result& r,
                                      State& st) {
    r.stage("discover");
    const int id = st.next_id++;
    const uint64_t start = vitals::monotonic_ns();
    const Reply rep = send(http, modern_body(id, "server/discover", nullptr),
                           modern_headers("server/discover"), d, id, "server/discover");
    const Object::Ptr body = rep.message ? rep.message : parse_object(rep.body);
    if (auto e = rpc_error(body)) {
      // A recognised modern error means a modern server: report it instead of falling back,
      // unless it lists a legacy version we can speak.
      if (e->first == -32022) {
        std::vector<std::string> supported;
        const Object::Ptr data = obj_field(body->getObject("error"), "data");
        if (data && data->isArray("supported"))
          for (const auto& v : *data->getArray("supported"))
            if (v.isString()) supported.push_back(v.extract<std::string>());
        const bool legacy_ok = std::any_of(supported.begin(), supported.end(), [](const auto& v) {
          return std::find(kLegacyVersions.begin(), kLegacyVersions.end(), v) !=
                 kLegacyVersions.end();
        });
        const std::string msg = "server does not support MCP " + std::string(kModernVersion) +
                                " (supported: " + join(supported, ", ") + ")";
        if (legacy_ok && version_ == "auto") return msg;
        throw Failure(msg);
      }
      if (e->first == -32020 || e->first == -32021)
        throw Failure("server rejected server/discover with error " + std::to_string(e->first) +
                      ": " + excerpt(e->second));
    }
    const bool fallback = version_ == "auto";
    auto not_modern = [&](const std::string& why) -> std::optional<std::string> {
      const std::string msg = "server does not speak MCP " + std::string(kModernVersion) +
                              ": server/discover got " + why;
      if (!fallback) throw Failure(msg);
      return msg;
    };
    if (rep.status != 200 || !rep.message) return not_modern(rep.summary());
    if (rpc_error(rep.message)) return not_modern(rep.summary());
    const Object::Ptr result = obj_field(rep.message, "result");
    if (!result || !result->isArray("supportedVersions"))
      return not_modern("a result without supportedVersions");
    bool ours = false;
    for (const auto& v : *result->getArray("supportedVersions"))
      ours = ours || (v.isString() && v.extract<std::string>() == kModernVersion);
    if (!ours) return not_modern("supportedVersions without " + std::string(kModernVersion));
    if (str_field(rep.message, "jsonrpc") != "2.0")
      throw Failure("server answered server/discover without \"jsonrpc\": \"2.0\"");
    st.handshake_s = since(start);
    st.version = kModernVersion;
    Object::Ptr info = obj_field(obj_field(result, "_meta"), "io.modelcontextprotocol/serverInfo");
    if (!info) info = obj_field(result, "serverInfo");
    st.server_name = str_field(info, "name");
    st.server_version = str_field(info, "version");
    if (st.server_name.empty())
      throw Failure("server answered server/discover without a server name (serverInfo.name)");
    return std::nullopt;
  }

  // Legacy: initialize -> notifications/initialized -> ping. Returns a reason when the server
  // turned out to speak only the modern revision (so auto mode may try server/discover).
  std::optional<std::string> initialize(Http& http, const vitals::Deadline& d, vitals::Result& r,
                                        State& st) {
    r.stage("initialize");
    const int id = st.next_id++;
    Object::Ptr params = new Object;
    params->set("protocolVersion", version_ == "auto" ? std::string(kAutoLegacyOffer) : version_);
    params->set("capabilities", Object::Ptr(new Object));
    Object::Ptr info = new Object;
    info->set("name", std::string(kClientName));
    info->set("version", std::string(kClientVersion));
    params->set("clientInfo", info);
    const uint64_t start = vitals::monotonic_ns();
    Reply rep;
    try {
      rep = send(http, request_body(id, "initialize", params), {}, d, id, "initialize");
    } catch (const Failure&) {
      // e.g. headers with a session arrived, then the SSE body stalled: still close the session
      const std::string& sid = http.last_session_id();
      if (visible_ascii(sid)) st.session = sid;
      throw;
    }
    if (rep.status == 400 && version_ == "auto") {
      if (auto e = rpc_error(parse_object(rep.body)); e && e->first <= -32020 && e->first >= -32022)
        return "server rejected initialize as a modern server: " + rep.summary();
    }
    // Take the session first: whatever fails below, the run must close it.
    if (!visible_ascii(rep.session_id))
      throw Failure("server sent an Mcp-Session-Id with invalid characters");
    st.session = rep.session_id;
    const Object::Ptr result = expect_response(rep, "initialize");
    st.version = str_field(result, "protocolVersion");
    if (std::find(kLegacyVersions.begin(), kLegacyVersions.end(), st.version) ==
        kLegacyVersions.end())
      throw Failure("server negotiated protocol version '" + excerpt(st.version) +
                    "', which the probe does not speak (" + join(kLegacyVersions, ", ") + ")");
    const Object::Ptr server = obj_field(result, "serverInfo");
    st.server_name = str_field(server, "name");
    st.server_version = str_field(server, "version");
    if (st.server_name.empty())
      throw Failure("server answered initialize without result.serverInfo.name");

    r.stage("initialized");
    const Reply note = send(http, request_body(-1, "notifications/initialized", nullptr),
                            legacy_headers(st), d, -1, "notifications/initialized");
    if (note.status < 200 || note.status > 299)
      throw Failure("server answered notifications/initialized with " + note.summary() +
                    " (expected 202 Accepted)");
    st.handshake_s = since(start);

    r.stage("ping");
    const int ping_id = st.next_id++;
    const uint64_t ping_start = vitals::monotonic_ns();
    expect_response(
        send(http, request_body(ping_id, "ping", nullptr), legacy_headers(st), d, ping_id, "ping"),
        "ping");
    st.ping_s = since(ping_start);
    return std::nullopt;
  }

  void check_tools(Http& http, const vitals::Deadline& d, vitals::Result& r, State& st) {
    r.stage("tools");
    std::vector<std::string> names;
    std::string cursor;
    for (int page = 0; page < 100; ++page) {
      const int id = st.next_id++;
      Object::Ptr params;
      if (!cursor.empty()) {
        params = new Object;
        params->set("cursor", cursor);
      }
      const bool modern = st.era == Era::kModern;
      const std::string body =
          modern ? modern_body(id, "tools/list", params) : request_body(id, "tools/list", params);
      const auto headers = modern ? modern_headers("tools/list") : legacy_headers(st);
      const Object::Ptr result =
          expect_response(send(http, body, headers, d, id, "tools/list"), "tools/list");
      if (!result->isArray("tools"))
        throw Failure("server answered tools/list without a tools array");
      for (const auto& t : *result->getArray("tools")) {
        if (t.type() != typeid(Object::Ptr)) continue;
        const std::string name = str_field(t.extract<Object::Ptr>(), "name");
        if (!name.empty()) names.push_back(name);
      }
      cursor = str_field(result, "nextCursor");
      if (cursor.empty()) break;
    }
    st.tool_count = static_cast<int>(names.size());
    std::vector<std::string> missing;
    for (const auto& t : tools_)
      if (std::find(names.begin(), names.end(), t) == names.end()) missing.push_back(t);
    if (!missing.empty())
      throw Failure("tools/list lacks expected tool" +
                    std::string(missing.size() > 1 ? "s " : " ") + join(missing, ", ", 10) +
                    " (server lists " + std::to_string(names.size()) + ": " +
                    join(names, ", ", 10) + ")");
  }

  // DELETE of the session; "" when it is closed, else the problem.
  std::string close_session(Http& http, const vitals::Deadline& d, const State& st) {
    try {
      const Reply rep = http.del(legacy_headers(st), d);
      const int s = rep.status;
      if (s == 200 || s == 202 || s == 204 || s == 404 || s == 405) return "";
      // server-everything answers an unknown session with 400 "No valid session ID provided".
      if (s == 400 && lower(rep.body).find("session") != std::string::npos) return "";
      return "unable to close the MCP session: DELETE answered " + rep.summary();
    } catch (const Failure& f) {
      return std::string("unable to close the MCP session: ") + f.what();
    } catch (const Poco::Exception& e) {
      return "unable to close the MCP session: " + describe(e);
    }
  }

  vitals::Host host_;
  Poco::URI url_;
  std::string health_path_;
  std::string version_;
  std::vector<std::string> tools_;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::optional<Era> learned_;  // auto mode: the era that worked last time
};

}  // namespace

VITALS_PROBE(McpHttpProbe, "mcp-http", "1.0.0",
             "Prove that an endpoint serves MCP over Streamable HTTP (handshake, ping, tools)",
             kOptions)
