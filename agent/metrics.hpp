// Prometheus text exposition (format 0.0.4) of the in-memory state. Host-owned names only: plugin
// numbers become gauges vitals_probe_<plugin>_<name>_<unit>; free text never becomes a label.
#pragma once

#include <string>

#include "health.hpp"

namespace vitals {

struct AgentFacts {
  std::string version;
  bool last_reload_successful = true;
  WallTime last_reload_success{};
  WallTime process_start{};
};

std::string render_metrics(const Snapshot& s, const AgentFacts& facts);

// Escapes a label value: backslash, double quote and newline.
std::string escape_label(std::string_view v);
// Maps any text onto the metric-name grammar [a-zA-Z_:][a-zA-Z0-9_:]*.
std::string sanitize_metric_name(std::string_view v);

}  // namespace vitals
