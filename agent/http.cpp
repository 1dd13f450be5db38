#include "http.hpp"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/NumberParser.h>
#include <Poco/String.h>
#include <Poco/StringTokenizer.h>
#include <Poco/URI.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <istream>
#include <streambuf>
#include <system_error>

#include "listener.hpp"
#include "status_page.hpp"

namespace vitals {

namespace {

using namespace std::chrono_literals;

constexpr std::size_t kOutputHigh = 256 * 1024;  // stop answering pipelined requests above this
constexpr auto kRequestTimeout = 5s;     // a request head must arrive within this of its first byte
constexpr auto kKeepAliveTimeout = 10s;  // an idle connection between requests
constexpr auto kSendTimeout = 5s;        // a client that reads nothing for this long is dropped
// After our last response, wait this long for the client's EOF, so that input we did not read
// does not turn our close into a reset that destroys the response in flight.
constexpr auto kLingerTimeout = 2s;
constexpr auto kSweepEvery = 250ms;
constexpr std::size_t kMaxWholeBody = 16 * 1024;  // see ReplyCache::get
// Several clients at once: after a batch of kSpinBatch or more events the loop polls without
// sleeping for kSpin, since their next requests are microseconds away and sleeping costs a
// wake-up each time (tens of microseconds of latency on a VM, whose idle vCPU halts). A lone
// client, however fast, never makes it spin (only connections' events count). What it buys:
// bench/RESULTS.md, section 3.
constexpr int kSpinBatch = 2;
constexpr auto kSpin = 50us;
constexpr std::size_t kIdleBuffer = 16 * 1024;  // larger buffers are freed once drained
// Server-Sent Events (/events): streams have a cap of their own and no idle deadline; a stream
// whose reader falls behind by more than its socket buffer plus kStreamBacklog (past the first
// snapshot) is dropped, as is one that takes nothing for kSendTimeout while data waits.
constexpr std::size_t kStreamBacklog = 1024 * 1024;
constexpr int kStreamSocketBuffer = 64 * 1024;
constexpr auto kHeartbeatEvery = 15s;

// Empties a buffer, giving its memory back if a burst made it large: an idle connection
// should hold kilobytes, not what its busiest moment needed.
void release(std::string& buffer) {
  if (buffer.capacity() > kIdleBuffer) {
    std::string().swap(buffer);
  } else {
    buffer.clear();
  }
}

// epoll tags of the two fds that are not connections.
char listen_tag;
char wake_tag;

Reply text(int status, std::string body) {
  Reply r;
  r.status = status;
  r.shared_body = std::make_shared<const std::string>(std::move(body));
  return r;
}

Reply json(int status, std::string body) {
  Reply r = text(status, std::move(body));
  r.content_type = "application/json";
  return r;
}

// RFC 9110 Date, formatted once a second.
const std::string& http_date() {
  thread_local std::time_t cached = 0;
  thread_local std::string text;
  const std::time_t now = std::time(nullptr);
  if (now != cached) {
    cached = now;
    text = Poco::DateTimeFormatter::format(Poco::Timestamp::fromEpochTime(now),
                                           Poco::DateTimeFormat::HTTP_FORMAT);
  }
  return text;
}

// The answer to send for `r`: its head, and its body (shared, not copied) unless `head_only`.
Answer render(const Reply& r, bool head_only, bool close) {
  Answer a;
  if (r.whole && !head_only) {
    a.body = std::shared_ptr<const std::string>(r.whole, &(*r.whole)[close ? 1 : 0]);
    return a;
  }
  std::string& out = a.head;
  out.reserve(192);
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += Poco::Net::HTTPResponse::getReasonForStatus(
      static_cast<Poco::Net::HTTPResponse::HTTPStatus>(r.status));
  out += "\r\nDate: ";
  out += http_date();
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nCache-Control: no-store\r\nContent-Length: ";
  out += std::to_string(r.body().size());
  out += close ? "\r\nConnection: close\r\n" : "\r\nConnection: keep-alive\r\n";
  if (r.allow_header) out += "Allow: GET, HEAD\r\n";
  out += "\r\n";
  if (!head_only && !r.body().empty()) a.body = r.shared_body;
  return a;
}

// The end of the head starting at `from`: just past the first empty line, or npos.
std::size_t head_end(std::string_view in, std::size_t from) {
  for (std::size_t i = in.find('\n', from); i != std::string_view::npos; i = in.find('\n', i + 1)) {
    if (i + 1 < in.size() && in[i + 1] == '\n') return i + 2;
    if (i + 2 < in.size() && in[i + 1] == '\r' && in[i + 2] == '\n') return i + 3;
  }
  return std::string_view::npos;
}

// Byte classes of a request head, by table: a lookup per byte on the fast path, and unlike
// std::isalnum independent of the C locale.
enum : unsigned char { kTchar = 1, kVchar = 2, kFieldByte = 4 };
constexpr std::array<unsigned char, 256> kByteClass = [] {
  std::array<unsigned char, 256> t{};
  for (int c = 0x21; c <= 0x7e; ++c) t[c] = kVchar | kFieldByte;
  t[' '] = t['\t'] = kFieldByte;
  // RFC 9110 5.6.2 token characters: methods and field names.
  for (const char c : std::string_view("!#$%&'*+-.^_`|~0123456789"
                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))
    t[static_cast<unsigned char>(c)] |= kTchar;
  return t;
}();

bool is_tchar(char ch) {
  return kByteClass[static_cast<unsigned char>(ch)] & kTchar;
}

// The index of the first byte from `from` on that is not of class `cls` (or the size).
std::size_t skip(std::string_view s, std::size_t from, unsigned char cls) {
  while (from < s.size() && (kByteClass[static_cast<unsigned char>(s[from])] & cls)) ++from;
  return from;
}

// ASCII case-insensitive equality, for field names (tokens).
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);  // on tokens, only letters fold together
         });
}

}  // namespace

