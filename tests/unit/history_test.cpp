#include <catch2/catch.hpp>

#include <string>

#include "history.hpp"
#include "probe.hpp"

using namespace vitals;

namespace {
constexpr auto P = Status::Pass;
constexpr auto W = Status::Warn;
constexpr auto F = Status::Fail;
constexpr auto U = Status::Unknown;

WallTime at(int s) {
  return WallTime(std::chrono::seconds(1'800'000'000 + s));
}

void run(History& h, int s, Status st, Status before = P, Status after = P) {
  h.record(at(s), st, s / 1000.0, "stage" + std::to_string(s), "run " + std::to_string(s), before,
           after);
}
}  // namespace

TEST_CASE("history keeps the newest N runs, newest first, across wrap-around", "[history]") {
  History h(5);
  for (int s = 1; s <= 3; ++s) run(h, s, P);
  auto runs = h.runs(10);
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].at == at(3));
  CHECK(runs[2].at == at(1));

  for (int s = 4; s <= 12; ++s) run(h, s, s % 2 ? F : W);
  runs = h.runs(100);
  REQUIRE(runs.size() == 5);  // capacity
  for (int i = 0; i < 5; ++i) {
    CHECK(runs[i].at == at(12 - i));
    CHECK(runs[i].message.view() == "run " + std::to_string(12 - i));
    CHECK(runs[i].stage.view() == "stage" + std::to_string(12 - i));
  }
  CHECK(runs[0].status == W);
  CHECK(runs[1].status == F);
  CHECK(runs[0].duration_ms == Approx(12.0));
  REQUIRE(h.runs(2).size() == 2);
  CHECK(h.runs(2)[1].at == at(11));
  CHECK(h.runs(0).empty());
}

TEST_CASE("history records effective-status transitions, not runs", "[history]") {
  History h(4);
  run(h, 1, F, U, F);  // the first result sets the status directly
  run(h, 2, P, F, F);  // below success_threshold: no change
  run(h, 3, P, F, P);
  run(h, 4, W, P, W);
  run(h, 5, W, W, W);
  auto t = h.transitions(10);
  REQUIRE(t.size() == 3);
  CHECK(t[0].from == P);
  CHECK(t[0].to == W);
  CHECK(t[0].at == at(4));
  CHECK(t[1].from == F);
  CHECK(t[1].to == P);
  CHECK(t[2].from == U);
  CHECK(t[2].to == F);
  CHECK(t[2].message.view() == "run 1");
  CHECK(t[0].seq > t[1].seq);
  CHECK(t[1].seq > t[2].seq);

  // transitions_after: oldest first, only the newer ones.
  auto after = h.transitions_after(t[2].seq);
  REQUIRE(after.size() == 2);
  CHECK(after[0].seq == t[1].seq);
  CHECK(after[1].seq == t[0].seq);
  CHECK(h.transitions_after(t[0].seq).empty());
  CHECK(History::last_seq() >= t[0].seq);

  // wrap-around of the transition ring (its capacity is at least kTransitionsMin)
  for (int s = 10; s < 60; ++s) run(h, s, s % 2 ? F : P, s % 2 ? P : F, s % 2 ? F : P);
  t = h.transitions(100);
  REQUIRE(t.size() == 4);  // shown: at most `history`
  CHECK(t[0].at == at(59));
  CHECK(h.transitions_after(0).size() == kTransitionsMin);  // kept for /events
}

TEST_CASE("history: 0 keeps no runs, and transitions only for /events", "[history]") {
  History h(0);
  run(h, 1, F, U, F);
  run(h, 2, P, F, P);
  CHECK(h.runs(10).empty());
  CHECK(h.transitions(10).empty());
  CHECK(h.transitions_after(0).size() == 2);
}

TEST_CASE("history memory is bounded whatever the plugin says", "[history]") {
  History h(120);
  const std::string huge(10'000, 'x');
  for (int s = 0; s < 1000; ++s)
    h.record(at(s), F, 0.001, huge, huge, s % 2 ? P : F, s % 2 ? F : P);
  auto runs = h.runs(1000);
  REQUIRE(runs.size() == 120);
  CHECK(runs[0].message.view().size() == kHistoryMessageMax);
  CHECK(runs[0].stage.view().size() == VITALS_STAGE_MAX);
  // Texts are cut: the bound is the capacity times the largest entry, nothing grows with input.
  CHECK(sizeof(HistoryRun) <= 48);
  CHECK(sizeof(HistoryTransition) <= 64);
  CHECK(h.max_bytes() < 96 * 1024);
}

TEST_CASE("history keeps what each run said when runs repeat or change their message",
          "[history]") {
  History h(4);
  h.record(at(1), P, 0.001, "connect", "connected", P, P);
  h.record(at(2), P, 0.001, "connect", "connected", P, P);
  h.record(at(3), F, 0.001, "connect", "refused", P, F);
  h.record(at(4), P, 0.001, "connect", "connected", F, P);
  auto runs = h.runs(4);
  REQUIRE(runs.size() == 4);
  CHECK(runs[0].message.view() == "connected");
  CHECK(runs[1].message.view() == "refused");
  CHECK(runs[2].message.view() == "connected");
  CHECK(runs[3].message.view() == "connected");
  auto transitions = h.transitions(4);
  REQUIRE(transitions.size() == 2);
  CHECK(transitions[0].message.view() == "connected");
  CHECK(transitions[1].message.view() == "refused");
}

TEST_CASE("history cuts messages at a UTF-8 character boundary", "[history]") {
  std::string text(159, 'a');
  text += "\u00e9\u00e9";  // 2 bytes each: the first crosses byte 160
  History h(1);
  h.record(at(0), P, 0, "s", text, P, P);
  CHECK(h.runs(1)[0].message.view() == std::string(159, 'a'));
  CHECK(cut_utf8("\u20ac", 2).empty());  // a 3-byte character does not fit in 2
  CHECK(cut_utf8("ab", 2) == "ab");
}

TEST_CASE("history resize keeps the newest entries", "[history]") {
  History h(10);
  for (int s = 1; s <= 10; ++s) run(h, s, P);
  h.resize(3);
  auto runs = h.runs(10);
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].at == at(10));
  CHECK(runs[2].at == at(8));
  run(h, 11, F);
  CHECK(h.runs(10)[0].at == at(11));
  CHECK(h.runs(10)[2].at == at(9));
  h.resize(0);
  CHECK(h.runs(10).empty());
}
