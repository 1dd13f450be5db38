#include <catch2/catch.hpp>

#include <string>

#include "status.hpp"
#include "status_page.hpp"

using namespace vitals;

TEST_CASE("the status page template fits its 30 KB budget", "[status]") {
  CHECK(status_page_template().size() <= 30 * 1024);
  CHECK(status_page_template().find("{{ROWS}}") != std::string_view::npos);
  CHECK(status_page_template().find("http://") == std::string_view::npos);  // no external assets
  CHECK(status_page_template().find("https://") == std::string_view::npos);
}

TEST_CASE("vitals status formats /health as a table", "[status]") {
  const std::string json = R"({"status":"degraded","ready":false,"uptime_seconds":1,"version":"x",
    "probes":{"db":{"status":"pass","plugin":"p","tier":"critical","gates_readiness":true,
      "stage":"role","message":"fine","since":"2020-01-01T00:00:00.000Z","timeout_ms":100,
      "history":[{"at":"2020-01-01T00:00:01.000Z","status":"pass","stage":"role","duration_ms":1,"message":"fine"},
                 {"at":"2020-01-01T00:00:00.000Z","status":"fail","stage":"role","duration_ms":1,"message":"no"}],
      "transitions":[]},
      "cache":{"status":"unknown","plugin":"p","tier":"optional","gates_readiness":false,
      "stage":null,"since":"2020-01-01T00:00:00.000Z","history":[],"transitions":[]},
      "q":{"status":"fail","plugin":"p","tier":"optional","gates_readiness":false,
      "stage":"s","since":"2020-01-01T00:00:00.000Z","history":[],"transitions":[]}}})";
  std::string error;
  auto table = format_status(json, "127.0.0.1:1", false, error);
  REQUIRE(table);
  CHECK(table->find("vitals at 127.0.0.1:1: degraded, not ready, 1/3 probes passing") == 0);
  CHECK(table->find("db     pass     critical  yes    role") != std::string::npos);
  CHECK(table->find("x+") != std::string::npos);  // oldest first
  CHECK(table->find("cache  unknown  optional  no") != std::string::npos);
  CHECK(table->find("(no result yet)") != std::string::npos);
  CHECK(table->find("(hidden)") != std::string::npos);    // no message key: expose_details off
  CHECK(table->find("\ndb ") < table->find("\ncache "));  // in the agent's order, not sorted
  CHECK_FALSE(format_status("not json", "h:1", false, error));
  CHECK(error.find("unable to read the answer of h:1") == 0);
}