const std::string& Reply::body() const {
  static const std::string empty;
  return shared_body ? *shared_body : empty;
}

std::string Answer::bytes() const {
  return body ? head + *body : head;
}

bool Target::has(const std::string& key) const {
  for (const auto& [k, v] : query)
    if (k == key) return true;
  return false;
}

std::vector<std::string> Target::all(const std::string& key) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : query)
    if (k == key) out.push_back(v);
  return out;
}

bool parse_target(const std::string& uri, Target& out) {
  if (uri.empty() || uri[0] != '/') return false;
  // The usual target ("/health", "/metrics") has nothing to decode: it is its own path.
  const bool plain = uri.size() < 2 || uri[1] != '/';  // "//x" is an authority to Poco
  if (plain && std::all_of(uri.begin(), uri.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' ||
               c == '.';
      })) {
    out.path = uri;
    out.query.clear();
    return true;
  }
  try {
    Poco::URI u(uri);
    out.path = u.getPath();
    out.query.clear();
    for (auto& kv : u.getQueryParameters()) out.query.push_back(kv);
    return true;
  } catch (const Poco::Exception&) {
    return false;
  }
}

Reply route(const std::string& method, const std::string& uri, bool has_body,
            const HttpBackend& backend) {
  if (method != "GET" && method != "HEAD") {
    Reply r = text(405, "method not allowed\n");
    r.allow_header = true;
    return r;
  }
  if (has_body) return text(400, "a " + method + " request takes no body\n");
  Target t;
  if (!parse_target(uri, t)) return text(400, "malformed request target\n");
  const bool line = t.has("format") && t.all("format").back() == "line";
  std::optional<std::size_t> history;
  if (t.has("history")) {
    const std::string n = t.all("history").back();
    unsigned value = 0;
    if (n.empty() || n.size() > 6 || !Poco::NumberParser::tryParseUnsigned(n, value) ||
        n.find_first_not_of("0123456789") != std::string::npos)
      return text(400, "history must be a whole number of runs\n");
    history = std::min<std::size_t>(value, kHistoryMax);
  }

  if (t.path == "/") {
    Reply r = text(200, render_status_page(backend.snapshot(), backend.facts().version));
    r.content_type = "text/html; charset=utf-8";
    return r;
  }
  if (t.path == "/events") {  // HEAD (a GET becomes a stream in the server loop)
    Reply r = text(200, "");
    r.content_type = "text/event-stream";
    return r;
  }

  if (t.path == "/livez") {
    return backend.alive() ? text(200, "ok\n") : text(503, "scheduler loop stalled\n");
  }
  if (t.path == "/metrics") {
    Reply r = text(200, render_metrics(backend.snapshot(), backend.facts()));
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    return r;
  }
  if (t.path == "/readyz") {
    const Snapshot s = backend.snapshot();
    bool ready = false;
    std::string body = render_readyz(s, t.has("verbose"), t.all("exclude"), ready);
    if (line) body = render_line(s);
    return text(ready ? 200 : 503, body);
  }
  if (t.path == "/health" || t.path == "/health/") {
    const auto render = [&] {
      const Snapshot s = backend.snapshot();
      const int status = health_http_status(s);
      return line ? text(status, render_line(s))
                  : json(status, render_health_json(s, backend.facts().version, history));
    };
    if (t.query.empty() && backend.generation)
      return backend.health_cache->get(backend.generation(), render);
    return render();
  }
  if (t.path.rfind("/health/", 0) == 0) {
    const Snapshot s = backend.snapshot();
    const ProbeView* p = s.find(t.path.substr(8));
    if (!p) return text(404, "no such probe\n");
    const int status = p->status == Status::Pass || p->status == Status::Warn ? 200 : 503;
    return line ? text(status, render_line(s, p)) : json(status, render_probe_json(s, *p, history));
  }
  return text(404, "not found\n");
}

