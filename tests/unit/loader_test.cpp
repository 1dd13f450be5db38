#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "agent.hpp"
#include "http.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "plugin_host.hpp"

using namespace vitals;
namespace fs = std::filesystem;

namespace {

// A scratch folder with a config naming the fake plugins' folder.
struct Scratch {
  fs::path dir;
  Scratch() {
    char tmpl[] = "/tmp/vitals-unit-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~Scratch() { fs::remove_all(dir); }
  std::string config(const std::string& probes_yaml) const {
    const fs::path p = dir / "vitals.yaml";
    std::ofstream(p) << "plugin_dir: " << VITALS_TEST_PLUGIN_DIR << "\nprobes:\n" << probes_yaml;
    return p.string();
  }
};

}  // namespace

TEST_CASE("the loader refuses each bad plugin with its own reason", "[loader]") {
  PluginHost host;
  host.scan(VITALS_TEST_PLUGIN_DIR);
  auto [stem, reason, message] = GENERATE(table<std::string, std::string, std::string>({
      {"fake-major2", "abi_major", "built for ABI 2.x, agent speaks 1.x"},
      {"fake-newer-minor", "abi_newer", "built for ABI 1.99"},
      {"fake-bigger-struct", "abi_newer", "descriptor 176 bytes"},
      {"fake-no-entry", "no_entry", "not a vitals plugin: no vitals_probe_entry symbol"},
      {"fake-refuses", "refused", "the plugin refused ABI major 1"},
      {"fake-missing-run", "missing_callback", "missing run"},
      {"fake-zz-dup", "duplicate_name", "duplicate plugin name 'fake-ok'"},
      {"fake-upper", "invalid_name", "invalid plugin name 'Upper_Case'; names are [a-z0-9-]+"},
      {"fake-bad-name", "invalid_name", "invalid plugin name 'My Plug\"in'"},
      {"fake-null-name", "missing_name", "the descriptor has no name (NULL)"},
      {"fake-null-options", "missing_options",
       "the descriptor declares 6 options but its option table is NULL"},
  }));
  CAPTURE(stem);
  const Refusal* r = host.refusal_for(stem);
  REQUIRE(r);
  CHECK(r->reason == reason);
  CHECK_THAT(r->message, Catch::Contains(message));
  CHECK(host.find("fake-ok"));
  CHECK(host.find("fake-throws"));
  CHECK(host.find("fake-hangs"));
  // No option table at all is valid: NULL with option_count 0.
  CHECK(host.find("fake-no-options"));
  CHECK_FALSE(host.refusal_for("fake-no-options"));
}

TEST_CASE("a plugin is loaded by name, alone; a name another file declares is found too",
          "[loader]") {
  PluginHost host;
  const Plugin* ok = host.load_named({VITALS_TEST_PLUGIN_DIR}, "fake-ok");
  REQUIRE(ok);
  CHECK(ok->path == std::string(VITALS_TEST_PLUGIN_DIR) + "/fake-ok.so");
  CHECK(host.plugins().size() == 1);  // no other file of the folder was tried
  CHECK(host.refusals().empty());
  CHECK(host.load_named({VITALS_TEST_PLUGIN_DIR}, "fake-ok") == ok);

  // A file named otherwise (here one that declares "fake-ok" too): every file is tried.
  Scratch s;
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-v2.so", s.dir / "renamed.so");
  PluginHost other;
  const Plugin* found = other.load_named({s.dir.string()}, "fake-ok");
  REQUIRE(found);
  CHECK(found->path == (s.dir / "renamed.so").string());
  CHECK_FALSE(other.load_named({s.dir.string()}, "fake-missing"));

  // A plugin name, never a path: "../fakes/fake-ok" is not a file to load.
  PluginHost paths;
  CHECK_FALSE(paths.load_named({VITALS_TEST_PLUGIN_DIR}, "../fakes/fake-ok"));
}

TEST_CASE("<name>.so keeps its name against a file named otherwise, whatever is loaded first",
          "[loader]") {
  // The first folder has renamed.so declaring fake-ok; the second, fake-ok.so.
  Scratch a, b;
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-v2.so", a.dir / "renamed.so");
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-ok.so", b.dir / "fake-ok.so");
  const std::vector<std::string> dirs = {a.dir.string(), b.dir.string()};
  const std::string named = (b.dir / "fake-ok.so").string();

  PluginHost by_name;  // as a probe of fake-ok alone
  REQUIRE(by_name.load_named(dirs, "fake-ok"));
  CHECK(by_name.find("fake-ok")->path == named);

  PluginHost scan_first;  // a probe of a missing plugin scans every file first
  CHECK_FALSE(scan_first.load_named(dirs, "fake-missing"));
  REQUIRE(scan_first.load_named(dirs, "fake-ok"));
  CHECK(scan_first.find("fake-ok")->path == named);
  const Refusal* r = scan_first.refusal_for("renamed");
  REQUIRE(r);
  CHECK(r->reason == "duplicate_name");

  PluginHost all;  // `vitals plugins`
  all.scan(dirs);
  CHECK(all.find("fake-ok")->path == named);
}

TEST_CASE("each refusal reason is counted in /metrics", "[loader]") {
  PluginHost host;
  host.scan(VITALS_TEST_PLUGIN_DIR);
  Health health;
  HttpBackend b{[&] { return health.snapshot(); }, [] { return AgentFacts{"9.9.9"}; },
                [] { return true; }};
  const std::string metrics = route("GET", "/metrics", false, b).body();
  for (const char* reason :
       {"missing_callback", "missing_name", "invalid_name", "missing_options"}) {
    CAPTURE(reason);
    const std::string sample =
        std::string("vitals_plugin_load_failures_total{reason=\"") + reason + "\"} ";
    const size_t at = metrics.find(sample);
    REQUIRE(at != std::string::npos);
    CHECK(std::stol(metrics.substr(at + sample.size())) >= 1);
  }
}

TEST_CASE("plugin folders are searched in order; a name seen again is a duplicate", "[loader]") {
  Scratch s;
  chmod(s.dir.c_str(), 0755);
  const fs::path first = s.dir / "first", second = s.dir / "second";
  for (const auto& d : {first, second}) {
    fs::create_directory(d);
    chmod(d.c_str(), 0755);
  }
  const fs::path fakes(VITALS_TEST_PLUGIN_DIR);
  fs::copy_file(fakes / "fake-ok.so", first / "fake-ok.so");
  fs::copy_file(fakes / "fake-ok.so", second / "fake-ok.so");
  fs::copy_file(fakes / "fake-throws.so", second / "fake-throws.so");
  PluginHost host;
  host.scan(std::vector<std::string>{first.string(), second.string()});
  REQUIRE(host.find("fake-ok"));
  CHECK(host.find("fake-ok")->path == (first / "fake-ok.so").string());
  REQUIRE(host.find("fake-throws"));  // found in the second folder only
  CHECK(host.find("fake-throws")->path == (second / "fake-throws.so").string());
  REQUIRE(host.refusals().size() == 1);
  const Refusal& r = host.refusals().front();
  CHECK(r.path == (second / "fake-ok.so").string());
  CHECK(r.reason == "duplicate_name");
  CHECK(r.message ==
        "duplicate plugin name 'fake-ok', already loaded from " + (first / "fake-ok.so").string());
  CHECK(host.dirs_text() == first.string() + ", " + second.string());
}

TEST_CASE("the loader refuses plugins on unsafe paths", "[loader]") {
  Scratch s;
  const fs::path copy = s.dir / "fake-ok.so";
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-ok.so", copy);
  chmod(s.dir.c_str(), 0755);
  chmod(copy.c_str(), 0666);  // world-writable file
  PluginHost host;
  host.scan(s.dir.string());
  REQUIRE(host.refusal_for("fake-ok"));
  CHECK(host.refusal_for("fake-ok")->reason == "unsafe_path");
  CHECK_THAT(host.refusal_for("fake-ok")->message, Catch::Contains("group- or world-writable"));

  chmod(copy.c_str(), 0644);
  chmod(s.dir.c_str(), 0777);  // world-writable folder
  PluginHost host2;
  host2.scan(s.dir.string());
  REQUIRE(host2.refusal_for("fake-ok"));
  CHECK(host2.refusal_for("fake-ok")->reason == "unsafe_path");
  chmod(s.dir.c_str(), 0755);
  PluginHost host3;
  host3.scan(s.dir.string());
  CHECK(host3.find("fake-ok"));
}

TEST_CASE("the loader checks the file a symlink points to and every folder above it", "[loader]") {
  Scratch s;
  chmod(s.dir.c_str(), 0755);
  const fs::path safe = s.dir / "safe", shared = s.dir / "shared", inner = shared / "inner";
  fs::create_directories(inner);
  fs::create_directory(safe);
  chmod(safe.c_str(), 0755);
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-ok.so", shared / "fake-ok.so");
  fs::copy_file(fs::path(VITALS_TEST_PLUGIN_DIR) / "fake-ok.so", inner / "fake-ok.so");
  chmod(inner.c_str(), 0755);
  fs::create_symlink(shared / "fake-ok.so", safe / "fake-ok.so");
  auto refusal = [&] {
    PluginHost host;
    host.scan(safe.string());
    const Refusal* r = host.refusal_for("fake-ok");
    return r ? r->reason + ": " + r->message : std::string("loaded");
  };

  // safe/fake-ok.so -> shared/fake-ok.so, shared world-writable: the target's folder counts.
  chmod(shared.c_str(), 0777);
  CHECK(refusal() == "unsafe_path: unsafe path: " + shared.string() +
                         " is group- or world-writable (" + (safe / "fake-ok.so").string() +
                         " is " + (shared / "fake-ok.so").string() + ")");
  chmod(shared.c_str(), 01777);  // sticky does not make the file's own folder safe
  CHECK_THAT(refusal(), Catch::StartsWith("unsafe_path: unsafe path: " + shared.string() + " is"));

  // safe/fake-ok.so -> shared/inner/fake-ok.so: inner is fine, the folder above it is not.
  fs::remove(safe / "fake-ok.so");
  fs::create_symlink(inner / "fake-ok.so", safe / "fake-ok.so");
  chmod(shared.c_str(), 0777);
  CHECK_THAT(refusal(), Catch::StartsWith("unsafe_path: unsafe path: " + shared.string() + " is"));
  chmod(shared.c_str(), 01777);  // above the file's folder, a sticky folder (as /tmp) is safe
  CHECK(refusal() == "loaded");
  chmod(shared.c_str(), 0755);
  CHECK(refusal() == "loaded");
  chmod((inner / "fake-ok.so").c_str(), 0646);  // the target file itself
  CHECK_THAT(refusal(), Catch::StartsWith("unsafe_path: unsafe path: " +
                                          (inner / "fake-ok.so").string() + " is group-"));
}

TEST_CASE("a configured probe whose plugin is refused or missing is a config error", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  CHECK_FALSE(prepare(s.config("  a:\n    plugin: fake-major2\n"), {}, errors));
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Catch::Contains("vitals.yaml:3: probes.a.plugin: plugin 'fake-major2' was "
                                        "refused (abi_major): built for ABI 2.x"));
  errors.clear();
  CHECK_FALSE(prepare(s.config("  a:\n    plugin: nope\n"), {}, errors));
  REQUIRE(errors.size() == 1);
  CHECK_THAT(errors[0], Catch::Contains("probes.a.plugin: no plugin 'nope' in "));
  CHECK_THAT(errors[0], Catch::Contains("available: fake-at-deadline, fake-crash, "
                                        "fake-create-blocks, fake-hangs, fake-load-gate, "
                                        "fake-no-options, fake-ok, fake-throws"));
}

