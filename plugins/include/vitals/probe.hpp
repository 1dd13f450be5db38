// C++ convenience layer over probe.h: a plugin is a class plus one VITALS_PROBE(...) line.
//
//   class TcpProbe {
//    public:
//     TcpProbe(const vitals::Options& o, const vitals::Host& host);  // may throw: create fails
//     void run(const vitals::Deadline& d, vitals::Result& r);         // may throw: run fails
//   };
//   VITALS_PROBE(TcpProbe, "tcp", "1.0.0", "Connect to a TCP port", kOptions)
//
// A plugin without options leaves the table out: VITALS_PROBE(Uptime, "uptime", "1.0.0", "...").
//
// No exception ever crosses the C boundary: the generated callbacks catch everything.
#pragma once

#include <vitals/probe.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace vitals {

inline uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// The time a run must be finished by (CLOCK_MONOTONIC).
class Deadline {
 public:
  explicit Deadline(uint64_t ns) : ns_(ns) {}
  uint64_t ns() const { return ns_; }
  bool expired() const { return monotonic_ns() >= ns_; }
  std::chrono::microseconds remaining() const {
    const uint64_t now = monotonic_ns();
    return std::chrono::microseconds(now >= ns_ ? 0 : (ns_ - now) / 1000);
  }
  // Remaining time, never less than `floor` (for APIs that treat 0 as "no timeout").
  std::chrono::microseconds remaining_at_least(std::chrono::microseconds floor) const {
    return std::max(remaining(), floor);
  }

 private:
  uint64_t ns_;
};

// Typed read access to the values the host validated and normalised.
class Options {
 public:
  Options(const vitals_option_value* values, uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      entries_.push_back({values[i].name ? values[i].name : "", values[i].key ? values[i].key : "",
                          values[i].value ? values[i].value : ""});
    }
  }
  bool has(const std::string& name) const {
    return std::any_of(entries_.begin(), entries_.end(),
                       [&](const Entry& e) { return e.name == name; });
  }
  std::string str(const std::string& name, const std::string& fallback = "") const {
    for (const auto& e : entries_)
      if (e.name == name) return e.value;
    return fallback;
  }
  long long integer(const std::string& name, long long fallback = 0) const {
    return has(name) ? std::stoll(str(name)) : fallback;
  }
  bool boolean(const std::string& name, bool fallback = false) const {
    return has(name) ? str(name) == "true" : fallback;
  }
  std::chrono::milliseconds duration(const std::string& name,
                                     std::chrono::milliseconds fallback = {}) const {
    return has(name) ? std::chrono::milliseconds(std::stoll(str(name))) : fallback;
  }
  std::vector<std::string> list(const std::string& name) const {
    std::vector<std::string> out;
    for (const auto& e : entries_)
      if (e.name == name) out.push_back(e.value);
    return out;
  }
  std::vector<std::pair<std::string, std::string>> map(const std::string& name) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& e : entries_)
      if (e.name == name) out.emplace_back(e.key, e.value);
    return out;
  }

 private:
  struct Entry {
    std::string name, key, value;
  };
  std::vector<Entry> entries_;
};

class Host {
 public:
  explicit Host(const vitals_host* h) : h_(h) {}
  void log(vitals_log_level level, const std::string& message) const {
    if (h_ && h_->log) h_->log(h_->host_ctx, level, message.c_str());
  }
  void debug(const std::string& m) const { log(VITALS_LOG_DEBUG, m); }
  void info(const std::string& m) const { log(VITALS_LOG_INFO, m); }
  void warn(const std::string& m) const { log(VITALS_LOG_WARN, m); }

 private:
  const vitals_host* h_;
};

// The outcome of one run. Set the stage as the check progresses; the first failure ends the run.
class Result {
 public:
  explicit Result(vitals_result* r) : r_(r) {}
  Result& stage(const char* name) {
    copy(r_->stage, sizeof r_->stage, name);
    return *this;
  }
  std::string stage() const { return r_->stage; }
  Result& pass(const std::string& message = "") { return set(VITALS_PASS, message); }
  Result& warn(const std::string& message) { return set(VITALS_WARN, message); }
  Result& fail(const std::string& message) { return set(VITALS_FAIL, message); }
  Result& number(const char* name, vitals_unit unit, double value, const char* help) {
    if (r_->number_count >= VITALS_NUMBERS_MAX) return *this;
    vitals_number& n = r_->numbers[r_->number_count++];
    copy(n.name, sizeof n.name, name);
    copy(n.help, sizeof n.help, help);
    n.unit = unit;
    n.value = value;
    return *this;
  }
  vitals_status status() const { return static_cast<vitals_status>(r_->status); }

 private:
  Result& set(vitals_status s, const std::string& message) {
    r_->status = s;
    copy(r_->message, sizeof r_->message, message.c_str());
    return *this;
  }
  static void copy(char* dst, size_t size, const char* src) {
    std::snprintf(dst, size, "%s", src ? src : "");
    for (char* p = dst; *p; ++p)
      if (*p == '\n' || *p == '\r') *p = ' ';  // messages are one line
  }
  vitals_result* r_;
};

namespace detail {

template <class P>
int create(const vitals_host* host, const vitals_option_value* values, uint32_t count,
           void** instance, char* err, size_t err_len) {
  try {
    *instance = new P(Options(values, count), Host(host));
    return 0;
  } catch (const std::exception& e) {
    std::snprintf(err, err_len, "%s", e.what());
  } catch (...) {
    std::snprintf(err, err_len, "unknown error");
  }
  return 1;
}

template <class P>
void run(void* instance, uint64_t deadline_ns, vitals_result* result) {
  Result r(result);
  try {
    static_cast<P*>(instance)->run(Deadline(deadline_ns), r);
  } catch (const std::exception& e) {
    r.fail(std::string("unexpected error: ") + e.what());
  } catch (...) {
    r.fail("unexpected error");
  }
}

template <class P>
void destroy(void* instance) {
  try {
    delete static_cast<P*>(instance);
  } catch (...) {
  }
}

}  // namespace detail

// A plugin without options (option_count 0, no table).
template <class P>
vitals_plugin describe(const char* name, const char* version, const char* description) {
  vitals_plugin d{};
  d.abi_major = VITALS_ABI_MAJOR;
  d.abi_minor = VITALS_ABI_MINOR;
  d.struct_size = sizeof(vitals_plugin);
  d.name = name;
  d.version = version;
  d.description = description;
  d.create = &detail::create<P>;
  d.run = &detail::run<P>;
  d.destroy = &detail::destroy<P>;
  return d;
}

template <class P, size_t N>
vitals_plugin describe(const char* name, const char* version, const char* description,
                       const vitals_option (&options)[N]) {
  vitals_plugin d = describe<P>(name, version, description);
  d.options = options;
  d.option_count = static_cast<uint32_t>(N);
  return d;
}

}  // namespace vitals

// VITALS_PROBE(Class, name, version, description[, options]): the option table may be left out.
#define VITALS_PROBE(Class, name, version, ...)                                            \
  extern "C" VITALS_EXPORT const vitals_plugin* vitals_probe_entry(uint32_t host_major) {  \
    static const vitals_plugin desc = vitals::describe<Class>(name, version, __VA_ARGS__); \
    return host_major == VITALS_ABI_MAJOR ? &desc : nullptr;                               \
  }
