// The whole `vitals check` (check.hpp), in the core library: what the front end's quick path
// (check_client.cpp) does not take for certain is answered here, with the agent's own code.
#include "check.hpp"

#include <netdb.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "command_line.hpp"
#include "config.hpp"
#include "paths.hpp"

namespace vitals {

std::string check_listen(const std::string& config_path, std::string& error) {
  ListenResult r = load_listen(config_path);  // the agent's own code
  if (!r.listen) error = r.errors.empty() ? config_path + ": unreadable" : r.errors.front();
  return r.listen.value_or("");
}

int connect_any(const std::string& host, int port, const std::string& where, long deadline,
                std::string& error) {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICSERV;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found)) {
    error = "unable to resolve " + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (const addrinfo* a = found; a && fd < 0; a = a->ai_next)
    fd = connect_to(a->ai_addr, a->ai_addrlen, where, deadline, error);
  freeaddrinfo(found);
  return fd;
}

bool agent_address(const std::string& config, const std::string& url, std::string& host, int& port,
                   std::string& error) {
  std::string listen;
  if (!url.empty()) {
    std::string rest = url;
    if (rest.rfind("http://", 0) == 0) {
      rest = rest.substr(7);
    } else if (rest.find("://") != std::string::npos) {
      error = "--url must be http://HOST:PORT";
      return false;
    }
    listen = rest.substr(0, rest.find('/'));
  } else if (!config.empty() || access(default_config_path().c_str(), R_OK) == 0) {
    listen = check_listen(config.empty() ? default_config_path() : config, error);
    if (listen.empty()) return false;
  } else {
    listen = Config{}.listen;
  }
  if (check_host_port(listen, host, port)) return true;
  error = "invalid address '" + listen + "'";
  return false;
}

int check_main(int argc, char** argv) {
  const CommandLine cl = parse_command_line(argc, argv);
  if (cl.exit) return *cl.exit;  // help (0) or a usage error (1), said on stdout
  std::string host, error;
  int port = 0;
  if (!agent_address(cl.config, cl.url, host, port, error)) {
    std::printf("%.4095s\n", ("usage error: " + error).c_str());  // as ask_agent's lines
    return 1;
  }
  return ask_agent(connect_any, host, port, cl.probe, cl.ready);
}

}  // namespace vitals

extern "C" int vitals_core_check(int argc, char** argv) {
  return vitals::check_main(argc, argv);
}
