#include "paths.hpp"

#include <filesystem>

namespace vitals {

namespace {

std::string beside_exe(const char* relative) {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::string dir = (exe.parent_path() / relative).lexically_normal().string();
  if (dir.size() > 1 && dir.back() == '/') dir.pop_back();  // "<dir>/." normalises to "<dir>/"
  return dir;
}

}  // namespace

std::string pkglib_dir() {
  return beside_exe(VITALS_EXE_TO_PKGLIB);
}

std::string default_config_path() {
  return beside_exe(VITALS_EXE_TO_SYSCONF "/vitals.yaml");
}

}  // namespace vitals