TEST_CASE("options are checked against the plugin's table", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  CHECK_FALSE(prepare(s.config("  a:\n    plugin: fake-ok\n    options: {reslt: pass, sleep: 5}\n"),
                      {}, errors));
  REQUIRE(errors.size() == 2);
  CHECK_THAT(errors[0],
             Catch::EndsWith(
                 "vitals.yaml:5: probes.a.options: unknown option 'reslt' "
                 "for plugin fake-ok; valid options: count, message, result, sleep, stage, token"));
  CHECK_THAT(
      errors[1],
      Catch::EndsWith(
          "vitals.yaml:5: probes.a.options.sleep: invalid duration '5'; use e.g. 250ms, 2s, 1m"));
}

TEST_CASE("an option error never quotes a secret value", "[loader]") {
  const vitals_option table[] = {
      {"pin", VITALS_OPT_INT, nullptr, "", 0, 1},
      {"after", VITALS_OPT_DURATION, nullptr, "", 0, 1},
      {"port", VITALS_OPT_INT, nullptr, "", 0, 0},
  };
  vitals_plugin plugin{};
  plugin.name = "t";
  plugin.options = table;
  plugin.option_count = 3;
  ProbeConfig probe = parse_config(
                          "probes:\n  a:\n    plugin: t\n"
                          "    options: {pin: Tr0ub4dor, after: Tr0ub4dor, port: http}\n",
                          "v.yaml")
                          .config->probes.front();
  BoundOptions out;
  std::vector<std::string> errors;
  CHECK_FALSE(bind_options(probe, plugin, "v.yaml", out, errors));
  CHECK(errors == std::vector<std::string>{
                      "v.yaml:4: probes.a.options.pin: expected an integer, got (a secret value, "
                      "not shown)",
                      "v.yaml:4: probes.a.options.after: invalid duration (a secret value, not "
                      "shown); use e.g. 250ms, 2s, 1m",
                      "v.yaml:4: probes.a.options.port: expected an integer, got 'http'"});
}

