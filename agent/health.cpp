#include "health.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace vitals {

const char* to_string(Overall o) {
  switch (o) {
    case Overall::Starting:
      return "starting";
    case Overall::Healthy:
      return "healthy";
    case Overall::Degraded:
      return "degraded";
    case Overall::Unhealthy:
      return "unhealthy";
  }
  return "unhealthy";
}

bool is_ready(const std::vector<TierInput>& probes) {
  return std::all_of(probes.begin(), probes.end(), [](const TierInput& p) {
    return !p.gates_readiness || p.status == Status::Pass;
  });
}

Overall aggregate(const std::vector<TierInput>& probes, bool ever_ready, bool in_start_period) {
  if (!ever_ready && in_start_period) return Overall::Starting;
  bool degraded = false;
  for (const auto& p : probes) {
    const bool bad = p.status == Status::Fail || p.status == Status::Unknown;
    if (bad && p.tier == Tier::Critical) return Overall::Unhealthy;
    if (bad || p.status == Status::Warn) degraded = true;
  }
  return degraded ? Overall::Degraded : Overall::Healthy;
}

const ProbeView* Snapshot::find(std::string_view name) const {
  for (const auto& p : probes)
    if (p.probe->config().name == name) return &p;
  return nullptr;
}

void Health::set_probes(std::vector<std::shared_ptr<Probe>> probes, Millis start_period,
                        bool details) {
  std::lock_guard lock(mutex_);
  probes_ = std::move(probes);
  start_period_ = start_period;
  details_ = details;
  ++changes_;
}

void Health::set_liveness(std::map<std::string, LivenessRecord> records) {
  std::lock_guard lock(mutex_);
  if (records != liveness_) ++changes_;
  liveness_ = std::move(records);
}

std::vector<std::shared_ptr<Probe>> Health::probes() const {
  std::lock_guard lock(mutex_);
  return probes_;
}

Snapshot Health::snapshot() const {
  Snapshot s;
  Millis start_period;
  {
    std::lock_guard lock(mutex_);
    s.probes.reserve(probes_.size());
    for (const auto& p : probes_) {
      s.probes.push_back({p, {}, Status::Unknown, std::nullopt});
      if (auto it = liveness_.find(p->config().name); it != liveness_.end())
        s.probes.back().liveness = it->second;
      else if (p->config().liveness)
        s.probes.back().liveness = LivenessRecord{};
    }
    start_period = start_period_;
    s.details = details_;
  }
  s.now = std::chrono::system_clock::now();
  s.mono = std::chrono::steady_clock::now();
  s.uptime_s = std::chrono::duration<double>(s.mono - started_).count();
  std::vector<TierInput> inputs;
  inputs.reserve(s.probes.size());
  for (auto& v : s.probes) {
    v.state = v.probe->state();
    v.status = v.probe->effective_now(v.state, s.mono);
    inputs.push_back({v.probe->config().tier, v.probe->config().gates_readiness, v.status});
  }
  s.ready = is_ready(inputs);
  s.overall = aggregate(inputs, ever_ready_ || s.ready, s.mono - started_ < start_period);
  return s;
}

bool Health::latch_ready() {
  if (ever_ready_) return true;
  // Called after every result until ready: with many probes, a full snapshot each time would
  // cost O(probes) per result. The scan starts at the probe that held readiness back last time
  // and stops at the first gating probe not passing, so while that one is still failing a call
  // costs one look; only a call that finds every gating probe passing goes all the way round.
  std::lock_guard lock(mutex_);
  const SteadyTime now = std::chrono::steady_clock::now();
  const std::size_t n = probes_.size();
  for (std::size_t checked = 0; checked < n; ++checked) {
    const Probe& p = *probes_[ready_cursor_ % n];
    if (p.config().gates_readiness && !p.passing_now(now)) return false;
    ready_cursor_ = (ready_cursor_ + 1) % n;
  }
  ever_ready_ = true;
  ++changes_;
  return true;
}

int health_http_status(const Snapshot& s) {
  return s.overall == Overall::Healthy || s.overall == Overall::Degraded ? 200 : 503;
}

