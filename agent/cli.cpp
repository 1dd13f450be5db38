#include "cli.hpp"

#include <signal.h>
#include <spdlog/sinks/dup_filter_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>

#include "agent.hpp"
#include "notify.hpp"
#include "options.hpp"
#include "paths.hpp"

namespace vitals {

namespace {

constexpr const char* kUsage = R"(usage: vitals <command> [options]

commands:
  run [-c FILE] [--notify-fd N]      run the agent in the foreground (HTTP /health, /livez, /readyz, /metrics)
  check [-c FILE | --url URL] [--probe NAME | --ready]
                                     ask a running agent; exit 0 if it answers 200, else 1
  once -c FILE --probe NAME [--json] run one probe once; exit 0 pass/warn, 1 fail, 100 config error
  notify -c FILE --probe NAME [--notify-fd N] [--deadline D] -- PROG ARGS...
                                     chain-load PROG and signal s6 readiness once the probe passes
  validate -c FILE                   check a config (plugins and options too); exit 0 or 100
  plugins [--plugin-dir DIR | -c FILE]
                                     list loadable plugins and refused files
  describe PLUGIN [--plugin-dir DIR | -c FILE]
                                     print a plugin's option table
  version                            print the version

exit codes: 0 ok, 1 unhealthy (check, once), 100 permanent error (usage, config, plugin refused),
111 temporary error (cannot bind, notification fd not open, a plugin create() past its timeout)
)";

// Minimal flag parsing: "--flag value", "-c value", "--flag=value", boolean flags, positionals.
struct Args {
  std::map<std::string, std::string> values;
  std::vector<std::string> positional;
  std::vector<std::string> rest;  // after "--"
  std::string error;

  bool has(const std::string& k) const { return values.count(k) > 0; }
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = values.find(k);
    return it == values.end() ? fallback : it->second;
  }
};

Args parse_args(int argc, char** argv, int first, const std::vector<std::string>& with_value,
                const std::vector<std::string>& booleans) {
  Args a;
  auto canonical = [](std::string f) { return f == "-c" ? std::string("--config") : f; };
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) a.rest.push_back(argv[i]);
      break;
    }
    if (arg.size() > 1 && arg[0] == '-') {
      std::string value;
      bool inline_value = false;
      if (auto eq = arg.find('='); eq != std::string::npos) {
        value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        inline_value = true;
      }
      arg = canonical(arg);
      if (std::find(booleans.begin(), booleans.end(), arg) != booleans.end()) {
        a.values[arg] = "true";
      } else if (std::find(with_value.begin(), with_value.end(), arg) != with_value.end()) {
        if (!inline_value) {
          if (i + 1 >= argc) {
            a.error = arg + " needs a value";
            return a;
          }
          value = argv[++i];
        }
        a.values[arg] = value;
      } else {
        a.error = "unknown option " + arg;
        return a;
      }
    } else {
      a.positional.push_back(arg);
    }
  }
  return a;
}

int usage_error(const std::string& message) {
  std::fprintf(stderr, "vitals: %s\n%s", message.c_str(), kUsage);
  return kPermanent;
}

std::optional<int> parse_fd(const std::string& text) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || v < 3 || v > 1 << 20) return std::nullopt;
  return static_cast<int>(v);
}

void setup_logging() {
  // Identical consecutive lines are collapsed ("Skipped N duplicate messages..").
  auto sink = std::make_shared<spdlog::sinks::dup_filter_sink_mt>(std::chrono::seconds(60));
  sink->add_sink(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto logger = std::make_shared<spdlog::logger>("vitals", sink);
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%dT%H:%M:%S.%e] [%l] [%n] %v");
}

void print_errors(const std::vector<std::string>& errors) {
  for (const auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
}

int cmd_run(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"--config", "--notify-fd"}, {"--help"});
  if (a.has("--help")) return std::fputs(kUsage, stdout), kOk;
  if (!a.error.empty()) return usage_error(a.error);
  std::optional<int> fd;
  if (a.has("--notify-fd") && !(fd = parse_fd(a.get("--notify-fd"))))
    return usage_error("--notify-fd needs a number of 3 or more");
  // One connection costs one fd: take the whole hard limit, so a burst of clients is served
  // (1024, a common soft limit, is not enough for the 1024 connection threads).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // Termination signals are taken by sigwait in the main thread; block them before any thread.
  sigset_t set;
  sigemptyset(&set);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return run_agent(a.get("--config", default_config_path()), fd);
}

