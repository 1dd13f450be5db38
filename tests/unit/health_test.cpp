#include <catch2/catch.hpp>

#include <set>

#include "health.hpp"

using namespace vitals;

namespace {
constexpr auto C = Tier::Critical;
constexpr auto O = Tier::Optional;
constexpr auto P = Status::Pass;
constexpr auto W = Status::Warn;
constexpr auto F = Status::Fail;
constexpr auto U = Status::Unknown;
}  // namespace

TEST_CASE("aggregation truth table: first match wins", "[health]") {
  using V = std::vector<TierInput>;
  struct Row {
    V probes;
    bool ever_ready, in_start;
    Overall want;
  };
  auto row = GENERATE(values<Row>({
      {{}, false, true, Overall::Starting},
      {{}, true, true, Overall::Healthy},
      {{}, false, false, Overall::Healthy},
      {{{C, true, F}}, false, true, Overall::Starting},    // failures inside start_period
      {{{C, true, F}}, false, false, Overall::Unhealthy},  // start_period over
      {{{C, true, F}}, true, true, Overall::Unhealthy},    // was ready once: no more grace
      {{{C, true, U}}, true, false, Overall::Unhealthy},   // critical unknown
      {{{C, true, P}, {O, false, F}}, true, false, Overall::Degraded},
      {{{C, true, P}, {O, false, U}}, true, false, Overall::Degraded},
      {{{C, true, W}}, true, false, Overall::Degraded},
      {{{C, true, P}, {O, false, W}}, true, false, Overall::Degraded},
      {{{C, true, P}, {O, false, P}}, true, false, Overall::Healthy},
      {{{C, true, F}, {O, false, F}}, true, false, Overall::Unhealthy},
      {{{C, false, F}}, true, false, Overall::Unhealthy},  // not gating, still critical
  }));
  CHECK(aggregate(row.probes, row.ever_ready, row.in_start) == row.want);
}

TEST_CASE("ready means every gating probe passes; warn is not ready", "[health]") {
  CHECK(is_ready({}));
  CHECK(is_ready({{C, true, P}}));
  CHECK_FALSE(is_ready({{C, true, W}}));
  CHECK_FALSE(is_ready({{C, true, U}}));
  CHECK_FALSE(is_ready({{C, true, F}}));
  CHECK(is_ready({{C, true, P}, {O, false, F}}));
  CHECK_FALSE(is_ready({{C, true, P}, {O, true, F}}));  // optional but gating
}

namespace {
RunResult result(Status s) {
  RunResult r;
  r.status = s;
  return r;
}
// Feeds raw results through the thresholds and returns the effective status after each.
std::vector<Status> feed(std::vector<Status> raw, int failure_threshold, int success_threshold) {
  ProbeState st;
  std::vector<Status> out;
  for (Status s : raw) {
    apply_result(st, result(s), failure_threshold, success_threshold);
    out.push_back(st.effective);
  }
  return out;
}
}  // namespace

TEST_CASE("thresholds follow Kubernetes semantics", "[health]") {
  // The first result sets the state directly, whatever the thresholds.
  CHECK(feed({F}, 3, 1) == std::vector<Status>{F});
  CHECK(feed({P}, 3, 2) == std::vector<Status>{P});
  // failure_threshold consecutive failures turn a passing probe to fail.
  CHECK(feed({P, F, F, F}, 3, 1) == std::vector<Status>{P, P, P, F});
  // A success in between resets the count.
  CHECK(feed({P, F, F, P, F, F}, 3, 1) == std::vector<Status>{P, P, P, P, P, P});
  // success_threshold consecutive successes bring it back.
  CHECK(feed({F, P, P}, 1, 2) == std::vector<Status>{F, F, P});
  CHECK(feed({F, P, F, P, P}, 1, 2) == std::vector<Status>{F, F, F, F, P});
  // warn is a non-failure: it counts towards recovery and shows as warn.
  CHECK(feed({P, W, P}, 3, 1) == std::vector<Status>{P, W, P});
  CHECK(feed({F, W}, 1, 1) == std::vector<Status>{F, W});
}

TEST_CASE("apply_result counts consecutive results", "[health]") {
  ProbeState st;
  for (Status s : {F, F, P, P, P}) apply_result(st, result(s), 3, 1);
  CHECK(st.consecutive_successes == 3);
  CHECK(st.consecutive_failures == 0);
  apply_result(st, result(F), 3, 1);
  CHECK(st.consecutive_failures == 1);
  CHECK(st.consecutive_successes == 0);
}

#include "scheduler.hpp"

TEST_CASE("phase offsets spread probes over at most half an interval, at most 1s", "[scheduler]") {
  std::set<long long> seen;
  for (int i = 0; i < 200; ++i) {
    const Millis off = phase_offset("probe-" + std::to_string(i), Millis(1000));
    CHECK(off >= Millis(0));
    CHECK(off < Millis(500));
    seen.insert(off.count());
    CHECK(phase_offset("probe-" + std::to_string(i), Millis(60'000)) < Millis(1000));
  }
  CHECK(seen.size() > 100);  // spread, not lockstep
  CHECK(phase_offset("x", Millis(1)) == Millis(0));
}