namespace {

void append_number(std::string& out, double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  out += buf;
}

void append_history(std::string& out, const Snapshot& s, const History& h, std::size_t n) {
  out += ",\"history\":[";
  bool first = true;
  for (const HistoryRun& r : h.runs(n)) {
    out += first ? "{\"at\":\"" : ",{\"at\":\"";
    first = false;
    out += rfc3339(r.at);
    out += "\",\"status\":\"";
    out += to_string(r.status);
    out += "\",\"stage\":";
    append_json_string(out, r.stage.view());
    out += ",\"duration_ms\":";
    append_number(out, r.duration_ms);
    if (s.details) {
      out += ",\"message\":";
      append_json_string(out, r.message.view());
    }
    out += '}';
  }
  out += "],\"transitions\":[";
  first = true;
  for (const HistoryTransition& t : h.transitions(n)) {
    out += first ? "{\"at\":\"" : ",{\"at\":\"";
    first = false;
    out += rfc3339(t.at);
    out += "\",\"from\":\"";
    out += to_string(t.from);
    out += "\",\"to\":\"";
    out += to_string(t.to);
    out += "\"}";
  }
  out += ']';
}

void append_time_or_null(std::string& out, const std::optional<WallTime>& t) {
  if (!t) {
    out += "null";
    return;
  }
  out += '"';
  out += rfc3339(*t);
  out += '"';
}

// "liveness": restarts by `vitals notify --liveness`, the last one and why, and when it gave up.
void append_liveness(std::string& out, const Snapshot& s, const LivenessRecord& l) {
  out += ",\"liveness\":{\"restarts\":";
  out += std::to_string(l.restarts);
  out += ",\"last_restart\":";
  append_time_or_null(out, l.last_restart);
  if (s.details) {
    out += ",\"last_restart_reason\":";
    if (l.last_restart)
      append_json_string(out, l.last_reason);
    else
      out += "null";
  }
  out += ",\"gave_up_at\":";
  append_time_or_null(out, l.gave_up);
  out += '}';
}

void append_probe(std::string& out, const Snapshot& s, const ProbeView& v,
                  std::optional<std::size_t> history) {
  out += "{\"status\":\"";
  out += to_string(v.status);
  out += '"';
  // A state made by hand (tests) has no rendered fields yet.
  const auto json =
      v.state.json
          ? v.state.json
          : std::make_shared<const ProbeJson>(render_probe_fields(v.probe->config(), v.state));
  out += json->head[s.details ? 1 : 0];
  if (v.state.last) {
    out += ",\"age_ms\":";
    out += std::to_string(
        std::chrono::duration_cast<Millis>(s.mono - v.state.last->checked_mono).count());
  } else {
    out += ",\"age_ms\":null";
  }
  out += json->tail;
  if (history) {
    if (v.state.history)
      append_history(out, s, *v.state.history, *history);
    else
      out += ",\"history\":[],\"transitions\":[]";
  }
  if (v.liveness) append_liveness(out, s, *v.liveness);
  out += '}';
}

}  // namespace

ProbeJson render_probe_fields(const ProbeConfig& c, const ProbeState& s) {
  ProbeJson j;
  for (const bool details : {false, true}) {
    std::string& out = j.head[details ? 1 : 0];
    out += ",\"plugin\":";
    append_json_string(out, c.plugin);
    out += ",\"tier\":\"";
    out += to_string(c.tier);
    out += "\",\"gates_readiness\":";
    out += c.gates_readiness ? "true" : "false";
    if (s.last) {
      const RunResult& r = *s.last;
      out += ",\"stage\":";
      append_json_string(out, r.stage);
      if (details) {
        out += ",\"message\":";
        append_json_string(out, r.message);
      }
      out += ",\"duration_ms\":";
      append_number(out, r.duration_s * 1000);
      out += ",\"checked_at\":\"";
      out += rfc3339(r.checked_at);
      out += '"';
    } else {
      out += ",\"stage\":null";
      if (details) out += ",\"message\":null";
      out += ",\"duration_ms\":null,\"checked_at\":null";
    }
  }
  j.tail += ",\"since\":\"";
  j.tail += rfc3339(s.since);
  j.tail += "\",\"consecutive_failures\":";
  j.tail += std::to_string(s.consecutive_failures);
  j.tail += ",\"consecutive_successes\":";
  j.tail += std::to_string(s.consecutive_successes);
  return j;
}

