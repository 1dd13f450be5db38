#include "config.hpp"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "text.hpp"

namespace vitals {

namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

// Walks yaml-cpp's tree, collecting one-line errors that name file, line and key path.
class Walker {
 public:
  Walker(std::string file, std::vector<std::string>& errors)
      : file_(std::move(file)), errors_(errors) {}

  void error(const YAML::Node& at, const std::string& path, const std::string& message) {
    sentence(at, (path.empty() ? "" : path + ": ") + message);
  }
  // "FILE:LINE: " + text
  void sentence(const YAML::Node& at, const std::string& text) {
    std::string where = file_;
    if (at.Mark().line >= 0) {
      where += ':';  // not ":" + std::to_string(...): GCC 12 -O3 warns falsely (-Wrestrict)
      where += std::to_string(at.Mark().line + 1);
    }
    errors_.push_back(where + ": " + text);
  }

  // Rejects duplicate and unknown keys (yaml-cpp keeps both silently). Returns false on error.
  bool check_keys(const YAML::Node& map, const std::string& path,
                  const std::vector<std::string>& valid) {
    bool ok = true;
    std::map<std::string, int> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string key = it->first.Scalar();
      const std::string key_path = join(path, key);
      if (auto [prev, fresh] = seen.emplace(key, it->first.Mark().line + 1); !fresh) {
        error(it->first, key_path,
              "duplicate key (first at line " + std::to_string(prev->second) + ")");
        ok = false;
      }
      if (!valid.empty() && std::find(valid.begin(), valid.end(), key) == valid.end()) {
        std::string list;
        for (const auto& v : sorted(valid)) list += (list.empty() ? "" : ", ") + v;
        error(it->first, path, "unknown key '" + key + "'; valid keys: " + list);
        ok = false;
      }
    }
    return ok;
  }

  // A scalar, ${VAR}-expanded. Reports and returns nullopt for maps, lists and bad variables.
  std::optional<std::string> scalar(const YAML::Node& n, const std::string& path) {
    if (!n.IsScalar()) {
      error(n, path, n.IsNull() ? "expected a value, got nothing" : "expected a single value");
      return std::nullopt;
    }
    std::string why;
    auto expanded = expand_env(n.Scalar(), why);
    if (!expanded) error(n, path, why);
    return expanded;
  }

  std::optional<Millis> duration(const YAML::Node& n, const std::string& path) {
    auto text = scalar(n, path);
    if (!text) return std::nullopt;
    auto d = parse_duration(*text);
    if (!d) error(n, path, "invalid duration '" + *text + "'; use e.g. 250ms, 2s, 1m");
    return d;
  }

  std::optional<long long> integer(const YAML::Node& n, const std::string& path, long long min,
                                   long long max) {
    auto text = scalar(n, path);
    if (!text) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(text->c_str(), &end, 10);
    if (text->empty() || *end || errno) {
      error(n, path, "expected an integer, got '" + *text + "'");
      return std::nullopt;
    }
    if (v < min || v > max) {
      error(n, path,
            "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " +
                *text);
      return std::nullopt;
    }
    return v;
  }

  std::optional<Isolation> isolation(const YAML::Node& n, const std::string& path) {
    auto text = scalar(n, path);
    if (!text) return std::nullopt;
    if (*text == "process") return Isolation::Process;
    if (*text == "thread") return Isolation::Thread;
    error(n, path, "expected process or thread, got '" + *text + "'");
    return std::nullopt;
  }

