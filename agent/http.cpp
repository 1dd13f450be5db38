#include "http.hpp"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/URI.h>

namespace vitals {

namespace {

constexpr int kMaxThreads = 1024;

Reply text(int status, std::string body) {
  Reply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Reply json(int status, std::string body) {
  Reply r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

class Handler : public Poco::Net::HTTPRequestHandler {
 public:
  explicit Handler(const HttpBackend& backend) : backend_(backend) {}
  void handleRequest(Poco::Net::HTTPServerRequest& req,
                     Poco::Net::HTTPServerResponse& resp) override {
    static_cast<Poco::Net::HTTPServerRequestImpl&>(req).socket().setNoDelay(true);
    const bool has_body = req.getChunkedTransferEncoding() ||
                          (req.hasContentLength() && req.getContentLength64() > 0);
    // Poco echoes the request's version in the status line; only answer versions we speak.
    const bool known_version = req.getVersion() == Poco::Net::HTTPMessage::HTTP_1_1 ||
                               req.getVersion() == Poco::Net::HTTPMessage::HTTP_1_0;
    const Reply r = known_version ? route(req.getMethod(), req.getURI(), has_body, backend_)
                                  : text(400, "unsupported HTTP version\n");
    if (!known_version) resp.setVersion(Poco::Net::HTTPMessage::HTTP_1_1);
    // The unread body (or an unknown framing) must never be taken as the next request.
    if (has_body || !known_version) resp.setKeepAlive(false);
    resp.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(r.status));
    resp.setContentType(r.content_type);
    resp.set("Cache-Control", "no-store");
    if (r.allow_header) resp.set("Allow", "GET, HEAD");
    resp.sendBuffer(r.body.data(), r.body.size());
  }

 private:
  const HttpBackend& backend_;
};

class Factory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  explicit Factory(HttpBackend backend) : backend_(std::move(backend)) {}
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new Handler(backend_);
  }

 private:
  HttpBackend backend_;
};

}  // namespace

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
    const Snapshot s = backend.snapshot();
    const int status = health_http_status(s);
    return line ? text(status, render_line(s))
                : json(status, render_health_json(s, backend.facts().version));
  }
  if (t.path.rfind("/health/", 0) == 0) {
    const Snapshot s = backend.snapshot();
    const ProbeView* p = s.find(t.path.substr(8));
    if (!p) return text(404, "no such probe\n");
    const int status = p->status == Status::Pass || p->status == Status::Warn ? 200 : 503;
    return line ? text(status, render_line(s, p)) : json(status, render_probe_json(s, *p));
  }
  return text(404, "not found\n");
}

HttpServer::HttpServer(const std::string& listen, HttpBackend backend) {
  Poco::Net::ServerSocket socket;
  socket.bind(Poco::Net::SocketAddress(listen), true);
  socket.listen(1024);
  // 16 threads stay ready for bursts; the pool grows to kMaxThreads and shrinks after 60 s idle.
  pool_ = std::make_unique<Poco::ThreadPool>(16, kMaxThreads, 60, 256 * 1024);
  auto* params = new Poco::Net::HTTPServerParams;
  params->setMaxThreads(kMaxThreads);
  params->setMaxQueued(4096);
  params->setTimeout(Poco::Timespan(5, 0));  // a request must arrive within 5 s
  params->setKeepAlive(true);
  params->setMaxKeepAliveRequests(0);
  params->setKeepAliveTimeout(Poco::Timespan(10, 0));
  server_ = std::make_unique<Poco::Net::HTTPServer>(new Factory(std::move(backend)), *pool_, socket,
                                                    params);
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  server_->start();
}

void HttpServer::stop() {
  if (server_) {
    server_->stopAll(true);
    server_.reset();
  }
}

}  // namespace vitals
