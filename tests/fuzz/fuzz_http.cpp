// Fuzz target: request-target parsing and routing, as the HTTP handler calls them.
// Input: byte 0 picks the method (low 2 bits: GET, HEAD, POST, or the next bytes up to a space)
// and has_body (bit 2); the rest is the request target. The backend is a fixed snapshot of real
// probes built from the fake plugins through vitals::prepare: one failing critical probe whose
// message carries a secret option, one passing optional probe, one never run (unknown) with
// quotes and backslashes in its name. Invariants beyond "no crash":
//  - the status is one of 200, 400, 404, 405, 503; 405 exactly for methods other than GET/HEAD,
//    and then with the Allow header;
//  - the secret option value never appears in any reply.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "agent.hpp"
#include "http.hpp"
#include "metrics.hpp"

#ifndef VITALS_FUZZ_PLUGIN_DIR
#error "VITALS_FUZZ_PLUGIN_DIR must name the folder of the fake plugins"
#endif

namespace {

constexpr const char* kSecret = "fuzz-s3cret-t0ken";

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_http: invariant violated: %s\n", what);
    std::abort();
  }
}

struct Fixture {
  vitals::Health health;
  vitals::HttpBackend backend;
  std::shared_ptr<vitals::PluginHost> plugins;  // keeps the plugins loaded

  Fixture() {
    spdlog::set_level(spdlog::level::off);
    char tmpl[] = "/tmp/vitals-fuzz-XXXXXX";
    const std::filesystem::path dir = mkdtemp(tmpl);
    const std::filesystem::path cfg = dir / "vitals.yaml";
    std::ofstream(cfg) << "plugin_dir: " << VITALS_FUZZ_PLUGIN_DIR << "\n"
                       << "probes:\n"
                       << "  db:\n    plugin: fake-ok\n    options: {result: fail, token: "
                       << kSecret << "}\n"
                       << "  cache:\n    plugin: fake-ok\n    tier: optional\n"
                       << "  'we\"ird\\name %41':\n    plugin: fake-ok\n";
    std::vector<std::string> errors;
    auto prepared = vitals::prepare(cfg.string(), {}, errors);
    std::filesystem::remove_all(dir);
    if (!prepared) {
      for (const auto& e : errors) std::fprintf(stderr, "fuzz_http: %s\n", e.c_str());
      std::abort();
    }
    plugins = prepared->plugins;
    for (size_t i = 0; i + 1 < prepared->probes.size(); ++i)
      prepared->probes[i]->record(prepared->probes[i]->run_once());
    health.set_probes(prepared->probes, vitals::Millis(0), true);
    backend = {[this] { return health.snapshot(); }, [] { return vitals::AgentFacts{"9.9.9"}; },
               [] { return true; }};
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fixture = new Fixture;  // never destroyed: plugins stay loaded
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  std::string rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string method;
  switch (flags & 3) {
    case 0:
      method = "GET";
      break;
    case 1:
      method = "HEAD";
      break;
    case 2:
      method = "POST";
      break;
    default: {
      const size_t sp = rest.find(' ');
      method = rest.substr(0, sp);
      rest = sp == std::string::npos ? "" : rest.substr(sp + 1);
    }
  }
  const bool has_body = flags & 4;

  vitals::Target t;
  if (vitals::parse_target(rest, t)) require(!rest.empty() && rest[0] == '/', "origin form only");

  const vitals::Reply r = vitals::route(method, rest, has_body, fixture->backend);
  const bool get_or_head = method == "GET" || method == "HEAD";
  require(
      r.status == 200 || r.status == 400 || r.status == 404 || r.status == 405 || r.status == 503,
      "known status");
  require((r.status == 405) == !get_or_head, "405 exactly for other methods");
  require(r.allow_header == (r.status == 405), "Allow with 405");
  require(!(get_or_head && has_body) || r.status == 400, "a body gets 400");
  require(r.body().find(kSecret) == std::string::npos, "the secret never leaves");
  return 0;
}
