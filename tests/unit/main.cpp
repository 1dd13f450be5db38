// Catch2's main, and `unit_tests worker ...`: probes the tests run with isolation: process start
// /proc/self/exe as their worker, which is this binary here (`vitals` in the field).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstring>

#include "worker_main.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "worker") == 0) return vitals::run_worker(argc, argv);
  return Catch::Session().run(argc, argv);
}
