#include "plugin_host.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string_view>

#include "paths.hpp"

namespace vitals {

namespace {

std::mutex g_counts_mutex;
std::map<std::string, long> g_counts;

// Handles of plugins already dlopen()ed, by file (device, inode): a rescan (SIGHUP) reuses them,
// and loads a file replaced under the same path (install(1), mv, a package manager).
std::mutex g_handles_mutex;
std::map<std::pair<dev_t, ino_t>, void*> g_handles;
std::set<std::string> g_loaded_paths;  // real paths dlopen()ed under their own name

// One file or folder: neither group- nor world-writable (a folder may be if it has the sticky
// bit, as /tmp: nobody else can rename or replace what is in it), owned by root or the agent.
std::optional<std::string> unsafe_entry(const std::filesystem::path& p, bool sticky_ok) {
  struct stat st {};
  if (stat(p.c_str(), &st) != 0)
    return "unable to stat " + p.string() + ": " + std::strerror(errno);
  const bool sticky = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(sticky_ok && sticky))
    return p.string() + " is group- or world-writable";
  if (st.st_uid != 0 && st.st_uid != geteuid())
    return p.string() + " is owned by uid " + std::to_string(st.st_uid) +
           ", neither root nor the agent";
  return std::nullopt;
}

// A folder and every folder above it, up to "/"; only those above may be sticky and writable.
std::optional<std::string> unsafe_folders(const std::filesystem::path& dir) {
  for (std::filesystem::path p = dir;; p = p.parent_path()) {
    if (auto why = unsafe_entry(p, p != dir)) return why;
    if (p == p.parent_path()) return std::nullopt;
  }
}

// Why loading the plugin listed as `path` would be unsafe. What is checked is what dlopen() will
// open: `real`, the file with every symlink resolved, and every folder above it; the folder that
// lists the file (and the folders above it) too, since it decides which files are loaded.
std::optional<std::string> unsafe_reason(const std::string& path, std::string& real) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path resolved = fs::canonical(path, ec);
  if (ec) return "unable to resolve " + path + ": " + ec.message();
  const fs::path listing = fs::canonical(fs::path(path).parent_path(), ec);
  if (ec) return "unable to resolve the folder of " + path + ": " + ec.message();
  real = resolved.string();
  auto why = unsafe_folders(listing);
  if (!why) why = unsafe_entry(resolved, false);
  if (!why) why = unsafe_folders(resolved.parent_path());
  if (why && resolved != fs::absolute(path).lexically_normal())
    *why += " (" + path + " is " + real + ")";
  return why;
}

// [a-z0-9-]+, the rule of probe.h: plugin names appear in configs, metric names and labels.
bool valid_plugin_name(std::string_view name) {
  return !name.empty() &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string_view::npos;
}

// A name that broke the rule, shown safely: printable ASCII as is, other bytes as \xNN, at most
// 64 bytes (the plugin's text may be anything).
std::string quoted(std::string_view name) {
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < 64; ++i) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + (name.size() > 64 ? "'..." : "'");
}

}  // namespace

const std::vector<std::string>& refusal_reasons() {
  static const std::vector<std::string> kReasons = {
      "unsafe_path",  "dlopen",          "no_entry",         "refused",
      "abi_major",    "abi_newer",       "missing_callback", "missing_name",
      "invalid_name", "missing_options", "duplicate_name"};
  return kReasons;
}

std::map<std::string, long> plugin_refusal_counts() {
  std::lock_guard lock(g_counts_mutex);
  return g_counts;
}

std::string PluginHost::default_dir() {
  return pkglib_dir() + "/plugins";
}

std::string PluginHost::dirs_text() const {
  std::string out;
  for (const auto& d : dirs_) out += (out.empty() ? "" : ", ") + d;
  return out;
}

void PluginHost::scan(const std::vector<std::string>& dirs) {
  namespace fs = std::filesystem;
  dirs_ = dirs;
  for (const auto& dir : dirs) {
    std::vector<std::string> files;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
      if (entry.path().extension() == ".so")
        files.push_back((fs::path(dir) / entry.path().filename()).string());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) try_file(f);
  }
}

const Plugin* PluginHost::load_named(const std::vector<std::string>& dirs,
                                     const std::string& name) {
  dirs_ = dirs;
  if (const Plugin* p = find(name)) return p;
  // Only a plugin name (never a path) makes a file name.
  for (const auto& dir : valid_plugin_name(name) ? dirs : std::vector<std::string>{}) {
    const std::string file = (std::filesystem::path(dir) / (name + ".so")).string();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) continue;
    try_file(file);
    if (const Plugin* p = find(name)) return p;
  }
  scan(dirs);  // a file named otherwise may declare it
  return find(name);
}

void PluginHost::try_file(const std::string& path) {
  if (!tried_.insert(path).second) return;
  if (auto refusal = load(path)) {
    std::lock_guard lock(g_counts_mutex);
    ++g_counts[refusal->reason];
    refusals_.push_back(std::move(*refusal));
  }
}

