// The request-head parser and the bytes the agent answers with, without a socket.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <Poco/URI.h>
#include <catch2/catch.hpp>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <thread>

#include "http.hpp"

using namespace vitals;

namespace {

struct Parsed {
  HeadParse result;
  RequestHead head;
  std::size_t used = 0;
};

Parsed parse(const std::string& in) {
  Parsed p;
  p.result = parse_request_head(in, p.head, p.used);
  return p;
}

const HttpBackend kBackend{[] { return Snapshot{}; }, [] { return AgentFacts{"9.9.9"}; },
                           [] { return true; }};

}  // namespace

TEST_CASE("request heads: complete, incomplete or malformed", "[http]") {
  struct Row {
    std::string in;
    HeadParse want;
  };
  const std::string big(kMaxRequestHead, 'a');
  const std::vector<Row> rows = {
      {"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", HeadParse::Complete},
      {"GET /health HTTP/1.1\n\n", HeadParse::Complete},
      {"\r\nGET /health HTTP/1.1\r\n\r\n", HeadParse::Complete},  // one empty line is ignored
      {"GET /health HTTP/1.1\r\nHost: x\r\n", HeadParse::Incomplete},
      {"GET /hea", HeadParse::Incomplete},
      {"", HeadParse::Incomplete},
      {"\r", HeadParse::Incomplete},
      {"\r\n\r\n\r\n\r\n", HeadParse::Malformed},
      {"GET\r\n\r\n", HeadParse::Malformed},
      {"GET /health\r\n\r\n", HeadParse::Malformed},
      {"G\x01T /health HTTP/1.1\r\n", HeadParse::Malformed},  // before the head ends
      {"\x16\x03\x01\x02\x00", HeadParse::Malformed},         // a TLS hello
      {std::string(33, 'M') + " / HTTP/1.1\r\n\r\n", HeadParse::Malformed},
      {"GET /?" + big + " HTTP/1.1\r\n", HeadParse::Malformed},  // no end within the limit
      {"GET / HTTP/1.1\r\nX: " + big + "\r\n\r\n", HeadParse::Malformed},
      {"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", HeadParse::Malformed},
      {"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", HeadParse::Malformed},
      {"GET / HTTP/1.1\r\nX: a\r\r\n\r\n", HeadParse::Malformed},  // a bare CR
  };
  for (const auto& row : rows) {
    INFO(row.in.substr(0, 60));
    CHECK(parse(row.in).result == row.want);
  }
}

TEST_CASE("a complete head says how much it used, its version, keep-alive and body", "[http]") {
  const std::string two = "GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.0\r\n\r\n";
  Parsed p = parse(two);
  REQUIRE(p.result == HeadParse::Complete);
  CHECK(p.head.method == "GET");
  CHECK(p.head.uri == "/livez");
  CHECK(p.head.known_version);
  CHECK(p.head.keep_alive);
  CHECK_FALSE(p.head.has_body);
  Parsed q = parse(two.substr(p.used));
  REQUIRE(q.result == HeadParse::Complete);
  CHECK(q.head.uri == "/readyz");
  CHECK_FALSE(q.head.keep_alive);  // HTTP/1.0 without "Connection: keep-alive"
  CHECK(q.used == two.size() - p.used);

  CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").head.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").head.keep_alive);
  // Connection options are a comma-separated list, over every Connection header, any case.
  CHECK_FALSE(parse("GET / HTTP/1.0\r\nConnection: foo\r\n\r\n").head.keep_alive);
  CHECK(parse("GET / HTTP/1.0\r\nConnection: TE, Keep-Alive\r\n\r\n").head.keep_alive);
  CHECK(parse("GET / HTTP/1.1\r\nConnection: te\r\n\r\n").head.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n").head.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nConnection: close , te\r\n\r\n").head.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n")
                  .head.keep_alive);
  CHECK_FALSE(parse("GET / HTTP/2.0\r\n\r\n").head.known_version);
  CHECK_FALSE(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").head.has_body);
  CHECK(parse("GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello").head.has_body);
  CHECK(parse("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").head.has_body);
  // A second, non-zero length behind a zero one still counts.
  CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\n").head.has_body);
}