int cmd_validate(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"--config"}, {"--help"});
  if (a.has("--help")) return std::fputs(kUsage, stdout), kOk;
  if (!a.error.empty()) return usage_error(a.error);
  const std::string path = a.get("--config", default_config_path());
  std::vector<std::string> errors;
  spdlog::set_level(spdlog::level::err);
  auto prepared = prepare(path, {}, errors);
  if (!prepared) {
    print_errors(errors);
    return kPermanent;
  }
  std::printf("%s: ok (%zu probes)\n", path.c_str(), prepared->config.probes.size());
  return kOk;
}

std::string json_number_unit(uint32_t unit) {
  switch (unit) {
    case VITALS_UNIT_SECONDS:
      return "seconds";
    case VITALS_UNIT_BYTES:
      return "bytes";
    case VITALS_UNIT_RATIO:
      return "ratio";
    case VITALS_UNIT_INFO:
      return "info";
    default:
      return "count";
  }
}

int cmd_once(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"--config", "--probe"}, {"--json", "--help"});
  if (a.has("--help")) return std::fputs(kUsage, stdout), kOk;
  if (!a.error.empty()) return usage_error(a.error);
  if (!a.has("--probe")) return usage_error("once needs --probe NAME");
  const std::string name = a.get("--probe");
  std::vector<std::string> errors;
  auto prepared = prepare(a.get("--config", default_config_path()), {}, errors, name);
  if (!prepared) {
    print_errors(errors);
    return kPermanent;
  }
  std::shared_ptr<Probe> probe = prepared->probes.front();
  const RunResult r = probe->run_guarded(probe);
  if (a.has("--json")) {
    std::string out = "{\"probe\":";
    append_json_string(out, name);
    out += ",\"plugin\":";
    append_json_string(out, probe->config().plugin);
    out += ",\"status\":\"" + std::string(to_string(r.status)) + "\",\"stage\":";
    append_json_string(out, r.stage);
    out += ",\"message\":";
    append_json_string(out, r.message);
    char buf[64];
    std::snprintf(buf, sizeof buf, ",\"duration_ms\":%.3f,\"numbers\":[", r.duration_s * 1000);
    out += buf;
    for (size_t i = 0; i < r.numbers.size(); ++i) {
      const Number& n = r.numbers[i];
      out += i ? ",{\"name\":" : "{\"name\":";
      append_json_string(out, n.name);
      out += ",\"unit\":\"" + json_number_unit(n.unit) + "\",\"value\":";
      std::snprintf(buf, sizeof buf, "%.17g", n.value);
      out += buf;
      out += ",\"help\":";
      append_json_string(out, n.help);
      out += '}';
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
  } else {
    std::printf("%s %s %s %.0fms: %s\n", name.c_str(), to_string(r.status), r.stage.c_str(),
                r.duration_s * 1000, r.message.c_str());
  }
  std::fflush(stdout);
  const int code = r.status == Status::Fail ? kUnhealthy : kOk;
  if (r.timed_out) _exit(code);  // the plugin's thread is still inside it: do not unload
  return code;
}

// The plugin folders `plugins` and `describe` read: --plugin-dir, the config's, or the default. A
// folder that cannot be listed is an error naming it (not an empty listing).
std::vector<std::string> plugin_dirs_from(const Args& a, std::vector<std::string>& errors) {
  std::vector<std::string> dirs{PluginHost::default_dir()};
  if (a.has("--plugin-dir")) {
    dirs = {a.get("--plugin-dir")};
  } else if (a.has("--config")) {
    ConfigResult c = load_config(a.get("--config"));
    if (!c.config) {
      errors = c.errors;
      return {};
    }
    dirs = plugin_dirs_for(*c.config);
  }
  for (const auto& dir : dirs) {
    std::error_code ec;
    std::filesystem::directory_iterator probe(dir, ec);
    if (ec)
      errors.push_back("vitals: unable to read plugin directory " + dir + ": " + ec.message());
  }
  return dirs;
}

