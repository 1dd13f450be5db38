// `vitals run`: wires config, plugin host, scheduler, HTTP and readiness; reloads on SIGHUP.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "config.hpp"
#include "health.hpp"
#include "plugin_host.hpp"
#include "probe.hpp"

namespace vitals {

// A validated config with its plugins loaded and its probes created, ready to swap in.
struct Prepared {
  Config config;
  std::shared_ptr<PluginHost> plugins;
  std::vector<std::shared_ptr<Probe>> probes;
};

// parse -> validate -> load plugins -> bind options -> create instances, probe by probe in the
// order their first results are due (the shortest start_interval first), each plugin loaded just
// before its first probe: only the plugins the probes use are loaded. Probes of `previous` whose
// definition is unchanged are reused as they are (with their history). With only_probe set, only
// that probe is bound and created. Returns nullopt with one-line errors, in the config's order. A
// probe whose create() did not return in time (or crashed its worker) is kept, failing with stage
// `create`. `created`, if set, is called with each new probe as soon as it is created, until a
// probe fails: the agent starts it.
using ProbesCreated = std::function<void(const std::shared_ptr<Probe>&)>;
std::optional<Prepared> prepare(const std::string& config_path,
                                const std::vector<std::shared_ptr<Probe>>& previous,
                                std::vector<std::string>& errors,
                                const std::string& only_probe = "");
// The same from a config already parsed (the agent listens before it loads the plugins).
std::optional<Prepared> prepare(Config config, const std::vector<std::shared_ptr<Probe>>& previous,
                                std::vector<std::string>& errors,
                                const std::string& only_probe = "",
                                const ProbesCreated& created = nullptr);

// Sets the level of every logger (the agent's and each probe's) to the config's log_level.
void apply_log_level(const Config& c);

// The plugin folders a config uses, in search order (its plugin_dir, else the default beside the
// executable).
std::vector<std::string> plugin_dirs_for(const Config& c);

// Exit codes in s6's vocabulary.
enum Exit { kOk = 0, kUnhealthy = 1, kPermanent = 100, kTemporary = 111 };

int run_agent(const std::string& config_path, std::optional<int> notify_fd_flag);

}  // namespace vitals
