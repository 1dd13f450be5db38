// The `vitals` command. `check` (the HEALTHCHECK client) and `worker` (a probe worker process,
// started by the agent) are answered right here without Poco; every other subcommand loads the
// agent library (Poco, yaml-cpp, spdlog) and runs it. `run` opens its listening socket first.
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "check.hpp"
#include "command_line.hpp"
#include "config.hpp"
#include "listener.hpp"
#include "paths.hpp"
#include "worker_main.hpp"

namespace {

// `vitals run`: the socket for the config's `listen:`, opened before the core loads (most of a
// cold start), so clients connect at once and wait in the backlog until the agent serves. The
// command line is parsed by the same code as in the core: help or a usage error ends here. Any
// other problem (an unreadable config, an address in use) is left to the core to report.
struct EarlyListener {
  int fd = -1;
  std::string listen;
  std::optional<int> exit;
};

EarlyListener open_early_listener(int argc, char** argv) {
  EarlyListener out;
  const vitals::CommandLine cl = vitals::parse_command_line(argc, argv);
  if ((out.exit = cl.exit)) return out;
  const auto found =
      vitals::load_listen(cl.config.empty() ? vitals::default_config_path() : cl.config);
  std::string ignored;
  if (found.listen) out.fd = vitals::open_listener(out.listen = *found.listen, ignored);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "check") == 0) return vitals::run_check(argc, argv);
  if (argc > 1 && std::strcmp(argv[1], "worker") == 0) return vitals::run_worker(argc, argv);
  EarlyListener early;
  if (argc > 1 && std::strcmp(argv[1], "run") == 0) {
    early = open_early_listener(argc, argv);
    if (early.exit) return *early.exit;
  }
  const std::string lib = vitals::pkglib_dir() + "/libvitals-core.so";
  void* core = dlopen(lib.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!core) {
    std::fprintf(stderr, "vitals: fatal: unable to load %s: %s\n", lib.c_str(), dlerror());
    return 111;
  }
  auto entry = reinterpret_cast<int (*)(int, char**)>(dlsym(core, "vitals_core_main"));
  auto listener = reinterpret_cast<void (*)(int, const char*)>(dlsym(core, "vitals_core_listener"));
  if (!entry || !listener) {
    std::fprintf(stderr, "vitals: fatal: %s has no vitals_core_main or vitals_core_listener\n",
                 lib.c_str());
    return 111;
  }
  if (early.fd >= 0) listener(early.fd, early.listen.c_str());
  return entry(argc, argv);
}
