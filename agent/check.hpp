// `vitals check`: the HEALTHCHECK client. Needs libc alone (libstdc++ and yaml-cpp are linked in
// statically), so it starts in about a millisecond; exits 0 if the agent answers 200, else 1
// (always 0 or 1: Docker reserves 2).
#pragma once

#include <string>

namespace vitals {
int run_check(int argc, char** argv);
// The HOST:PORT `vitals check -c FILE` connects to: the config's `listen`, read exactly as the
// agent reads it; "" with `error` set if the file cannot be read.
std::string check_listen(const std::string& config_path, std::string& error);
// Where `check` (and `status`) find the agent: --url, else the `listen` of -c FILE, else of the
// installed config, else the default; a wildcard host means the loopback. False with `error`.
bool agent_address(const std::string& config, const std::string& url, std::string& host, int& port,
                   std::string& error);
// One HTTP/1.0 GET within 2 s: the status code, or -1 with `error` set.
int agent_get(const std::string& host, int port, const std::string& target, std::string& body,
              std::string& error);
}  // namespace vitals
