#include "paths.hpp"

#include <filesystem>

namespace vitals {

std::string pkglib_dir() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (exe.parent_path() / VITALS_BIN_TO_PKGLIB).lexically_normal().string();
}

std::string default_config_path() {
  return VITALS_SYSCONFDIR "/vitals/vitals.yaml";
}

}  // namespace vitals