TEST_CASE("a probe runs through the ABI; secrets never come back out", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(
      s.config("  a:\n    plugin: fake-ok\n    options: {result: warn, token: hunter2secret}\n"),
      {}, errors);
  REQUIRE(p);
  RunResult r = p->probes[0]->run_once();
  CHECK(r.status == Status::Warn);
  CHECK(r.stage == "fake");
  CHECK(r.message == "warn token=[redacted]");
  REQUIRE(r.numbers.size() == 1);
  CHECK(r.numbers[0].name == "runs");
}

TEST_CASE("what a plugin says reaches the host as one line of valid UTF-8", "[loader]") {
  Scratch s;
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "vitals", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  spdlog::set_pattern("%v");
  std::vector<std::string> errors;
  auto p = prepare(s.config("  inject:\n    plugin: fake-ok\n    options: {result: fail, message: "
                            "'\\xff\\xfe\\x0a second line\\x0d', token: hunter\\x0a2}\n"),
                   {}, errors);
  REQUIRE(p);
  RunResult r = p->probes[0]->run_once();
  spdlog::set_default_logger(previous);
  // The token (secret) "hunter\n2" is returned as "hunter\n2": found and scrubbed as written.
  CHECK(r.message == "\xEF\xBF\xBD\xEF\xBF\xBD  second line  token=[redacted]");
  // The plugin logged the same text: one line, no second line injected.
  CHECK(captured.str() == "created\n" + r.message + "\n");
}

