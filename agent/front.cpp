// The `vitals` command in bindir: a static executable, so a HEALTHCHECK maps no shared library and
// the dynamic loader has nothing to do (bench/RESULTS.md, section 2). It answers `vitals check`
// itself when check_client.cpp takes the command line, the config and a numeric address for
// certain (quick_check), and hands everything else, with the same arguments, to the agent
// executable beside the core library, <libdir>/vitals/vitals (main.cpp).
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "check.hpp"
#include "paths.hpp"

int main(int argc, char** argv) {
  const bool check = argc > 1 && std::strcmp(argv[1], "check") == 0;
  if (check) {
    // A reader of stdout that went away must not turn the agent's answer into a SIGPIPE death
    // (whatever this hands over to ignores SIGPIPE too: the core does, and resets it for PROG).
    signal(SIGPIPE, SIG_IGN);
    if (const std::optional<int> code = vitals::quick_check(argc, argv)) return *code;
  }
  const std::string agent = vitals::pkglib_dir() + "/vitals";
  execv(agent.c_str(), argv);
  const int err = errno;
  std::string why = std::strerror(err);
  struct stat st {};
  if (err == ENOENT && stat(agent.c_str(), &st) == 0)
    why += " (the file exists; its interpreter does not)";
  return vitals::cannot_start(check, "unable to run " + agent + ": " + why);
}
