// The agent's one HTTP listener: /, /health, /health/<probe>, /events, /livez, /readyz, /metrics.
// Answers from memory only, so one event-loop thread (epoll, edge-triggered) serves every
// connection: a request costs no thread hand-off, and a thousand open connections cost a thousand
// small buffers, not a thousand threads. A fast reader, else Poco, parses each request head; a
// cached /health is sent as one string, head and body; every connection has a deadline. /events
// streams (Server-Sent Events) live in the same loop, fed on its 250 ms tick.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <ctime>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "health.hpp"
#include "metrics.hpp"

namespace vitals {

// A response, computed from the backend for one request. Pure apart from the backend; fuzzed.
// The body is shared and never changed: the /health cache hands one string to every request,
// and a connection sends it from there (a 600 KB body with 2,000 probes is not copied).
struct Reply {
  int status = 200;
  std::string_view content_type = "text/plain; charset=utf-8";  // a string literal
  std::shared_ptr<const std::string> shared_body;               // null: empty
  bool allow_header = false;                                    // 405: send "Allow: GET, HEAD"
  // Set by ReplyCache: the whole answer to a GET, head and body in one string, keep-alive [0]
  // and close [1]; rendered once for all the requests the cached reply answers.
  std::shared_ptr<const std::array<std::string, 2>> whole;
  const std::string& body() const;
};

// How old the /health body may be while no state has changed: its clock-driven fields
// (uptime_seconds, age_ms, and stale probes turning unknown) are exact to this.
constexpr std::chrono::milliseconds kHealthGranularity{1};

// The reply to a plain GET /health, rendered again only when the state changed (a new
// generation) or kHealthGranularity has passed since it was rendered; its whole answers (see
// Reply::whole; not for a body over 16 KiB) are rendered with it, and again when the second of
// their Date header is over.
class ReplyCache {
 public:
  explicit ReplyCache(std::chrono::milliseconds granularity = kHealthGranularity)
      : granularity_(granularity) {}
  Reply get(std::uint64_t generation, const std::function<Reply()>& make);

 private:
  const std::chrono::milliseconds granularity_;
  std::mutex mutex_;
  std::uint64_t generation_ = 0;
  std::chrono::steady_clock::time_point rendered_{};
  std::time_t whole_second_ = 0;  // Reply::whole's Date
  std::optional<Reply> reply_;
};

struct HttpBackend {
  std::function<Snapshot()> snapshot;
  std::function<AgentFacts()> facts;
  std::function<bool()> alive;  // the scheduler loop is going round
  // Health::generation(): when set, plain GET /health is answered through `health_cache`.
  std::function<std::uint64_t()> generation = nullptr;
  std::shared_ptr<ReplyCache> health_cache = std::make_shared<ReplyCache>();
};

// Parses a request target into path and decoded query parameters. Pure; fuzzed.
struct Target {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  bool has(const std::string& key) const;
  std::vector<std::string> all(const std::string& key) const;
};
bool parse_target(const std::string& uri, Target& out);

Reply route(const std::string& method, const std::string& uri, bool has_body,
            const HttpBackend& backend);

// One request head, as read off the wire.
struct RequestHead {
  std::string method;
  std::string uri;
  bool known_version = false;  // HTTP/1.0 or HTTP/1.1
  bool keep_alive = false;     // no "close" option; and HTTP/1.1, or 1.0 with "keep-alive"
  bool has_body = false;       // Transfer-Encoding, or a Content-Length above 0
};
enum class HeadParse { Incomplete, Complete, Malformed };
constexpr std::size_t kMaxRequestHead = 16 * 1024;
// Reads the request head at the front of `in`. Complete: `used` is its length in bytes.
// Malformed: unparseable, or no end within kMaxRequestHead bytes. Pure; fuzzed.
HeadParse parse_request_head(std::string_view in, RequestHead& out, std::size_t& used);
// The two readers parse_request_head uses; exposed for the differential test. Each takes one
// head, from its request line to its empty line inclusive. The simple reader takes only a strict
// form (CRLF line ends, one SP apart, HTTP/1.0 or 1.1, plain field lines, no Transfer-Encoding,
// Content-Length or Connection) and says false for anything else, deciding nothing; whatever it
// takes, Poco reads as the same head. Poco reads any head, at several times the cost.
bool read_simple_head(std::string_view head, RequestHead& out);
HeadParse read_head_with_poco(std::string_view head, RequestHead& out);
// The bytes answering one request: the head, then the Reply's own body (none for HEAD).
struct Answer {
  std::string head;
  std::shared_ptr<const std::string> body;  // null: none
  std::string bytes() const;                // head and body in one string
};
// `close` says the connection ends after the answer.
Answer respond(const RequestHead& head, const HttpBackend& backend, bool& close);
// The bytes answering a malformed request; the connection ends after it.
std::string respond_malformed();

// What a connection has yet to send: bytes of its own (heads, small bodies, events), then at most
// one shared body, sent from where it lies with the bytes before it in one sendmsg (one part:
// send). Bytes added behind a body (a pipelined request, an event stream) copy that body's unsent
// rest first.
class Output {
 public:
  void add(std::string_view bytes);
  void add(Answer answer);
  std::size_t size() const;  // bytes not yet sent
  bool empty() const { return size() == 0; }
  // Sends what the socket takes: the count sent, or -1 with errno set (EAGAIN: full for now).
  ssize_t send_to(int fd);
  // Empties it, giving back the memory a burst made it take.
  void clear();