Reply ReplyCache::get(std::uint64_t generation, const std::function<Reply()>& make) {
  std::lock_guard lock(mutex_);
  const auto now = std::chrono::steady_clock::now();
  if (!reply_ || generation != generation_ || now - rendered_ >= granularity_) {
    // The generation is read before rendering: a change during the render makes the next
    // request render again.
    generation_ = generation;
    rendered_ = now;
    reply_ = make();
    reply_->whole.reset();
  }
  // A large body (thousands of probes) is sent from where it lies instead: copying it into
  // whole answers would cost more than the head they save rendering.
  if (reply_->body().size() > kMaxWholeBody) return *reply_;
  const std::time_t second = std::time(nullptr);
  if (!reply_->whole || second != whole_second_) {
    whole_second_ = second;
    Reply plain = *reply_;
    plain.whole.reset();  // else render() would hand back the old answers, old Date and all
    reply_->whole = std::make_shared<const std::array<std::string, 2>>(std::array<std::string, 2>{
        render(plain, false, false).bytes(), render(plain, false, true).bytes()});
  }
  return *reply_;
}

namespace {

// Poco reads a request head from an std::istream. Constructing a stream (and caching its locale's
// facets) and a request for every request cost more than the parse itself
// (bench/http_throughput.sh, perf): one of each per thread, pointed at each head in turn.
class ViewBuffer : public std::streambuf {
 public:
  void point(const char* data, std::size_t size) {
    char* p = const_cast<char*>(data);  // read only: a get area, no put area
    setg(p, p, p + size);
  }
};

struct HeadReader {
  ViewBuffer buffer;
  std::istream stream{&buffer};
  Poco::Net::HTTPRequest request;
};

thread_local HeadReader head_reader;

}  // namespace

HeadParse parse_request_head(std::string_view in, RequestHead& out, std::size_t& used) {
  // RFC 9112 2.2: one empty line before a request line is ignored; more is malformed.
  std::size_t start = 0;
  if (in.substr(0, 2) == "\r\n") {
    start = 2;
  } else if (in.substr(0, 1) == "\n") {
    start = 1;
  }
  if (in.size() > start && (in[start] == '\r' || in[start] == '\n')) {
    return in.size() > start + 1 || in[start] == '\n' ? HeadParse::Malformed
                                                      : HeadParse::Incomplete;
  }
  // A method that is not a token is garbage (a TLS hello, binary): say so at once.
  std::size_t method_end = start;
  while (method_end < in.size() && in[method_end] != ' ') {
    if (!is_tchar(in[method_end]) || method_end - start >= 32) return HeadParse::Malformed;
    ++method_end;
  }
  if (method_end == start && method_end < in.size()) return HeadParse::Malformed;
  const std::size_t end = head_end(in, start);
  if (end == std::string_view::npos) {
    return in.size() - start > kMaxRequestHead ? HeadParse::Malformed : HeadParse::Incomplete;
  }
  if (end - start > kMaxRequestHead) return HeadParse::Malformed;

  // The usual head (curl, wrk, Prometheus) is read without Poco's istream; the rest by Poco.
  const std::string_view head = in.substr(start, end - start);
  const HeadParse result =
      read_simple_head(head, out) ? HeadParse::Complete : read_head_with_poco(head, out);
  if (result == HeadParse::Complete) used = end;
  return result;
}

bool read_simple_head(std::string_view head, RequestHead& out) {
  // Each bound is at or below Poco 1.11's (HTTPRequest::MAX_METHOD_LENGTH; MessageHeader's
  // MAX_NAME_LENGTH, MAX_VALUE_LENGTH and DFL_FIELD_LIMIT), so nothing taken here is one that
  // Poco would refuse. The target's 2048 is ours (Poco's is 16384).
  constexpr std::size_t kMaxMethod = 32, kMaxTarget = 2048, kMaxName = 256, kMaxValue = 8192;
  constexpr int kMaxFields = 100;
  const std::size_t method_end = skip(head, 0, kTchar);
  if (method_end == 0 || method_end > kMaxMethod || head.substr(method_end, 1) != " ") return false;
  const std::size_t target_end = skip(head, method_end + 1, kVchar);
  if (target_end == method_end + 1 || target_end - method_end - 1 > kMaxTarget ||
      head.substr(target_end, 1) != " ")
    return false;
  const std::string_view version = head.substr(target_end + 1, 10);
  if (version != "HTTP/1.1\r\n" && version != "HTTP/1.0\r\n") return false;
  std::size_t pos = target_end + 11;
  for (int fields = 0; head.substr(pos) != "\r\n"; ++fields) {
    if (fields == kMaxFields) return false;
    const std::size_t name_end = skip(head, pos, kTchar);
    if (name_end == pos || name_end - pos > kMaxName || head.substr(name_end, 1) != ":")
      return false;
    const std::size_t value_end = skip(head, name_end + 1, kFieldByte);
    if (value_end - name_end - 1 > kMaxValue || head.substr(value_end, 2) != "\r\n") return false;
    // Framing and connection options are decided in one place only: the Poco path.
    const std::string_view name = head.substr(pos, name_end - pos);
    if (iequals(name, "Transfer-Encoding") || iequals(name, "Content-Length") ||
        iequals(name, "Connection"))
      return false;
    pos = value_end + 2;
  }
  out.method.assign(head.substr(0, method_end));
  out.uri.assign(head.substr(method_end + 1, target_end - method_end - 1));
  out.known_version = true;
  out.keep_alive = version[7] == '1';
  out.has_body = false;
  return true;
}

