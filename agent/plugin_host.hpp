// Loads probe plugins (shared objects) through the C ABI, with a refusal ladder: each refused
// file gets one distinct reason, logged, counted and listed by `vitals plugins`.
#pragma once

#include <vitals/probe.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace vitals {

struct Plugin {
  std::string path;
  vitals_plugin desc{};    // copied, zero-filled beyond the plugin's struct_size
  void* handle = nullptr;  // the loaded code: the same until the file is replaced
};

struct Refusal {
  std::string path;
  std::string name;    // file stem: the plugin name a probe would use
  std::string reason;  // one of refusal_reasons()
  std::string message;
};

class PluginHost {
 public:
  // Loads every *.so in each folder (not recursive), folder by folder in order, but for files
  // already tried. One plugin a name: <name>.so, else the first file loaded, keeps it; the others
  // are refused (duplicate_name), so which one wins does not depend on the order of the loads
  // (load_named loads <name>.so files first). Handles stay open for the
  // life of the process; a rescan (a new host) reuses them, unless the file was replaced (a new
  // inode): then the new file is loaded.
  void scan(const std::vector<std::string>& dirs);
  void scan(const std::string& dir) { scan(std::vector<std::string>{dir}); }
  // The plugin named `name` in `dirs`, loading as little as it can: <dir>/<name>.so of the first
  // folder that has that file; if none declares that name, every file (scan). Null if no file
  // does. The agent loads the plugins its probes use this way, each just before its probes are
  // created, and no other (bench/coldstart.sh).
  const Plugin* load_named(const std::vector<std::string>& dirs, const std::string& name);
  const Plugin* find(const std::string& name) const;
  const Refusal* refusal_for(const std::string& name) const;
  const std::vector<std::shared_ptr<Plugin>>& plugins() const { return plugins_; }
  const std::vector<Refusal>& refusals() const { return refusals_; }
  const std::vector<std::string>& dirs() const { return dirs_; }
  std::string dirs_text() const;  // "A" or "A, B", for messages

  // The default plugin directory: <exe dir>/<bin-to-pkglib>/plugins.
  static std::string default_dir();

 private:
  std::optional<Refusal> load(const std::string& path);
  void try_file(const std::string& path);  // loads it, or records its refusal; once per path
  std::vector<std::string> dirs_;
  std::set<std::string> tried_;
  std::vector<std::shared_ptr<Plugin>> plugins_;
  std::vector<std::shared_ptr<Plugin>> displaced_;  // lost their name to a <name>.so
  std::vector<Refusal> refusals_;
};

// Every refusal reason, in the order of the ladder: unsafe_path, dlopen, no_entry, refused,
// abi_major, abi_newer, missing_callback, missing_name, invalid_name, missing_options,
// duplicate_name.
const std::vector<std::string>& refusal_reasons();

// Cumulative refusal counts by reason, over the life of the process (for /metrics).
std::map<std::string, long> plugin_refusal_counts();

}  // namespace vitals