TEST_CASE("secrets: 3 characters or more are scrubbed, a text holding a shorter one is withheld",
          "[loader]") {
  Secrets s;
  for (const char* v : {"hunter2", "pw", "Bearer xyzzy", "", "Basic ab"}) s.add(v);
  CHECK(s.scrubbed() == std::vector<std::string>{"hunter2", "Bearer xyzzy", "xyzzy", "Basic ab"});
  CHECK(s.too_short() == std::vector<std::string>{"pw", "ab"});
  auto [text, shown] = GENERATE(table<std::string, std::string>({
      {"login failed for hunter2", "login failed for [redacted]"},
      {"sent Bearer xyzzy, then xyzzy", "sent [redacted], then [redacted]"},
      {"connection refused", "connection refused"},
      {"password pw rejected", kWithheld},
      {"token ab", kWithheld},  // the credential of "Basic ab"
      {"p\nw", "p w"},          // not the secret once on one line
      {"hunter2hunter2", "[redacted][redacted]"},
  }));
  CAPTURE(text);
  CHECK(safe_text(text, s) == shown);
}

TEST_CASE("a short secret never comes back out either", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(s.config("  a:\n    plugin: fake-ok\n    options: {result: fail, token: pw}\n"),
                   {}, errors);
  REQUIRE(p);
  RunResult r = p->probes[0]->run_once();
  CHECK(r.status == Status::Fail);
  CHECK(r.stage == "fake");  // stages and messages without the secret are shown as they are
  CHECK(r.message == kWithheld);
}