  // A size in bytes: a number with an optional unit B, KiB, MiB, GiB (or KB, MB, GB); 0 or `off`.
  std::optional<uint64_t> size(const YAML::Node& n, const std::string& path) {
    auto text = scalar(n, path);
    if (!text) return std::nullopt;
    if (*text == "off") return 0;
    static const std::map<std::string, uint64_t> kUnits = {{"", 1},
                                                           {"B", 1},
                                                           {"KiB", 1ull << 10},
                                                           {"MiB", 1ull << 20},
                                                           {"GiB", 1ull << 30},
                                                           {"KB", 1000},
                                                           {"MB", 1000000},
                                                           {"GB", 1000000000}};
    size_t digits = 0;
    while (digits < text->size() && std::isdigit(static_cast<unsigned char>((*text)[digits])))
      ++digits;
    auto unit = kUnits.find(text->substr(digits));
    if (digits == 0 || digits > 9 || unit == kUnits.end()) {
      error(n, path, "invalid size '" + *text + "'; use e.g. 512MiB, 2GiB, or off");
      return std::nullopt;
    }
    return std::stoull(text->substr(0, digits)) * unit->second;
  }

  std::optional<bool> boolean(const YAML::Node& n, const std::string& path) {
    auto text = scalar(n, path);
    if (!text) return std::nullopt;
    if (*text == "true") return true;
    if (*text == "false") return false;
    error(n, path, "expected true or false, got '" + *text + "'");
    return std::nullopt;
  }

  static std::string join(const std::string& path, const std::string& key) {
    return path.empty() ? key : path + "." + key;
  }

 private:
  static std::vector<std::string> sorted(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  }
  std::string file_;
  std::vector<std::string>& errors_;
};

template <class T>
bool assign(std::optional<T> v, T& out) {
  if (v) out = *v;
  return v.has_value();
}

std::optional<OptionValue> parse_option(Walker& w, const YAML::Node& n, const std::string& path) {
  OptionValue v;
  v.line = n.Mark().line + 1;
  if (n.IsSequence()) {
    v.kind = OptionValue::Kind::List;
    int i = 0;
    for (const auto& item : n) {
      auto s = w.scalar(item, path + "[" + std::to_string(i++) + "]");
      if (!s) return std::nullopt;
      v.list.push_back(*s);
    }
  } else if (n.IsMap()) {
    v.kind = OptionValue::Kind::Map;
    if (!w.check_keys(n, path, {})) return std::nullopt;
    for (auto it = n.begin(); it != n.end(); ++it) {
      auto s = w.scalar(it->second, Walker::join(path, it->first.Scalar()));
      if (!s) return std::nullopt;
      v.map.emplace_back(it->first.Scalar(), *s);
    }
  } else {
    auto s = w.scalar(n, path);
    if (!s) return std::nullopt;
    v.scalar = *s;
  }
  return v;
}

// `liveness: {after: 3, max_restarts: 5, within: 10m}`; every key optional (an empty map:
// defaults).
bool parse_liveness(Walker& w, const YAML::Node& n, const std::string& path, ProbeConfig& p) {
  LivenessConfig l;
  if (!n.IsMap() && !n.IsNull()) {
    w.error(n, path, "expected a map such as {after: 3, max_restarts: 5, within: 10m}");
    return false;
  }
  bool ok = !n.IsMap() || w.check_keys(n, path, {"after", "max_restarts", "within"});
  long long v = 0;
  if (n.IsMap() && n["after"] && (ok &= assign(w.integer(n["after"], path + ".after", 1, 1000), v)))
    l.after = static_cast<int>(v);
  if (n.IsMap() && n["max_restarts"] &&
      (ok &= assign(w.integer(n["max_restarts"], path + ".max_restarts", 1, 1000), v)))
    l.max_restarts = static_cast<int>(v);
  if (n.IsMap() && n["within"] &&
      (ok &= assign(w.duration(n["within"], path + ".within"), l.within)) &&
      l.within.count() <= 0) {
    w.error(n["within"], path + ".within", "must be greater than 0");
    ok = false;
  }
  if (ok) p.liveness = l;
  return ok;
}

