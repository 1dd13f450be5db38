// Probe worker processes, the agent's side (docs/ISOLATION.md). A probe with `isolation: process`
// runs in the worker of its plugin: one process per loaded plugin file, started on first use
// (`vitals worker`, agent/worker_main.cpp), holding every isolated instance of that plugin, each
// on a thread of its own. A crash ends only that process: the runs in flight in it end as
// `crashed`, the next run starts a new process (after a first crash at once, then after a backoff
// of 1 s doubling to 1 min, reset by a run that returns) and creates the instances again there.
// A run still going a grace after its give-up time has its worker killed, so nothing piles up.
// A probe found alone in its worker when it crashed moves to a worker of its own (quarantine): its
// next crashes no longer touch the other probes of its plugin.
#pragma once

#include <sys/types.h>
#include <vitals/probe.h>

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "options.hpp"
#include "plugin_host.hpp"
#include "util.hpp"

namespace vitals {

using SteadyTime = std::chrono::steady_clock::time_point;

// How long past its give-up time a call may still go before its worker is killed.
inline constexpr Millis kKillGrace{1000};
// The default limit of a worker's data segment (heap, private mappings, thread stacks).
inline constexpr uint64_t kDefaultWorkerMemory = 1ull << 30;

// What a call into a worker came to.
struct WorkerReply {
  enum class Kind { Ok, CreateFailed, Crashed, Hung } kind = Kind::Ok;
  std::string message;         // CreateFailed: the plugin's reason; Crashed, Hung: what happened
  bool died_in_call = false;   // Crashed: the process ended while this call was in it
  bool culprit = false;        // ... and this was the only call in it, among several probes
  bool during_create = false;  // the call was the create() a run starts with
  vitals_result result{};      // Ok, from a run
  uint64_t start_ns = 0, end_ns = 0;
};

class Worker : public std::enable_shared_from_this<Worker> {
 public:
  // The worker of this plugin file (one per loaded file), shared by its isolated probes; or with
  // `solo`, the worker of that probe alone, which starts as after a first crash.
  static std::shared_ptr<Worker> of(const Plugin& plugin, uint64_t data_limit,
                                    const std::string& solo = "");
  // Kills every worker (agent shutdown): no call is left waiting on a plugin.
  static void kill_all();

  Worker(std::string plugin_name, std::string plugin_path, uint64_t data_limit);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // A probe joins with its encoded option values (wire::encode_values), the secrets that scrub
  // what the worker prints, and where its plugin's log lines go. Returns its id in this worker.
  using LogFn = std::function<void(int level, const std::string& text)>;
  uint32_t join(const std::string& probe, std::string values, Secrets secrets, LogFn log);
  // The probe is gone: its instance is destroyed; the last one out ends the process.
  void leave(uint32_t id);

  // create() of the probe's instance, in a running worker (started now if it is not).
  WorkerReply create(uint32_t id, SteadyTime give_up);
  // One run; the instance is created first if this worker process does not hold it yet (a
  // failure there comes back with during_create).
  WorkerReply run(uint32_t id, SteadyTime deadline, SteadyTime give_up);

  const std::string& plugin_name() const { return plugin_name_; }
  uint64_t data_limit() const { return data_limit_; }

 private:
  struct Member {
    std::string probe, values;
    Secrets secrets;
    LogFn log;
    uint64_t created_in = 0;  // the generation whose process holds the instance (0: none)
    std::optional<WorkerReply> reply;
    bool in_call = false;
  };
  using Lock = std::unique_lock<std::mutex>;
  // A process that takes calls: running, and not being killed (a new one may start meanwhile).
  bool usable() const { return alive_ && kill_reason_.empty(); }
  bool start(std::string& error);
  WorkerReply call(Lock& lock, uint32_t id, const std::string& message, SteadyTime give_up,
                   const std::string& hang_reason);
  void kill_process(const std::string& reason);
  void reader(pid_t pid, int sock, int err, uint64_t generation);
  void on_message(const char* data, size_t size, uint64_t generation);
  void on_stderr(const std::string& line);
  void on_exit(std::optional<int> status, uint64_t generation);  // nullopt: waitpid failed

  const std::string plugin_name_, plugin_path_;
  const uint64_t data_limit_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<uint32_t, Member> members_;
  uint32_t next_id_ = 1;
  // The current process, if any.
  bool alive_ = false;
  pid_t pid_ = -1;
  int sock_ = -1;
  uint64_t generation_ = 0;
  std::string kill_reason_;  // why the agent killed it, if it did
  bool retiring_ = false;    // killed because no probe needs it: not a crash
  // Crashes without a clean run since; the next process may start at next_start_.
  int crashes_in_row_ = 0;
  SteadyTime next_start_{};
  std::string last_crash_;
  // stderr lines logged in the current second (a flood is cut short).
  SteadyTime stderr_window_{};
  int stderr_lines_ = 0, stderr_dropped_ = 0;
};

// "killed by signal 11 (SIGSEGV: Segmentation fault)", "exited with status 3": a wait status.
std::string describe_exit(int status);

}  // namespace vitals
