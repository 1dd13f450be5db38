// Binds a probe's `options:` to its plugin's option table: unknown keys, types, defaults, secrets.
#pragma once

#include <vitals/probe.h>

#include <string>
#include <vector>

#include "config.hpp"
#include "plugin_host.hpp"

namespace vitals {

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
  // Values of options the plugin flagged secret (to scrub from anything shown).
  const std::vector<std::string>& secrets() const { return secrets_; }
  // Registers a secret value; for "Scheme credential" values (Authorization headers) the
  // credential alone too.
  void add_secret(const std::string& v) {
    if (v.size() >= 3) secrets_.push_back(v);
    if (auto space = v.rfind(' '); space != std::string::npos && v.size() - space > 4)
      secrets_.push_back(v.substr(space + 1));
  }

 private:
  std::vector<Entry> entries_;
  std::vector<std::string> secrets_;
};

// Returns false and appends one-line errors ("FILE:LINE: probes.db.options.x: ...") on failure.
bool bind_options(const ProbeConfig& probe, const vitals_plugin& plugin, const std::string& file,
                  BoundOptions& out, std::vector<std::string>& errors);

const char* option_type_name(vitals_option_type t);

// The one function that makes text from a plugin (message, stage, log line, create error) safe
// to show anywhere: one line of valid UTF-8 (one_line) with every secret replaced by
// "[redacted]". Idempotent, so a result may pass through it again on its way out.
std::string safe_text(std::string_view text, const std::vector<std::string>& secrets);

}  // namespace vitals
