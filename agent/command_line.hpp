// The command line of every `vitals` subcommand, parsed in one place with one behaviour (CLI11,
// header-only): `--flag=value` and `--flag value`, `-h`/`--help` on each subcommand, and an unknown
// flag or a missing value is a one-line error. In the core library (the front end's quick `check`
// takes only the usual command lines: check_client.cpp).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vitals {

struct CommandLine {
  std::string command;           // run, check, once, notify, validate, plugins, describe, version
  std::string config;            // -c/--config FILE ("" if not given)
  std::optional<int> notify_fd;  // run, notify: --notify-fd N
  std::string probe;             // check, once, notify: --probe NAME
  bool ready = false;            // check: --ready
  std::string url;               // check, status: --url http://HOST:PORT
  bool json = false;             // once: --json
  std::string deadline;          // notify: --deadline D, as written
  bool liveness = false;         // notify: --liveness
  std::vector<std::string> plugin_dirs;  // plugins, describe: --plugin-dir DIR (repeatable)
  std::string plugin;                    // describe PLUGIN
  std::vector<char*> prog;               // notify: PROG ARGS... after "--"

  // The config file: -c FILE, else the installed one.
  std::string config_file() const;

  // Set when parsing already did the whole job: help was printed (0), or a usage error was
  // reported in one line (100; `check` and `status`: 1, on stdout as all their output).
  std::optional<int> exit;
};

CommandLine parse_command_line(int argc, char** argv);

}  // namespace vitals
