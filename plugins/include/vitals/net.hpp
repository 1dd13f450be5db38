// Network helpers that keep blocking socket code inside a run's deadline, for plugins whose
// library bounds each read (SO_RCVTIMEO) but not the whole exchange, and resolves names without
// any bound. POSIX and the C++ standard library only.
//
//   vitals::SocketWatchdog dog(d);                     // before the first blocking call
//   const std::string ip = vitals::resolve(host, d);   // DNS within the deadline
//   ... connect to ip, then dog.watch(fd) ...          // at the deadline the socket is shut down
//   if (dog.fired()) r.fail("timed out");              // whatever the library reported
#pragma once

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vitals/probe.hpp>

#include <fcntl.h>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace vitals {

// Thrown by resolve() when the deadline passes first.
struct DeadlineExceeded : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class __attribute__((visibility("hidden"))) SocketWatchdog;

namespace detail {
// One timer for each plugin file (hidden: never shared with another plugin, which may have been
// built with another version of this header).
inline namespace watchdog_v1 {

// The one thread that fires every SocketWatchdog of this plugin at its time. Started by the first
// watchdog, or before by SocketWatchdog::start_thread(); it lives as long as the process (plugins
// are never unloaded). Its mutex guards every watchdog's state too.
class __attribute__((visibility("hidden"))) WatchdogTimer {
 public:
  static WatchdogTimer& get() {
    static WatchdogTimer* const timer = new WatchdogTimer;  // never destroyed: the thread uses it
    return *timer;
  }
  std::mutex m;
  std::condition_variable cv;
  std::multimap<uint64_t, SocketWatchdog*> due;  // armed watchdogs by fire time (monotonic ns)

 private:
  WatchdogTimer() {
    std::thread([this] { loop(); }).detach();
  }
  void loop();
};

}  // namespace watchdog_v1
}  // namespace detail

// Shuts the watched socket down (SHUT_RDWR) just before the deadline, so a read or write blocked
// in any library returns at once and the run still returns in time: it fires a tenth of the time
// left early (at least 5 ms, at most 100 ms). It watches a duplicate of the descriptor, so the
// library may close or replace its socket at any time. One thread fires every watchdog of the
// plugin: none is started per watchdog. A plugin may call start_thread() in its constructor, so
// that its first run does not start it (creating a thread waits while another thread is loading a
// shared object, e.g. the agent loading the next plugin at startup).
class __attribute__((visibility("hidden"))) SocketWatchdog {
 public:
  explicit SocketWatchdog(const Deadline& d) : timer_(detail::WatchdogTimer::get()) {
    std::lock_guard<std::mutex> lock(timer_.m);
    deadline_ns_ = d.ns();
    arm(fire_time(d));
  }
  SocketWatchdog(const SocketWatchdog&) = delete;
  SocketWatchdog& operator=(const SocketWatchdog&) = delete;
  ~SocketWatchdog() {
    std::lock_guard<std::mutex> lock(timer_.m);
    disarm();
    if (fd_ >= 0) close(fd_);
  }

  static void start_thread() { detail::WatchdogTimer::get(); }

  // Watches this socket from now on (a new connection replaces the previous one).
  void watch(int fd) {
    std::lock_guard<std::mutex> lock(timer_.m);
    if (fd_ >= 0) close(fd_);
    fd_ = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (fired_ && fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  }

  // Moves the deadline (e.g. a later one for a cleanup step); a passed deadline fires at once.
  void reset(const Deadline& d) {
    std::lock_guard<std::mutex> lock(timer_.m);
    if (d.ns() == deadline_ns_) return;
    deadline_ns_ = d.ns();
    fired_ = false;
    disarm();
    arm(fire_time(d));
  }

  // True once it fired (the watched socket, if any, was shut down).
  bool fired() const {
    std::lock_guard<std::mutex> lock(timer_.m);
    return fired_;
  }

 private:
  friend class detail::WatchdogTimer;

  static uint64_t fire_time(const Deadline& d) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(d.remaining());
    const auto margin = std::clamp<std::chrono::nanoseconds>(
        left / 10, std::chrono::milliseconds(5), std::chrono::milliseconds(100));
    return d.ns() - static_cast<uint64_t>(std::min(margin, left).count());
  }

  // Both with timer_.m held.
  void arm(uint64_t fire_ns) {
    armed_ = timer_.due.emplace(fire_ns, this);
    if (armed_ == timer_.due.begin()) timer_.cv.notify_one();  // sooner than the thread waits
  }
  void disarm() {
    if (armed_ != timer_.due.end()) timer_.due.erase(armed_);
    armed_ = timer_.due.end();
  }
  void fire() {  // by the timer's thread
    armed_ = timer_.due.end();
    fired_ = true;
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
  }