HeadParse read_head_with_poco(std::string_view head, RequestHead& out) {
  HeadReader& reader = head_reader;
  reader.buffer.point(head.data(), head.size());
  reader.stream.clear();
  Poco::Net::HTTPRequest& request = reader.request;
  request.clear();  // read() sets method, URI and version, and adds the fields
  std::istream& stream = reader.stream;
  try {
    request.read(stream);
  } catch (const Poco::Exception&) {
    return HeadParse::Malformed;
  }
  // Poco stops at a bare CR line; the head must be exactly what it was given.
  if (stream.peek() != std::char_traits<char>::eof()) return HeadParse::Malformed;

  out = RequestHead{};
  out.method = request.getMethod();
  out.uri = request.getURI();
  out.known_version = request.getVersion() == Poco::Net::HTTPMessage::HTTP_1_1 ||
                      request.getVersion() == Poco::Net::HTTPMessage::HTTP_1_0;
  // Framing: a body is announced by Transfer-Encoding or a Content-Length above 0. Connection
  // options (RFC 9112 9.3): "close" anywhere closes; HTTP/1.0 stays open only with "keep-alive".
  bool close_option = false;
  bool keep_alive_option = false;
  for (const auto& [name, value] : request) {
    if (Poco::icompare(name, "Transfer-Encoding") == 0) out.has_body = true;
    if (Poco::icompare(name, "Content-Length") == 0) {
      Poco::UInt64 length = 0;
      if (!Poco::NumberParser::tryParseUnsigned64(Poco::trim(value), length)) {
        return HeadParse::Malformed;
      }
      if (length > 0) out.has_body = true;
    }
    if (Poco::icompare(name, "Connection") == 0) {
      for (const auto& option :
           Poco::StringTokenizer(value, ",", Poco::StringTokenizer::TOK_TRIM)) {
        if (Poco::icompare(option, "close") == 0) close_option = true;
        if (Poco::icompare(option, "keep-alive") == 0) keep_alive_option = true;
      }
    }
  }
  const bool http11 = request.getVersion() == Poco::Net::HTTPMessage::HTTP_1_1;
  out.keep_alive = !close_option && (http11 || keep_alive_option);
  return HeadParse::Complete;
}

Answer respond(const RequestHead& head, const HttpBackend& backend, bool& close) {
  // An unread body (or an unknown framing) must never be taken for the next request.
  close = !head.keep_alive || head.has_body || !head.known_version;
  Reply r;
  try {
    r = head.known_version ? route(head.method, head.uri, head.has_body, backend)
                           : text(400, "unsupported HTTP version\n");
  } catch (const std::exception& e) {
    spdlog::error("http: unable to answer {} {}: {}", head.method, head.uri, e.what());
    r = text(500, "internal error\n");
    close = true;
  }
  return render(r, head.method == "HEAD", close);
}

std::string respond_malformed() {
  return render(text(400, "malformed request\n"), false, true).bytes();
}

// ---- the event loop --------------------------------------------------------------------------

void Output::add(std::string_view bytes) {
  if (body_) {  // behind a body: its unsent rest is copied in, to keep the order
    own_.append(*body_, body_sent_);
    body_.reset();
    body_sent_ = 0;
  }
  own_ += bytes;
}

void Output::add(Answer answer) {
  add(answer.head);
  body_ = std::move(answer.body);
}

std::size_t Output::size() const {
  return own_.size() - own_sent_ + (body_ ? body_->size() - body_sent_ : 0);
}

