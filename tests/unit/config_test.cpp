#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>

#include "check.hpp"
#include "config.hpp"
#include "text.hpp"

using namespace vitals;

namespace {
// Error messages name files as given; run from the data folder so they read "invalid-x.yaml:3:
// ...".
struct InDataDir {
  InDataDir() { REQUIRE(chdir(VITALS_TEST_DATA) == 0); }
};
}  // namespace

TEST_CASE("each invalid config is rejected with one line naming file, line and key", "[config]") {
  InDataDir here;
  auto [file, want] = GENERATE(table<std::string, std::string>({
      {"invalid-yaml-syntax.yaml",
       "invalid-yaml-syntax.yaml:3: invalid YAML: end of sequence flow not found"},
      {"invalid-empty.yaml", "invalid-empty.yaml: is empty; expected a map with at least 'probes'"},
      {"invalid-top-level-list.yaml",
       "invalid-top-level-list.yaml:1: expected a map at the top level"},
      {"invalid-unknown-top-key.yaml",
       "invalid-unknown-top-key.yaml:2: unknown key 'listen_addr'; valid keys: expose_details, "
       "history, isolation, listen, log_level, plugin_dir, probes, readiness, start_period, "
       "state_dir, worker_memory_limit"},
      {"invalid-history.yaml",
       "invalid-history.yaml:1: history: must be between 0 and 10000, got 100000"},
      {"invalid-unknown-probe-key.yaml",
       "invalid-unknown-probe-key.yaml:4: probes.db: unknown key 'intervall'; valid keys: "
       "failure_threshold, gates_readiness, interval, isolation, liveness, options, plugin, "
       "start_interval, success_threshold, tier, timeout"},
      {"invalid-duplicate-key.yaml",
       "invalid-duplicate-key.yaml:5: probes.db.interval: duplicate key (first at line 4)"},
      {"invalid-duplicate-probe.yaml",
       "invalid-duplicate-probe.yaml:4: probes.db: duplicate key (first at line 2)"},
      {"invalid-timeout-ge-interval.yaml",
       "invalid-timeout-ge-interval.yaml:5: probes.db.timeout (20s) must be less than interval "
       "(15s)"},
      {"invalid-bad-duration.yaml",
       "invalid-bad-duration.yaml:4: probes.db.interval: invalid duration '10'; use e.g. 250ms, "
       "2s, 1m"},
      {"invalid-bad-duration-unit.yaml",
       "invalid-bad-duration-unit.yaml:1: start_period: invalid duration '5 minutes'; use e.g. "
       "250ms, 2s, 1m"},
      {"invalid-missing-plugin.yaml",
       "invalid-missing-plugin.yaml:2: probes.db: missing required key 'plugin'"},
      {"invalid-bad-tier.yaml",
       "invalid-bad-tier.yaml:4: probes.db.tier: expected critical or optional, got 'important'"},
      {"invalid-bad-bool.yaml",
       "invalid-bad-bool.yaml:4: probes.db.gates_readiness: expected true or false, got 'maybe'"},
      {"invalid-threshold-zero.yaml",
       "invalid-threshold-zero.yaml:4: probes.db.failure_threshold: must be between 1 and 1000, "
       "got 0"},
      {"invalid-threshold-type.yaml",
       "invalid-threshold-type.yaml:4: probes.db.success_threshold: expected an integer, got "
       "'many'"},
      {"invalid-listen.yaml",
       "invalid-listen.yaml:1: listen: expected HOST:PORT (port 1-65535), got 'localhost'"},
      {"invalid-listen-port.yaml",
       "invalid-listen-port.yaml:1: listen: expected HOST:PORT (port 1-65535), got "
       "'127.0.0.1:70000'"},
      {"invalid-log-level.yaml",
       "invalid-log-level.yaml:1: log_level: expected trace, debug, info, warn or error, got "
       "'loud'"},
      {"invalid-unset-variable.yaml",
       "invalid-unset-variable.yaml:1: listen: environment variable VITALS_TEST_SURELY_UNSET is "
       "not set"},
      {"invalid-unterminated-variable.yaml",
       "invalid-unterminated-variable.yaml:1: listen: unterminated ${ at character 1; write $$ "
       "for a literal $"},
      {"invalid-notify-fd.yaml",
       "invalid-notify-fd.yaml:2: readiness.notify_fd: must be between 3 and 1048576, got 1"},
      {"invalid-probes-list.yaml",
       "invalid-probes-list.yaml:2: probes: expected a map of probe name to probe"},
      {"invalid-probe-scalar.yaml",
       "invalid-probe-scalar.yaml:2: probes.db: expected a map with at least 'plugin'"},
      {"invalid-options-list.yaml",
       "invalid-options-list.yaml:4: probes.db.options: expected a map of plugin options"},
      {"invalid-zero-interval.yaml",
       "invalid-zero-interval.yaml:4: probes.db.interval: must be greater than 0"},
      {"invalid-probe-name-slash.yaml",
       "invalid-probe-name-slash.yaml:2: probes.a/b: probe names must be non-empty and must not "
       "contain '/'"},
      {"invalid-readiness-key.yaml",
       "invalid-readiness-key.yaml:2: readiness: unknown key 'notify'; valid keys: notify_fd"},
      {"invalid-deep-nesting.yaml",
       "invalid-deep-nesting.yaml:1: invalid YAML: nested too deeply (more than 500 levels)"},
      {"invalid-liveness-key.yaml",
       "invalid-liveness-key.yaml:5: probes.mcp.liveness: unknown key 'restarts'; valid keys: "
       "after, max_restarts, within"},
      {"invalid-liveness-after.yaml",
       "invalid-liveness-after.yaml:4: probes.mcp.liveness.after: must be between 1 and 1000, "
       "got 0"},
      {"invalid-liveness-within.yaml",
       "invalid-liveness-within.yaml:4: probes.mcp.liveness.within: invalid duration '10'; use "
       "e.g. 250ms, 2s, 1m"},
      {"invalid-liveness-scalar.yaml",
       "invalid-liveness-scalar.yaml:4: probes.mcp.liveness: expected a map such as {after: 3, "
       "max_restarts: 5, within: 10m}"},
      {"invalid-huge.yaml", "invalid-huge.yaml: is larger than 1 MiB"},
      {"no-such-file.yaml", "no-such-file.yaml: unable to read: No such file or directory"},
  }));
  CAPTURE(file);
  ConfigResult r = load_config(file);
  REQUIRE_FALSE(r.config);
  REQUIRE(r.errors.size() >= 1);
  CHECK(r.errors.front() == want);
}

