// Durations, timestamps and JSON string escaping.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace vitals {

using Millis = std::chrono::milliseconds;

// Parses "250ms", "2s", "1m", "1h", "1m30s". A bare number is rejected (the unit is required).
std::optional<Millis> parse_duration(std::string_view text);
// Formats a duration the way a user would write it: 250ms, 2s, 1m30s.
std::string format_duration(Millis d);

// RFC 3339 UTC timestamp with milliseconds: 2026-11-28T05:27:53.123Z
std::string rfc3339(std::chrono::system_clock::time_point t);

// Length of the valid UTF-8 sequence starting at v[i], or 0 if the byte there does not start one.
size_t utf8_sequence(std::string_view v, size_t i);

// `s` as one line of valid UTF-8, for anything a plugin says (message, stage, log line): bytes that
// are not UTF-8 become U+FFFD; control characters (C0, DEL, C1) and the Unicode line and paragraph
// separators become spaces. one_line(one_line(s)) == one_line(s).
std::string one_line(std::string_view s);

// Appends `s` as a JSON string literal (with quotes) to out; bytes that are not UTF-8 become
// U+FFFD.
void append_json_string(std::string& out, std::string_view s);

// Seconds since the epoch, as a double.
double epoch_seconds(std::chrono::system_clock::time_point t);

}  // namespace vitals