std::string render_health_json(const Snapshot& s, const std::string& version,
                               std::optional<std::size_t> history) {
  std::string out;
  out.reserve(256 + 320 * s.probes.size());
  out += "{\"status\":\"";
  out += to_string(s.overall);
  out += "\",\"ready\":";
  out += s.ready ? "true" : "false";
  out += ",\"uptime_seconds\":";
  append_number(out, s.uptime_s);
  out += ",\"version\":";
  append_json_string(out, version);
  out += ",\"probes\":{";
  // Each probe's rendered fields lie wherever its thread put them for its last result: with
  // 2,000 probes the render waits on memory more than it copies (perf), so they are asked for
  // ahead, the ProbeJson 16 probes ahead and its strings 8 ahead (about 10 % less CPU per
  // /health, bench/RESULTS.md section 5b).
  const auto json_of = [&](std::size_t i) -> const ProbeJson* {
    return i < s.probes.size() ? s.probes[i].state.json.get() : nullptr;
  };
  bool first = true;
  for (std::size_t i = 0; i < s.probes.size(); ++i) {
    if (const ProbeJson* ahead = json_of(i + 16)) __builtin_prefetch(ahead);
    if (const ProbeJson* ahead = json_of(i + 8)) {
      __builtin_prefetch(ahead->head[s.details ? 1 : 0].data());
      __builtin_prefetch(ahead->tail.data());
    }
    const ProbeView& v = s.probes[i];
    if (!first) out += ',';
    first = false;
    append_json_string(out, v.probe->config().name);
    out += ':';
    append_probe(out, s, v, history);
  }
  out += "}}\n";
  return out;
}

std::string render_probe_json(const Snapshot& s, const ProbeView& p,
                              std::optional<std::size_t> history) {
  std::string out = "{\"name\":";
  append_json_string(out, p.probe->config().name);
  out += ",\"probe\":";
  append_probe(out, s, p, history);
  out += "}\n";
  return out;
}

std::string render_line(const Snapshot& s, const ProbeView* only) {
  std::vector<const ProbeView*> views;
  if (only)
    views.push_back(only);
  else
    for (const auto& v : s.probes) views.push_back(&v);
  size_t passing = 0;
  std::string problems;
  for (const ProbeView* v : views) {
    if (v->status == Status::Pass) {
      ++passing;
      continue;
    }
    if (!problems.empty()) problems += "; ";
    problems += v->probe->config().name + ":";
    if (!v->state.last) {
      problems += to_string(v->status);
      continue;
    }
    const RunResult& r = *v->state.last;
    problems += r.stage.empty() ? to_string(v->status) : r.stage;
    if (v->status == Status::Unknown)
      problems += ": stale (no recent result)";
    else if (s.details && !r.message.empty())
      problems += ": " + r.message;
    else
      problems += std::string(": ") + to_string(v->status);
  }
  std::string out = only ? std::string(to_string(only->status)) : to_string(s.overall);
  out += " ready=";
  out += s.ready ? "true" : "false";
  out += " " + std::to_string(passing) + "/" + std::to_string(views.size());
  if (!problems.empty()) out += " " + problems;
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  if (out.size() > 4095) out.resize(4095);
  out += '\n';
  return out;
}

std::string render_readyz(const Snapshot& s, bool verbose, const std::vector<std::string>& exclude,
                          bool& ready) {
  ready = true;
  std::string lines;
  for (const auto& v : s.probes) {
    const ProbeConfig& c = v.probe->config();
    if (!c.gates_readiness) continue;
    if (std::find(exclude.begin(), exclude.end(), c.name) != exclude.end()) {
      lines += "[+]" + c.name + " excluded: ok\n";
      continue;
    }
    if (v.status == Status::Pass) {
      lines += "[+]" + c.name + " ok\n";
      continue;
    }
    ready = false;
    lines += "[-]" + c.name + " failed: ";
    if (s.details && v.state.last && v.status != Status::Unknown)
      lines += v.state.last->stage + ": " + v.state.last->message;
    else
      lines += s.details ? to_string(v.status) : "reason withheld";
    lines += "\n";
  }
  for (char& c : lines)
    if (c == '\r') c = ' ';
  if (ready && !verbose) return "ok\n";
  return lines + (ready ? "readyz check passed\n" : "readyz check failed\n");
}

}  // namespace vitals