TEST_CASE("a full config parses with every key typed", "[config]") {
  InDataDir here;
  ::unsetenv("VITALS_TEST_PORT");
  ConfigResult r = load_config("valid-full.yaml");
  INFO((r.errors.empty() ? "" : r.errors.front()));
  REQUIRE(r.config);
  const Config& c = *r.config;
  CHECK(c.listen == "127.0.0.1:9851");
  CHECK(c.plugin_dirs == std::vector<std::string>{"plugins"});
  CHECK(c.log_level == LogLevel::Debug);
  CHECK(c.start_period == Millis(90'000));
  CHECK(c.expose_details == false);
  CHECK_FALSE(c.details_exposed());
  CHECK(c.notify_fd == 3);
  CHECK(c.history == 30);
  REQUIRE(c.probes.size() == 2);
  CHECK(c.probes[1].history == 30);  // every probe keeps the top-level `history`
  const ProbeConfig& db = c.probes[0];
  CHECK(db.name == "db");
  CHECK(db.plugin == "postgres");
  CHECK(db.tier == Tier::Critical);
  CHECK(db.start_interval == Millis(100));
  CHECK(db.success_threshold == 2);
  CHECK(db.options.at("dsn").scalar == "postgresql://app@127.0.0.1:5432/app");
  CHECK(db.options.at("require_extensions").list == std::vector<std::string>{"vector", "plpgsql"});
  CHECK(db.options.at("headers").map.front().first == "Authorization");
  const ProbeConfig& cache = c.probes[1];
  CHECK(cache.tier == Tier::Optional);
  CHECK_FALSE(cache.gates_readiness);   // optional probes do not gate readiness by default
  CHECK(cache.timeout == Millis(500));  // default: min(2s, interval / 2)
  CHECK(cache.start_interval == Millis(250));
}

TEST_CASE("defaults: loopback listener shows details, others hide them", "[config]") {
  auto parse = [](const std::string& yaml) { return parse_config(yaml, "t.yaml"); };
  CHECK(parse("probes: {}\n").config->details_exposed());
  CHECK_FALSE(parse("listen: 0.0.0.0:9851\nprobes: {}\n").config->details_exposed());
  CHECK(parse("listen: \"[::1]:9851\"\nprobes: {}\n").config->details_exposed());
}

TEST_CASE("every error in a file is reported, not only the first", "[config]") {
  ConfigResult r = parse_config("log_level: loud\nprobes:\n  a:\n    tier: x\n", "t.yaml");
  REQUIRE(r.errors.size() == 3);
  CHECK(r.errors[0] ==
        "t.yaml:1: log_level: expected trace, debug, info, warn or error, got 'loud'");
  CHECK(r.errors[1] == "t.yaml:3: probes.a: missing required key 'plugin'");
  CHECK(r.errors[2] == "t.yaml:4: probes.a.tier: expected critical or optional, got 'x'");
}

TEST_CASE("durations", "[config]") {
  CHECK(parse_duration("250ms") == Millis(250));
  CHECK(parse_duration("2s") == Millis(2000));
  CHECK(parse_duration("1m") == Millis(60'000));
  CHECK(parse_duration("1h") == Millis(3'600'000));
  CHECK(parse_duration("1m30s") == Millis(90'000));
  CHECK(parse_duration("0s") == Millis(0));
  for (const char* bad : {"", "10", "s", "1.5s", "-1s", "1 s", "1d", "2S", "99999999999999999999s",
                          "9999999999999h", "366d", "8761h"})
    CHECK_FALSE(parse_duration(bad));
  CHECK(format_duration(Millis(250)) == "250ms");
  CHECK(format_duration(Millis(2000)) == "2s");
  CHECK(format_duration(Millis(90'000)) == "1m30s");
  CHECK(format_duration(Millis(7'200'000)) == "2h");
}

TEST_CASE("environment expansion", "[config]") {
  ::setenv("VITALS_T_SET", "5432", 1);
  ::setenv("VITALS_T_EMPTY", "", 1);
  ::unsetenv("VITALS_T_UNSET");
  std::string err;
  CHECK(expand_env("port ${VITALS_T_SET}", err) == "port 5432");
  CHECK(expand_env("${VITALS_T_UNSET:-11434}", err) == "11434");
  CHECK(expand_env("${VITALS_T_EMPTY:-x}", err) == "x");  // like the shell's :-
  CHECK(expand_env("${VITALS_T_EMPTY}", err) == "");
  CHECK(expand_env("${VITALS_T_UNSET:-}", err) == "");
  CHECK(expand_env("$$5 and $HOME", err) == "$5 and $HOME");
  CHECK_FALSE(expand_env("${VITALS_T_UNSET}", err));
  CHECK(err == "environment variable VITALS_T_UNSET is not set");
  CHECK_FALSE(expand_env("${BAD NAME}", err));
  CHECK(err ==
        "invalid variable name in the ${...} at character 1 (letters, digits and _ only); write $$ "
        "for a literal $");
  CHECK_FALSE(expand_env("${OPEN", err));

  ConfigResult r = parse_config("listen: 127.0.0.1:${VITALS_T_SET}\nprobes: {}\n", "t.yaml");
  REQUIRE(r.config);
  CHECK(r.config->listen == "127.0.0.1:5432");
}

TEST_CASE("a relative plugin_dir is resolved against the config file's folder", "[config]") {
  using Dirs = std::vector<std::string>;
  CHECK(parse_config("plugin_dir: ./p\n", "/etc/vitals/v.yaml").config->plugin_dirs ==
        Dirs{"/etc/vitals/p"});
  CHECK(parse_config("plugin_dir: /opt/p\n", "/etc/vitals/v.yaml").config->plugin_dirs ==
        Dirs{"/opt/p"});
  CHECK(parse_config("listen: 127.0.0.1:1\n", "/etc/vitals/v.yaml").config->plugin_dirs.empty());
}

TEST_CASE("plugin_dir may be a list of folders, kept in order", "[config]") {
  using Dirs = std::vector<std::string>;
  CHECK(parse_config("plugin_dir: [/usr/lib/vitals/plugins, ./mine]\n", "/etc/vitals/v.yaml")
            .config->plugin_dirs == Dirs{"/usr/lib/vitals/plugins", "/etc/vitals/mine"});
  CHECK(parse_config("plugin_dir:\n  - /b\n  - /a\n", "v.yaml").config->plugin_dirs ==
        Dirs{"/b", "/a"});
  ConfigResult empty = parse_config("plugin_dir: []\n", "v.yaml");
  CHECK_FALSE(empty.config);
  CHECK(empty.errors ==
        Dirs{"v.yaml:1: plugin_dir: expected a folder or a list of folders, got []"});
  ConfigResult nested = parse_config("plugin_dir: [/a, [/b]]\n", "v.yaml");
  CHECK_FALSE(nested.config);
  CHECK(nested.errors == Dirs{"v.yaml:1: plugin_dir[1]: expected a single value"});
}

TEST_CASE("same_definition decides which probes keep their history on reload", "[config]") {
  auto probes = [](const std::string& yaml) { return parse_config(yaml, "t.yaml").config->probes; };
  const auto a = probes("probes:\n  db: {plugin: tcp, options: {port: 1}}\n");
  CHECK(a[0].same_definition(probes("probes:\n  db: {plugin: tcp, options: {port: 1}}\n")[0]));
  CHECK_FALSE(
      a[0].same_definition(probes("probes:\n  db: {plugin: tcp, options: {port: 2}}\n")[0]));
  CHECK_FALSE(a[0].same_definition(
      probes("probes:\n  db: {plugin: tcp, interval: 5s, options: {port: 1}}\n")[0]));
}

TEST_CASE("JSON strings are escaped and always valid UTF-8", "[util]") {
  std::string out;
  append_json_string(out, "a\"b\\c\nd\x01 caf\xc3\xa9 caf\xe9");
  CHECK(out == "\"a\\\"b\\\\c\\nd\\u0001 caf\xc3\xa9 caf\xef\xbf\xbd\"");
}

TEST_CASE("plugin text becomes one line of valid UTF-8", "[util]") {
  const std::string ff = "\xEF\xBF\xBD";  // U+FFFD
  CHECK(one_line("\xff\xfe\n second line") == ff + ff + "  second line");
  CHECK(one_line("a\r\nb\tc\x7f\x01"
                 "d") == "a  b c  d");
  CHECK(one_line("caf\xc3\xa9 \xe2\x82\xac") == "caf\xc3\xa9 \xe2\x82\xac");  // valid UTF-8 stays
  CHECK(one_line("c1\xc2\x85nel \xe2\x80\xa8ls \xe2\x80\xa9ps") == "c1 nel  ls  ps");
  CHECK(one_line("overlong \xc0\xaf, surrogate \xed\xa0\x80, cut \xe2\x82") ==
        "overlong " + ff + ff + ", surrogate " + ff + ff + ff + ", cut " + ff + ff);
  for (const char* s : {"\xff\xfe\n x",
                        "a\xc2\x85"
                        "b",
                        "\xe2\x80\xa8"})
    CHECK(one_line(one_line(s)) == one_line(s));
}

TEST_CASE("a config error never quotes a value that may be a secret", "[config]") {
  ConfigResult r = parse_config(
      "probes:\n  db:\n    plugin: postgres\n    options:\n"
      "      dsn: \"postgresql://app:Tr0ub4dor${x@db/app\"\n"
      "      password: \"Tr0ub4dor${not a name}x\"\n",
      "t.yaml");
  REQUIRE(r.errors.size() == 2);
  CHECK(
      r.errors[0] ==
      "t.yaml:5: probes.db.options.dsn: unterminated ${ at character 27; write $$ for a literal $");
  CHECK(r.errors[1] ==
        "t.yaml:6: probes.db.options.password: invalid variable name in the ${...} at character 10 "
        "(letters, digits and _ only); write $$ for a literal $");
  for (const auto& e : r.errors) CHECK(e.find("Tr0ub4dor") == std::string::npos);
}

TEST_CASE("vitals check reads the listen address of every config the agent accepts", "[config]") {
  ::setenv("VITALS_FUZZ_PORT", "5432", 1);  // as the fuzz target sets them
  ::setenv("VITALS_FUZZ_EMPTY", "", 1);
  ::setenv("VITALS_FUZZ_HOST", "db.internal", 1);
  int accepted = 0;
  for (const char* dir : {VITALS_TEST_DATA, VITALS_TEST_CONFIG_CORPUS}) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      const std::string file = entry.path().string();
      const ConfigResult agent = load_config(file);
      if (!agent.config) continue;
      ++accepted;
      std::string error;
      CAPTURE(file, error);
      CHECK(check_listen(file, error) == agent.config->listen);
    }
  }
  CHECK(accepted >= 10);
  // The forms `check` could not read before: a host name, a tab before a comment, flow style, a
  // quoted key with a tag, a folded scalar, the key after the probes.
  for (auto [file, listen] : std::initializer_list<std::pair<const char*, const char*>>{
           {"listen-hostname-tab-comment.yaml", "myhost:9851"},
           {"listen-flow.yaml", "127.0.0.1:9852"},
           {"listen-quoted-key-tag.yaml", "127.0.0.1:5432"},
           {"listen-folded.yaml", "localhost:9854"},
           {"listen-last-key.yaml", "127.0.0.1:9855"}}) {
    std::string error;
    CAPTURE(file);
    CHECK(check_listen(std::string(VITALS_TEST_CONFIG_CORPUS) + "/" + file, error) == listen);
  }
}

TEST_CASE("check_listen: errors name the file, the default applies without the key", "[config]") {
  std::string error;
  CHECK(check_listen(std::string(VITALS_TEST_DATA) + "/nope.yaml", error) == "");
  CHECK_THAT(error, Catch::EndsWith("nope.yaml: unable to read: No such file or directory"));
  CHECK(check_listen(std::string(VITALS_TEST_DATA) + "/invalid-listen-port.yaml", error) == "");
  CHECK_THAT(
      error,
      Catch::EndsWith("invalid-listen-port.yaml:1: listen: expected HOST:PORT (port 1-65535), got "
                      "'127.0.0.1:70000'"));
  // Errors elsewhere in the file do not matter to `check`: a running agent keeps its address.
  CHECK(check_listen(std::string(VITALS_TEST_DATA) + "/invalid-bad-tier.yaml", error) ==
        "127.0.0.1:9851");
}

// `vitals check` parses only the text up to the first top-level entry after `listen:` when that
// is enough (agent/config.cpp): every way the rest of the file can still bear on the value.
TEST_CASE("vitals check reads listen from the text before the next top-level key alike",
          "[config]") {
  const char* const texts[] = {
      "# header\n\n# more\nlisten: 127.0.0.1:9001\nprobes: {}\n",
      "listen:\n  127.0.0.1:9002\nprobes: {}\n",                      // value on the next line
      "listen: >-\n  localhost:9003\n# between\nprobes: {}\n",        // folded, comment after
      "state_dir: &a 127.0.0.1:9004\nlisten: *a\nprobes: {}\n",       // an anchor before it
      "probes: {\nlisten: {plugin: tcp}}\nlisten: 127.0.0.1:9005\n",  // a probe named listen
      "state_dir: \"a\nlisten: 127.0.0.1:9006\"\nprobes: {}\nlisten: 127.0.0.1:9007\n",
      "listen: \"127.0.0.1:\\\n9008\"\nprobes: {}\n",  // quoted, on two lines
      "listen : '[::1]:9009'  # v6\nprobes: {}\n",
      "probes: {}\nlisten: 127.0.0.1:9010\n",                            // the last key
      "listen: 127.0.0.1:9011\nprobes: {}\n---\nlisten: 127.0.0.1:1\n",  // a second document
  };
  for (const char* text : texts) {
    CAPTURE(text);
    const ConfigResult agent = parse_config(text, "t.yaml");
    INFO((agent.errors.empty() ? "" : agent.errors.front()));
    REQUIRE(agent.config);
    CHECK(parse_listen(text, "t.yaml").listen == agent.config->listen);
  }
  // Errors in the value still name the file and its line, past a comment header.
  const ListenResult bad =
      parse_listen("# a\n# b\nlisten: 127.0.0.1:70000\nprobes: {}\n", "t.yaml");
  REQUIRE(bad.errors.size() == 1);
  CHECK(bad.errors.front() ==
        "t.yaml:3: listen: expected HOST:PORT (port 1-65535), got '127.0.0.1:70000'");
}

TEST_CASE("liveness: defaults, partial maps and the state folder", "[config]") {
  ConfigResult r = parse_config(
      "state_dir: state\nprobes:\n  a: {plugin: tcp}\n  b: {plugin: tcp, liveness: {}}\n"
      "  c: {plugin: tcp, liveness: {after: 2, within: 1m}}\n",
      "/etc/vitals/v.yaml");
  INFO((r.errors.empty() ? "" : r.errors.front()));
  REQUIRE(r.config);
  CHECK(r.config->state_dir == "/etc/vitals/state");
  CHECK_FALSE(r.config->probes[0].liveness);
  REQUIRE(r.config->probes[1].liveness);
  CHECK(*r.config->probes[1].liveness == LivenessConfig{});
  CHECK(r.config->probes[1].liveness->after == 3);
  CHECK(r.config->probes[1].liveness->max_restarts == 5);
  CHECK(r.config->probes[1].liveness->within == Millis(600'000));
  REQUIRE(r.config->probes[2].liveness);
  CHECK(r.config->probes[2].liveness->after == 2);
  CHECK(r.config->probes[2].liveness->max_restarts == 5);
  CHECK(r.config->probes[2].liveness->within == Millis(60'000));
  CHECK(parse_config("probes: {}\n", "t.yaml").config->state_dir == "/run/vitals");
  // A changed liveness map is a changed definition (a reload shows the new one).
  CHECK_FALSE(r.config->probes[1].same_definition(r.config->probes[2]));
}