TEST_CASE("a throwing plugin fails the run instead of crashing the host", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(s.config("  a:\n    plugin: fake-throws\n"), {}, errors);
  REQUIRE(p);
  RunResult r = p->probes[0]->run_once();
  CHECK(r.status == Status::Fail);
  CHECK(r.stage == "throwing");
  CHECK(r.message == "unexpected error: thrown on purpose");
}

TEST_CASE("a hanging plugin is reported as a timeout by the guarded run", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(s.config("  a:\n    plugin: fake-hangs\n    interval: 1s\n    timeout: 50ms\n"),
                   {}, errors);
  REQUIRE(p);
  RunResult r = p->probes[0]->run_guarded(p->probes[0]);
  CHECK(r.status == Status::Fail);
  CHECK(r.stage == "timeout");
  CHECK(r.message == "did not finish within 50ms");
}

TEST_CASE("unchanged probes are reused on reload, changed ones are new", "[loader]") {
  Scratch s;
  std::vector<std::string> errors;
  auto first =
      prepare(s.config("  a:\n    plugin: fake-ok\n  b:\n    plugin: fake-ok\n"), {}, errors);
  REQUIRE(first);
  auto second =
      prepare(s.config("  a:\n    plugin: fake-ok\n  b:\n    plugin: fake-ok\n    interval: 5s\n"),
              first->probes, errors);
  REQUIRE(second);
  CHECK(second->probes[0] == first->probes[0]);
  CHECK(second->probes[1] != first->probes[1]);
}

TEST_CASE("plain /health is rendered again when a result is recorded, else reused", "[http]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(s.config("  db:\n    plugin: fake-ok\n"), {}, errors);
  REQUIRE(p);
  Health health;
  health.set_probes(p->probes, Millis(0), true);
  int snapshots = 0;
  HttpBackend b{[&] {
                  ++snapshots;
                  return health.snapshot();
                },
                [] { return AgentFacts{"9.9.9"}; }, [] { return true; },
                [&] { return health.generation(); },
                // A granularity no test run reaches: only a change renders again.
                std::make_shared<ReplyCache>(std::chrono::hours(1))};
  const std::string before = route("GET", "/health", false, b).body();
  CHECK(route("GET", "/health", false, b).body() == before);
  CHECK(snapshots == 1);
  // Reused is the very same string, and the answer sends that one: no request copies it. The
  // answer is the whole response rendered with it (head and body), the same string for every
  // request; keep-alive and close each have theirs. (All taken again if the second of the Date
  // header ended in between, which renders the whole answers again.)
  Reply reused;
  Answer answer, closing, head;
  bool keep_alive_close = true, closing_close = false, head_close = true;
  for (std::time_t second = -1; second != std::time(nullptr);) {
    second = std::time(nullptr);
    reused = route("GET", "/health", false, b);
    answer = respond(RequestHead{"GET", "/health", true, true, false}, b, keep_alive_close);
    closing = respond(RequestHead{"GET", "/health", true, false, false}, b, closing_close);
    head = respond(RequestHead{"HEAD", "/health", true, true, false}, b, head_close);
  }
  CHECK(route("GET", "/health", false, b).shared_body == reused.shared_body);
  REQUIRE(reused.whole);
  CHECK(answer.head.empty());
  CHECK_FALSE(keep_alive_close);
  CHECK(answer.body.get() == &(*reused.whole)[0]);
  CHECK_THAT(*answer.body, Catch::StartsWith("HTTP/1.1 503 Service Unavailable\r\n") &&
                               Catch::Contains("\r\nConnection: keep-alive\r\n") &&
                               Catch::EndsWith("\r\n\r\n" + reused.body()));
  CHECK(closing_close);
  CHECK(closing.body.get() == &(*reused.whole)[1]);
  // HEAD is rendered from the reply: the same head, no body.
  CHECK_FALSE(head_close);
  CHECK(head.body == nullptr);
  CHECK(head.head == answer.body->substr(0, head.head.size()));
  CHECK(snapshots == 1);
  p->probes[0]->record(p->probes[0]->run_once());
  const std::string after = route("GET", "/health", false, b).body();
  CHECK(snapshots == 2);
  CHECK_THAT(before, Catch::Contains("\"checked_at\":null"));
  CHECK_THAT(after, Catch::Contains("\"db\":{\"status\":\"pass\""));
  // Any query is rendered for its request.
  route("GET", "/health?history=1", false, b);
  CHECK(snapshots == 3);
}

