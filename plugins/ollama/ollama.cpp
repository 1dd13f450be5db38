// ollama: is the Ollama server up, the embedding model pulled, loaded in memory and computing?
//
// Stages, in order: reachable (GET /api/version) -> pulled (GET /api/tags) -> loaded (GET /api/ps)
// -> embedding (POST /api/embed with a short input). The run stops at the first stage that is not
// met or at `require`; the stage reported is the one being checked when the run stopped.
// When the model is pulled but not loaded, the probe loads it with a load-only POST /api/embed on a
// background thread of its own (warm-up) and reports `loading` until that request completes.
// Protocol facts: /work/shared/protocols/PROTOCOLS.md section 1 (see README.md).
#include <vitals/poco_net.hpp>
#include <vitals/probe.hpp>

#include <Poco/Exception.h>
#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/IPAddress.h>
#include <Poco/Net/NetException.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

constexpr size_t kMaxBody = 8 * 1024 * 1024;  // a 768-float vector is ~10 KiB; tags can be large

const vitals_option kOptions[] = {
    {"url", VITALS_OPT_STRING, "http://127.0.0.1:11434",
     "Base URL of the Ollama server (http only)", 0, 0},
    {"model", VITALS_OPT_STRING, "nomic-embed-text",
     "Model to check; matched after normalisation (:latest, registry.ollama.ai/library/, case)", 0,
     0},
    {"require", VITALS_OPT_STRING, "loaded",
     "Stage that must be reached to pass: reachable | pulled | loaded | embedding", 0, 0},
    {"warmup", VITALS_OPT_BOOL, "true",
     "Load a pulled but unloaded model with a load-only POST /api/embed (background request)", 0,
     0},
    {"warmup_timeout", VITALS_OPT_DURATION, "300s",
     "Timeout of the background warm-up request (loading takes 30-120 s)", 0, 0},
    {"keep_alive", VITALS_OPT_STRING, "-1",
     "keep_alive sent with warm-up and embedding requests: seconds or a Go duration; negative = "
     "keep loaded forever",
     0, 0},
    {"embedding_interval", VITALS_OPT_DURATION, "5m",
     "With require=embedding: how often the real embedding check runs; in between its last "
     "success counts while the model stays loaded (0 = every run)",
     0, 0},
    {"expected_dimensions", VITALS_OPT_INT, "768",
     "Length of the embedding vector (768 for nomic-embed-text; 0 = any non-empty length)", 0, 0},
};

enum Stage { kReachable = 0, kPulled = 1, kLoaded = 2, kEmbedding = 3 };
const char* const kStageNames[] = {"reachable", "pulled", "loaded", "embedding"};

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool starts_with(const std::string& s, const std::string& p) {
  return s.rfind(p, 0) == 0;
}
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// PROTOCOLS.md 1.10: default host registry.ollama.ai, namespace library, tag latest;
// case-insensitive.
std::string normalize_model(const std::string& name) {
  std::string n = lower(name);
  if (starts_with(n, "registry.ollama.ai/")) n.erase(0, std::strlen("registry.ollama.ai/"));
  if (starts_with(n, "library/")) n.erase(0, std::strlen("library/"));
  const auto slash = n.rfind('/');
  const auto colon = n.rfind(':');
  if (colon == std::string::npos || (slash != std::string::npos && colon < slash)) n += ":latest";
  return n;
}

// A value safe to use as a metric label or in a one-line message: [a-z0-9_.:-], at most `max`.
std::string label_safe(const std::string& s, size_t max) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '_' || c == '.' || c == ':' || c == '-')
      out += static_cast<char>(std::tolower(u));
    if (out.size() >= max) break;
  }
  return out;
}

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, s < 10 ? "%.3f s" : "%.1f s", s);
  return buf;
}

std::string fmt_ms(Clock::duration d) {
  return std::to_string(duration_cast<milliseconds>(d).count()) + " ms";
}

// One line of a body for a message: printable ASCII, at most 120 characters.
std::string snippet(const std::string& body) {
  std::string out;
  for (char c : body) {
    const auto u = static_cast<unsigned char>(c);
    out += (u >= 0x20 && u < 0x7f) ? c : ' ';
    if (out.size() >= 120) {
      out += "...";
      break;
    }
  }
  return out;
}

