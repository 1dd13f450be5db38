// The `vitals` command. `check` (the HEALTHCHECK client) and `worker` (a probe worker process,
// started by the agent) are answered right here without Poco; every other subcommand loads the
// agent library (Poco, yaml-cpp, spdlog) and runs it.
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "check.hpp"
#include "paths.hpp"
#include "worker_main.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "check") == 0) return vitals::run_check(argc, argv);
  if (argc > 1 && std::strcmp(argv[1], "worker") == 0) return vitals::run_worker(argc, argv);
  const std::string lib = vitals::pkglib_dir() + "/libvitals-core.so";
  void* core = dlopen(lib.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!core) {
    std::fprintf(stderr, "vitals: fatal: unable to load %s: %s\n", lib.c_str(), dlerror());
    return 111;
  }
  auto entry = reinterpret_cast<int (*)(int, char**)>(dlsym(core, "vitals_core_main"));
  if (!entry) {
    std::fprintf(stderr, "vitals: fatal: %s has no vitals_core_main\n", lib.c_str());
    return 111;
  }
  return entry(argc, argv);
}
