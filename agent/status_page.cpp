#include "status_page.hpp"

#include <algorithm>
#include <cstdio>

namespace vitals {

extern const char kStatusPageTemplate[];
extern const std::size_t kStatusPageTemplate_size;

std::string_view status_page_template() {
  return {kStatusPageTemplate, kStatusPageTemplate_size};
}

namespace {

void append_html(std::string& out, std::string_view s) {
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
}

std::string html(std::string_view s) {
  std::string out;
  append_html(out, s);
  return out;
}

// The page's number format: one decimal below 10 ms, whole milliseconds above.
std::string ms(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f" : "%.0f", v);
  return buf;
}

std::string clock(WallTime t) {
  return rfc3339(t).substr(11, 8);
}

std::string ago(WallTime since, WallTime now) {
  const auto s =
      std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(now - since).count());
  auto round = [](double v) { return std::to_string(static_cast<long long>(v + 0.5)); };
  if (s < 90) return std::to_string(s) + "s ago";
  if (s < 5400) return round(s / 60.0) + "m ago";
  if (s < 129600) return round(s / 3600.0) + "h ago";
  return round(s / 86400.0) + "d ago";
}

const char* icon(Status s) {
  switch (s) {
    case Status::Pass:
      return "\u2713";
    case Status::Warn:
      return "!";
    case Status::Fail:
      return "\u2717";
    case Status::Unknown:
      break;
  }
  return "?";
}

const char* words(Overall o) {
  switch (o) {
    case Overall::Healthy:
      return "\u2713 Healthy";
    case Overall::Degraded:
      return "! Degraded";
    case Overall::Unhealthy:
      return "\u2717 Unhealthy";
    case Overall::Starting:
      break;
  }
  return "\u2026 Starting";
}

std::string marks(const std::vector<HistoryRun>& runs, bool details) {
  std::string out;
  for (auto r = runs.rbegin(); r != runs.rend(); ++r) {
    std::string tip = std::string(to_string(r->status)) + " at " + clock(r->at) + " UTC, " +
                      ms(r->duration_ms) + " ms";
    if (!r->stage.view().empty()) tip += ", " + std::string(r->stage.view());
    if (details && !r->message.view().empty()) tip += ": " + std::string(r->message.view());
    out += "<li class=\"s-";
    out += to_string(r->status);
    out += "\" tabindex=\"0\" data-at=\"" + rfc3339(r->at) + "\"><span class=\"vh\">" + html(tip) +
           "</span></li>";
  }
  return out;
}

std::string spark(const std::vector<HistoryRun>& runs, double timeout_ms) {
  if (runs.empty()) return "<span class=\"dim\">no runs yet</span>";
  double top = timeout_ms;
  for (const auto& r : runs) top = std::max<double>(top, r.duration_ms);
  if (top <= 0) top = 1;
  auto y = [&](double v) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.1f", 23 - 21 * v / top);
    return std::string(buf);
  };
  std::string points;
  const std::size_t n = runs.size();
  for (std::size_t x = 0; x < n; ++x) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%.1f", n == 1 ? 50.0 : x * 100.0 / static_cast<double>(n - 1));
    if (!points.empty()) points += ' ';
    points += std::string(buf) + "," + y(runs[n - 1 - x].duration_ms);
  }
  const std::string ty = y(timeout_ms);
  return "<svg class=\"spark\" viewBox=\"0 0 100 24\" preserveAspectRatio=\"none\" role=\"img\" "
         "aria-label=\"durations of the last " +
         std::to_string(n) + " runs, newest " + ms(runs.front().duration_ms) + " ms, timeout " +
         ms(timeout_ms) + " ms\"><line x1=\"0\" y1=\"" + ty + "\" x2=\"100\" y2=\"" + ty +
         "\"/><polyline points=\"" + points + "\"/></svg>";
}

std::string row(const Snapshot& s, const ProbeView& v) {
  const ProbeConfig& c = v.probe->config();
  const std::vector<HistoryRun> runs =
      v.state.history ? v.state.history->runs(kPageRuns) : std::vector<HistoryRun>{};
  const char* status = to_string(v.status);
  std::string out = "<tr data-probe=\"" + html(c.name) + "\"><th scope=\"row\">" + html(c.name) +
                    "</th><td><span class=\"st s-" + status + "\">" + icon(v.status) + " " +
                    status + "</span></td><td>" + to_string(c.tier) + "</td><td>" +
                    (c.gates_readiness ? "yes" : "no") + "</td><td>";
  out += v.state.last ? html(v.state.last->stage) : "<span class=\"dim\">none yet</span>";
  out += "</td><td class=\"msg\">";
  if (!s.details)
    out += "<span class=\"dim\">hidden (expose_details: false)</span>";
  else if (v.state.last)
    append_html(out, v.state.last->message);
  const std::string since = rfc3339(v.state.since);
  out += "</td><td><time datetime=\"" + since + "\" title=\"" + since + "\">" +
         ago(v.state.since, s.now) + "</time></td><td><ol class=\"runs\" aria-label=\"last " +
         std::to_string(runs.size()) + " runs of " + html(c.name) + ", oldest first\">" +
         marks(runs, s.details) + "</ol></td><td>" +
         spark(runs, static_cast<double>(c.timeout.count())) + "</td></tr>\n";
  return out;
}

}  // namespace

std::string render_status_page(const Snapshot& s, const std::string& version) {
  std::string rows;
  for (const auto& v : s.probes) rows += row(s, v);
  if (rows.empty()) rows = "<tr><td colspan=\"9\" class=\"dim\">no probes configured</td></tr>\n";
  const std::string overall = to_string(s.overall);
  const std::pair<std::string_view, std::string> values[] = {
      {"OVERALL", overall},
      {"OVERALL_WORDS", words(s.overall)},
      {"READY_CLASS", s.ready ? "ready" : "notready"},
      {"READY_WORDS", s.ready ? "\u2713 Ready" : "\u2717 Not ready"},
      {"NOW", clock(s.now)},
      {"ROWS", rows},
      {"VERSION", html(version)},
      {"HISTORY", std::to_string(kPageRuns)},
  };
  // {{NAME}} -> its value, in one pass over the template.
  const std::string_view in = status_page_template();
  std::string out;
  out.reserve(in.size() + rows.size());
  std::size_t pos = 0;
  for (std::size_t open; (open = in.find("{{", pos)) != std::string_view::npos;) {
    const std::size_t close = in.find("}}", open);
    if (close == std::string_view::npos) break;
    out.append(in, pos, open - pos);
    const std::string_view name = in.substr(open + 2, close - open - 2);
    for (const auto& [key, value] : values)
      if (key == name) out += value;
    pos = close + 2;
  }
  out.append(in, pos);
  return out;
}

}  // namespace vitals