Poco::JSON::Object::Ptr parse_object(const std::string& body) {
  Poco::JSON::Parser parser;
  Poco::Dynamic::Var v;
  try {
    v = parser.parse(body);
  } catch (const Poco::Exception& e) {
    throw std::runtime_error(body.empty() ? "empty body" : "invalid JSON (" + e.message() + ")");
  }
  if (v.type() != typeid(Poco::JSON::Object::Ptr)) throw std::runtime_error("not a JSON object");
  return v.extract<Poco::JSON::Object::Ptr>();
}

// ---------------------------------------------------------------------------------------------
// HTTP

struct Target {
  std::string host;  // to connect to
  uint16_t port = 11434;
  std::string prefix;       // path prefix from the URL, without a trailing slash
  std::string host_header;  // always a name a loopback-bound Ollama accepts
  std::string display;      // host:port for messages
};

struct Reply {
  int status = 0;
  std::string body;
};

// Lets another thread shut the socket of an in-flight request down (probe destruction).
struct AbortSlot {
  std::mutex m;
  Poco::Net::HTTPClientSession* session = nullptr;
  std::atomic<bool> aborted{false};
  void abort() {
    std::lock_guard<std::mutex> lock(m);
    aborted = true;
    if (session) {
      try {
        session->socket().shutdown();
      } catch (...) {
      }
    }
  }
};

struct HttpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One request on a fresh connection. Every blocking step gets the time left until `until`.
Reply http(const Target& t, const std::string& method, const std::string& path,
           const std::string& body, Clock::time_point until, AbortSlot* slot = nullptr) {
  const auto started = Clock::now();
  const auto left = [&] {
    const auto l = duration_cast<microseconds>(until - Clock::now());
    if (l.count() <= 0) throw HttpError("timed out after " + fmt_ms(Clock::now() - started));
    return Poco::Timespan(std::max<Poco::Timespan::TimeDiff>(l.count(), 1000));
  };
  // The deadline bounds the whole request, DNS included (Poco's timeouts bound each read only).
  const vitals::Deadline deadline(
      static_cast<uint64_t>(std::chrono::nanoseconds(until.time_since_epoch()).count()));
  vitals::SocketWatchdog dog(deadline);
  std::string address;
  try {
    address = vitals::resolve(t.host, deadline);
  } catch (const vitals::DeadlineExceeded&) {
    throw HttpError("timed out after " + fmt_ms(Clock::now() - started) + " resolving " + t.host);
  } catch (const std::runtime_error&) {
    throw HttpError("host " + t.host + " not found");
  }
  vitals::WatchedSession<Poco::Net::HTTPClientSession> session(dog, address, t.port);
  struct Registration {
    AbortSlot* slot;
    ~Registration() {
      if (slot) {
        std::lock_guard<std::mutex> lock(slot->m);
        slot->session = nullptr;
      }
    }
  } registration{slot};
  if (slot) {
    std::lock_guard<std::mutex> lock(slot->m);
    if (slot->aborted) throw HttpError("aborted");
    slot->session = &session;
  }
  try {
    session.setKeepAlive(false);
    const auto timeout = left();
    session.setTimeout(timeout, timeout, timeout);
    Poco::Net::HTTPRequest req(method, t.prefix + path, Poco::Net::HTTPMessage::HTTP_1_1);
    req.setHost(t.host_header);
    req.set("User-Agent", "vitals-ollama/1.0");
    req.set("Accept", "application/json");
    if (method == Poco::Net::HTTPRequest::HTTP_POST) {
      req.setContentType("application/json");
      req.setContentLength(static_cast<std::streamsize>(body.size()));
    }
    std::ostream& out = session.sendRequest(req);
    out << body;
    out.flush();
    session.socket().setReceiveTimeout(left());
    Poco::Net::HTTPResponse resp;
    std::istream& in = session.receiveResponse(resp);
    Reply reply;
    reply.status = static_cast<int>(resp.getStatus());
    char buf[16384];
    for (;;) {
      session.socket().setReceiveTimeout(left());
      in.read(buf, sizeof buf);
      const auto n = in.gcount();
      if (n > 0) reply.body.append(buf, static_cast<size_t>(n));
      if (reply.body.size() > kMaxBody) throw HttpError("response body larger than 8 MiB");
      if (!in) break;
    }
    if (dog.fired()) throw Poco::TimeoutException("deadline");  // the body was cut short
    return reply;
  } catch (const HttpError&) {
    throw;
  } catch (const Poco::Exception& e) {
    if (slot && slot->aborted) throw HttpError("aborted");
    // After the deadline the watchdog has shut the socket down: whatever Poco made of it.
    if (dog.fired() || dynamic_cast<const Poco::TimeoutException*>(&e))
      throw HttpError("timed out after " + fmt_ms(Clock::now() - started));
    if (dynamic_cast<const Poco::Net::ConnectionRefusedException*>(&e))
      throw HttpError("connection refused");
    if (dynamic_cast<const Poco::Net::ConnectionResetException*>(&e))
      throw HttpError("connection reset by the server");
    if (dynamic_cast<const Poco::Net::NoMessageException*>(&e))
      throw HttpError("the server closed the connection without an answer");
    throw HttpError(e.displayText());
  }
}

