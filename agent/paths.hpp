// Where the installed (or built) tree is, derived from the running executable: the front end in
// bindir, or the agent executable in <libdir>/vitals (which the core library always runs in).
#pragma once

#include <string>

namespace vitals {

// <libdir>/vitals: <dir of /proc/self/exe>/VITALS_EXE_TO_PKGLIB
std::string pkglib_dir();
// The installed default config: <sysconfdir>/vitals/vitals.yaml, found relative to the binary
std::string default_config_path();

}  // namespace vitals
