// The agent's one HTTP listener: /health, /health/<probe>, /livez, /readyz, /metrics.
// Answers from memory only. Poco serves one connection per thread, so the pool is sized for
// hundreds of idle or half-sent connections and every read has a deadline.
#pragma once

#include <Poco/Net/HTTPServer.h>
#include <Poco/ThreadPool.h>

#include <functional>
#include <memory>
#include <string>

#include "health.hpp"
#include "metrics.hpp"

namespace vitals {

struct HttpBackend {
  std::function<Snapshot()> snapshot;
  std::function<AgentFacts()> facts;
  std::function<bool()> alive;  // the scheduler loop is going round
};

// Parses a request target into path and decoded query parameters. Pure; fuzzed.
struct Target {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  bool has(const std::string& key) const;
  std::vector<std::string> all(const std::string& key) const;
};
bool parse_target(const std::string& uri, Target& out);

// A response, computed from the backend for one request. Pure apart from the backend; fuzzed.
struct Reply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  bool allow_header = false;  // 405: send "Allow: GET, HEAD"
};
Reply route(const std::string& method, const std::string& uri, bool has_body,
            const HttpBackend& backend);

class HttpServer {
 public:
  HttpServer(const std::string& listen, HttpBackend backend);  // binds; throws on failure
  ~HttpServer();
  void start();
  void stop();

 private:
  std::unique_ptr<Poco::ThreadPool> pool_;
  std::unique_ptr<Poco::Net::HTTPServer> server_;
};

}  // namespace vitals
