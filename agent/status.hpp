// `vitals status`: the status page as a short table in a terminal (for `podman exec`). Finds the
// agent as `vitals check` does and exits as it does: 0 if /health answers 200, else 1.
#pragma once

#include <optional>
#include <string>

namespace vitals {

// The runs shown per probe in the table's strip.
inline constexpr int kStatusRuns = 20;

// The table for one /health?history=N answer (JSON text); nullopt with `error` if it is not one.
std::optional<std::string> format_status(const std::string& health_json, const std::string& where,
                                         bool colour, std::string& error);
int run_status(const std::string& config, const std::string& url);

}  // namespace vitals
