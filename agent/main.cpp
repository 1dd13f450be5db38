// The agent executable, <libdir>/vitals/vitals: the `vitals` in bindir (front.cpp, static) hands it
// every command line it does not answer itself, with the same arguments. `worker` (a probe worker
// process, started by the agent as /proc/self/exe, i.e. this) is answered right here without Poco;
// every other subcommand loads the agent library (Poco, yaml-cpp, spdlog) and runs it. `run` opens
// its listening socket first.
#include <dlfcn.h>
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "check.hpp"
#include "listener.hpp"
#include "paths.hpp"
#include "worker_main.hpp"

namespace {

// `vitals run`: the socket for the config's `listen:`, opened before the core loads (most of a
// cold start), so clients connect at once and wait in the backlog until the agent serves. Only for
// a usual command line and a plain `listen:` line, read as the core reads them (check_client.cpp,
// libc alone: no CLI11 or yaml-cpp start-up before the socket listens). Anything else (help, a
// usage error, another YAML form, a config that is not a regular file: a pipe, /dev/stdin) is left
// to the core, as is a `listen:` that does not parse.
struct EarlyListener {
  std::optional<std::string> listen;
  int fd = -1;
  std::string error;
};

EarlyListener open_early_listener(int argc, char** argv) {
  EarlyListener out;
  const auto cl = vitals::quick_command_line(argc, argv);
  if (!cl) return out;
  const std::string file = cl->config.empty() ? vitals::default_config_path() : cl->config;
  struct stat st {};
  if (stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return out;
  if ((out.listen = vitals::quick_config_listen(file)))
    out.fd = vitals::open_listener(*out.listen, out.error);
  return out;
}

template <typename Fn>
Fn* symbol(void* lib, const char* name) {
  return reinterpret_cast<Fn*>(dlsym(lib, name));
}

}  // namespace

int main(int argc, char** argv) {
  // An ignored SIGCHLD survives exec (a supervisor, a shell's `trap '' CHLD`): the kernel would
  // then reap our children itself and waitpid() find none, so an exec probe's exit code and a
  // worker's end would be lost. Every subcommand takes the default back.
  signal(SIGCHLD, SIG_DFL);
  if (argc > 1 && std::strcmp(argv[1], "worker") == 0) return vitals::run_worker(argc, argv);
  const bool check = argc > 1 && std::strcmp(argv[1], "check") == 0;
  EarlyListener early;
  if (argc > 1 && std::strcmp(argv[1], "run") == 0) {
    // The agent takes SIGTERM, SIGINT and SIGHUP with sigwait(); blocked before the port accepts,
    // so one sent as soon as it does is handled (a reload, a clean stop), not fatal.
    sigset_t set;
    sigemptyset(&set);
    for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    early = open_early_listener(argc, argv);
  }
  const std::string lib = vitals::pkglib_dir() + "/libvitals-core.so";
  void* core = dlopen(lib.c_str(), RTLD_LAZY | RTLD_LOCAL);
  if (!core) return vitals::cannot_start(check, std::string("unable to load ") + dlerror());
  if (check) {
    auto* entry = symbol<int(int, char**)>(core, "vitals_core_check");
    return entry ? entry(argc, argv)
                 : vitals::cannot_start(true, lib + " has no vitals_core_check");
  }
  auto* entry = symbol<int(int, char**)>(core, "vitals_core_main");
  auto* listener = symbol<void(const char*, int, const char*)>(core, "vitals_core_listener");
  if (!entry || !listener) return vitals::cannot_start(false, lib + " is not vitals' core library");
  if (early.listen) listener(early.listen->c_str(), early.fd, early.error.c_str());
  return entry(argc, argv);
}
