// systemd's readiness protocol, sd_notify(3), without libsystemd: a message is one datagram of
// newline-separated VAR=VALUE lines (READY=1, STATUS=..., WATCHDOG=1) sent to the AF_UNIX socket
// $NOTIFY_SOCKET names, a path or, when it starts with '@', an abstract name.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "util.hpp"

namespace vitals {

class SdNotify {
 public:
  // From NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID; nullopt when NOTIFY_SOCKET is unset or
  // empty. A value vitals cannot use sets `error`, naming the variable.
  static std::optional<SdNotify> from_environment(std::string& error);
  explicit SdNotify(std::string socket,
                    std::optional<std::chrono::microseconds> watchdog = std::nullopt)
      : socket_(std::move(socket)), watchdog_(watchdog) {}

  // Sends one message; on failure sets `error` (errno's text). With `as_pid`, the datagram carries
  // that pid as the sender's credentials, as sd_pid_notify(3) does, so the manager files it under
  // that process; the kernel allows this to root only, and on EPERM it goes with our own pid
  // (`*as_self` then says so). Never blocks longer than a second (a manager that does not read).
  bool send(const std::string& message, std::string& error, pid_t as_pid = 0,
            bool* as_self = nullptr) const;
  // BARRIER=1 (systemd 246+): waits until the manager has processed every message sent before
  // (it closes the fd that came with it), at most `timeout`. False on timeout or a send error.
  bool barrier(Millis timeout, std::string& error) const;

  const std::string& socket() const { return socket_; }
  // How often to send WATCHDOG=1: half of WATCHDOG_USEC, when it is set and WATCHDOG_PID is unset
  // or names this process.
  std::optional<std::chrono::microseconds> watchdog_interval() const;

 private:
  std::string socket_;
  std::optional<std::chrono::microseconds> watchdog_;
};

// Removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from this process's environment, so no
// child announces itself (call before any thread starts).
void unset_sd_environment();

// "MONOTONIC_USEC=<CLOCK_MONOTONIC in microseconds>", as RELOADING=1 wants it.
std::string monotonic_usec();

// `vitals run` under systemd. A thread of its own sends READY=1 once the agent is ready, STATUS=
// (the one-line summary) whenever it changes, and WATCHDOG=1 every WATCHDOG_USEC/2 while the
// scheduler is alive; reloading()/reloaded() and stopping() send from the caller's thread. Nothing
// a probe thread calls ever waits on the socket: update() only wakes the thread.
class AgentSdNotifier {
 public:
  struct Sources {
    std::function<std::string()> status;  // the one-line summary (GET /health?format=line)
    std::function<bool()> alive;          // the scheduler's heartbeat is fresh (as /livez)
  };

  explicit AgentSdNotifier(SdNotify sd) : sd_(std::move(sd)) {}
  ~AgentSdNotifier() { stop(); }

  void start(Sources sources);
  void stop();
  // After each recorded result, a start and a reload; `ready`: the agent has been ready.
  void update(bool ready);
  // RELOADING=1 with MONOTONIC_USEC, once READY=1 was sent (before it, systemd is still waiting
  // for the start, and the READY=1 still to come ends it).
  void reloading();
  // READY=1 after a reload that sent RELOADING=1, whether the new config was taken or rejected.
  void reloaded();
  // STOPPING=1; nothing more is sent after it.
  void stopping();

 private:
  void loop();
  void refresh(bool ping);
  bool send_locked(const std::string& message);

  SdNotify sd_;
  Sources sources_;
  std::thread thread_;
  std::mutex wake_mutex_;  // guards the two flags below
  std::condition_variable wake_;
  bool changed_ = false, finished_ = false;
  std::atomic<bool> ready_{false};
  std::mutex send_mutex_;  // orders the messages; guards the state below
  bool ready_sent_ = false, reloading_ = false, stopping_ = false, pings_withheld_ = false;
  std::string last_status_, last_error_;
};

}  // namespace vitals
