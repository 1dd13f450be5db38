#include "command_line.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <sstream>

#include "paths.hpp"

namespace vitals {

namespace {

constexpr int kHelpExit = 0;
constexpr int kUsageExit = 100;     // s6: permanent
constexpr int kCheckUsageExit = 1;  // Docker reserves 2: check says 0 or 1, always

constexpr const char* kOverview = R"(usage: vitals <command> [options]

commands:
  run [-c FILE] [--notify-fd N]      run the agent in the foreground (HTTP /, /health, /events, /livez, /readyz, /metrics)
  check [-c FILE | --url URL] [--probe NAME | --ready]
                                     ask a running agent; exit 0 if it answers 200, else 1
  status [-c FILE | --url URL]       the agent's probes and recent runs as a table; exit codes as check
  once -c FILE --probe NAME [--json] run one probe once; exit 0 pass/warn, 1 fail, 100 config error
  notify -c FILE --probe NAME [--notify-fd N] [--deadline D] [--liveness] -- PROG ARGS...
                                     chain-load PROG and signal readiness once the probe passes;
                                     --liveness: then restart PROG when it wedges
  validate [-c FILE]                 check a config (plugins and options too); exit 0 or 100
  plugins [--plugin-dir DIR... | -c FILE]
                                     list loadable plugins and refused files
  describe PLUGIN [--plugin-dir DIR... | -c FILE]
                                     print a plugin's option table
  version                            print the version

`vitals COMMAND --help` describes a command's options; `--flag value` and `--flag=value` both work.
exit codes: 0 ok, 1 unhealthy (check, once), 100 permanent error (usage, config, plugin refused),
111 temporary error (cannot bind, notification fd not open)
)";

// A number of 3 or more (0-2 are stdin, stdout, stderr).
std::optional<int> parse_fd(const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || v < 3 || v > 1 << 20) return std::nullopt;
  return static_cast<int>(v);
}

// CLI11's message, on one line. Arguments nobody expected: the first unknown option is named, else
// the first stray argument (CLI11 lists them all, not in command-line order).
std::string usage_message(const CLI::ParseError& e, int argc, char** argv) {
  std::string what = e.what();
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    std::istringstream list(what.substr(what.find(':') + 1));  // "...not expected: A B"
    std::vector<std::string> extras{std::istream_iterator<std::string>(list), {}};
    auto extra = [&](const std::string& a) {
      return std::find(extras.begin(), extras.end(), a) != extras.end();
    };
    for (int i = 1; i < argc; ++i)
      if (argv[i][0] == '-' && extra(argv[i])) return "unknown option " + std::string(argv[i]);
    for (int i = 1; i < argc; ++i)
      if (extra(argv[i])) return "unexpected argument " + std::string(argv[i]);
  }
  for (char& c : what)
    if (c == '\n') c = ' ';
  return what;
}

}  // namespace