ssize_t Output::send_to(int fd) {
  std::array<iovec, 2> parts{};
  msghdr message{};
  message.msg_iov = parts.data();
  if (own_sent_ < own_.size())
    parts[message.msg_iovlen++] = {own_.data() + own_sent_, own_.size() - own_sent_};
  if (body_ && body_sent_ < body_->size())
    parts[message.msg_iovlen++] = {const_cast<char*>(body_->data()) + body_sent_,
                                   body_->size() - body_sent_};
  // One part (a cached whole answer, mostly) goes by send(), which skips sendmsg's header copy.
  const ssize_t n = message.msg_iovlen == 1
                        ? ::send(fd, parts[0].iov_base, parts[0].iov_len, MSG_NOSIGNAL)
                        : ::sendmsg(fd, &message, MSG_NOSIGNAL);
  if (n <= 0) return n;
  const std::size_t from_own = std::min(static_cast<std::size_t>(n), own_.size() - own_sent_);
  own_sent_ += from_own;
  body_sent_ += static_cast<std::size_t>(n) - from_own;
  return n;
}

void Output::clear() {
  release(own_);
  own_sent_ = 0;
  body_.reset();
  body_sent_ = 0;
}

struct HttpServer::Connection {
  int fd = -1;
  std::string in;           // received, not yet answered
  Output out;               // to send
  bool closing = false;     // close once `out` is sent
  bool lingering = false;   // write side shut; discarding input until EOF or the deadline
  bool peer_done = false;   // the client shut its write side
  bool stream = false;      // an /events stream: no more requests, events are appended to `out`
  bool readable = false;    // the socket may hold input not read yet (see read_some)
  bool eof_seen = false;    // epoll reported the client's FIN (EPOLLRDHUP/EPOLLHUP)
  bool posted = false;      // in posted_
  std::size_t backlog = 0;  // a stream's most unsent bytes: kStreamBacklog past its snapshot
  Clock::time_point deadline;
  std::list<Connection*>::iterator activity;  // its place in by_activity_
};

bool is_event_stream(const RequestHead& head) {
  Target t;
  return head.method == "GET" && head.known_version && !head.has_body &&
         parse_target(head.uri, t) && t.path == "/events";
}

std::string event_text(std::uint64_t id, const char* name, std::string_view data) {
  std::string out = "id: ";
  out += std::to_string(id);
  out += "\nevent: ";
  out += name;
  out += "\ndata: ";
  out += data;
  out += "\n\n";
  return out;
}

std::size_t connection_cap(std::uint64_t fd_limit) {
  const std::uint64_t limit = std::min<std::uint64_t>(fd_limit, 1 << 20);
  const std::uint64_t reserve = std::max(limit / 4, std::min<std::uint64_t>(256, limit / 2));
  return static_cast<std::size_t>(std::max<std::uint64_t>(1, limit - reserve));
}

HttpServer::HttpServer(const std::string& listen, HttpBackend backend)
    : backend_(std::move(backend)) {
  AdoptedListener opened;
  if (auto adopted = take_adopted_listener(listen)) {
    opened = std::move(*adopted);
  } else {
    opened.fd = open_listener(listen, opened.error);
  }
  if (opened.fd < 0) throw std::runtime_error(opened.error);
  listener_ = opened.fd;
  rlimit nofile{};
  getrlimit(RLIMIT_NOFILE, &nofile);
  max_connections_ = connection_cap(nofile.rlim_cur);
  epoll_ = epoll_create1(EPOLL_CLOEXEC);
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_ < 0 || wake_ < 0) {
    const int err = errno;
    for (int fd : {epoll_, wake_, listener_})
      if (fd >= 0) ::close(fd);
    throw std::system_error(err, std::generic_category(), "epoll");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &listen_tag;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev);
  ev.data.ptr = &wake_tag;
  epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
}

HttpServer::~HttpServer() {
  stop();
  for (auto& [fd, c] : connections_) ::close(fd);
  if (epoll_ >= 0) ::close(epoll_);
  if (wake_ >= 0) ::close(wake_);
  if (listener_ >= 0) ::close(listener_);
}

void HttpServer::start() {
  thread_ = std::thread([this] { loop(); });
}

void HttpServer::stop() {
  if (!thread_.joinable()) return;
  stopping_ = true;
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_, &one, sizeof one);
  thread_.join();
}

