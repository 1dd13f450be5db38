// `vitals check`: the HEALTHCHECK client; exits 0 if the agent answers 200, else 1 (always 0 or 1:
// Docker reserves 2). Two halves, so a HEALTHCHECK starts like a C program:
//  - check_client.cpp, in the static front end and the core library: libc and std::string alone,
//    no name resolution. The front end answers the usual command lines itself (quick_check);
//  - check.cpp, in the core library only: the whole command (CLI11, the agent's config code, host
//    names), for every other command line and config. The front end hands those to the agent
//    executable (main.cpp), which loads the core library.
#pragma once

#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

namespace vitals {

// The front end's `vitals check`, when quick_command_line() and quick_config_listen() take it and
// the address is numeric: the exit code. nullopt otherwise: then check_main gives the same answer,
// the slower way.
std::optional<int> quick_check(int argc, char** argv);
// The whole `vitals check`: the command line parsed as every subcommand's (command_line.cpp),
// `listen` read by the agent's own config code.
int check_main(int argc, char** argv);

// A usual `check` or `run` command line, when quick_command_line() takes it for certain:
//   check: at most one each of -c/--config FILE, --url URL, --probe NAME and --ready (not with
//          --probe);
//   run: at most one each of -c/--config FILE and --notify-fd N (3 to 2^20);
// values that do not start with '-'. nullopt for anything else (help, errors, repeats, other
// spellings): the agent's parser (command_line.cpp) decides those.
struct QuickCommandLine {
  std::string command, config, url, probe, notify_fd;
  bool ready = false;
};
std::optional<QuickCommandLine> quick_command_line(int argc, char** argv);
// The `listen` of a config text, when it is a line `listen: VALUE` at the start of the file or
// after plain `key: value` lines, comments and blank lines, and followed by another top-level key
// (or the end): then the agent reads the same value, ${VAR}-expanded, and it is HOST:PORT. nullopt
// for any other text (the agent's code then reads it: parse_listen()).
std::optional<std::string> quick_listen(std::string_view text);
// quick_listen() of the config file at `path` ("": the installed one), if it is readable.
std::optional<std::string> quick_config_listen(const std::string& path);

// The agent's HOST:PORT as `check` connects to it: a wildcard host becomes the loopback address.
bool check_host_port(const std::string& hostport, std::string& host, int& port);
// A connected socket to HOST:PORT by `deadline` (CLOCK_MONOTONIC ms), or -1 with `error` set;
// `where` names the address in that error.
using Connector = int (*)(const std::string& host, int port, const std::string& where,
                          long deadline, std::string& error);
// A numeric IPv4 or IPv6 address only (check_client.cpp: the front end has no resolver).
int connect_numeric(const std::string& host, int port, const std::string& where, long deadline,
                    std::string& error);
// A host name too, resolved as the agent's listener resolves it, each address in turn (check.cpp).
int connect_any(const std::string& host, int port, const std::string& where, long deadline,
                std::string& error);
// One address, non-blocking, by the deadline (what both connectors use).
int connect_to(const sockaddr* addr, socklen_t len, const std::string& where, long deadline,
               std::string& error);
// GET /health (or /health/PROBE, or /readyz with `ready`) as one line, printed; 0 on a 200, else 1.
int ask_agent(Connector connect, const std::string& host, int port, const std::string& probe,
              bool ready);
// Why `vitals` cannot go on (the agent executable or the core library missing): for `check` a line
// on stdout and 1, as every check answer; else "vitals: fatal: ..." on stderr and 111.
int cannot_start(bool check, const std::string& why);
// The HOST:PORT `vitals check -c FILE` connects to: the config's `listen`, read exactly as the
// agent reads it; "" with `error` set if the file cannot be read.
std::string check_listen(const std::string& config_path, std::string& error);
// Where `check` (and `status`) find the agent: --url, else the `listen` of -c FILE, else of the
// installed config, else the default; a wildcard host means the loopback. False with `error`.
bool agent_address(const std::string& config, const std::string& url, std::string& host, int& port,
                   std::string& error);
// One HTTP/1.0 GET within 2 s: the status code, or -1 with `error` set.
int agent_get(Connector connect, const std::string& host, int port, const std::string& target,
              std::string& body, std::string& error);
}  // namespace vitals

// check_main, for the agent executable (visible: the core library exports it beside
// vitals_core_main).
extern "C" __attribute__((visibility("default"))) int vitals_core_check(int argc, char** argv);
