// The wire between the agent and a probe worker process (agent/worker.hpp, agent/worker_main.cpp):
// one message per datagram on an AF_UNIX SOCK_SEQPACKET socketpair, so no framing is needed.
// Both ends are the same build of the same binary: plain structs travel as they are.
#pragma once

#include <vitals/probe.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace vitals::wire {

// The worker's end of the socketpair, as the worker finds it.
inline constexpr int kWorkerFd = 3;
// The largest message either end sends or accepts.
inline constexpr size_t kMaxMessage = 256 * 1024;

enum class Type : uint32_t {
  Create = 1,  // agent -> worker: Header + encoded option values; answered by Created
  Run,         // agent -> worker: RunRequest; answered by Result
  Destroy,     // agent -> worker: Header; not answered
  Created,     // worker -> agent: CreatedReply
  Result,      // worker -> agent: ResultReply
  Log,         // worker -> agent: Header + int32 level + text
};

struct Header {
  Type type;
  uint32_t probe;  // the agent's id for the probe instance
};

struct RunRequest {
  Header h;
  uint64_t deadline_ns;  // CLOCK_MONOTONIC, the same clock in both processes
};

struct CreatedReply {
  Header h;
  int32_t rc;
  char err[512];
};

struct ResultReply {
  Header h;
  uint64_t start_ns, end_ns;  // CLOCK_MONOTONIC around the plugin's run()
  vitals_result result;
};

struct LogHeader {
  Header h;
  int32_t level;
};

// Option values travel as consecutive records: has_key (one byte), then name, key and value,
// each NUL-terminated.
inline std::string encode_values(const vitals_option_value* values, uint32_t count) {
  std::string out;
  for (uint32_t i = 0; i < count; ++i) {
    out += values[i].key ? '\1' : '\0';
    for (const char* s : {values[i].name, values[i].key, values[i].value}) {
      out += s ? s : "";
      out += '\0';
    }
  }
  return out;
}

struct DecodedValues {
  std::vector<std::string> text;  // name, key, value per record
  std::vector<bool> has_key;
  std::vector<vitals_option_value> values;  // pointing into `text`
};

// False if the bytes are not whole records.
inline bool decode_values(const char* p, size_t n, DecodedValues& out) {
  const char* end = p + n;
  while (p < end) {
    out.has_key.push_back(*p++ != 0);
    for (int field = 0; field < 3; ++field) {
      const void* nul = std::memchr(p, '\0', static_cast<size_t>(end - p));
      if (!nul) return false;
      out.text.emplace_back(p);
      p = static_cast<const char*>(nul) + 1;
    }
  }
  for (size_t i = 0; i < out.has_key.size(); ++i)
    out.values.push_back({out.text[3 * i].c_str(),
                          out.has_key[i] ? out.text[3 * i + 1].c_str() : nullptr,
                          out.text[3 * i + 2].c_str()});
  return true;
}

}  // namespace vitals::wire