void HttpServer::loop() {
  std::array<epoll_event, 256> events;
  auto next_sweep = Clock::now() + kSweepEvery;
  Clock::time_point spin_until{};
  while (!stopping_) {
    // Deadlines need a tick only while connections are open (or accepting is paused).
    const bool idle = connections_.empty() && accepting_;
    const bool spinning = Clock::now() < spin_until;
    const int timeout = !posted_.empty() || spinning ? 0
                        : idle                       ? -1
                                                     : static_cast<int>(kSweepEvery.count());
    const int n = epoll_wait(epoll_, events.data(), events.size(), timeout);
    if (n < 0 && errno != EINTR) {
      spdlog::error("http: epoll_wait failed: {}", std::strerror(errno));
      return;
    }
    const auto now = Clock::now();
    const auto handle = [&](Connection& c, std::uint32_t events) {
      try {
        if (c.fd >= 0) on_event(c, events, now);
      } catch (const std::exception& e) {  // out of memory: lose this connection, not the loop
        spdlog::error("http: dropping a connection: {}", e.what());
        if (c.fd >= 0) drop(c);
      }
    };
    int ready = 0;  // connections with an event
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == &listen_tag) {
        try {
          accept_all(now);
        } catch (const std::exception& e) {  // out of memory: accept again on the next turn
          spdlog::error("http: unable to accept a connection: {}", e.what());
        }
      } else if (tag != &wake_tag) {
        ++ready;
        handle(*static_cast<Connection*>(tag), events[i].events);
      }
    }
    if (ready >= kSpinBatch) spin_until = Clock::now() + kSpin;
    // Connections that stopped after a full buffer, so that one flood does not starve the rest.
    std::vector<Connection*> posted;
    posted.swap(posted_);
    for (Connection* c : posted) {
      c->posted = false;
      handle(*c, 0);
    }
    if (now >= next_sweep) {
      try {
        if (streams_ > 0) publish(now);
        sweep(now);
      } catch (const std::exception& e) {  // out of memory: try again on the next tick
        spdlog::error("http: unable to publish events or sweep deadlines: {}", e.what());
      }
      next_sweep = now + kSweepEvery;
    }
    std::erase_if(posted_, [](const Connection* c) { return c->fd < 0; });
    for (int fd : dropped_) {
      ::close(fd);
      connections_.erase(fd);
    }
    dropped_.clear();
  }
}

void HttpServer::accept_all(Clock::time_point now) {
  for (int i = 0; i < 64; ++i) {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of fds: stop polling the listener for a moment instead of spinning on it.
        spdlog::warn("http: unable to accept a connection: {}", std::strerror(errno));
        epoll_ctl(epoll_, EPOLL_CTL_DEL, listener_, nullptr);
        accepting_ = false;
        resume_accept_ = now + 100ms;
      }
      return;  // EAGAIN, or a connection that died before accept
    }
    if (connections_.size() - dropped_.size() >= max_connections_) {
      // At the cap: the connection quiet the longest makes room, so a fresh request is always
      // answered and the probes keep the fds they need.
      if (!at_cap_) {
        spdlog::warn(
            "http: {} connections open (the cap, from the fd limit); closing the ones "
            "quiet the longest to make room",
            max_connections_);
      }
      at_cap_ = true;
      drop(*by_activity_.front());
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<Connection>();
    c->fd = fd;
    c->deadline = now + kRequestTimeout;
    // Edge-triggered, both ways, for the connection's life (as nginx does): the kernel does not
    // poll a connection again on every epoll_wait, and interest never changes (no epoll_ctl).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c.get();
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      ::close(fd);
      continue;
    }
    c->activity = by_activity_.insert(by_activity_.end(), c.get());
    connections_[fd] = std::move(c);
  }
}

// `events`: what epoll reported for `c` (none for a connection posted from the last turn).
void HttpServer::on_event(Connection& c, std::uint32_t events, Clock::time_point now) {
  if (events & EPOLLERR) return drop(c);
  by_activity_.splice(by_activity_.end(), by_activity_, c.activity);
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) c.readable = true;
  if (events & (EPOLLRDHUP | EPOLLHUP)) c.eof_seen = true;
  serve(c, now);
}

// Reads once. Edge-triggered: a read shorter than the buffer drained the socket, and input
// arriving later brings a new event; a full one may have left more (`c.readable` stays set), and
// so has a short one when the client's FIN came with its data: no edge follows a FIN, so the
// read that returns 0 must still be made.
// Input after our last response, or on an event stream, is discarded. False: `c` was dropped.
bool HttpServer::read_some(Connection& c, Clock::time_point now) {
  std::array<char, 64 * 1024> buf;
  const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
  if (n < 0 && errno == EINTR) return true;
  if (n < 0 && errno != EAGAIN) {
    drop(c);
    return false;
  }
  if (n < 0) {
    c.readable = false;
    return true;
  }
  c.readable = static_cast<std::size_t>(n) == buf.size() || (n > 0 && c.eof_seen);
  if (n == 0 && (c.lingering || c.stream)) {
    drop(c);
    return false;
  }
  if (n == 0) {
    c.peer_done = true;  // answer what it sent, then close
    return true;
  }
  if (c.lingering || c.stream) return true;
  if (c.in.empty()) c.deadline = now + kRequestTimeout;  // a request starts arriving
  c.in.append(buf.data(), static_cast<std::size_t>(n));
  return true;
}

// Sends what the socket takes (`sent`: some of it). False: `c` was dropped, or the socket is
// full (its EPOLLOUT edge resumes it).
bool HttpServer::flush(Connection& c, Clock::time_point now, bool& sent) {
  while (!c.out.empty()) {
    if (c.out.send_to(c.fd) < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) drop(c);
      return false;
    }
    c.deadline = now + kSendTimeout;
    sent = true;
  }
  c.out.clear();
  return true;
}