std::optional<Refusal> PluginHost::load(const std::string& path) {
  const std::string stem = std::filesystem::path(path).stem().string();
  auto refuse = [&](const char* reason, const std::string& message) {
    return Refusal{path, stem, reason, message};
  };
  std::string real;
  if (auto why = unsafe_reason(path, real)) return refuse("unsafe_path", "unsafe path: " + *why);

  void* handle = nullptr;
  {
    std::lock_guard lock(g_handles_mutex);
    const int fd = ::open(real.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
      if (fd >= 0) ::close(fd);
      return refuse("dlopen", std::string("unable to load: ") + std::strerror(errno));
    }
    if (auto it = g_handles.find({st.st_dev, st.st_ino}); it != g_handles.end()) {
      handle = it->second;
      ::close(fd);
    } else {
      // dlopen() hands back the object already loaded under a name, whatever the file holds
      // now: a replaced file is loaded as /proc/self/fd/N, that fd kept open so N stays unique.
      const bool first = g_loaded_paths.insert(real).second;  // the file checked
      const std::string name = first ? real : "/proc/self/fd/" + std::to_string(fd);
      handle = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (first || !handle) ::close(fd);
      if (!handle) return refuse("dlopen", std::string("unable to load: ") + dlerror());
      g_handles[{st.st_dev, st.st_ino}] = handle;
    }
  }
  auto entry = reinterpret_cast<vitals_probe_entry_fn>(dlsym(handle, VITALS_ENTRY_SYMBOL));
  if (!entry) return refuse("no_entry", "not a vitals plugin: no " VITALS_ENTRY_SYMBOL " symbol");
  const vitals_plugin* d = entry(VITALS_ABI_MAJOR);
  if (!d)
    return refuse("refused", "the plugin refused ABI major " + std::to_string(VITALS_ABI_MAJOR));
  if (d->abi_major != VITALS_ABI_MAJOR)
    return refuse("abi_major", "built for ABI " + std::to_string(d->abi_major) +
                                   ".x, agent speaks " + std::to_string(VITALS_ABI_MAJOR) + ".x");
  if (d->abi_minor > VITALS_ABI_MINOR || d->struct_size > sizeof(vitals_plugin))
    return refuse("abi_newer", "built for ABI " + std::to_string(d->abi_major) + "." +
                                   std::to_string(d->abi_minor) + " (descriptor " +
                                   std::to_string(d->struct_size) + " bytes), agent speaks " +
                                   std::to_string(VITALS_ABI_MAJOR) + "." +
                                   std::to_string(VITALS_ABI_MINOR) + " (" +
                                   std::to_string(sizeof(vitals_plugin)) + " bytes)");
  auto plugin = std::make_shared<Plugin>();
  plugin->path = path;
  plugin->handle = handle;
  std::memcpy(&plugin->desc, d, std::min<size_t>(d->struct_size, sizeof(vitals_plugin)));
  const vitals_plugin& p = plugin->desc;
  for (auto [missing, what] : {std::pair{!p.create, "create"}, std::pair{!p.run, "run"},
                               std::pair{!p.destroy, "destroy"}}) {
    if (missing) return refuse("missing_callback", std::string("missing ") + what);
  }
  if (!p.name) return refuse("missing_name", "the descriptor has no name (NULL)");
  if (!valid_plugin_name(p.name))
    return refuse("invalid_name",
                  "invalid plugin name " + quoted(p.name) + "; names are [a-z0-9-]+");
  if (p.option_count && !p.options)
    return refuse("missing_options", "the descriptor declares " + std::to_string(p.option_count) +
                                         " options but its option table is NULL");
  // One plugin a name. <name>.so takes it from a file named otherwise, whichever was loaded
  // first: the agent loads <name>.so files first, `vitals plugins` every file in order, and both
  // end with the same one. Otherwise the first loaded (the earlier folder) keeps it.
  if (const Plugin* held = find(p.name)) {
    const auto named = [&](const std::string& file) {
      return std::filesystem::path(file).stem() == p.name;
    };
    if (!named(path) || named(held->path))
      return refuse("duplicate_name", std::string("duplicate plugin name '") + p.name +
                                          "', already loaded from " + held->path);
    auto it = std::find_if(plugins_.begin(), plugins_.end(),
                           [&](const auto& q) { return q.get() == held; });
    refusals_.push_back({held->path, std::filesystem::path(held->path).stem().string(),
                         "duplicate_name",
                         std::string("duplicate plugin name '") + p.name + "', taken by " + path +
                             ", the file named after it"});
    {
      std::lock_guard lock(g_counts_mutex);
      ++g_counts["duplicate_name"];
    }
    displaced_.push_back(std::move(*it));  // kept: nothing may point at freed memory
    plugins_.erase(it);
  }
  plugins_.push_back(std::move(plugin));
  return std::nullopt;
}

const Plugin* PluginHost::find(const std::string& name) const {
  for (const auto& p : plugins_)
    if (name == p->desc.name) return p.get();
  return nullptr;
}

const Refusal* PluginHost::refusal_for(const std::string& name) const {
  for (const auto& r : refusals_)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace vitals