void parse_probe(Walker& w, const std::string& name, const YAML::Node& key, const YAML::Node& n,
                 Config& config) {
  const std::string path = "probes." + name;
  if (name.empty() || name.find('/') != std::string::npos) {
    w.error(key, path, "probe names must be non-empty and must not contain '/'");
    return;
  }
  if (!n.IsMap()) {
    w.error(n.IsNull() ? key : n, path, "expected a map with at least 'plugin'");
    return;
  }
  static const std::vector<std::string> kKeys = {
      "plugin",         "tier",    "gates_readiness",   "interval",
      "start_interval", "timeout", "failure_threshold", "success_threshold",
      "isolation",      "options", "liveness"};
  bool ok = w.check_keys(n, path, kKeys);
  ProbeConfig p;
  p.name = name;
  p.line = key.Mark().line + 1;
  if (!n["plugin"]) {
    w.error(key, path, "missing required key 'plugin'");
    ok = false;
  } else {
    ok &= assign(w.scalar(n["plugin"], path + ".plugin"), p.plugin);
  }
  if (n["tier"]) {
    auto t = w.scalar(n["tier"], path + ".tier");
    if (t && *t == "critical")
      p.tier = Tier::Critical;
    else if (t && *t == "optional")
      p.tier = Tier::Optional;
    else {
      if (t) w.error(n["tier"], path + ".tier", "expected critical or optional, got '" + *t + "'");
      ok = false;
    }
  }
  p.gates_readiness = p.tier == Tier::Critical;
  if (n["gates_readiness"])
    ok &= assign(w.boolean(n["gates_readiness"], path + ".gates_readiness"), p.gates_readiness);
  if (n["interval"]) ok &= assign(w.duration(n["interval"], path + ".interval"), p.interval);
  p.start_interval = std::min(p.start_interval, p.interval);
  p.timeout = std::min(Millis(2000), p.interval / 2);
  if (n["start_interval"]) {
    ok &= assign(w.duration(n["start_interval"], path + ".start_interval"), p.start_interval);
    p.start_interval_set = true;
  }
  if (n["timeout"]) ok &= assign(w.duration(n["timeout"], path + ".timeout"), p.timeout);
  long long threshold = 0;
  if (n["failure_threshold"] &&
      (ok &=
       assign(w.integer(n["failure_threshold"], path + ".failure_threshold", 1, 1000), threshold)))
    p.failure_threshold = static_cast<int>(threshold);
  if (n["success_threshold"] &&
      (ok &=
       assign(w.integer(n["success_threshold"], path + ".success_threshold", 1, 1000), threshold)))
    p.success_threshold = static_cast<int>(threshold);
  if (n["isolation"]) {
    p.isolation = w.isolation(n["isolation"], path + ".isolation");
    ok &= p.isolation.has_value();
  }
  if (const YAML::Node opts = n["options"]) {
    if (opts.IsMap()) {
      ok &= w.check_keys(opts, path + ".options", {});
      for (auto it = opts.begin(); it != opts.end(); ++it) {
        const std::string opt = it->first.Scalar();
        auto v = parse_option(w, it->second, path + ".options." + opt);
        if (v)
          p.options[opt] = *v;
        else
          ok = false;
      }
    } else if (!opts.IsNull()) {
      w.error(opts, path + ".options", "expected a map of plugin options");
      ok = false;
    }
  }
  if (const YAML::Node l = n["liveness"]) ok &= parse_liveness(w, l, path + ".liveness", p);
  if (!ok) return;
  if (p.interval.count() <= 0) {
    w.error(n["interval"], path + ".interval", "must be greater than 0");
    return;
  }
  if (p.start_interval.count() <= 0) {
    w.error(n["start_interval"], path + ".start_interval", "must be greater than 0");
    return;
  }
  if (p.timeout.count() <= 0) {
    w.error(n["timeout"] ? n["timeout"] : key, path + ".timeout", "must be greater than 0");
    return;
  }
  if (p.timeout >= p.interval) {
    w.sentence(n["timeout"] ? n["timeout"] : n["interval"],
               path + ".timeout (" + format_duration(p.timeout) + ") must be less than interval (" +
                   format_duration(p.interval) + ")");
    return;
  }
  config.probes.push_back(std::move(p));
}