// Answers the complete requests in `c.in`, in order, until the output reaches kOutputHigh:
// true if it stopped there with requests left.
bool HttpServer::answer(Connection& c, Clock::time_point now) {
  bool more = false;
  std::size_t pos = 0;
  while (!c.closing) {
    if (c.out.size() >= kOutputHigh) {
      more = true;
      break;
    }
    RequestHead head;
    std::size_t used = 0;
    const HeadParse parsed = parse_request_head(std::string_view(c.in).substr(pos), head, used);
    if (parsed == HeadParse::Incomplete) {
      c.closing = c.peer_done;
      break;
    }
    if (parsed == HeadParse::Malformed) {
      c.out.add(respond_malformed());
      c.closing = true;
      break;
    }
    if (is_event_stream(head)) {
      start_stream(c, now);
      pos = c.in.size();  // whatever follows the request is ignored
      break;
    }
    bool close = false;
    c.out.add(respond(head, backend_, close));
    c.closing = close;
    pos += used;
  }
  if (c.stream || c.closing || pos == c.in.size()) {
    release(c.in);
  } else {
    c.in.erase(0, pos);
  }
  return more;
}

// Moves a connection on as far as it goes now: answer, send, read, again, until the socket is
// drained or full. A connection still readable after one full buffer is posted to the next turn
// of the loop instead of read again, so that a flood does not starve the other connections.
void HttpServer::serve(Connection& c, Clock::time_point now) {
  bool sent = false;
  for (bool full_read = false;;) {
    if (c.stream) {
      flush_stream(c, now);  // input on a stream is read below and discarded
      if (c.fd < 0) return;
    } else if (!c.lingering) {
      const bool more = answer(c, now);
      if (c.stream) continue;
      if (!flush(c, now, sent)) return;
      if (more) continue;
      if (c.closing) {
        if (c.peer_done) return drop(c);
        // Half-close, then read until the client closes too (or the linger deadline).
        ::shutdown(c.fd, SHUT_WR);
        c.lingering = true;
        c.deadline = now + kLingerTimeout;
      } else if (c.in.empty() && sent) {
        c.deadline = now + kKeepAliveTimeout;
      }
    }
    if (!c.readable) return;
    if (full_read) {
      if (!c.posted) posted_.push_back(&c);
      c.posted = true;
      return;
    }
    if (!read_some(c, now)) return;
    full_read = c.readable;
  }
}

void HttpServer::drop(Connection& c) {
  if (c.stream) --streams_;
  epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  by_activity_.erase(c.activity);
  dropped_.push_back(c.fd);
  c.fd = -1;
}

void HttpServer::sweep(Clock::time_point now) {
  for (auto& [fd, c] : connections_) {
    if (c->fd < 0 || now < c->deadline) continue;
    if (c->stream) {
      // A reader that took nothing for kSendTimeout: reset, so the kernel drops what it holds.
      spdlog::info("http: dropping an event stream whose reader took nothing for {}s",
                   std::chrono::duration_cast<std::chrono::seconds>(kSendTimeout).count());
      const linger reset{1, 0};
      setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    drop(*c);
  }
  if (connections_.size() - dropped_.size() < max_connections_) at_cap_ = false;
  if (!accepting_ && now >= resume_accept_) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &listen_tag;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev);
    accepting_ = true;
  }
}

// ---- /events: Server-Sent Events -------------------------------------------------------------

void HttpServer::start_stream(Connection& c, Clock::time_point now) {
  if (streams_ >= kMaxEventStreams) {
    c.out.add(render(
        text(503, "too many event streams open (" + std::to_string(kMaxEventStreams) + ")\n"),
        false, true));
    c.closing = true;
    return;
  }
  if (streams_ == 0) {
    // The first stream: events are counted from here (the seq first, see publish()).
    seen_seq_ = History::last_seq();
    const Snapshot s = backend_.snapshot();
    last_overall_ = s.overall;
    last_ready_ = s.ready;
    last_status_.clear();
    for (const auto& v : s.probes) last_status_[v.probe->config().name] = v.status;
    next_heartbeat_ = now + kHeartbeatEvery;
  }
  ++streams_;
  c.stream = true;
  c.closing = false;
  c.deadline = Clock::time_point::max();
  // A fixed socket buffer: what a slow reader can hold in the kernel is bounded too.
  setsockopt(c.fd, SOL_SOCKET, SO_SNDBUF, &kStreamSocketBuffer, sizeof kStreamSocketBuffer);
  std::string head = "HTTP/1.1 200 OK\r\nDate: ";
  head += http_date();
  head +=
      "\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n"
      "Connection: close\r\n\r\n";
  c.out.add(head);
  std::string snapshot = render_health_json(backend_.snapshot(), backend_.facts().version);
  if (!snapshot.empty() && snapshot.back() == '\n') snapshot.pop_back();
  c.out.add(event_text(++event_id_, "snapshot", snapshot));
  c.backlog = c.out.size() + kStreamBacklog;
}

