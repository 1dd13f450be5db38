// http: does a GET on `url` answer with the expected status (and body text) within the deadline?
#include <Poco/Net/AcceptCertificateHandler.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/RejectCertificateHandler.h>
#include <Poco/Net/SSLException.h>
#include <Poco/Net/SSLManager.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/URI.h>
#include <vitals/poco_net.hpp>
#include <vitals/probe.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>

namespace {

const vitals_option kOptions[] = {
    {"url", VITALS_OPT_STRING, nullptr, "http:// or https:// URL to GET", 1, 0},
    {"expect_status", VITALS_OPT_STRING, "2xx",
     "Accepted status codes: 200, 2xx, 200-299 or a comma-separated list of those", 0, 0},
    {"body_contains", VITALS_OPT_STRING, "", "Text the response body must contain (empty: any)", 0,
     0},
    {"headers", VITALS_OPT_MAP, nullptr, "Extra request headers, e.g. Authorization", 0, 1},
    {"tls_verify", VITALS_OPT_BOOL, "true",
     "https: verify the server's certificate chain and host name", 0, 0},
    {"ca_file", VITALS_OPT_STRING, "",
     "https: PEM file of trusted CAs (empty: the system's trust store)", 0, 0},
};

constexpr size_t kMaxBody = 1 << 20;

// One accepted range of status codes.
struct Range {
  int lo, hi;
};

std::vector<Range> parse_expect(const std::string& spec) {
  std::vector<Range> out;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    Range r{0, 0};
    if (item.size() == 3 && item[1] == 'x' && item[2] == 'x' && item[0] >= '1' && item[0] <= '5') {
      r = {(item[0] - '0') * 100, (item[0] - '0') * 100 + 99};
    } else if (auto dash = item.find('-'); dash != std::string::npos) {
      r = {std::atoi(item.substr(0, dash).c_str()), std::atoi(item.substr(dash + 1).c_str())};
    } else if (!item.empty() && item.find_first_not_of("0123456789") == std::string::npos) {
      r = {std::atoi(item.c_str()), std::atoi(item.c_str())};
    }
    if (r.lo < 100 || r.hi > 599 || r.lo > r.hi)
      throw std::runtime_error("expect_status: invalid status '" + item +
                               "'; use e.g. 200, 2xx, 200-299 or 200,204");
    out.push_back(r);
  }
  if (out.empty()) throw std::runtime_error("expect_status must not be empty");
  return out;
}

// OpenSSL is initialised once per process; certificate failures are always errors (never a
// prompt), and each probe brings its own Context with its own trust settings.
void init_tls() {
  static std::once_flag once;
  std::call_once(once, [] {
    Poco::Net::initializeSSL();
    Poco::Net::SSLManager::instance().initializeClient(
        nullptr, new Poco::Net::RejectCertificateHandler(false), nullptr);
  });
}

Poco::Net::Context::Ptr tls_context(bool verify, const std::string& ca_file) {
  init_tls();
  Poco::Net::Context::Params params;
  params.verificationMode =
      verify ? Poco::Net::Context::VERIFY_RELAXED : Poco::Net::Context::VERIFY_NONE;
  params.caLocation = ca_file;
  params.loadDefaultCAs = ca_file.empty();
  return new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, params);
}

// HTTPS to an address: the TLS handshake (SNI, host name check) names the URL's host, and runs
// after the watchdog has the socket, at the first request, so a slow handshake is bounded too.
class HttpsSession : public vitals::WatchedSession<Poco::Net::HTTPSClientSession> {
 public:
  HttpsSession(vitals::SocketWatchdog& dog, const std::string& name, const std::string& address,
               Poco::UInt16 port, Poco::Net::Context::Ptr tls)
      : WatchedSession(dog, address, port, tls), name_(name) {}

 protected:
  void connect(const Poco::Net::SocketAddress& address) override {
    Poco::Net::SecureStreamSocket tls(socket());
    tls.setPeerHostName(name_);
    tls.setLazyHandshake(true);
    WatchedSession::connect(address);
  }

 private:
  std::string name_;
};