  detail::WatchdogTimer& timer_;
  std::multimap<uint64_t, SocketWatchdog*>::iterator armed_;
  uint64_t deadline_ns_ = 0;
  int fd_ = -1;
  bool fired_ = false;
};

inline void detail::WatchdogTimer::loop() {
  std::unique_lock<std::mutex> lock(m);
  for (;;) {
    if (due.empty()) {
      cv.wait(lock);
      continue;
    }
    // steady_clock is CLOCK_MONOTONIC, the clock of the deadlines.
    const std::chrono::steady_clock::time_point until{std::chrono::nanoseconds(due.begin()->first)};
    if (std::chrono::steady_clock::now() < until) {
      cv.wait_until(lock, until);
      continue;
    }
    SocketWatchdog* dog = due.begin()->second;
    due.erase(due.begin());
    dog->fire();
  }
}

// A pause while glibc's resolver threads work on getaddrinfo_a() lookups: at most 1 ms, never past
// `until_ns`. Not gai_suspend(): one that times out just as a lookup completes leaves its waiter
// (on its caller's stack) on the request, because it checks the request's status before the
// resolver thread has told its waiters; the resolver thread then writes through that pointer,
// which crashed the agent under load. A plain sleep leaves nothing behind.
inline void gai_pause(uint64_t until_ns) {
  const uint64_t now = monotonic_ns();
  if (now >= until_ns) return;
  std::this_thread::sleep_for(
      std::chrono::nanoseconds(std::min<uint64_t>(until_ns - now, 1000000)));
}

// Resolves `host` (a name or an address literal) within the deadline and returns an address as
// text (the first IPv4 one, else the first). Throws DeadlineExceeded, or std::runtime_error("unable
// to resolve ..."). A lookup still running at the deadline is left to finish in glibc's resolver
// thread and freed by a later call.
inline std::string resolve(const std::string& host, const Deadline& d) {
  struct Lookup {
    std::string name;
    addrinfo hints{};
    gaicb cb{};
  };
  static std::mutex abandoned_mutex;
  static std::vector<Lookup*> abandoned;
  {
    std::lock_guard<std::mutex> lock(abandoned_mutex);
    for (auto it = abandoned.begin(); it != abandoned.end();) {
      if (gai_error(&(*it)->cb) == EAI_INPROGRESS) {
        ++it;
        continue;
      }
      if ((*it)->cb.ar_result) freeaddrinfo((*it)->cb.ar_result);
      delete *it;
      it = abandoned.erase(it);
    }
  }

  in6_addr literal{};  // an address needs no lookup
  if (inet_pton(AF_INET, host.c_str(), &literal) == 1 ||
      inet_pton(AF_INET6, host.c_str(), &literal) == 1)
    return host;

  auto* l = new Lookup{host};
  l->hints.ai_socktype = SOCK_STREAM;
  l->hints.ai_flags = AI_ADDRCONFIG;
  l->cb.ar_name = l->name.c_str();
  l->cb.ar_request = &l->hints;
  gaicb* list[] = {&l->cb};
  if (const int rc = getaddrinfo_a(GAI_NOWAIT, list, 1, nullptr); rc != 0) {
    delete l;
    throw std::runtime_error("unable to resolve " + host + ": " + gai_strerror(rc));
  }
  while (gai_error(&l->cb) == EAI_INPROGRESS) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(d.remaining());
    if (left.count() <= 0) {
      if (gai_cancel(&l->cb) == EAI_CANCELED) {
        delete l;
      } else {
        std::lock_guard<std::mutex> lock(abandoned_mutex);
        abandoned.push_back(l);
      }
      throw DeadlineExceeded("unable to resolve " + host + " before the deadline");
    }
    gai_pause(d.ns());
  }
  const int rc = gai_error(&l->cb);
  addrinfo* res = l->cb.ar_result;
  delete l;
  if (rc != 0 || !res) {
    if (res) freeaddrinfo(res);
    throw std::runtime_error("unable to resolve " + host + ": " +
                             (rc == EAI_SYSTEM ? std::string("system error") : gai_strerror(rc)));
  }
  const addrinfo* pick = res;  // IPv4 first, as Poco does for a name with both
  for (const addrinfo* a = res; a; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  char text[NI_MAXHOST] = "";
  const int nrc =
      getnameinfo(pick->ai_addr, pick->ai_addrlen, text, sizeof text, nullptr, 0, NI_NUMERICHOST);
  freeaddrinfo(res);
  if (nrc != 0) throw std::runtime_error("unable to resolve " + host + ": " + gai_strerror(nrc));
  return text;
}

}  // namespace vitals
