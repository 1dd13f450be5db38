// Fuzz target: the configuration layer. The input is YAML text handed to the pure parser
// (yaml-cpp, key-path validation, ${VAR} expansion, durations); the same bytes are also fed to
// parse_duration and expand_env directly. Invariants checked beyond "no crash":
//  - a config is returned exactly when there are no errors, and every error names the file;
//  - parse_duration never yields a negative or over-a-year duration, and what it accepts
//    survives format_duration -> parse_duration unchanged;
//  - every accepted probe has 0 < timeout < interval and 0 < start_interval;
//  - parse_listen (what `vitals check` reads) gives the listen address of every accepted config;
//  - an expand_env error never quotes the text it was given (it may hold a password).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "config.hpp"
#include "text.hpp"
#include "util.hpp"

namespace {

void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_config: invariant violated: %s\n", what);
    std::abort();
  }
}

void init_env() {
  // Variables the corpus refers to; the rest stay unset so the "not set" path runs too.
  setenv("VITALS_FUZZ_PORT", "5432", 1);
  setenv("VITALS_FUZZ_EMPTY", "", 1);
  setenv("VITALS_FUZZ_HOST", "db.internal", 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const bool env_ready = (init_env(), true);
  (void)env_ready;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::string file = "fuzz.yaml";

  const vitals::ConfigResult r = vitals::parse_config(text, file);
  require(r.config.has_value() == r.errors.empty(), "config present iff no errors");
  for (const auto& e : r.errors) require(e.rfind(file, 0) == 0, "error line starts with the file");
  if (r.config) {
    for (const auto& p : r.config->probes) {
      require(p.interval.count() > 0, "interval > 0");
      require(p.start_interval.count() > 0, "start_interval > 0");
      require(p.timeout.count() > 0 && p.timeout < p.interval, "0 < timeout < interval");
      require(!p.name.empty() && p.name.find('/') == std::string::npos, "probe name");
    }
    const vitals::ListenResult l = vitals::parse_listen(text, file);
    require(l.listen == r.config->listen, "`vitals check` reads the agent's listen address");
  }

  if (size <= 64) {
    if (auto d = vitals::parse_duration(text)) {
      require(d->count() >= 0 && d->count() <= 365LL * 24 * 3'600'000, "duration range");
      auto again = vitals::parse_duration(vitals::format_duration(*d));
      require(again && *again == *d, "format_duration round trip");
    }
  }
  std::string why;
  if (auto expanded = vitals::expand_env(text, why))
    require(why.empty(), "no error on success");
  else
    require(!why.empty() && (size < 8 || why.find(text) == std::string::npos),
            "an error names the problem without quoting the text (it may be a secret)");
  return 0;
}
