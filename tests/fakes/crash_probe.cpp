// fake-crash: a plugin written against the raw C ABI (probe.h, no C++ layer to catch anything)
// that misbehaves in every way a plugin can take its process down: segfault, abort(), exit(3), an
// exception thrown across the C boundary, allocation without bound, a hang; in run() or create().
// The mode may be the path of a file holding it, so a test can change it under a running agent.
#include <vitals/probe.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

const vitals_option kOptions[] = {
    {"mode", VITALS_OPT_STRING, "pass",
     "pass, fail, segv, abort, exit, throw, alloc, hang or stderr; or the path of a file holding "
     "one",
     0, 0},
    {"create", VITALS_OPT_STRING, "ok", "ok, fail, segv or hang: what create() does", 0, 0},
    {"token", VITALS_OPT_STRING, "", "A secret the plugin prints to stderr", 0, 1},
};

struct Instance {
  std::string mode, token;
  long runs = 0;
};

std::string current_mode(const std::string& mode) {
  if (mode.empty() || mode[0] != '/') return mode;
  std::ifstream f(mode);
  std::string m;
  return f >> m ? m : "fail";
}

// Not instrumented by UBSan: its null-store check would end the process before the segfault
// this is here to cause.
[[noreturn]] __attribute__((no_sanitize_undefined)) void misbehave(const std::string& what,
                                                                   const std::string& token) {
  std::fprintf(stderr, "fake-crash: about to %s (token=%s)\n", what.c_str(), token.c_str());
  std::fflush(stderr);
  if (what == "segv") {
    volatile int* p = nullptr;
    *p = 1;
  } else if (what == "abort") {
    std::abort();
  } else if (what == "exit") {
    std::exit(3);
  } else if (what == "throw") {
    throw std::runtime_error("thrown across the C ABI");
  } else if (what == "alloc") {
    std::vector<char*> blocks;
    for (;;) {
      char* b = static_cast<char*>(std::malloc(1 << 20));
      if (!b) throw std::bad_alloc();
      std::memset(b, 1, 1 << 20);  // touch it: real memory, not just address space
      blocks.push_back(b);
    }
  }
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));  // hang
}

int create(const vitals_host*, const vitals_option_value* values, uint32_t count, void** out,
           char* err, size_t err_len) {
  auto* inst = new Instance{"pass", "", 0};
  std::string on_create = "ok";
  for (uint32_t i = 0; i < count; ++i) {
    const std::string name = values[i].name, value = values[i].value;
    if (name == "mode") inst->mode = value;
    if (name == "create") on_create = value;
    if (name == "token") inst->token = value;
  }
  if (on_create == "fail") {
    std::snprintf(err, err_len, "create refused on purpose");
    delete inst;
    return 1;
  }
  if (on_create != "ok") misbehave(on_create, inst->token);
  *out = inst;
  return 0;
}

void run(void* instance, uint64_t, vitals_result* r) {
  auto* inst = static_cast<Instance*>(instance);
  const std::string mode = current_mode(inst->mode);
  ++inst->runs;
  std::snprintf(r->stage, sizeof r->stage, "fake");
  if (mode == "pass" || mode == "stderr") {
    if (mode == "stderr")
      std::fprintf(stderr, "fake-crash: a line on stderr (token=%s)\n", inst->token.c_str());
    r->status = VITALS_PASS;
    std::snprintf(r->message, sizeof r->message, "pass (run %ld in this process)", inst->runs);
    return;
  }
  if (mode == "fail") {
    r->status = VITALS_FAIL;
    std::snprintf(r->message, sizeof r->message, "fail");
    return;
  }
  misbehave(mode, inst->token);
}

void destroy(void* instance) {
  delete static_cast<Instance*>(instance);
}

}  // namespace

extern "C" VITALS_EXPORT const vitals_plugin* vitals_probe_entry(uint32_t host_major) {
  static const vitals_plugin desc = {VITALS_ABI_MAJOR,
                                     VITALS_ABI_MINOR,
                                     sizeof(vitals_plugin),
                                     "fake-crash",
                                     "0.0.1",
                                     "Crashes, hangs and floods on demand, for tests",
                                     kOptions,
                                     sizeof kOptions / sizeof kOptions[0],
                                     create,
                                     run,
                                     destroy,
                                     {}};
  return host_major == VITALS_ABI_MAJOR ? &desc : nullptr;
}