std::string CommandLine::config_file() const {
  return config.empty() ? default_config_path() : config;
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  // Everything after the first "--" is PROG ARGS... (notify); CLI11 sees only what precedes it.
  int end = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      end = i;
      cl.prog.assign(argv + i + 1, argv + argc);
      break;
    }
  }

  CLI::App app{"vitals: readiness and health probe agent", "vitals"};
  // Subcommands inherit -h/--help; `vitals --help` prints the overview (ours, below).
  app.set_help_flag("-h,--help", "print this help and exit");
  app.require_subcommand(0, 1);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  bool version = false;
  app.add_flag("--version", version, "print the version and exit");
  app.get_formatter()->column_width(28);

  std::string notify_fd;
  auto config = [&](CLI::App* sub, const char* help) {
    sub->add_option("-c,--config", cl.config, help)->type_name("FILE");
  };
  auto probe = [&](CLI::App* sub, const char* help) {
    sub->add_option("--probe", cl.probe, help)->type_name("NAME");
  };

  // Only the command named first is described to CLI11 (all of them if it names none): building
  // the whole parser was a third of what `vitals check`, run for every HEALTHCHECK, computes.
  const char* const commands[] = {"run",      "check",   "status",   "once",    "notify",
                                  "validate", "plugins", "describe", "version", "help"};
  const bool one = argc > 1 && std::find_if(std::begin(commands), std::end(commands), [&](auto c) {
                                 return std::strcmp(c, argv[1]) == 0;
                               }) != std::end(commands);
  auto add = [&](const char* name, const char* description) -> CLI::App* {
    return !one || std::strcmp(argv[1], name) == 0 ? app.add_subcommand(name, description)
                                                   : nullptr;
  };
  auto plugin_dir = [&](CLI::App* sub) {
    sub->add_option("--plugin-dir", cl.plugin_dirs,
                    "plugin folder; repeat for a list searched in order (default: the config's "
                    "plugin_dir with -c, else the shipped plugins' folder)")
        ->type_name("DIR")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    config(sub, "use this config's plugin_dir");
  };

  if (CLI::App* run = add("run", "run the agent in the foreground, logging to stderr")) {
    config(run, "the config (default: <sysconfdir>/vitals/vitals.yaml beside the binary)");
    run->add_option("--notify-fd", notify_fd, "s6 notification fd (overrides readiness.notify_fd)")
        ->type_name("N");
  }
  if (CLI::App* check =
          add("check", "ask the running agent; exit 0 if it answers 200, else 1 (always 0 or 1)")) {
    config(check,
           "read `listen` from this config (default: the installed one, else 127.0.0.1:9851)");
    check->add_option("--url", cl.url, "ask this agent instead")->type_name("http://HOST:PORT");
    probe(check, "only this probe (/health/NAME)");
    check->add_flag("--ready", cl.ready, "readiness (/readyz) instead of health");
  }
  if (CLI::App* status = add("status",
                             "print the agent's probes and recent runs as a table; exit 0 if it "
                             "answers 200, else 1 (always 0 or 1)")) {
    config(status,
           "read `listen` from this config (default: the installed one, else 127.0.0.1:9851)");
    status->add_option("--url", cl.url, "ask this agent instead")->type_name("http://HOST:PORT");
  }
  if (CLI::App* once = add("once",
                           "load the plugin and run one probe once; exit 0 pass/warn, 1 fail, 100 "
                           "config error")) {
    config(once, "the config (default: the installed one)");
    probe(once, "the probe to run (required)");
    once->add_flag("--json", cl.json, "print the result as JSON");
  }
  if (CLI::App* notify = add(
          "notify", "exec PROG ARGS... (after --); signal its readiness once the probe passes")) {
    config(notify, "the config (required)");
    probe(notify, "the probe that says PROG is ready (required)");
    notify->add_option("--notify-fd", notify_fd, "s6 notification fd (default: ./notification-fd)")
        ->type_name("N");
    notify->add_option("--deadline", cl.deadline, "give up waiting after this long (e.g. 110s)")
        ->type_name("D");
    notify->add_flag("--liveness", cl.liveness,
                     "after readiness, keep probing and restart PROG after `liveness.after` "
                     "failures in a row (within the probe's restart budget)");
    notify->footer(
        "After the options: -- PROG ARGS..., the program vitals execs (it keeps the pid).");
  }
  if (CLI::App* validate = add("validate",
                               "parse and check a config, load its plugins, create its probes; "
                               "exit 0 or 100"))
    config(validate, "the config (default: the installed one)");
  if (CLI::App* plugins =
          add("plugins", "list loadable plugins and refused files, folder by folder"))
    plugin_dir(plugins);
  if (CLI::App* describe =
          add("describe", "print a plugin's option table (from the plugin itself)")) {
    describe->add_option("PLUGIN", cl.plugin, "the plugin's name")->required();
    plugin_dir(describe);
  }
  add("version", "print the version");
  if (CLI::App* help = add("help", "print the commands")) help->group("");

  auto usage_error = [&](const std::string& message) {
    const bool is_check = cl.command == "check" || cl.command == "status";  // 0 or 1, always
    if (is_check) {
      std::printf("usage error: %s (see vitals %s --help)\n", message.c_str(), cl.command.c_str());
      cl.exit = kCheckUsageExit;
    } else {
      const std::string who = cl.command.empty() ? "vitals" : "vitals " + cl.command;
      std::fprintf(stderr, "%s: %s (see %s --help)\n", who.c_str(), message.c_str(), who.c_str());
      cl.exit = kUsageExit;
    }
    return cl;
  };

  try {
    app.parse(end, argv);
  } catch (const CLI::CallForHelp&) {
    for (CLI::App* sub : app.get_subcommands()) cl.command = sub->get_name();
    if (cl.command.empty()) {
      std::fputs(kOverview, stdout);
    } else {
      std::fputs(app.help().c_str(), stdout);  // the chosen subcommand's
    }
    cl.exit = kHelpExit;
    return cl;
  } catch (const CLI::ParseError& e) {
    for (CLI::App* sub : app.get_subcommands()) cl.command = sub->get_name();
    if (cl.command.empty() && argc > 1 && argv[1][0] != '-') {
      // An unknown command: CLI11 calls it an extra argument.
      cl.command = "";
      return usage_error("unknown command '" + std::string(argv[1]) + "'");
    }
    return usage_error(usage_message(e, end, argv));
  }
  for (CLI::App* sub : app.get_subcommands()) cl.command = sub->get_name();

  if (cl.command == "help") {
    std::fputs(kOverview, stdout);
    cl.exit = kHelpExit;
    return cl;
  }
  if (version) cl.command = "version";
  if (cl.command.empty()) return usage_error("missing command");
  if (end < argc && cl.command != "notify") return usage_error("unexpected argument '--'");

  if (!notify_fd.empty() && !(cl.notify_fd = parse_fd(notify_fd)))
    return usage_error("--notify-fd needs a number of 3 or more");
  if (cl.command == "check" && cl.ready && !cl.probe.empty())
    return usage_error("--probe and --ready exclude each other");
  if (cl.command == "once" && cl.probe.empty()) return usage_error("needs --probe NAME");
  if (cl.command == "notify") {
    if (cl.config.empty() || cl.probe.empty()) return usage_error("needs -c FILE and --probe NAME");
    if (cl.prog.empty()) return usage_error("missing -- PROG ARGS...");
  }
  return cl;
}

}  // namespace vitals