class HttpProbe {
 public:
  HttpProbe(const vitals::Options& o, const vitals::Host&)
      : uri_(o.str("url")),
        expect_(parse_expect(o.str("expect_status"))),
        expect_text_(o.str("expect_status")),
        body_contains_(o.str("body_contains")),
        headers_(o.map("headers")) {
    vitals::SocketWatchdog::start_thread();  // now, not in the first run
    if (uri_.getScheme() == "https")
      tls_ = tls_context(o.boolean("tls_verify"), o.str("ca_file"));
    else if (uri_.getScheme() != "http")
      throw std::runtime_error("url must start with http:// or https://, got '" + uri_.getScheme() +
                               "'");
    if (uri_.getHost().empty()) throw std::runtime_error("url has no host");
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    const std::string where = uri_.getHost() + ":" + std::to_string(uri_.getPort());
    const auto start = std::chrono::steady_clock::now();
    r.stage("connect");
    vitals::SocketWatchdog dog(d);  // the deadline bounds the whole exchange, not each read
    try {
      const std::string address = vitals::resolve(uri_.getHost(), d);
      std::unique_ptr<Poco::Net::HTTPClientSession> owned;
      if (tls_)
        owned = std::make_unique<HttpsSession>(dog, uri_.getHost(), address, uri_.getPort(), tls_);
      else
        owned = std::make_unique<vitals::WatchedSession<Poco::Net::HTTPClientSession>>(
            dog, address, uri_.getPort());
      Poco::Net::HTTPClientSession& session = *owned;
      auto left = [&] {
        return Poco::Timespan(d.remaining_at_least(std::chrono::microseconds(1)).count());
      };
      session.setTimeout(left(), left(), left());
      Poco::Net::HTTPRequest req(Poco::Net::HTTPRequest::HTTP_GET, uri_.getPathAndQuery(),
                                 Poco::Net::HTTPMessage::HTTP_1_1);
      req.setHost(uri_.getHost(), uri_.getPort());
      req.set("User-Agent", "vitals-http/1.0");
      for (const auto& [k, v] : headers_) req.set(k, v);
      session.sendRequest(req);
      r.stage("status");
      session.setTimeout(left(), left(), left());
      Poco::Net::HTTPResponse resp;
      std::istream& body_stream = session.receiveResponse(resp);
      const int status = static_cast<int>(resp.getStatus());
      r.number("status_code", VITALS_UNIT_COUNT, status, "HTTP status code of the last response.");
      bool ok = false;
      for (const auto& range : expect_) ok |= status >= range.lo && status <= range.hi;
      if (!ok) {
        r.fail("got HTTP " + std::to_string(status) + " " + resp.getReason() + ", expected " +
               expect_text_);
        return;
      }
      if (!body_contains_.empty()) {
        r.stage("body");
        std::string body;
        char buf[8192];
        while (body.size() < kMaxBody && body_stream.read(buf, sizeof buf).gcount() > 0)
          body.append(buf, static_cast<size_t>(body_stream.gcount()));
        if (dog.fired()) throw Poco::TimeoutException("deadline");  // the body was cut short
        if (body.find(body_contains_) == std::string::npos) {
          r.fail("body does not contain the expected text (" + std::to_string(body.size()) +
                 " bytes read)");
          return;
        }
      }
      r.number("request", VITALS_UNIT_SECONDS,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
               "Time from connect to the end of the checked response.");
      r.pass("HTTP " + std::to_string(status) + " from " + uri_.toString());
    } catch (const std::runtime_error& e) {  // resolve(): not found, or the deadline
      r.fail(e.what());
    } catch (const Poco::Exception& e) {
      // After the deadline the watchdog has shut the socket down: whatever Poco made of it
      // (a timeout, a reset, a closed connection), the answer did not come in time.
      if (dog.fired() || dynamic_cast<const Poco::TimeoutException*>(&e))
        r.fail("no answer from " + where + " before the deadline");
      else if (dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&e))
        r.fail("unable to connect to " + where + ": connection refused");
      else if (const auto* tls = dynamic_cast<const Poco::Net::SSLException*>(&e))
        r.stage("tls").fail("unable to establish TLS with " + where + ": " + tls->message());
      else
        r.fail("unable to GET " + uri_.toString() + ": " + e.displayText());
    }
  }

 private:
  Poco::URI uri_;
  std::vector<Range> expect_;
  std::string expect_text_;
  std::string body_contains_;
  std::vector<std::pair<std::string, std::string>> headers_;
  Poco::Net::Context::Ptr tls_;  // set for https
};

}  // namespace

VITALS_PROBE(HttpProbe, "http", "1.0.0", "GETs a URL and checks the status code and body", kOptions)