// Sends what the socket takes of a stream's backlog. A reader gets kSendTimeout from the moment
// data waits for it, renewed whenever it takes some; idle streams have no deadline.
void HttpServer::flush_stream(Connection& c, Clock::time_point now) {
  const bool waiting_before = c.deadline != Clock::time_point::max();
  bool progress = false;
  while (!c.out.empty()) {
    if (c.out.send_to(c.fd) < 0) {
      if (errno == EAGAIN || errno == EINTR) break;
      return drop(c);
    }
    progress = true;
  }
  if (c.out.empty()) {
    c.out.clear();
    c.deadline = Clock::time_point::max();
    return;
  }
  if (c.out.size() > c.backlog) {
    spdlog::info("http: dropping an event stream whose reader fell {} KiB behind",
                 c.out.size() / 1024);
    return drop(c);
  }
  if (progress || !waiting_before) c.deadline = now + kSendTimeout;
}

// On each tick while streams are open: a `probe` event per effective-status transition recorded
// since the last tick, in the order they happened; an `overall` event whenever they change the
// overall status or readiness (replayed one by one, so a change that came and went between two
// ticks is still told), or the state does (start_period over, a result gone stale); a heartbeat
// comment every kHeartbeatEvery.
void HttpServer::publish(Clock::time_point now) {
  // Read before the snapshot: every transition up to `seq` is then in the histories read below
  // (a transition's seq is taken under its history's lock); later ones wait for the next tick.
  const std::uint64_t seq = History::last_seq();
  const Snapshot s = backend_.snapshot();
  std::string events;
  auto overall_event = [&](WallTime at, Overall to, bool ready) {
    if (to == last_overall_ && ready == last_ready_) return;
    const std::string data = "{\"at\":\"" + rfc3339(at) + "\",\"from\":\"" +
                             to_string(last_overall_) + "\",\"to\":\"" + to_string(to) +
                             "\",\"ready\":" + (ready ? "true" : "false") + "}";
    events += event_text(++event_id_, "overall", data);
    last_overall_ = to;
    last_ready_ = ready;
  };
  // The statuses of the last tick, new probes as they are now.
  std::vector<TierInput> inputs;
  inputs.reserve(s.probes.size());
  for (const auto& v : s.probes) {
    const auto known = last_status_.find(v.probe->config().name);
    inputs.push_back({v.probe->config().tier, v.probe->config().gates_readiness,
                      known != last_status_.end() ? known->second : v.status});
  }
  if (seq != seen_seq_) {
    struct Found {
      HistoryTransition t;
      std::size_t index;
    };
    std::vector<Found> found;
    for (std::size_t i = 0; i < s.probes.size(); ++i) {
      const auto& history = s.probes[i].state.history;
      if (!history) continue;
      for (auto& t : history->transitions_after(seen_seq_))
        if (t.seq <= seq) found.push_back({std::move(t), i});
    }
    std::sort(found.begin(), found.end(),
              [](const Found& a, const Found& b) { return a.t.seq < b.t.seq; });
    bool ever_ready = last_overall_ != Overall::Starting || last_ready_;
    for (const auto& [t, index] : found) {
      const ProbeView& v = s.probes[index];
      std::string data = "{\"at\":\"" + rfc3339(t.at) + "\",\"name\":";
      append_json_string(data, v.probe->config().name);
      data += ",\"from\":\"";
      data += to_string(t.from);
      data += "\",\"to\":\"";
      data += to_string(t.to);
      data += "\",\"stage\":";
      append_json_string(data, t.stage.view());
      if (s.details) {
        data += ",\"message\":";
        append_json_string(data, t.message.view());
      }
      data += '}';
      events += event_text(++event_id_, "probe", data);
      inputs[index].status = t.to;
      const bool ready = is_ready(inputs);
      ever_ready = ever_ready || ready;
      overall_event(t.at, aggregate(inputs, ever_ready, last_overall_ == Overall::Starting), ready);
    }
    seen_seq_ = seq;
  }
  overall_event(s.now, s.overall, s.ready);
  last_status_.clear();
  for (const auto& v : s.probes) last_status_[v.probe->config().name] = v.status;
  if (now >= next_heartbeat_) {
    events += ": heartbeat\n\n";
    next_heartbeat_ = now + kHeartbeatEvery;
  }
  if (events.empty()) return;
  for (auto& [fd, c] : connections_) {
    if (c->fd < 0 || !c->stream) continue;
    c->out.add(events);
    flush_stream(*c, now);
  }
}

}  // namespace vitals
