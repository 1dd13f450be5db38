// The agent's configuration: typed structs with their defaults, a pure parser and validation.
// Every error is one line: "FILE:LINE: key.path: message".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util.hpp"

namespace vitals {

enum class Tier { Critical, Optional };
enum class LogLevel { Trace, Debug, Info, Warn, Error };
// Where a probe's plugin code runs: a worker process of its own plugin, or threads of the agent.
enum class Isolation { Process, Thread };

const char* to_string(Tier t);
const char* to_string(Isolation i);

// A plugin option as written in YAML (already ${VAR}-expanded), before the plugin's table types it.
struct OptionValue {
  enum class Kind { Scalar, List, Map } kind = Kind::Scalar;
  std::string scalar;
  std::vector<std::string> list;
  std::vector<std::pair<std::string, std::string>> map;
  int line = 0;
};

// `liveness:` of a probe: what `vitals notify --liveness` does once the service has been ready
// (agent/liveness.hpp). Written or not, the defaults are these.
struct LivenessConfig {
  int after = 3;         // restart after this many failed runs in a row
  int max_restarts = 5;  // at most this many restarts within `within`, then give up
  Millis within{600'000};
  bool operator==(const LivenessConfig&) const = default;
};

struct ProbeConfig {
  std::string name;
  std::string plugin;
  Tier tier = Tier::Critical;
  bool gates_readiness = true;  // default: tier == critical
  Millis interval{10'000};
  Millis start_interval{250};       // default: min(250ms, interval)
  bool start_interval_set = false;  // `vitals notify` polls faster unless the user chose
  Millis timeout{2'000};            // default: min(2s, interval / 2)
  int failure_threshold = 3;
  int success_threshold = 1;
  std::optional<Isolation> isolation;  // unset: the top-level default (see Config)
  std::map<std::string, OptionValue> options;
  std::optional<LivenessConfig> liveness;  // the `liveness:` map, if written
  int line = 0;                            // where the probe is defined
  std::size_t history = 120;               // runs kept in memory: the top-level `history`

  // Two probes with equal definitions are the same probe across a reload (history is kept).
  bool same_definition(const ProbeConfig& other) const;
};

struct Config {
  std::string file;                       // as given by the user, for messages
  std::string listen = "127.0.0.1:9851";  // host:port
  std::vector<std::string> plugin_dirs;   // searched in order; empty: the default beside the binary
  LogLevel log_level = LogLevel::Info;
  Millis start_period{60'000};
  std::optional<bool> expose_details;  // default: true on a loopback listener
  std::optional<int> notify_fd;
  std::size_t history = 120;              // runs kept per probe; 0: none
  std::string state_dir = "/run/vitals";  // liveness restart records, shared by notify and run
  // `isolation`: the default for probes of the installed plugins (unset: thread); plugins from
  // any other folder run in a worker process unless their probe says otherwise.
  std::optional<Isolation> isolation;
  uint64_t worker_memory_limit = 1ull << 30;  // bytes of a worker's data segment; 0: no limit
  std::vector<ProbeConfig> probes;            // in file order

  bool details_exposed() const;
  // The isolation of a probe whose plugin is `builtin` (from the installed plugin folder) or not.
  Isolation isolation_for(const ProbeConfig& p, bool builtin) const;
  const ProbeConfig* probe(std::string_view name) const;
};

struct ConfigResult {
  std::optional<Config> config;
  std::vector<std::string> errors;  // one line each
};

// Parses YAML text. `file` is used in messages and to resolve a relative plugin_dir.
ConfigResult parse_config(std::string_view text, const std::string& file);
// Reads and parses a file (size and readability are checked here).
ConfigResult load_config(const std::string& file);

// The `listen` address of a config, read by the code parse_config() reads it with, ignoring the
// rest of the file: what `vitals check -c FILE` connects to (the default if the key is absent).
// Wherever parse_config() accepts a config, the address is the same.
struct ListenResult {
  std::optional<std::string> listen;
  std::vector<std::string> errors;  // one line each
};
ListenResult parse_listen(std::string_view text, const std::string& file);
ListenResult load_listen(const std::string& file);

// Splits "host:port" / "[v6]:port". Returns false if it is not of that form.
inline bool split_host_port(const std::string& listen, std::string& host, int& port) {
  std::string port_text;
  if (!listen.empty() && listen[0] == '[') {
    const size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      return false;
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == std::string::npos || listen.find(':') != colon) return false;
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
  }
  if (host.empty() || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  // Digits only, so no std::stoi: strtol would fault in the locale's ctype table for every
  // `vitals check` (a page fault costs 10-15 us in a VM; bench/RESULTS.md, section 2).
  port = 0;
  for (const char c : port_text) port = port * 10 + (c - '0');
  return port > 0 && port <= 65535;
}

}  // namespace vitals
