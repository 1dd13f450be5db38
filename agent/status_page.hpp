// GET /: the status page. agent/status_page.html (compiled in, see agent/CMakeLists.txt) with the
// current state rendered into it, so it reads without JavaScript; its script fetches the page
// again every 2 s and swaps in the fresh header and rows (one renderer: this one).
#pragma once

#include <string>
#include <string_view>

#include "health.hpp"

namespace vitals {

// Runs drawn per probe (the strip and the sparkline).
inline constexpr std::size_t kPageRuns = 40;

std::string_view status_page_template();
std::string render_status_page(const Snapshot& s, const std::string& version);

}  // namespace vitals