// The top-level `listen`, into `out` (left as is when absent). Shared by parse_config() and
// parse_listen(), so the agent and `vitals check` read the same address from the same file.
void parse_listen_key(Walker& w, const YAML::Node& root, std::string& out) {
  if (!root["listen"]) return;
  if (auto v = w.scalar(root["listen"], "listen")) {
    std::string host;
    int port = 0;
    if (split_host_port(*v, host, port))
      out = *v;
    else
      w.error(root["listen"], "listen", "expected HOST:PORT (port 1-65535), got '" + *v + "'");
  }
}

// YAML text to a tree; false with one error line if it is not YAML, empty, or not a map.
bool load_root(std::string_view text, const std::string& file, YAML::Node& root,
               std::vector<std::string>& errors) {
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::DeepRecursion& e) {
    errors.push_back(file + ":" + std::to_string(e.mark.line + 1) +
                     ": invalid YAML: nested too deeply (more than " + std::to_string(e.depth()) +
                     " levels)");
    return false;
  } catch (const YAML::Exception& e) {
    std::string where = file;
    if (e.mark.line >= 0) where += ":" + std::to_string(e.mark.line + 1);
    errors.push_back(where + ": invalid YAML: " + e.msg);
    return false;
  }
  if (root.IsNull() || !root.IsDefined()) {
    errors.push_back(file + ": is empty; expected a map with at least 'probes'");
    return false;
  }
  if (!root.IsMap()) {
    Walker(file, errors).error(root, "", "expected a map at the top level");
    return false;
  }
  return true;
}

// A config file's text, at most 1 MiB; false with one error line. Read in small pieces: no
// 1 MiB buffer to fault in for a file of a few hundred bytes (`vitals check` reads it each time).
bool read_text(const std::string& file, std::string& text, std::vector<std::string>& errors) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    errors.push_back(file + ": unable to read: " + std::strerror(errno));
    return false;
  }
  char buf[16 * 1024];
  while (text.size() <= kMaxConfigBytes && (in.read(buf, sizeof buf) || in.gcount() > 0))
    text.append(buf, static_cast<size_t>(in.gcount()));
  if (in.bad()) {
    errors.push_back(file + ": unable to read: " + std::strerror(errno));
    return false;
  }
  if (text.size() > kMaxConfigBytes) {
    errors.push_back(file + ": is larger than 1 MiB");
    return false;
  }
  return true;
}

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost" || host.rfind("127.", 0) == 0;
}

}  // namespace

const char* to_string(Tier t) {
  return t == Tier::Critical ? "critical" : "optional";
}

bool ProbeConfig::same_definition(const ProbeConfig& o) const {
  auto same_options = [&] {
    if (options.size() != o.options.size()) return false;
    for (const auto& [k, v] : options) {
      auto it = o.options.find(k);
      if (it == o.options.end() || it->second.kind != v.kind || it->second.scalar != v.scalar ||
          it->second.list != v.list || it->second.map != v.map)
        return false;
    }
    return true;
  };
  return name == o.name && plugin == o.plugin && tier == o.tier && isolation == o.isolation &&
         gates_readiness == o.gates_readiness && interval == o.interval &&
         start_interval == o.start_interval && timeout == o.timeout &&
         failure_threshold == o.failure_threshold && success_threshold == o.success_threshold &&
         liveness == o.liveness && same_options();
}

Isolation Config::isolation_for(const ProbeConfig& p, bool builtin) const {
  if (p.isolation) return *p.isolation;
  if (!builtin) return Isolation::Process;
  return isolation.value_or(Isolation::Thread);
}

const char* to_string(Isolation i) {
  return i == Isolation::Process ? "process" : "thread";
}

bool Config::details_exposed() const {
  if (expose_details) return *expose_details;
  std::string host;
  int port = 0;
  return split_host_port(listen, host, port) && is_loopback(host);
}

