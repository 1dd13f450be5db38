// Where the installed (or built) tree is, derived from the running executable.
#pragma once

#include <string>

namespace vitals {

// <dir of /proc/self/exe>/<relative path from bindir to <libdir>/vitals>
std::string pkglib_dir();
// The installed default config: <sysconfdir>/vitals/vitals.yaml, found relative to the binary
std::string default_config_path();

}  // namespace vitals
