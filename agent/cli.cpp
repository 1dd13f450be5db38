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
#include "command_line.hpp"
#include "listener.hpp"
#include "notify.hpp"
#include "options.hpp"
#include "paths.hpp"
#include "status.hpp"

namespace vitals {

namespace {

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

int cmd_run(const CommandLine& cl) {
  // One connection costs one fd: take the whole hard limit, so a burst of clients is served
  // (1024, a common soft limit, is not enough for the 1024 connection threads).
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  // SIGTERM, SIGINT and SIGHUP are blocked (the agent executable did it before it listened) and
  // taken by sigwait in the main thread.
  return run_agent(cl.config_file(), cl.notify_fd);
}

int cmd_validate(const CommandLine& cl) {
  const std::string path = cl.config_file();
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

int cmd_once(const CommandLine& cl) {
  const std::string& name = cl.probe;
  std::vector<std::string> errors;
  auto prepared = prepare(cl.config_file(), {}, errors, name);
  if (!prepared) {
    print_errors(errors);
    return kPermanent;
  }
  std::shared_ptr<Probe> probe = prepared->probes.front();
  const RunResult r = probe->run_guarded(probe);
  if (cl.json) {
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
std::vector<std::string> plugin_dirs_from(const CommandLine& cl, std::vector<std::string>& errors) {
  std::vector<std::string> dirs{PluginHost::default_dir()};
  if (!cl.plugin_dirs.empty()) {
    dirs = cl.plugin_dirs;
  } else if (!cl.config.empty()) {
    ConfigResult c = load_config(cl.config);
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

int cmd_plugins(const CommandLine& cl) {
  std::vector<std::string> errors;
  const std::vector<std::string> dirs = plugin_dirs_from(cl, errors);
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

int cmd_describe(const CommandLine& cl) {
  std::vector<std::string> errors;
  const std::vector<std::string> dirs = plugin_dirs_from(cl, errors);
  if (!errors.empty()) return print_errors(errors), kPermanent;
  PluginHost host;
  host.scan(dirs);
  const Plugin* p = host.find(cl.plugin);
  if (!p) {
    if (const Refusal* r = host.refusal_for(cl.plugin))
      std::fprintf(stderr, "vitals: plugin '%s' was refused (%s): %s\n", cl.plugin.c_str(),
                   r->reason.c_str(), r->message.c_str());
    else
      std::fprintf(stderr, "vitals: no plugin '%s' in %s\n", cl.plugin.c_str(),
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

extern "C" void vitals_core_listener(const char* listen, int fd, const char* error) {
  vitals::adopt_listener(listen, {fd, error});
}

extern "C" int vitals_core_main(int argc, char** argv) {
  using namespace vitals;
  signal(SIGPIPE, SIG_IGN);
  setup_logging();
  const CommandLine cl = parse_command_line(argc, argv);
  if (cl.exit) return *cl.exit;
  const std::string& cmd = cl.command;
  try {
    if (cmd == "run") return cmd_run(cl);
    if (cmd == "validate") return cmd_validate(cl);
    if (cmd == "once") return cmd_once(cl);
    if (cmd == "notify") return cmd_notify(cl);
    if (cmd == "plugins") return cmd_plugins(cl);
    if (cmd == "describe") return cmd_describe(cl);
    if (cmd == "status") return run_status(cl.config, cl.url);
    if (cmd == "version") return std::printf("vitals %s\n", VITALS_VERSION), kOk;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vitals: fatal: %s\n", e.what());
    return kTemporary;
  }
  return kPermanent;  // `check` is vitals_core_check (main.cpp), `worker` is main.cpp's
}
