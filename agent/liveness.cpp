#include "liveness.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vitals {

namespace {

constexpr Millis kDefaultKillGrace{10'000};  // when the service has no ./timeout-kill

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::optional<WallTime> wall_from(const std::string& text) {
  char* end = nullptr;
  const double s = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || s <= 0) return std::nullopt;
  return WallTime(std::chrono::round<std::chrono::milliseconds>(std::chrono::duration<double>(s)));
}

std::string first_line(const std::string& file) {
  std::ifstream f(file);
  std::string line;
  std::getline(f, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

// A signal as s6 writes it in ./down-signal: SIGINT, INT or a number. 0 if unknown.
int parse_signal(std::string text) {
  static const std::map<std::string, int> kNames = {
      {"HUP", SIGHUP},   {"INT", SIGINT},    {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2},  {"TERM", SIGTERM}, {"ALRM", SIGALRM},
      {"PWR", SIGPWR},   {"WINCH", SIGWINCH}};
  if (text.rfind("SIG", 0) == 0) text = text.substr(3);
  if (auto it = kNames.find(text); it != kNames.end()) return it->second;
  char* end = nullptr;
  const long n = std::strtol(text.c_str(), &end, 10);
  return !text.empty() && !*end && n > 0 && n < NSIG ? static_cast<int>(n) : 0;
}

// How s6 would stop the service: the service directory is the current one (s6-supervise runs
// ./run there, and `vitals notify` does not change it), its ./down-signal (default SIGTERM) and
// ./timeout-kill (milliseconds before SIGKILL; absent or 0: kDefaultKillGrace).
struct ServiceStop {
  int signal = SIGTERM;
  std::string signal_name = "SIGTERM";
  Millis grace = kDefaultKillGrace;
};

ServiceStop service_stop() {
  ServiceStop s;
  if (const std::string text = first_line("down-signal"); !text.empty()) {
    if (const int sig = parse_signal(text)) {
      s.signal = sig;
      s.signal_name = text.rfind("SIG", 0) == 0 || std::isdigit(static_cast<unsigned char>(text[0]))
                          ? text
                          : "SIG" + text;
    } else {
      spdlog::warn("liveness: ./down-signal holds '{}', not a signal name; restarts use SIGTERM",
                   text);
    }
  }
  if (const std::string text = first_line("timeout-kill"); !text.empty()) {
    char* end = nullptr;
    const long long ms = std::strtoll(text.c_str(), &end, 10);
    if (!*end && ms > 0) s.grace = Millis(ms);
  }
  return s;
}

std::string describe(const RunResult& r) {
  return std::string(to_string(r.status)) + " at " + r.stage + ": " + r.message;
}

}  // namespace

std::string liveness_file(const std::string& state_dir, const std::string& probe) {
  return (std::filesystem::path(state_dir) / (probe + ".liveness")).string();
}

std::string prepare_state_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return "unable to create state_dir " + dir + ": " + ec.message();
  if (access(dir.c_str(), W_OK | X_OK) != 0)
    return "unable to write to state_dir " + dir + ": " + std::strerror(errno);
  return "";
}

std::optional<LivenessRecord> read_liveness(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  LivenessRecord r;
  std::string line;
  while (std::getline(f, line)) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "restarts") {
      r.restarts = std::strtoull(value.c_str(), nullptr, 10);
    } else if (key == "recent") {
      std::istringstream in(value);
      for (double t; in >> t;) r.recent.push_back(t);
    } else if (key == "last_restart") {
      r.last_restart = wall_from(value);
    } else if (key == "last_reason") {
      r.last_reason = value;
    } else if (key == "gave_up") {
      r.gave_up = wall_from(value);
    }
  }
  return r;
}

std::string format_liveness(const LivenessRecord& r) {
  auto wall = [](const std::optional<WallTime>& t) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", t ? epoch_seconds(*t) : 0.0);
    return std::string(buf);
  };
  std::string out = "restarts " + std::to_string(r.restarts) + "\nrecent";
  for (double t : r.recent) {
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.3f", t);
    out += buf;
  }
  out += "\nlast_restart " + wall(r.last_restart) + "\nlast_reason " + one_line(r.last_reason) +
         "\ngave_up " + wall(r.gave_up) + "\n";
  return out;
}