const ProbeConfig* Config::probe(std::string_view name) const {
  for (const auto& p : probes)
    if (p.name == name) return &p;
  return nullptr;
}

ConfigResult parse_config(std::string_view text, const std::string& file) {
  ConfigResult result;
  Walker w(file, result.errors);
  YAML::Node loaded;
  if (!load_root(text, file, loaded, result.errors)) return result;
  const YAML::Node& root = loaded;  // const: operator[] must never insert
  static const std::vector<std::string> kKeys = {
      "listen",    "plugin_dir", "log_level", "start_period",        "expose_details",
      "isolation", "readiness",  "history",   "worker_memory_limit", "state_dir",
      "probes"};
  w.check_keys(root, "", kKeys);
  Config c;
  c.file = file;
  parse_listen_key(w, root, c.listen);
  if (const YAML::Node& dirs = root["plugin_dir"]) {
    // One folder or a list, searched in order; relative to the config file's folder.
    auto add = [&](const YAML::Node& n, const std::string& path) {
      if (auto v = w.scalar(n, path)) {
        std::filesystem::path dir(*v);
        if (dir.is_relative()) dir = std::filesystem::path(file).parent_path() / dir;
        c.plugin_dirs.push_back(dir.lexically_normal().string());
      }
    };
    if (dirs.IsSequence()) {
      if (dirs.size() == 0)
        w.error(dirs, "plugin_dir", "expected a folder or a list of folders, got []");
      for (std::size_t i = 0; i < dirs.size(); ++i)
        add(dirs[i], "plugin_dir[" + std::to_string(i) + "]");
    } else {
      add(dirs, "plugin_dir");
    }
  }
  if (root["state_dir"]) {
    if (auto v = w.scalar(root["state_dir"], "state_dir")) {
      std::filesystem::path dir(*v);
      if (v->empty())
        w.error(root["state_dir"], "state_dir", "must not be empty");
      else if (dir.is_relative())
        dir = std::filesystem::path(file).parent_path() / dir;
      c.state_dir = dir.lexically_normal().string();
    }
  }
  if (root["log_level"]) {
    static const std::map<std::string, LogLevel> kLevels = {{"trace", LogLevel::Trace},
                                                            {"debug", LogLevel::Debug},
                                                            {"info", LogLevel::Info},
                                                            {"warn", LogLevel::Warn},
                                                            {"error", LogLevel::Error}};
    if (auto v = w.scalar(root["log_level"], "log_level")) {
      if (auto it = kLevels.find(*v); it != kLevels.end())
        c.log_level = it->second;
      else
        w.error(root["log_level"], "log_level",
                "expected trace, debug, info, warn or error, got '" + *v + "'");
    }
  }
  if (root["start_period"])
    assign(w.duration(root["start_period"], "start_period"), c.start_period);
  if (root["expose_details"]) {
    bool b = false;
    if (assign(w.boolean(root["expose_details"], "expose_details"), b)) c.expose_details = b;
  }
  if (root["isolation"]) {
    if (auto i = w.isolation(root["isolation"], "isolation")) c.isolation = *i;
  }
  if (root["worker_memory_limit"])
    assign(w.size(root["worker_memory_limit"], "worker_memory_limit"), c.worker_memory_limit);
  if (const YAML::Node r = root["readiness"]) {
    if (r.IsMap()) {
      w.check_keys(r, "readiness", {"notify_fd"});
      long long fd = 0;
      if (r["notify_fd"] &&
          assign(w.integer(r["notify_fd"], "readiness.notify_fd", 3, 1 << 20), fd))
        c.notify_fd = static_cast<int>(fd);
    } else if (!r.IsNull()) {
      w.error(r, "readiness", "expected a map");
    }
  }
  long long history = 0;
  if (root["history"] && assign(w.integer(root["history"], "history", 0, 10'000), history))
    c.history = static_cast<std::size_t>(history);
  if (const YAML::Node probes = root["probes"]) {
    if (probes.IsMap()) {
      w.check_keys(probes, "probes", {});
      for (auto it = probes.begin(); it != probes.end(); ++it)
        parse_probe(w, it->first.Scalar(), it->first, it->second, c);
    } else if (!probes.IsNull()) {
      w.error(probes, "probes", "expected a map of probe name to probe");
    }
  }
  for (auto& p : c.probes) p.history = c.history;
  if (result.errors.empty()) result.config = std::move(c);
  return result;
}

ConfigResult load_config(const std::string& file) {
  ConfigResult result;
  std::string text;
  if (!read_text(file, text, result.errors)) return result;
  return parse_config(text, file);
}

namespace {

// The text up to the first line after a `listen:` written at the start of a line that starts with
// a letter, digit or `_` ("" if there is no such `listen:`). In the whole file that line is a new
// top-level key, unless a quoted scalar or flow collection is still open there.
std::string_view listen_prefix(std::string_view text) {
  size_t at = 0;  // the start of a line
  for (;;) {
    if (text.compare(at, 6, "listen") == 0) {
      const size_t colon = text.find_first_not_of(" \t", at + 6);
      if (colon != text.npos && text[colon] == ':') break;
    }
    at = text.find('\n', at);
    if (at == text.npos) return {};
    ++at;
  }
  for (size_t nl = text.find('\n', at); nl != text.npos; nl = text.find('\n', nl + 1)) {
    const unsigned char next = nl + 1 < text.size() ? text[nl + 1] : '\0';
    if (std::isalnum(next) || next == '_') return text.substr(0, nl + 1);
  }
  return text;
}

// `listen_prefix(text)` as a tree, if it says all the whole file says up to there: the prefix
// (its leading comment lines blanked, so the parser need not scan a header and line numbers stay)
// and then a key of our own, which the parser must find as a new top-level key on its line, so
// nothing was left open at the cut.
bool load_listen_prefix(std::string_view text, const std::string& file, YAML::Node& root) {
  const std::string_view upto = listen_prefix(text);
  if (upto.empty()) return false;
  size_t at = 0, blanked = 0;
  for (;;) {
    const size_t first = upto.find_first_not_of(" \t", at);
    const size_t nl = upto.find('\n', at);
    if (first == upto.npos || nl == upto.npos || (upto[first] != '#' && first != nl)) break;
    at = nl + 1;
    ++blanked;
  }
  std::string prefix = std::string(blanked, '\n') + std::string(upto.substr(at));
  if (prefix.back() != '\n') prefix += '\n';
  const auto end_line = std::count(prefix.begin(), prefix.end(), '\n');
  prefix += "vitals-check-end-of-prefix: 0\n";
  std::vector<std::string> ignored;
  if (!load_root(prefix, file, root, ignored)) return false;
  const YAML::Node& map = root;
  return map["listen"] && map["vitals-check-end-of-prefix"] &&
         map["vitals-check-end-of-prefix"].Mark().line == end_line;
}

}  // namespace

ListenResult parse_listen(std::string_view text, const std::string& file) {
  ListenResult result;
  YAML::Node loaded;
  // `vitals check` reads this for every HEALTHCHECK: the text up to `listen` is enough when it
  // parses to a map with the key (the rest, usually the probes, is most of the work); else the
  // whole file.
  if (!load_listen_prefix(text, file, loaded) && !load_root(text, file, loaded, result.errors))
    return result;
  const YAML::Node& root = loaded;
  Walker w(file, result.errors);
  std::string listen = Config{}.listen;
  parse_listen_key(w, root, listen);
  if (result.errors.empty()) result.listen = listen;
  return result;
}

ListenResult load_listen(const std::string& file) {
  ListenResult result;
  std::string text;
  if (!read_text(file, text, result.errors)) return result;
  return parse_listen(text, file);
}

}  // namespace vitals