TEST_CASE("responses: status line, framing headers, HEAD without a body", "[http]") {
  bool close = true;
  const std::string get =
      respond(parse("GET /livez HTTP/1.1\r\n\r\n").head, kBackend, close).bytes();
  CHECK_FALSE(close);
  CHECK_THAT(get, Catch::StartsWith("HTTP/1.1 200 OK\r\nDate: "));
  CHECK_THAT(get, Catch::Contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
  CHECK_THAT(get, Catch::Contains("\r\nCache-Control: no-store\r\n"));
  CHECK_THAT(get, Catch::Contains("\r\nConnection: keep-alive\r\n"));
  CHECK_THAT(get, Catch::EndsWith("\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"));

  const std::string head =
      respond(parse("HEAD /livez HTTP/1.1\r\n\r\n").head, kBackend, close).bytes();
  CHECK_THAT(head, Catch::EndsWith("\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n"));

  const std::string post =
      respond(parse("POST /livez HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").head, kBackend, close)
          .bytes();
  CHECK(close);  // the body is never read as a request
  CHECK_THAT(post, Catch::StartsWith("HTTP/1.1 405 Method Not Allowed\r\n"));
  CHECK_THAT(post, Catch::Contains("\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n"));

  CHECK_THAT(respond(parse("GET /nope HTTP/1.0\r\n\r\n").head, kBackend, close).bytes(),
             Catch::StartsWith("HTTP/1.1 404 Not Found\r\n"));
  CHECK(close);
  const std::string page = respond(parse("GET / HTTP/1.0\r\n\r\n").head, kBackend, close).bytes();
  CHECK_THAT(page, Catch::StartsWith("HTTP/1.1 200 OK\r\n"));
  CHECK_THAT(page, Catch::Contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
  CHECK_THAT(respond(parse("GET /livez HTTP/2.0\r\n\r\n").head, kBackend, close).bytes(),
             Catch::StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  CHECK(close);
  CHECK_THAT(respond_malformed(), Catch::StartsWith("HTTP/1.1 400 Bad Request\r\n"));
  CHECK_THAT(respond_malformed(), Catch::EndsWith("Connection: close\r\n\r\nmalformed request\n"));
}

TEST_CASE("output resumes a partial send of head and body, in order behind pipelined bytes",
          "[http]") {
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  const int small = 4096;  // the kernel's minimum: every send below is partial
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  std::string received;
  const auto read_some = [&] {
    char buf[3000];
    const ssize_t n = ::read(fds[1], buf, sizeof buf);
    REQUIRE(n > 0);
    received.append(buf, static_cast<std::size_t>(n));
  };
  std::size_t sent = 0;
  const auto send_some = [&](Output& out) {
    const ssize_t n = out.send_to(fds[0]);
    if (n < 0) REQUIRE(errno == EAGAIN);
    if (n > 0) sent += static_cast<std::size_t>(n);
  };

  std::string body;
  for (int i = 0; i < 50000; ++i) body += std::to_string(i);  // no two places alike
  Answer first{std::string(50000, 'h'), std::make_shared<const std::string>(std::move(body))};
  Answer second{"HTTP/1.1 200 OK\r\n\r\n", std::make_shared<const std::string>("ok\n")};
  const std::string want = first.bytes() + second.bytes() + "event";
  Output out;
  out.add(first);
  CHECK(out.size() == first.head.size() + first.body->size());
  send_some(out);
  CHECK(out.size() > first.body->size());  // the socket took less than the head
  while (out.size() >= first.body->size() - 1000) {
    read_some();
    send_some(out);
  }
  // Part of the body is out: what is added now goes behind the rest of it.
  out.add(second);
  out.add("event");
  CHECK(out.size() == want.size() - sent);
  while (!out.empty()) {
    read_some();
    send_some(out);
  }
  out.clear();
  ::close(fds[0]);
  for (char buf[4096];;) {
    const ssize_t n = ::read(fds[1], buf, sizeof buf);
    if (n <= 0) break;
    received.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[1]);
  CHECK(received.size() == want.size());
  CHECK(received == want);
}

TEST_CASE("the connection cap keeps a quarter of the fd limit, at least 256, for the rest",
          "[http]") {
  CHECK(connection_cap(4096) == 3072);
  CHECK(connection_cap(1024) == 768);
  CHECK(connection_cap(512) == 256);
  CHECK(connection_cap(256) == 128);  // a small limit: half for each
  CHECK(connection_cap(1048576) == 786432);
  CHECK(connection_cap(RLIM_INFINITY) == 786432);  // as if 2^20
  CHECK(connection_cap(1) == 1);
}

TEST_CASE("plain request targets read as Poco reads them", "[http]") {
  // parse_target() skips Poco::URI for targets with nothing to decode: the same path either way.
  for (const std::string uri : {"/", "/health", "/health/", "/health/db", "/health/a.b-c_D9",
                                "/metrics", "/x/../health", "/health.", "/events"}) {
    Target t;
    REQUIRE(parse_target(uri, t));
    CHECK(t.path == Poco::URI(uri).getPath());
    CHECK(t.query.empty());
  }
  Target t;
  REQUIRE(parse_target("/health%2Fdb?history=2", t));
  CHECK(t.path == "/health/db");
  CHECK(t.all("history") == std::vector<std::string>{"2"});
}

namespace {

bool same(const RequestHead& a, const RequestHead& b) {
  return a.method == b.method && a.uri == b.uri && a.known_version == b.known_version &&
         a.keep_alive == b.keep_alive && a.has_body == b.has_body;
}

std::string fields(int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += "X-" + std::to_string(i) + ": v\r\n";
  return s;
}

// What read_simple_head takes, Poco reads as the same head. Returns whether the simple one took it.
bool simple_agrees_with_poco(const std::string& head) {
  INFO(head.substr(0, 80));
  RequestHead simple, poco;
  if (!read_simple_head(head, simple)) return false;
  REQUIRE(read_head_with_poco(head, poco) == HeadParse::Complete);
  CHECK(same(simple, poco));
  return true;
}

}  // namespace

TEST_CASE("the simple head reader takes only what Poco reads the same way", "[http]") {
  const std::string curl =
      "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
      "Accept: */*\r\n\r\n";
  const std::string wrk = "GET /health HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";
  const std::string prometheus =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: Prometheus/2.42.0\r\n"
      "Accept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
      "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
      "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
  const std::string get = "GET /health HTTP/1.1\r\n";
  const std::string big(kMaxRequestHead, 'a');
  const std::vector<std::string> heads = {
      // the heads of the tests above
      "GET /health HTTP/1.1\r\nHost: x\r\n\r\n", "GET /health HTTP/1.1\n\n",
      "\r\nGET /health HTTP/1.1\r\n\r\n", "GET /health HTTP/1.1\r\nHost: x\r\n", "GET /hea", "",
      "\r", "\r\n\r\n\r\n\r\n", "GET\r\n\r\n", "GET /health\r\n\r\n", "G\x01T /health HTTP/1.1\r\n",
      "\x16\x03\x01\x02\x00", std::string(33, 'M') + " / HTTP/1.1\r\n\r\n",
      std::string(32, 'M') + " / HTTP/1.1\r\n\r\n", "GET /?" + big + " HTTP/1.1\r\n",
      "GET / HTTP/1.1\r\nX: " + big + "\r\n\r\n", "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "GET / HTTP/1.1\r\nX: a\r\r\n\r\n",
      "GET /livez HTTP/1.1\r\nHost: x\r\n\r\n", "GET /readyz HTTP/1.0\r\n\r\n",
      "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
      "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\nConnection: foo\r\n\r\n",
      "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
      "GET / HTTP/1.0\r\nCONNECTION: KEEP-ALIVE\r\n\r\n", "GET / HTTP/2.0\r\n\r\n",
      "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", "GET / HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
      "GET / HTTP/1.1\r\nCONTENT-LENGTH: 5\r\n\r\n",
      "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
      "GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", "HEAD /livez HTTP/1.1\r\n\r\n",
      "POST /livez HTTP/1.1\r\nContent-Length: 2\r\n\r\n", "GET /nope HTTP/1.0\r\n\r\n",
      "GET /livez HTTP/2.0\r\n\r\n",
      // variations
      curl, wrk, prometheus, get + "host: x\r\nACCEPT: */*\r\n\r\n", get + "X: a\tb\t\r\n\r\n",
      get + "X:\ta\r\n\r\n", get + "X:\r\n\r\n", get + "X: \r\n\r\n", get + "X:   \t \r\n\r\n",
      get + "Host: a\r\nHost: b\r\nhost: c\r\n\r\n", get + "X: a\r\n b\r\n\r\n",
      get + "X: a\r\n\tb\r\n\r\n", get + " X: a\r\n\r\n", "GET http://x/health HTTP/1.1\r\n\r\n",
      "OPTIONS * HTTP/1.1\r\n\r\n", "GET /health%2Fdb?history=2&format=line HTTP/1.1\r\n\r\n",
      "GET /%zz HTTP/1.1\r\n\r\n", "GET /?a=%2 HTTP/1.1\r\n\r\n", get + "X: caf\xc3\xa9\r\n\r\n",
      get + "X: \xff\r\n\r\n", get + "X: a\x7f\r\n\r\n", get + "X: a\x01\r\n\r\n",
      get + "X: a\x0b\r\n\r\n", get + "X\x7f: a\r\n\r\n", "GET /\x7f HTTP/1.1\r\n\r\n",
      "GET /\xc3\xa9 HTTP/1.1\r\n\r\n", "GET / HTTP/1.0\r\nHost: x\r\n\r\n",
      "GET / HTTP/1.2\r\n\r\n", "GET / HTTP/1.10\r\n\r\n", "GET / http/1.1\r\n\r\n",
      "GET  / HTTP/1.1\r\n\r\n", "GET /  HTTP/1.1\r\n\r\n", "GET / HTTP/1.1 \r\n\r\n",
      "GET\t/ HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\n\r\n", get + "X: a\n\r\n",
      get + "X: a\rY: b\r\n\r\n", get + "X: a\r\rY: b\r\n\r\n", get + "X: a\r\n\n",
      get + "X : a\r\n\r\n", get + "X\t: a\r\n\r\n", get + ": a\r\n\r\n", get + "X a\r\n\r\n",
      get + "X(: a\r\n\r\n", get + "X: =?utf-8?B?Y2xvc2U=?=\r\n\r\n",
      get + "Proxy-Connection: close\r\n\r\n", get + "Content-Lengths: 5\r\n\r\n",
      get + "Connection2: close\r\n\r\n", get + "Keep-Alive: 5\r\n\r\n",
      "get /health HTTP/1.1\r\n\r\n", "M-SEARCH * HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\n\r\nGET",
      "GET / HTTP/1.1\r\n\r\n\r\n", "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\n\r",
      "GET /" + std::string(2047, 'a') + " HTTP/1.1\r\n\r\n",
      "GET /" + std::string(2048, 'a') + " HTTP/1.1\r\n\r\n", get + fields(100) + "\r\n",
      get + fields(101) + "\r\n", get + std::string(256, 'N') + ": v\r\n\r\n",
      get + std::string(257, 'N') + ": v\r\n\r\n",
      get + "X: " + std::string(8191, 'v') + "\r\n\r\n",
      get + "X:" + std::string(8192, 'v') + "\r\n\r\n",
      get + "X:" + std::string(8193, 'v') + "\r\n\r\n",
      get + "X: " + std::string(8192, 'v') + "\r\n\r\n"};
  int taken = 0;
  for (const auto& head : heads) taken += simple_agrees_with_poco(head);
  CHECK(taken > 20);

  // The heads real clients send, and the simple form up to Poco's own limits.
  CHECK(simple_agrees_with_poco(curl));
  CHECK(simple_agrees_with_poco(wrk));
  CHECK(simple_agrees_with_poco(prometheus));
  CHECK(simple_agrees_with_poco(get + fields(100) + "\r\n"));
  CHECK(simple_agrees_with_poco(get + std::string(256, 'N') + ": v\r\n\r\n"));
  CHECK(simple_agrees_with_poco(get + "X:" + std::string(8192, 'v') + "\r\n\r\n"));
  CHECK(simple_agrees_with_poco("GET / HTTP/1.0\r\n\r\n"));
  // Past them Poco refuses: the simple reader must not have taken these.
  RequestHead h;
  CHECK(read_head_with_poco(get + fields(101) + "\r\n", h) == HeadParse::Malformed);
  CHECK(read_head_with_poco(get + std::string(257, 'N') + ": v\r\n\r\n", h) ==
        HeadParse::Malformed);
  CHECK(read_head_with_poco(get + "X:" + std::string(8193, 'v') + "\r\n\r\n", h) ==
        HeadParse::Malformed);
  // Through parse_request_head, the simple reader's head is the one it reports.
  Parsed p = parse("\r\n" + wrk + "GET /livez HTTP/1.0\r\n\r\n");
  REQUIRE(p.result == HeadParse::Complete);
  CHECK(p.used == 2 + wrk.size());
  CHECK(same(p.head, RequestHead{"GET", "/health", true, true, false}));
}

TEST_CASE("the /health cache renders whole answers for a small body only", "[http]") {
  const auto reply_of = [](std::size_t size) {
    return [size] {
      Reply r;
      r.shared_body = std::make_shared<const std::string>(size, 'x');
      return r;
    };
  };
  ReplyCache small;
  const Reply s = small.get(1, reply_of(100));
  REQUIRE(s.whole);
  CHECK_THAT((*s.whole)[0], Catch::EndsWith("\r\nConnection: keep-alive\r\n\r\n" + s.body()));
  CHECK_THAT((*s.whole)[1], Catch::EndsWith("\r\nConnection: close\r\n\r\n" + s.body()));
  // Thousands of probes: the body is sent from where it lies, never copied into an answer.
  ReplyCache large(std::chrono::hours(1));  // a granularity no test run reaches
  const Reply l = large.get(1, reply_of(600 * 1024));
  CHECK_FALSE(l.whole);
  CHECK(large.get(1, reply_of(600 * 1024)).shared_body == l.shared_body);  // reused, not copied
}

TEST_CASE("whole answers are rendered again when their Date's second is over", "[http]") {
  ReplyCache cache(std::chrono::hours(1));  // the reply itself is never rendered again here
  const auto make = [] {
    Reply r;
    r.shared_body = std::make_shared<const std::string>("ok\n");
    return r;
  };
  const Reply first = cache.get(1, make);
  const std::time_t second = std::time(nullptr);
  while (std::time(nullptr) == second) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const Reply later = cache.get(1, make);
  REQUIRE(first.whole);
  REQUIRE(later.whole);
  CHECK(later.shared_body == first.shared_body);  // the same reply
  const auto date = [](const std::string& answer) {
    const std::size_t at = answer.find("\r\nDate: ");
    return answer.substr(at, answer.find("\r\n", at + 2) - at);
  };
  CHECK(date((*later.whole)[0]) != date((*first.whole)[0]));
  CHECK(date((*later.whole)[1]) == date((*later.whole)[0]));
}
