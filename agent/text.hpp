// Small text helpers shared by the agent and the light `vitals check` front end.
// Header-only and free of third-party includes, so the static front end stays small.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace vitals {

// Expands ${VAR} and ${VAR:-default} in `in`; "$$" stands for a literal "$".
// Returns the expanded text, or nullopt with `error` naming the problem. The error never quotes
// the text (it may be a password): it names the variable, or the character where the problem is.
inline std::optional<std::string> expand_env(std::string_view in, std::string& error) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '$') {
      out += in[i];
      continue;
    }
    if (i + 1 < in.size() && in[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (i + 1 >= in.size() || in[i + 1] != '{') {
      out += '$';
      continue;
    }
    const size_t close = in.find('}', i + 2);
    if (close == std::string_view::npos) {
      error =
          "unterminated ${ at character " + std::to_string(i + 1) + "; write $$ for a literal $";
      return std::nullopt;
    }
    std::string_view body = in.substr(i + 2, close - i - 2);
    std::optional<std::string_view> fallback;
    if (const size_t dash = body.find(":-"); dash != std::string_view::npos) {
      fallback = body.substr(dash + 2);
      body = body.substr(0, dash);
    }
    const bool valid_name =
        !body.empty() && body.find_first_not_of(
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                             "0123456789_") == std::string_view::npos;
    if (!valid_name) {
      error = "invalid variable name in the ${...} at character " + std::to_string(i + 1) +
              " (letters, digits and _ only); write $$ for a literal $";
      return std::nullopt;
    }
    const char* value = std::getenv(std::string(body).c_str());
    if (value && (*value || !fallback)) {
      out += value;
    } else if (fallback) {
      out += *fallback;
    } else {
      error = "environment variable " + std::string(body) + " is not set";
      return std::nullopt;
    }
    i = close;
  }
  return out;
}

}  // namespace vitals
