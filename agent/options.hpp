// Binds a probe's `options:` to its plugin's option table: unknown keys, types, defaults, secrets.
#pragma once

#include <vitals/probe.h>

#include <string>
#include <vector>

#include "config.hpp"
#include "plugin_host.hpp"

namespace vitals {

// The values of a probe's options flagged secret, as safe_text() hides them. A value of 3
// characters or more is replaced by "[redacted]" wherever it appears; a shorter one cannot be
// scrubbed without mangling the text around it, so a text that holds one is withheld whole.
class Secrets {
 public:
  // Registers a secret value; for "Scheme credential" values (Authorization headers) the
  // credential alone too. Empty values hide nothing.
  void add(const std::string& value);
  const std::vector<std::string>& scrubbed() const { return scrubbed_; }
  const std::vector<std::string>& too_short() const { return too_short_; }

 private:
  std::vector<std::string> scrubbed_, too_short_;
};

class BoundOptions {
 public:
  struct Entry {
    std::string name, key, value;
    bool has_key = false;
  };
  void add(std::string name, std::string value) { entries_.push_back({name, "", value, false}); }
  void add(std::string name, std::string key, std::string value) {
    entries_.push_back({name, key, value, true});
  }
  // C view for create(); valid while this object lives and is not modified.
  std::vector<vitals_option_value> c_values() const;
  // Values of options the plugin flagged secret (hidden from anything shown).
  const Secrets& secrets() const { return secrets_; }
  void add_secret(const std::string& v) { secrets_.add(v); }

 private:
  std::vector<Entry> entries_;
  Secrets secrets_;
};

// Returns false and appends one-line errors ("FILE:LINE: probes.db.options.x: ...") on failure.
bool bind_options(const ProbeConfig& probe, const vitals_plugin& plugin, const std::string& file,
                  BoundOptions& out, std::vector<std::string>& errors);

const char* option_type_name(vitals_option_type t);

// The one function that makes text from a plugin (message, stage, log line, create error) safe
// to show anywhere: one line of valid UTF-8 (one_line) with every secret replaced by
// "[redacted]", or kWithheld if it holds a secret too short to scrub. Its result passed through
// it again stays safe.
std::string safe_text(std::string_view text, const Secrets& secrets);
inline constexpr const char* kWithheld = "[withheld: holds a secret shorter than 3 characters]";

}  // namespace vitals