// Whether `path` is a file directly in folder `dir`.
bool in_folder(const std::string& path, const std::string& dir) {
  std::error_code ec;
  return std::filesystem::equivalent(std::filesystem::path(path).parent_path(), dir, ec);
}

int cmd_plugins(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"--config", "--plugin-dir"}, {"--help"});
  if (a.has("--help")) return std::fputs(kUsage, stdout), kOk;
  if (!a.error.empty()) return usage_error(a.error);
  std::vector<std::string> errors;
  const std::vector<std::string> dirs = plugin_dirs_from(a, errors);
  if (!errors.empty()) return print_errors(errors), kPermanent;
  PluginHost host;
  host.scan(dirs);
  for (const auto& dir : dirs) {  // in search order, each with what it holds
    std::printf("plugin directory: %s\n", dir.c_str());
    for (const auto& p : host.plugins())
      if (in_folder(p->path, dir))
        std::printf("  %-10s %-8s ABI %u.%u  %s\n", p->desc.name,
                    p->desc.version ? p->desc.version : "", p->desc.abi_major, p->desc.abi_minor,
                    p->desc.description ? p->desc.description : "");
    for (const auto& r : host.refusals())
      if (in_folder(r.path, dir))
        std::printf("  refused %s (%s): %s\n", r.path.c_str(), r.reason.c_str(), r.message.c_str());
  }
  return kOk;
}

int cmd_describe(int argc, char** argv) {
  Args a = parse_args(argc, argv, 2, {"--config", "--plugin-dir"}, {"--help"});
  if (a.has("--help")) return std::fputs(kUsage, stdout), kOk;
  if (!a.error.empty()) return usage_error(a.error);
  if (a.positional.size() != 1) return usage_error("describe needs one PLUGIN name");
  std::vector<std::string> errors;
  const std::vector<std::string> dirs = plugin_dirs_from(a, errors);
  if (!errors.empty()) return print_errors(errors), kPermanent;
  PluginHost host;
  host.scan(dirs);
  const Plugin* p = host.find(a.positional[0]);
  if (!p) {
    if (const Refusal* r = host.refusal_for(a.positional[0]))
      std::fprintf(stderr, "vitals: plugin '%s' was refused (%s): %s\n", a.positional[0].c_str(),
                   r->reason.c_str(), r->message.c_str());
    else
      std::fprintf(stderr, "vitals: no plugin '%s' in %s\n", a.positional[0].c_str(),
                   host.dirs_text().c_str());
    return kPermanent;
  }
  const vitals_plugin& d = p->desc;
  std::printf("%s %s (ABI %u.%u): %s\n\noptions:\n", d.name, d.version ? d.version : "",
              d.abi_major, d.abi_minor, d.description ? d.description : "");
  for (uint32_t i = 0; i < d.option_count; ++i) {
    const vitals_option& o = d.options[i];
    std::string flags =
        o.required ? "required"
                   : "default: " + std::string(o.default_value ? o.default_value : "(none)");
    if (o.secret) flags += ", secret";
    std::printf("  %-20s %-9s %s\n  %-20s %s\n", o.name, option_type_name(o.type), flags.c_str(),
                "", o.description ? o.description : "");
  }
  if (d.option_count == 0) std::printf("  (none)\n");
  return kOk;
}

}  // namespace

}  // namespace vitals

extern "C" int vitals_core_main(int argc, char** argv) {
  using namespace vitals;
  signal(SIGPIPE, SIG_IGN);
  setup_logging();
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "run") return cmd_run(argc, argv);
    if (cmd == "validate") return cmd_validate(argc, argv);
    if (cmd == "once") return cmd_once(argc, argv);
    if (cmd == "notify") return cmd_notify(argc, argv);
    if (cmd == "plugins") return cmd_plugins(argc, argv);
    if (cmd == "describe") return cmd_describe(argc, argv);
    if (cmd == "version" || cmd == "--version")
      return std::printf("vitals %s\n", VITALS_VERSION), kOk;
    if (cmd == "help" || cmd == "--help" || cmd == "-h") return std::fputs(kUsage, stdout), kOk;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitals: fatal: %s\n", e.what());
    return kTemporary;
  }
  return usage_error(cmd.empty() ? "missing command" : "unknown command '" + cmd + "'");
}