TEST_CASE("HTTP routing answers from the snapshot", "[http]") {
  Scratch s;
  std::vector<std::string> errors;
  auto p = prepare(s.config("  db:\n    plugin: fake-ok\n    options: {result: fail}\n  cache:\n   "
                            " plugin: fake-ok\n    tier: optional\n"),
                   {}, errors);
  REQUIRE(p);
  for (auto& probe : p->probes) probe->record(probe->run_once());
  Health health;
  health.set_probes(p->probes, Millis(0), true);
  HttpBackend b{[&] { return health.snapshot(); }, [] { return AgentFacts{"9.9.9"}; },
                [] { return true; }};

  Reply r = route("GET", "/health", false, b);
  CHECK(r.status == 503);
  CHECK(r.content_type == "application/json");
  CHECK_THAT(r.body(), Catch::StartsWith("{\"status\":\"unhealthy\",\"ready\":false,"));
  CHECK_THAT(
      r.body(),
      Catch::Contains("\"db\":{\"status\":\"fail\",\"plugin\":\"fake-ok\",\"tier\":\"critical\""));
  CHECK(route("GET", "/health/cache", false, b).status == 200);
  CHECK(route("GET", "/health/db", false, b).status == 503);
  CHECK(route("GET", "/health/nope", false, b).status == 404);
  CHECK(route("GET", "/health?format=line", false, b).body() ==
        "unhealthy ready=false 1/2 db:fake: fail\n");
  CHECK(route("GET", "/readyz", false, b).body() ==
        "[-]db failed: fake: fail\nreadyz check failed\n");
  CHECK(route("GET", "/readyz?exclude=db", false, b).status == 200);
  CHECK(route("GET", "/readyz?exclude=db&verbose", false, b).body() ==
        "[+]db excluded: ok\nreadyz check passed\n");
  CHECK(route("GET", "/livez", false, b).status == 200);
  CHECK(route("POST", "/health", false, b).status == 405);
  CHECK(route("POST", "/health", false, b).allow_header);
  CHECK(route("GET", "/health", true, b).status == 400);
  CHECK(route("GET", "/nope", false, b).status == 404);
  CHECK(route("GET", "http://x/health", false, b).status == 400);
  CHECK(route("GET", "/health/%zz", false, b).status == 400);
  Reply m = route("GET", "/metrics", false, b);
  CHECK(m.content_type == "text/plain; version=0.0.4; charset=utf-8");
  CHECK_THAT(m.body(),
             Catch::Contains(
                 "vitals_probe_success{probe=\"db\",plugin=\"fake-ok\",tier=\"critical\"} 0\n"));
  CHECK_THAT(
      m.body(),
      Catch::Contains(
          "vitals_probe_fake_ok_runs{probe=\"cache\",plugin=\"fake-ok\",tier=\"optional\"} 1\n"));
}

TEST_CASE("metric text escaping", "[metrics]") {
  CHECK(escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  CHECK(sanitize_metric_name("vitals_probe_mcp-http_handshake") ==
        "vitals_probe_mcp_http_handshake");
  CHECK(sanitize_metric_name("9lives") == "_9lives");
}
