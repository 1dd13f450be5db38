#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "liveness.hpp"

using namespace vitals;

namespace {
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/vitals-liveness-XXXXXX";
    REQUIRE(mkdtemp(tmpl));
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};
}  // namespace

TEST_CASE("liveness state files round-trip and are read only when they change", "[liveness]") {
  TempDir dir;
  const std::string state = (dir.path / "run" / "vitals").string();
  CHECK(prepare_state_dir(state).empty());  // created, with its parents
  const std::string file = liveness_file(state, "mcp");
  CHECK(file == state + "/mcp.liveness");
  CHECK_FALSE(read_liveness(file));

  LivenessRecord r;
  r.restarts = 2;
  r.recent = {100.5, 200.25};
  r.last_restart = WallTime(std::chrono::milliseconds(1'764'000'000'123));
  r.last_reason = "fail at reachable: unable to connect\nto 127.0.0.1:3000";
  std::string error;
  REQUIRE(write_liveness(file, r, error));
  auto back = read_liveness(file);
  REQUIRE(back);
  CHECK(back->restarts == 2);
  CHECK(back->recent == std::vector<double>{100.5, 200.25});
  REQUIRE(back->last_restart);
  CHECK(rfc3339(*back->last_restart) == "2025-11-24T16:00:00.123Z");
  CHECK(back->last_reason == "fail at reachable: unable to connect to 127.0.0.1:3000");  // one line
  CHECK_FALSE(back->gave_up);
  CHECK(std::distance(std::filesystem::directory_iterator(state),
                      std::filesystem::directory_iterator()) == 1);  // no temporary file left

  LivenessFiles files;
  files.refresh(state, {"mcp", "db"});
  auto seen = files.records();
  REQUIRE(seen.size() == 1);
  CHECK(seen.at("mcp").restarts == 2);
  r.restarts = 3;
  r.gave_up = WallTime(std::chrono::seconds(1'764'000'100));
  REQUIRE(write_liveness(file, r, error));  // a new inode: seen even within the same mtime tick
  files.refresh(state, {"mcp", "db"});
  CHECK(files.records().at("mcp").restarts == 3);
  CHECK(files.records().at("mcp").gave_up);
  std::filesystem::remove(file);
  files.refresh(state, {"mcp", "db"});
  CHECK(files.records().empty());
}

TEST_CASE("a state folder that cannot be made is one line naming it", "[liveness]") {
  TempDir dir;
  std::ofstream(dir.path / "file") << "x";
  const std::string state = (dir.path / "file" / "vitals").string();
  CHECK(prepare_state_dir(state).rfind("unable to create state_dir " + state + ": ", 0) == 0);
}
