// `vitals check`'s quick path (agent/check_client.cpp) answers only what it reads exactly as the
// agent's own code does (command_line.cpp, parse_listen()); anything else goes to that code.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "check.hpp"
#include "command_line.hpp"
#include "config.hpp"

using namespace vitals;

namespace {

std::string slurp(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  return text;
}

// quick_listen() says nothing, or what the agent's code says.
void check_agrees(const std::string& text) {
  const std::optional<std::string> quick = quick_listen(text);
  if (!quick) return;
  CAPTURE(text);
  CHECK(*quick == parse_listen(text, "t.yaml").listen.value_or("(no listen)"));
}

}  // namespace

TEST_CASE("check's quick path reads listen as the agent does, or leaves the config to it",
          "[check]") {
  ::setenv("VITALS_FUZZ_PORT", "5432", 1);
  ::setenv("VITALS_FUZZ_EMPTY", "", 1);
  ::setenv("VITALS_FUZZ_HOST", "db.internal", 1);
  ::unsetenv("VITALS_LISTEN");
  std::vector<std::string> texts = {
      "listen: 127.0.0.1:9851\n",
      "listen: 127.0.0.1:9851",
      "listen: 127.0.0.1:9851 # c\nprobes: {}\n",
      "listen: 127.0.0.1:9851\n  more\nprobes: {}\n",  // a plain scalar on two lines
      "listen: 127.0.0.1:9851\n\n# c\n  more\n",
      "listen: 127.0.0.1:9851\n---\nlisten: 127.0.0.1:1\n",
      "listen: 127.0.0.1:9851\n...\n",
      "listen: 127.0.0.1:9851\n- a\n",
      "listen: 127.0.0.1:9851\n[a]: b\n",
      "listen: 127.0.0.1:9851\r\nprobes: {}\r\n",
      "listen:\t127.0.0.1:9851\n",
      "listen:127.0.0.1:9851\n",
      "listen : 127.0.0.1:9851\n",
      "listen: 127.0.0.1:9851:\n",
      "listen: [::1]:9851\n",
      "listen: '[::1]:9851'\n",
      "listen: \"127.0.0.1:9851\"\n",
      "listen: &a 127.0.0.1:9851\n",
      "listen: !!str 127.0.0.1:9851\n",
      "listen: ${VITALS_FUZZ_HOST}:${VITALS_FUZZ_PORT}\n",
      "listen: ${VITALS_LISTEN:-0.0.0.0:9851}\n",
      "listen: ${VITALS_LISTEN}\n",
      "listen: ${VITALS_LISTEN\n",
      "listen: 127.0.0.1:70000\n",
      "listen: null\n",
      "listen: ~\n",
      "listen: 127.0.0.1:9851\nlisten: 127.0.0.1:9852\n",
      "log_level: info\nlisten: 127.0.0.1:9851\n",
      "log_level:\nlisten: 127.0.0.1:9851\n",
      "log_level: # c\nlisten: 127.0.0.1:9851\n",
      "listen_x: 1\nlisten: 127.0.0.1:9851\n",
      "state_dir: \"a\nlisten: 127.0.0.1:9006\"\nlisten: 127.0.0.1:9007\n",
      "state_dir: &a 127.0.0.1:9004\nlisten: *a\n",
      "probes: {\nlisten: {plugin: tcp}}\nlisten: 127.0.0.1:9005\n",
      "%YAML 1.2\n---\nlisten: 127.0.0.1:9851\n",
      "\xEF\xBB\xBFlisten: 127.0.0.1:9851\n",
      "# \x01\nlisten: 127.0.0.1:9851\n",
      "  # indented comment\nlisten: 127.0.0.1:9851\n",
      "{listen: 127.0.0.1:9851}\n",
      "? listen\n: 127.0.0.1:9851\n",
      "1: a\nlisten: 127.0.0.1:9851\n",
      "a: 1\na: 2\nlisten: 127.0.0.1:9851\n",
      "<<: {listen: 127.0.0.1:1}\nlisten: 127.0.0.1:9851\n",
      "listen: 127.0.0.1:9851#c\n",
      "listen: ${}\n",
  };
  for (const char* dir : {VITALS_TEST_DATA, VITALS_TEST_CONFIG_CORPUS, VITALS_SOURCE_CONFIGS})
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      if (entry.is_regular_file()) texts.push_back(slurp(entry.path().string()));
  int checked = 0;
  for (const std::string& text : texts) {
    check_agrees(text);
    // Every text with a line left out, and cut after every line: what a hand edit leaves.
    const std::vector<std::string> lines = lines_of(text);
    for (size_t i = 0; i < lines.size() && i < 64; ++i) {
      std::vector<std::string> fewer = lines;
      fewer.erase(fewer.begin() + static_cast<long>(i));
      check_agrees(joined(fewer));
      check_agrees(joined({lines.begin(), lines.begin() + static_cast<long>(i) + 1}));
      checked += 2;
    }
  }
  CHECK(checked > 500);

  // The usual configs are read by the quick path (a HEALTHCHECK then starts no YAML parser).
  CHECK(quick_listen(slurp(std::string(VITALS_SOURCE_CONFIGS) + "/container.yaml")) ==
        "127.0.0.1:9851");
  CHECK(quick_listen("# header\n\nlisten: 0.0.0.0:80  # all\nprobes:\n  a: {plugin: tcp}\n") ==
        "0.0.0.0:80");
  CHECK(quick_listen("log_level: info\nlisten: ${VITALS_FUZZ_HOST}:1\n") == "db.internal:1");
}