// The JSON `error` of an error answer, or nullopt when the body is not Ollama's error shape.
std::optional<std::string> json_error(const Reply& r) {
  try {
    const auto o = parse_object(r.body);
    if (o->has("error") && o->get("error").isString()) return o->getValue<std::string>("error");
  } catch (...) {
  }
  return std::nullopt;
}

std::string status_text(int status) {
  return std::to_string(status) + " " +
         Poco::Net::HTTPResponse::getReasonForStatus(
             static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
}

// "answered 500 Internal Server Error: <error>" for any non-200 answer.
std::string describe_answer(const Reply& r) {
  std::string s = "answered " + status_text(r.status);
  if (const auto e = json_error(r)) return s + ": " + snippet(*e);
  if (r.body.empty()) return s + " with an empty body";
  return s + ": " + snippet(r.body);
}

// A 404 that is not Ollama's JSON error: the path does not exist (older server or not Ollama).
bool endpoint_missing(const Reply& r) {
  return r.status == 404 && !json_error(r);
}
// A 404 with a JSON error: the model does not exist (wording differs by endpoint and version).
bool model_missing(const Reply& r) {
  return r.status == 404 && json_error(r).has_value();
}

// ---------------------------------------------------------------------------------------------
// Warm-up: a load-only request on a thread of its own, shared with the instance by shared_ptr so
// a detached thread never touches a destroyed probe.

struct Warmup {
  std::mutex m;
  std::condition_variable cv;
  bool done = false;
  bool ok = false;
  bool not_found = false;
  std::string error;
  std::string path;  // endpoint in use: /api/embed, or /api/embeddings on Ollama < 0.2.6
  double seconds = 0;
  Clock::time_point started = Clock::now();
  AbortSlot slot;
};

std::string load_body(const std::string& model, const std::string& input_key,
                      const Poco::Dynamic::Var& keep_alive, const std::string& input) {
  Poco::JSON::Object o;
  o.set("model", model);
  o.set(input_key, input);
  o.set("keep_alive", keep_alive);
  std::ostringstream s;
  o.stringify(s);
  return s.str();
}

void run_warmup(std::shared_ptr<Warmup> w, Target t, std::string model, Poco::Dynamic::Var ka,
                std::string path, milliseconds timeout) {
  bool ok = false, not_found = false;
  std::string error;
  const auto until = w->started + timeout;
  try {
    Reply r;
    if (path != "/api/embeddings") {
      path = "/api/embed";
      r = http(t, "POST", path, load_body(model, "input", ka, ""), until, &w->slot);
    }
    if (path == "/api/embeddings" || endpoint_missing(r)) {
      path = "/api/embeddings";  // Ollama < 0.2.6: the legacy endpoint loads on an empty prompt
      {
        std::lock_guard<std::mutex> lock(w->m);
        w->path = path;
      }
      r = http(t, "POST", path, load_body(model, "prompt", ka, ""), until, &w->slot);
    }
    if (r.status == 200) {
      ok = true;
    } else {
      not_found = model_missing(r);
      error = "POST " + path + " " + describe_answer(r);
    }
  } catch (const std::exception& e) {
    error = "POST " + path + ": " + e.what();
  }
  {
    std::lock_guard<std::mutex> lock(w->m);
    w->ok = ok;
    w->not_found = not_found;
    w->error = error;
    w->path = path;
    w->seconds = std::chrono::duration<double>(Clock::now() - w->started).count();
    w->done = true;
  }
  w->cv.notify_all();
}

// ---------------------------------------------------------------------------------------------

class OllamaProbe {
 public:
  OllamaProbe(const vitals::Options& o, const vitals::Host& host) : host_(host) {
    vitals::SocketWatchdog::start_thread();  // now, not in the first run
    parse_url(o.str("url", "http://127.0.0.1:11434"));
    model_ = o.str("model", "nomic-embed-text");
    if (model_.empty()) throw std::runtime_error("model must not be empty");
    wanted_ = normalize_model(model_);
    const std::string req = o.str("require", "loaded");
    require_ = -1;
    for (int i = 0; i < 4; ++i)
      if (req == kStageNames[i]) require_ = i;
    if (require_ < 0)
      throw std::runtime_error(
          "require must be one of reachable, pulled, loaded, embedding (got \"" + req + "\")");
    warmup_ = o.boolean("warmup", true);
    warmup_timeout_ = o.duration("warmup_timeout", std::chrono::seconds(300));
    if (warmup_timeout_.count() <= 0) throw std::runtime_error("warmup_timeout must be positive");
    keep_alive_ = parse_keep_alive(o.str("keep_alive", "-1"));
    keep_alive_text_ = o.str("keep_alive", "-1");
    embedding_interval_ = o.duration("embedding_interval", std::chrono::minutes(5));
    if (embedding_interval_.count() < 0)
      throw std::runtime_error("embedding_interval must be >= 0");
    const long long dims = o.integer("expected_dimensions", 768);
    if (dims < 0 || dims > 1000000)
      throw std::runtime_error("expected_dimensions must be between 0 and 1000000");
    dimensions_ = static_cast<size_t>(dims);
  }

  ~OllamaProbe() {
    if (!thread_.joinable()) return;
    // Wake the warm-up request (socket shutdown, repeated in case it was still connecting) and
    // join. A thread that does not finish within 2 s (stuck in a DNS lookup) is detached: it only
    // holds the shared Warmup state, never this instance.
    const auto end = Clock::now() + std::chrono::seconds(2);
    for (;;) {
      warm_->slot.abort();
      std::unique_lock<std::mutex> lock(warm_->m);
      if (warm_->cv.wait_for(lock, milliseconds(50), [&] { return warm_->done; })) break;
      if (Clock::now() >= end) break;
    }
    bool done;
    {
      std::lock_guard<std::mutex> lock(warm_->m);
      done = warm_->done;
    }
    if (done)
      thread_.join();
    else
      thread_.detach();
  }

  void run(const vitals::Deadline& d, vitals::Result& r) {
    // Finish a little before the host's deadline: a result that arrives late is discarded.
    const auto left = duration_cast<microseconds>(d.remaining());
    const auto margin = std::clamp(left / 10, microseconds(5000), microseconds(100000));
    const Clock::time_point until = Clock::now() + (left > margin ? left - margin : left / 2);
    size_vram_.reset();  // memory numbers describe this run only
    size_.reset();
    run_stages(until, r);
    if (load_seconds_)
      r.number("load_duration", VITALS_UNIT_SECONDS, *load_seconds_,
               "Duration of the last warm-up (model load) the probe performed");
    if (embed_seconds_ && r.stage() == std::string("embedding"))
      r.number("embed_latency", VITALS_UNIT_SECONDS, *embed_seconds_,
               "Latency of the last embedding check");
    if (size_vram_)
      r.number("size_vram", VITALS_UNIT_BYTES, *size_vram_, "Model bytes in GPU memory");
    if (size_) r.number("size", VITALS_UNIT_BYTES, *size_, "Model bytes in memory (RAM + VRAM)");
  }

 private:
  void parse_url(const std::string& url) {
    Poco::URI uri;
    try {
      uri = Poco::URI(url);
    } catch (const Poco::Exception& e) {
      throw std::runtime_error("url is not a valid URL: " + e.message());
    }
    if (lower(uri.getScheme()) != "http")
      throw std::runtime_error("url must start with http:// (got \"" + url + "\")");
    if (uri.getHost().empty()) throw std::runtime_error("url has no host: \"" + url + "\"");
    t_.host = uri.getHost();
    t_.port = uri.getPort() ? uri.getPort() : 80;
    t_.prefix = uri.getPath();
    while (!t_.prefix.empty() && t_.prefix.back() == '/') t_.prefix.pop_back();
    // A loopback-bound Ollama answers 403 to a Host it does not consider local (PROTOCOLS.md
    // 1.1): keep IP literals and local names, send localhost for anything else (e.g. a
    // docker-compose alias such as "ollama").
    const std::string h = lower(t_.host);
    Poco::Net::IPAddress ip;
    const bool is_ip = Poco::Net::IPAddress::tryParse(h, ip);
    const bool local_name = h == "localhost" || ends_with(h, ".localhost") ||
                            ends_with(h, ".local") || ends_with(h, ".internal");
    std::string header_host = (is_ip || local_name) ? h : "localhost";
    if (is_ip && ip.family() == Poco::Net::IPAddress::IPv6) header_host = "[" + h + "]";
    t_.host_header = header_host + ":" + std::to_string(t_.port);
    t_.display = (is_ip && ip.family() == Poco::Net::IPAddress::IPv6 ? "[" + h + "]" : t_.host) +
                 ":" + std::to_string(t_.port);
  }

  static Poco::Dynamic::Var parse_keep_alive(const std::string& s) {
    static const std::regex number(R"(-?[0-9]+(\.[0-9]+)?)");
    if (std::regex_match(s, number)) {
      if (s.find('.') != std::string::npos) return Poco::Dynamic::Var(std::stod(s));
      return Poco::Dynamic::Var(static_cast<Poco::Int64>(std::stoll(s)));
    }
    // Compiled only when needed: each regex takes ~0.6 M instructions (callgrind) to compile, on
    // the way to the first run.
    static const std::regex duration(R"(-?([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)");
    if (std::regex_match(s, duration)) return Poco::Dynamic::Var(s);
    throw std::runtime_error(
        "keep_alive must be seconds (e.g. -1, 300) or a Go duration (e.g. 10m, "
        "24h, -1m); got \"" +
        s + "\"");
  }

  std::string model_desc() const { return "model " + wanted_; }

  // Status for a run that stopped short of `require`, having reached `reached` (-1: nothing).
  void short_of(vitals::Result& r, int reached, const std::string& message) {
    if (reached >= kPulled)
      r.warn(message);
    else
      r.fail(message);
  }

  std::string suffix() const {
    std::string s = "ollama " + version_;
    if (!digest_.empty()) s = "digest " + digest_ + ", " + s;
    return s;
  }

  // GET path and parse the JSON object; on failure sets the result and returns null.
  Poco::JSON::Object::Ptr get_json(const std::string& path, Clock::time_point until,
                                   vitals::Result& r, int reached, Reply* raw = nullptr,
                                   const std::string& timeout_hint = "") {
    Reply reply;
    try {
      reply = http(t_, "GET", path, "", until);
    } catch (const HttpError& e) {
      short_of(r, reached,
               (reached < 0 ? "unable to reach Ollama at " + t_.display + ": GET " + path + ": "
                            : "unable to query GET " + path + ": ") +
                   e.what() + (starts_with(e.what(), "timed out") ? timeout_hint : ""));
      return nullptr;
    }
    if (raw) *raw = reply;
    if (reply.status != 200) {
      if (raw && endpoint_missing(reply)) return nullptr;  // caller handles a missing endpoint
      std::string msg = "GET " + path + " " + describe_answer(reply);
      if (reply.status == 403 && reply.body.empty())
        msg += " (Ollama rejects a non-local Host header; sent Host: " + t_.host_header + ")";
      if (reply.status == 404 && !json_error(reply)) msg += " (not an Ollama server?)";
      short_of(r, reached, msg);
      return nullptr;
    }
    try {
      return parse_object(reply.body);
    } catch (const std::exception& e) {
      short_of(
          r, reached,
          "unable to parse GET " + path + " response: " + e.what() + ": " + snippet(reply.body));
      return nullptr;
    }
  }

  // Finds the model in {"models":[...]} by normalised name (or digest); returns it or null.
  Poco::JSON::Object::Ptr find_model(const Poco::JSON::Object::Ptr& doc, std::string* names,
                                     size_t* count, const std::string& digest = "") const {
    auto models = doc->getArray("models");
    if (!models) throw std::runtime_error("no \"models\" array");
    if (count) *count = models->size();
    for (size_t i = 0; i < models->size(); ++i) {
      auto m = models->getObject(static_cast<unsigned>(i));
      if (!m) continue;
      const std::string name =
          m->optValue<std::string>("name", m->optValue<std::string>("model", ""));
      if (names && i < 5) *names += (names->empty() ? "" : ", ") + snippet(name);
      if (normalize_model(name) == wanted_) return m;
      if (!digest.empty() && m->optValue<std::string>("digest", "") == digest) return m;
    }
    return nullptr;
  }

  // Returns the finished warm-up (and joins its thread), or null if none or still running.
  std::shared_ptr<Warmup> collect_warmup() {
    if (!warm_) return nullptr;
    {
      std::lock_guard<std::mutex> lock(warm_->m);
      if (!warm_->done) return nullptr;
    }
    if (thread_.joinable()) thread_.join();
    auto w = std::move(warm_);
    warm_.reset();
    if (w->ok) {
      embed_path_ = w->path;
      load_seconds_ = w->seconds;
      host_.log(ps_missing_ && w->seconds < 1 ? VITALS_LOG_DEBUG : VITALS_LOG_INFO,
                "warm-up of " + wanted_ + " finished in " + fmt_seconds(w->seconds) + " via POST " +
                    w->path);
    } else {
      host_.warn("warm-up of " + wanted_ + " failed: " + w->error);
    }
    return w;
  }

  bool warmup_running() {
    if (!warm_) return false;
    std::lock_guard<std::mutex> lock(warm_->m);
    return !warm_->done;
  }

  void start_warmup(bool quiet = false) {
    if (thread_.joinable()) thread_.join();  // a finished one (collect_warmup joins it already)
    load_seconds_.reset();
    warm_ = std::make_shared<Warmup>();
    warm_->path = embed_path_.empty() ? "/api/embed" : embed_path_;
    host_.log(quiet ? VITALS_LOG_DEBUG : VITALS_LOG_INFO,
              "warming up " + wanted_ + ": POST " + warm_->path +
                  " with an empty input, keep_alive " + keep_alive_text_);
    thread_ = std::thread(run_warmup, warm_, t_, model_, keep_alive_, embed_path_, warmup_timeout_);
  }

  // Waits for the warm-up just started, leaving some of the run's time for the rest.
  std::shared_ptr<Warmup> wait_warmup(Clock::time_point until) {
    const auto left = until - Clock::now();
    const auto wait_until = until - std::max<Clock::duration>(milliseconds(50), left / 5);
    {
      std::unique_lock<std::mutex> lock(warm_->m);
      warm_->cv.wait_until(lock, wait_until, [&] { return warm_->done; });
    }
    return collect_warmup();
  }

  void report_loading(vitals::Result& r) {
    const double s = std::chrono::duration<double>(Clock::now() - warm_->started).count();
    std::string path;
    {
      std::lock_guard<std::mutex> lock(warm_->m);
      path = warm_->path;
    }
    r.stage("loading");
    r.warn("loading " + model_desc() + ": warm-up POST " + path + " running for " + fmt_seconds(s) +
           " (" + suffix() + ")");
  }

  // Reports a failed warm-up: a 404 with a JSON error means the model is gone (not pulled).
  void report_warmup_failure(vitals::Result& r, const Warmup& w) {
    if (w.not_found) {
      r.stage("pulled");
      r.fail(model_desc() + " is not pulled: " + w.error);
      return;
    }
    r.stage("loading");
    r.warn("unable to load " + model_desc() + ": " + w.error + "; retrying at the next run");
  }

  void forget_loaded() {
    size_vram_.reset();
    size_.reset();
    embed_ok_at_.reset();
  }

  void run_stages(Clock::time_point until, vitals::Result& r) {
    // reachable
    r.stage("reachable");
    auto ver = get_json("/api/version", until, r, -1);
    if (!ver) return;
    if (!ver->has("version") || !ver->get("version").isString()) {
      r.fail("GET /api/version answered without a version (not an Ollama server?): " +
             snippet(ver->has("version") ? ver->get("version").toString() : "no \"version\""));
      return;
    }
    version_ = label_safe(ver->getValue<std::string>("version"), 40);
    if (require_ == kReachable) {
      r.pass("ollama " + version_ + " is reachable at " + t_.display);
      return;
    }

    // pulled
    r.stage("pulled");
    auto tags = get_json("/api/tags", until, r, kReachable);
    if (!tags) return;
    std::string names;
    size_t count = 0;
    Poco::JSON::Object::Ptr tagged;
    try {
      tagged = find_model(tags, &names, &count);
    } catch (const std::exception& e) {
      r.fail(std::string("unable to parse GET /api/tags response: ") + e.what());
      return;
    }
    if (!tagged) {
      forget_loaded();
      r.fail(model_desc() + " is not pulled (" +
             (count == 0 ? std::string("the server has no models")
                         : "the server has " + std::to_string(count) + " models: " + names) +
             "; ollama " + version_ + ")");
      return;
    }
    const std::string full_digest = tagged->optValue<std::string>("digest", "");
    digest_ = label_safe(full_digest, 12);
    if (require_ == kPulled) {
      r.pass(model_desc() + " is pulled (" + suffix() + ")");
      return;
    }

    // A warm-up in flight: do not call /api/ps (Ollama >= 0.32.4 blocks it until the load ends).
    if (warmup_running()) {
      report_loading(r);
      return;
    }
    bool warmed_now = false;
    if (auto w = collect_warmup()) {
      if (!w->ok) {
        report_warmup_failure(r, *w);
        return;
      }
      warmed_now = true;
    }

    // loaded
    r.stage("loaded");
    if (!check_loaded(until, r, full_digest, warmed_now)) return;
    if (require_ == kLoaded) {
      r.pass(loaded_message());
      return;
    }

    // embedding
    r.stage("embedding");
    check_embedding(until, r);
  }

  std::string loaded_message() const {
    std::string m = model_desc() + " is loaded (" + suffix();
    if (size_vram_)
      m += *size_vram_ > 0
               ? ", " + std::to_string(static_cast<long long>(*size_vram_)) + " bytes in VRAM"
               : ", on CPU (0 bytes in VRAM)";
    if (ps_missing_)
      return m + "; no /api/ps on this server: a load request to POST " + embed_path_ +
             " answered in " + fmt_seconds(load_seconds_.value_or(0)) + ")";
    if (load_seconds_) m += ", warmed up in " + fmt_seconds(*load_seconds_);
    return m + ")";
  }

  // Returns true when the model is loaded; otherwise sets the result (warn/loading).
  bool check_loaded(Clock::time_point until, vitals::Result& r, const std::string& full_digest,
                    bool warmed_now) {
    Reply raw;
    auto ps = get_json("/api/ps", until, r, kPulled, &raw,
                       " (Ollama >= 0.32.4 holds /api/ps while a model loads)");
    if (!ps && !endpoint_missing(raw)) return false;
    if (!ps) return check_loaded_without_ps(until, r, warmed_now);
    ps_missing_ = false;
    Poco::JSON::Object::Ptr running;
    try {
      running = find_model(ps, nullptr, nullptr, full_digest);
    } catch (const std::exception& e) {
      r.warn(std::string("unable to parse GET /api/ps response: ") + e.what());
      return false;
    }
    if (running) {
      size_vram_ = static_cast<double>(running->optValue<Poco::Int64>("size_vram", 0));
      size_ = static_cast<double>(running->optValue<Poco::Int64>("size", 0));
      return true;
    }
    forget_loaded();
    if (warmed_now) {
      r.warn(model_desc() + " is not in GET /api/ps although the warm-up POST " + embed_path_ +
             " succeeded (unloaded again? check keep_alive)");
      return false;
    }
    if (!warmup_) {
      r.warn(model_desc() + " is pulled but not loaded (warmup is disabled; " + suffix() + ")");
      return false;
    }
    start_warmup();
    if (auto w = wait_warmup(until)) {
      if (!w->ok) {
        report_warmup_failure(r, *w);
        return false;
      }
      // Loaded by the warm-up within this run: confirm with /api/ps when time allows.
      if (until - Clock::now() > milliseconds(20)) {
        try {
          Reply again = http(t_, "GET", "/api/ps", "", until);
          if (again.status == 200) {
            auto m = find_model(parse_object(again.body), nullptr, nullptr, full_digest);
            if (m) {
              size_vram_ = static_cast<double>(m->optValue<Poco::Int64>("size_vram", 0));
              size_ = static_cast<double>(m->optValue<Poco::Int64>("size", 0));
            }
          }
        } catch (...) {
        }
      }
      return true;
    }
    report_loading(r);
    return false;
  }

  // Ollama < 0.1.38 has no /api/ps: a load-only request answers at once when the model is
  // resident and loads it otherwise, so the warm-up request doubles as the check.
  bool check_loaded_without_ps(Clock::time_point until, vitals::Result& r, bool warmed_now) {
    ps_missing_ = true;
    if (warmed_now) return true;
    if (!warmup_) {
      r.warn("unable to tell whether " + model_desc() +
             " is loaded: the server has no /api/ps (Ollama < 0.1.38) and warmup is disabled (" +
             suffix() + ")");
      return false;
    }
    start_warmup(/*quiet=*/true);
    if (auto w = wait_warmup(until)) {
      if (!w->ok) {
        report_warmup_failure(r, *w);
        return false;
      }
      return true;
    }
    report_loading(r);
    return false;
  }

  void check_embedding(Clock::time_point until, vitals::Result& r) {
    const auto now = Clock::now();
    if (embed_ok_at_ && embed_digest_ == digest_ && now - *embed_ok_at_ < embedding_interval_) {
      const auto ago = std::chrono::duration<double>(now - *embed_ok_at_).count();
      r.pass(model_desc() + " computes embeddings (" + std::to_string(embed_dims_) +
             " dimensions via POST " + embed_path_ + ", checked " + fmt_seconds(ago) + " ago; " +
             suffix() + ")");
      return;
    }
    embed_ok_at_.reset();
    std::string path = embed_path_.empty() ? "/api/embed" : embed_path_;
    Reply reply;
    const auto started = Clock::now();
    try {
      if (path == "/api/embed")
        reply =
            http(t_, "POST", path, load_body(model_, "input", keep_alive_, "vitals probe"), until);
      if (path == "/api/embeddings" || endpoint_missing(reply)) {
        path = "/api/embeddings";
        reply =
            http(t_, "POST", path, load_body(model_, "prompt", keep_alive_, "vitals probe"), until);
      }
    } catch (const HttpError& e) {
      r.warn("unable to compute an embedding with " + model_desc() + ": POST " + path + ": " +
             e.what());
      return;
    }
    const double latency = std::chrono::duration<double>(Clock::now() - started).count();
    if (reply.status != 200) {
      if (model_missing(reply)) {
        r.stage("pulled");
        r.fail(model_desc() + " is not pulled: POST " + path + " " + describe_answer(reply));
        return;
      }
      r.warn("unable to compute an embedding with " + model_desc() + ": POST " + path + " " +
             describe_answer(reply));
      return;
    }
    embed_path_ = path;
    std::string problem;
    size_t dims = 0;
    try {
      auto doc = parse_object(reply.body);
      Poco::JSON::Array::Ptr vec;
      if (path == "/api/embed") {
        auto all = doc->getArray("embeddings");
        if (!all) throw std::runtime_error("no \"embeddings\" array");
        if (all->size() != 1)
          throw std::runtime_error(std::to_string(all->size()) + " vectors for one input");
        vec = all->getArray(0);
      } else {
        vec = doc->getArray("embedding");
      }
      if (!vec) throw std::runtime_error("no embedding vector");
      dims = vec->size();
      for (size_t i = 0; i < dims; ++i) {
        const auto v = vec->get(static_cast<unsigned>(i));
        if (!v.isNumeric())
          throw std::runtime_error("element " + std::to_string(i) + " is not a number");
        if (!std::isfinite(v.convert<double>()))
          throw std::runtime_error("element " + std::to_string(i) + " is not finite");
      }
      if (dims == 0) throw std::runtime_error("the vector is empty");
      if (dimensions_ && dims != dimensions_)
        throw std::runtime_error("the vector has " + std::to_string(dims) +
                                 " dimensions, expected " + std::to_string(dimensions_));
    } catch (const std::exception& e) {
      problem = e.what();
    }
    if (!problem.empty()) {
      r.warn("unable to compute a valid embedding with " + model_desc() + ": POST " + path + ": " +
             problem);
      return;
    }
    embed_seconds_ = latency;
    embed_ok_at_ = Clock::now();
    embed_digest_ = digest_;
    embed_dims_ = dims;
    r.pass(model_desc() + " computes embeddings (" + std::to_string(dims) +
           " dimensions via POST " + path + " in " + fmt_seconds(latency) + "; " + suffix() + ")");
  }

  vitals::Host host_;
  Target t_;
  std::string model_, wanted_;
  int require_ = kLoaded;
  bool warmup_ = true;
  milliseconds warmup_timeout_{300000};
  Poco::Dynamic::Var keep_alive_;
  std::string keep_alive_text_;
  milliseconds embedding_interval_{300000};
  size_t dimensions_ = 768;

  std::string version_, digest_;
  std::string embed_path_;  // learned: /api/embed or /api/embeddings (older servers)
  bool ps_missing_ = false;
  std::shared_ptr<Warmup> warm_;
  std::thread thread_;
  std::optional<double> load_seconds_, embed_seconds_, size_vram_, size_;
  std::optional<Clock::time_point> embed_ok_at_;
  std::string embed_digest_;
  size_t embed_dims_ = 0;
};

}  // namespace

VITALS_PROBE(OllamaProbe, "ollama", "1.0.0",
             "Ollama server reachable, embedding model pulled, loaded (warmed up) and computing",
             kOptions)