 private:
  std::string own_;
  std::size_t own_sent_ = 0;
  std::shared_ptr<const std::string> body_;
  std::size_t body_sent_ = 0;
};

// The most connections open at once, from the process's fd limit: a quarter of it (at least 256,
// at most half) is kept for everything else, above all the probes' own sockets, pipes and files.
std::size_t connection_cap(std::uint64_t fd_limit);

// GET /events: the request that turns its connection into a Server-Sent Events stream.
bool is_event_stream(const RequestHead& head);
// One event: "id: ID\nevent: NAME\ndata: DATA\n\n" (DATA is one line of JSON).
std::string event_text(std::uint64_t id, const char* name, std::string_view data);
// The most /events streams open at once; one more is answered 503.
constexpr std::size_t kMaxEventStreams = 64;

class HttpServer {
 public:
  // Listens (the socket the agent executable opened for `listen`, else its own); throws on failure.
  HttpServer(const std::string& listen, HttpBackend backend);
  ~HttpServer();
  void start();
  void stop();
  std::size_t max_connections() const { return max_connections_; }

 private:
  struct Connection;
  using Clock = std::chrono::steady_clock;
  void loop();
  void accept_all(Clock::time_point now);
  void on_event(Connection& c, std::uint32_t events, Clock::time_point now);
  bool read_some(Connection& c, Clock::time_point now);
  bool flush(Connection& c, Clock::time_point now, bool& sent);
  bool answer(Connection& c, Clock::time_point now);
  void serve(Connection& c, Clock::time_point now);
  void drop(Connection& c);
  void sweep(Clock::time_point now);
  void start_stream(Connection& c, Clock::time_point now);
  void flush_stream(Connection& c, Clock::time_point now);
  void publish(Clock::time_point now);

  HttpBackend backend_;
  int listener_ = -1;
  int epoll_ = -1;
  int wake_ = -1;  // eventfd: stop() writes it to end the loop
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::unordered_map<int, std::unique_ptr<Connection>> connections_;  // by fd
  std::list<Connection*> by_activity_;  // open connections, the one quiet the longest first
  std::size_t max_connections_ = 0;
  bool at_cap_ = false;              // connections are being shed (logged once per episode)
  std::vector<int> dropped_;         // closed at the end of the current turn of the loop
  std::vector<Connection*> posted_;  // to serve on the next turn, without waiting for an event
  bool accepting_ = true;            // false for a moment after running out of fds
  Clock::time_point resume_accept_{};
  // /events
  std::size_t streams_ = 0;
  std::uint64_t event_id_ = 0;  // the id of the last event sent
  std::uint64_t seen_seq_ = 0;  // transitions up to this one are published
  Overall last_overall_ = Overall::Starting;
  bool last_ready_ = false;
  std::unordered_map<std::string, Status> last_status_;  // each probe's, as of the last tick
  Clock::time_point next_heartbeat_{};
};

}  // namespace vitals