TEST_CASE(
    "the quick path takes a check or run command line as the agent's parser does, or leaves it",
    "[check]") {
  const std::vector<std::vector<std::string>> lines = {
      {"check"},
      {"check", "-c", "f.yaml"},
      {"check", "--config", "f.yaml", "--probe", "db"},
      {"check", "--config=f.yaml", "--probe=db"},
      {"check", "--url", "http://127.0.0.1:1", "--ready"},
      {"check", "--url=http://[::1]:1/x"},
      {"check", "--probe", "check"},
      {"check", "--probe", "run"},
      {"check", "--probe", "a=b"},
      {"check", "--probe=--ready"},
      {"check", "--ready", "--probe", "db"},
      {"check", "--ready", "--ready"},
      {"check", "-c", "a", "--config", "b"},
      {"check", "-c"},
      {"check", "-c", "-"},
      {"check", "-c", ""},
      {"check", "-cf.yaml"},
      {"check", "-c=f.yaml"},
      {"check", "--help"},
      {"check", "-h"},
      {"check", "--bogus"},
      {"check", "x"},
      {"check", "--", "x"},
      {"check", "--version"},
      {"check", "--json"},
      {"check", "--url"},
      {"check", "--notify-fd", "3"},
      {"run"},
      {"run", "-c", "f.yaml"},
      {"run", "--config=f.yaml", "--notify-fd", "3"},
      {"run", "--notify-fd=1048576"},
      {"run", "--notify-fd", "2"},
      {"run", "--notify-fd", "1048577"},
      {"run", "--notify-fd", "x"},
      {"run", "--notify-fd", "3", "--notify-fd", "4"},
      {"run", "--probe", "a"},
      {"run", "--ready"},
      {"run", "--help"},
      {"run", "x"},
      {"once", "-c", "f.yaml"},
      {"status"},
  };
  int quick = 0;
  for (const auto& words : lines) {
    std::vector<std::string> storage = {"vitals"};
    storage.insert(storage.end(), words.begin(), words.end());
    std::vector<char*> argv;
    for (auto& w : storage) argv.push_back(w.data());
    argv.push_back(nullptr);
    const int argc = static_cast<int>(storage.size());
    const std::optional<QuickCommandLine> r = quick_command_line(argc, argv.data());
    if (!r) continue;
    ++quick;
    CAPTURE(words);
    const CommandLine cl = parse_command_line(argc, argv.data());
    REQUIRE_FALSE(cl.exit);
    CHECK(cl.command == r->command);
    CHECK(cl.command == words[0]);
    CHECK(cl.notify_fd ==
          (r->notify_fd.empty() ? std::nullopt : std::optional<int>(std::stoi(r->notify_fd))));
    CHECK(cl.config == r->config);
    CHECK(cl.url == r->url);
    CHECK(cl.probe == r->probe);
    CHECK(cl.ready == r->ready);
  }
  CHECK(quick >= 10);
}