bool write_liveness(const std::string& path, const LivenessRecord& r, std::string& error) {
  const std::string tmp = path + ".tmp" + std::to_string(getpid());
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << format_liveness(r);
    f.close();
    if (!f) {
      error = "unable to write " + tmp + ": " + std::strerror(errno);
      std::remove(tmp.c_str());
      return false;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "unable to replace " + path + ": " + std::strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

void keep_alive(const ProbeConfig& probe, const LivenessConfig& l, const std::string& state_file,
                LivenessTarget& t) {
  const std::string& name = probe.name;
  const ServiceStop stop = service_stop();
  spdlog::info(
      "liveness: watching probe {} every {}; a restart ({} to pid {}) after {} failed runs in a "
      "row, at most {} within {}",
      name, format_duration(probe.interval), stop.signal_name, t.pid, l.after, l.max_restarts,
      format_duration(l.within));
  int failures = 0;
  auto next = std::chrono::steady_clock::now() + probe.interval;
  for (;;) {
    const auto wait = std::chrono::ceil<Millis>(next - std::chrono::steady_clock::now());
    if (t.prog_exited(std::max(wait, Millis(0)))) return;
    const auto run_start = std::chrono::steady_clock::now();
    next = run_start + probe.interval;
    RunResult r;
    if (t.idle()) {
      r = t.run();
    } else {  // the run before is still going (and was counted as a timeout): one more failure
      r.status = Status::Fail;
      r.stage = "timeout";
      r.message = "the run before this one is still going";
    }
    if (t.prog_exited(Millis(0))) return;
    if (r.status == Status::Pass || r.status == Status::Warn) {
      if (failures > 0) spdlog::info("liveness: probe {} passes again: {}", name, describe(r));
      failures = 0;
      continue;
    }
    const std::string last = describe(r);
    if (++failures < l.after) {
      spdlog::info("liveness: probe {} failed ({} of {} before a restart): {}", name, failures,
                   l.after, last);
      continue;
    }

    // `after` failures in a row: restart within the budget, or give up.
    LivenessRecord rec = read_liveness(state_file).value_or(LivenessRecord{});
    const double now = steady_seconds();
    const double window = std::chrono::duration<double>(l.within).count();
    std::erase_if(rec.recent, [&](double at) { return at <= now - window || at > now; });
    const std::string why = "probe " + name + " failed " + std::to_string(failures) +
                            " runs in a row (last: " + last + ")";
    if (rec.recent.size() >= static_cast<size_t>(l.max_restarts)) {
      rec.gave_up = std::chrono::system_clock::now();
      std::string error;
      if (!write_liveness(state_file, rec, error)) spdlog::error("liveness: {}", error);
      spdlog::error(
          "liveness: {}; not restarting: {} restarts within {} already (max_restarts {}); "
          "leaving it failing",
          why, rec.recent.size(), format_duration(l.within), l.max_restarts);
      return;
    }
    rec.restarts += 1;
    rec.recent.push_back(now);
    rec.last_restart = std::chrono::system_clock::now();
    rec.last_reason = last;
    rec.gave_up.reset();
    // Kept before PROG is signalled: its exit ends this process, and the next poller (or the
    // agent) must find the restart counted. Without the record the budget cannot hold: no restart.
    if (std::string error; !write_liveness(state_file, rec, error)) {
      spdlog::error("liveness: {}; not restarting: {}", why, error);
      return;
    }
    spdlog::warn(
        "liveness: {}; restarting the service: {} to pid {} (restart {} of at most {} within {})",
        why, stop.signal_name, t.pid, rec.recent.size(), l.max_restarts, format_duration(l.within));
    spdlog::default_logger()->flush();
    if (!t.signal_prog(stop.signal)) return;
    t.signal_prog(SIGCONT);  // as s6-svc -d: a stopped process must run to act on the signal
    if (t.prog_exited(stop.grace)) return;
    spdlog::warn("liveness: pid {} still running {} after {}; sending SIGKILL", t.pid,
                 format_duration(stop.grace), stop.signal_name);
    spdlog::default_logger()->flush();
    t.signal_prog(SIGKILL);
    t.prog_exited(Millis(-1));
    return;
  }
}

void LivenessFiles::refresh(const std::string& state_dir, const std::vector<std::string>& probes) {
  std::lock_guard lock(mutex_);
  // A rename into the folder moves its mtime, but only by the kernel's coarse clock: the folder
  // counts as unchanged once its mtime is a second older than the scan that saw it.
  struct stat dir {};
  const long long now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  if (stat(state_dir.c_str(), &dir) == 0) {
    const long long mtime = dir.st_mtim.tv_sec * 1'000'000'000LL + dir.st_mtim.tv_nsec;
    const bool same = state_dir == dir_ && probes == probes_ && mtime == dir_mtime_ns_ &&
                      mtime < scanned_ns_ - 1'000'000'000LL;
    dir_ = state_dir;
    probes_ = probes;
    dir_mtime_ns_ = mtime;
    if (same) return;
  } else {
    dir_mtime_ns_ = -1;
  }
  scanned_ns_ = now_ns;
  std::map<std::string, Seen> next;
  for (const auto& name : probes) {
    const std::string path = liveness_file(state_dir, name);
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) continue;
    const long long mtime = st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec;
    auto it = seen_.find(name);
    if (it != seen_.end() && it->second.mtime_ns == mtime && it->second.inode == st.st_ino) {
      next.emplace(name, std::move(it->second));
      continue;
    }
    if (auto r = read_liveness(path)) next[name] = Seen{mtime, st.st_ino, std::move(*r)};
  }
  seen_ = std::move(next);
}

std::map<std::string, LivenessRecord> LivenessFiles::records() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, LivenessRecord> out;
  for (const auto& [name, s] : seen_) out[name] = s.record;
  return out;
}

}  // namespace vitals
