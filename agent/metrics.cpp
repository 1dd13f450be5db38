#include "metrics.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "plugin_host.hpp"

namespace vitals {

namespace {

std::string fmt(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest text that round-trips
  return std::string(buf, res.ptr);
}

const char* unit_suffix(uint32_t unit) {
  switch (unit) {
    case VITALS_UNIT_SECONDS:
      return "_seconds";
    case VITALS_UNIT_BYTES:
      return "_bytes";
    case VITALS_UNIT_RATIO:
      return "_ratio";
    default:
      return "";
  }
}

// Collects samples per family so each family is written once, with HELP and TYPE first.
class Exposition {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    if (!families_.count(name)) {
      order_.push_back(name);
      families_[name] = {type, help, {}};
    }
  }
  void sample(const std::string& family, const std::string& suffix, const std::string& labels,
              double value) {
    families_[family].samples +=
        family + suffix + (labels.empty() ? "" : "{" + labels + "}") + " " + fmt(value) + "\n";
  }
  const std::vector<std::string>& names() const { return order_; }
  std::string str() const {
    std::string out;
    for (const auto& name : order_) {
      const auto& f = families_.at(name);
      out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n" + f.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string type, help, samples;
  };
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;
};

// Appends text, escaping backslash and newline (and double quote when quote is set) and
// replacing each byte that is not valid UTF-8 with U+FFFD.
void append_escaped(std::string& out, std::string_view v, bool quote) {
  for (size_t i = 0; i < v.size();) {
    const size_t n = utf8_sequence(v, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    const char c = v[i];
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else if (c == '"' && quote)
      out += "\\\"";
    else
      out.append(v.substr(i, n));
    i += n;
  }
}

std::string help_text(std::string_view help) {
  std::string out;
  append_escaped(out, help, false);
  return out.empty() ? "Plugin-provided value." : out;
}

}  // namespace

std::string escape_label(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  append_escaped(out, v, true);
  return out;
}

std::string sanitize_metric_name(std::string_view v) {
  std::string out;
  for (char c : v) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == ':';
    out += ok ? c : '_';
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out = "_" + out;
  return out;
}

std::string render_metrics(const Snapshot& s, const AgentFacts& facts) {
  Exposition e;
  e.family(
      "vitals_probe_success", "gauge",
      "Whether the probe's effective status (after thresholds) is pass or warn (1) or not (0).");
  e.family("vitals_probe_status", "gauge",
           "The probe's effective status: 1 for the current state, 0 for the others.");
  e.family("vitals_probe_duration_seconds", "gauge", "Duration of the probe's last run.");
  e.family("vitals_probe_run_duration_seconds", "histogram", "Durations of the probe's runs.");
  e.family("vitals_probe_runs_total", "counter", "Probe runs, by raw result before thresholds.");
  e.family("vitals_probe_timeouts_total", "counter",
           "Probe runs the agent stopped waiting for at the probe's timeout.");
  e.family("vitals_probe_crashes_total", "counter",
           "Probe runs ended by the crash of their worker process (isolation: process).");
  e.family("vitals_probe_last_success_timestamp_seconds", "gauge",
           "When the probe last returned pass or warn, in seconds since the epoch.");
  e.family("vitals_probe_consecutive_failures", "gauge", "Failed runs in a row.");

  for (const auto& v : s.probes) {
    const ProbeConfig& c = v.probe->config();
    const std::string labels = "probe=\"" + escape_label(c.name) + "\",plugin=\"" +
                               escape_label(c.plugin) + "\",tier=\"" + to_string(c.tier) + "\"";
    const ProbeState& st = v.state;
    e.sample("vitals_probe_success", "", labels,
             v.status == Status::Pass || v.status == Status::Warn ? 1 : 0);
    for (Status state : {Status::Pass, Status::Warn, Status::Fail, Status::Unknown})
      e.sample("vitals_probe_status", "", labels + ",state=\"" + to_string(state) + "\"",
               v.status == state ? 1 : 0);
    if (st.last) e.sample("vitals_probe_duration_seconds", "", labels, st.last->duration_s);
    const uint64_t runs = st.runs_pass + st.runs_warn + st.runs_fail;
    for (size_t i = 0; i < kDurationBuckets.size(); ++i)
      e.sample("vitals_probe_run_duration_seconds", "_bucket",
               labels + ",le=\"" + fmt(kDurationBuckets[i]) + "\"",
               static_cast<double>(st.buckets[i]));
    e.sample("vitals_probe_run_duration_seconds", "_bucket", labels + ",le=\"+Inf\"",
             static_cast<double>(runs));
    e.sample("vitals_probe_run_duration_seconds", "_sum", labels, st.duration_sum);
    e.sample("vitals_probe_run_duration_seconds", "_count", labels, static_cast<double>(runs));
    e.sample("vitals_probe_runs_total", "", labels + ",result=\"pass\"",
             static_cast<double>(st.runs_pass));
    e.sample("vitals_probe_runs_total", "", labels + ",result=\"warn\"",
             static_cast<double>(st.runs_warn));
    e.sample("vitals_probe_runs_total", "", labels + ",result=\"fail\"",
             static_cast<double>(st.runs_fail));
    e.sample("vitals_probe_timeouts_total", "", labels, static_cast<double>(st.timeouts));
    e.sample("vitals_probe_crashes_total", "", labels, static_cast<double>(st.crashes));
    if (st.last_success)
      e.sample("vitals_probe_last_success_timestamp_seconds", "", labels,
               epoch_seconds(*st.last_success));
    e.sample("vitals_probe_consecutive_failures", "", labels,
             static_cast<double>(st.consecutive_failures));
  }

  // Numbers plugins returned in their last result. A name that would land on a host-owned series,
  // or a number a plugin returned twice, is left out: either would break the whole scrape.
  std::set<std::string> host_names(e.names().begin(), e.names().end());
  for (const char* suffix : {"_bucket", "_sum", "_count"})
    host_names.insert(std::string("vitals_probe_run_duration_seconds") + suffix);
  std::set<std::string> series;
  for (const auto& v : s.probes) {
    if (!v.state.last) continue;
    const ProbeConfig& c = v.probe->config();
    const std::string labels = "probe=\"" + escape_label(c.name) + "\",plugin=\"" +
                               escape_label(c.plugin) + "\",tier=\"" + to_string(c.tier) + "\"";
    for (const Number& n : v.state.last->numbers) {
      std::string name = sanitize_metric_name("vitals_probe_" + c.plugin + "_" + n.name);
      const std::string suffix = unit_suffix(n.unit);
      if (name.size() < suffix.size() ||
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        name += suffix;
      if (host_names.count(name) || !series.insert(name + "{" + labels).second) continue;
      e.family(name, "gauge", help_text(n.help));
      e.sample(name, "", labels, n.value);
    }
  }

  for (const auto& v : s.probes) {
    if (!v.liveness) continue;
    e.family("vitals_liveness_restarts_total", "counter",
             "Restarts of the probe's service by vitals notify --liveness (wedged: alive but "
             "failing its probe).");
    e.sample("vitals_liveness_restarts_total", "",
             "probe=\"" + escape_label(v.probe->config().name) + "\"",
             static_cast<double>(v.liveness->restarts));
  }

  e.family("vitals_health_status", "gauge",
           "The agent's overall status: 1 for the current state, 0 for the others.");
  for (Overall o : {Overall::Starting, Overall::Healthy, Overall::Degraded, Overall::Unhealthy})
    e.sample("vitals_health_status", "", std::string("state=\"") + to_string(o) + "\"",
             s.overall == o ? 1 : 0);
  e.family("vitals_ready", "gauge", "Whether every readiness-gating probe passes.");
  e.sample("vitals_ready", "", "", s.ready ? 1 : 0);
  e.family("vitals_build_info", "gauge", "Always 1; the agent's version as a label.");
  e.sample("vitals_build_info", "", "version=\"" + escape_label(facts.version) + "\"", 1);
  e.family("vitals_config_last_reload_successful", "gauge",
           "Whether the last configuration load or reload succeeded.");
  e.sample("vitals_config_last_reload_successful", "", "", facts.last_reload_successful ? 1 : 0);
  e.family("vitals_config_last_reload_success_timestamp_seconds", "gauge",
           "When the configuration was last loaded successfully, in seconds since the epoch.");
  e.sample("vitals_config_last_reload_success_timestamp_seconds", "", "",
           epoch_seconds(facts.last_reload_success));
  e.family("vitals_plugin_load_failures_total", "counter",
           "Plugin files the loader refused, by reason.");
  const auto counts = plugin_refusal_counts();
  for (const std::string& reason : refusal_reasons()) {
    const auto it = counts.find(reason);
    e.sample("vitals_plugin_load_failures_total", "", "reason=\"" + reason + "\"",
             it == counts.end() ? 0 : static_cast<double>(it->second));
  }
  e.family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
  e.sample("process_start_time_seconds", "", "", epoch_seconds(facts.process_start));
  return e.str();
}

}  // namespace vitals
