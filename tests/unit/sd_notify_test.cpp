#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <thread>

#include "sd_notify.hpp"

using namespace vitals;

namespace {

// A datagram socket the test binds, as systemd does: at a path, or at an abstract name ('@...').
class Receiver {
 public:
  explicit Receiver(bool abstract) {
    static int count = 0;
    const std::string id =
        "vitals-sd-test-" + std::to_string(getpid()) + "-" + std::to_string(++count);
    name = abstract ? "@" + id : std::string(P_tmpdir) + "/" + id + ".sock";
    if (!abstract) unlink(name.c_str());
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    const int on = 1;
    setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, name.data(), name.size());
    if (abstract) a.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0);
  }
  ~Receiver() {
    close(fd);
    if (name[0] == '/') unlink(name.c_str());
  }

  // The next message (empty after `wait` without one); `sender` gets the pid it came with.
  std::string next(std::chrono::milliseconds wait = std::chrono::seconds(5),
                   pid_t* sender = nullptr) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(wait.count())) != 1) return "";
    char buf[4096];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(4 * sizeof(int))];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    const ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
    if (n < 0) return "";
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
      if (c->cmsg_type == SCM_CREDENTIALS && sender) {
        ucred who{};
        std::memcpy(&who, CMSG_DATA(c), sizeof who);
        *sender = who.pid;
      } else if (c->cmsg_type == SCM_RIGHTS) {  // as systemd does with BARRIER=1's fd
        const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
          int passed;
          std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
          close(passed);
        }
      }
    }
    return std::string(buf, static_cast<std::size_t>(n));
  }

  // Skips messages until one containing `line` (a whole line); returns it, or "" after 5 s.
  std::string until(const std::string& line) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < end) {
      const std::string m = next(std::chrono::milliseconds(200));
      if (("\n" + m).find("\n" + line) != std::string::npos) return m;
    }
    return "";
  }

  std::string name;
  int fd = -1;
};

// Sets (or, with nullptr, unsets) an environment variable for the scope, then restores it.
class EnvVar {
 public:
  EnvVar(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvVar() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

}  // namespace

TEST_CASE("sd_notify: a message reaches the socket at a path and at an abstract name",
          "[sd_notify]") {
  const bool abstract = GENERATE(false, true);
  Receiver r(abstract);
  SdNotify sd(r.name);
  std::string error;
  REQUIRE(sd.send("READY=1\nSTATUS=healthy ready=true 1/1\n", error));
  CHECK(error.empty());
  CHECK(r.next() == "READY=1\nSTATUS=healthy ready=true 1/1\n");
}

TEST_CASE("sd_notify: a socket nobody has bound is an error", "[sd_notify]") {
  SdNotify sd(std::string(P_tmpdir) + "/vitals-sd-test-nobody-" + std::to_string(getpid()));
  std::string error;
  CHECK_FALSE(sd.send("READY=1\n", error));
  CHECK(error == "No such file or directory");
}

TEST_CASE("sd_notify: sent for another process, the datagram names it (root) or us",
          "[sd_notify]") {
  Receiver r(false);
  SdNotify sd(r.name);
  std::string error;
  bool as_self = false;
  REQUIRE(sd.send("READY=1\n", error, getppid(), &as_self));
  pid_t sender = 0;
  CHECK(r.next(std::chrono::seconds(5), &sender) == "READY=1\n");
  if (geteuid() == 0) {  // CAP_SYS_ADMIN: the kernel lets us name another pid
    CHECK_FALSE(as_self);
    CHECK(sender == getppid());
  } else {
    CHECK(as_self);
    CHECK(sender == getpid());
  }
}

TEST_CASE("sd_notify: BARRIER=1 returns once the manager read it, fails if it never does",
          "[sd_notify]") {
  Receiver r(true);
  SdNotify sd(r.name);
  std::string error;
  std::thread reader([&] { r.next(); });  // reads the barrier and closes its fd
  CHECK(sd.barrier(Millis(5000), error));
  reader.join();
  CHECK_FALSE(sd.barrier(Millis(200), error));  // nobody reads now
  CHECK(error == "no answer to BARRIER=1 within 200ms");
}

TEST_CASE("sd_notify: NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment",
          "[sd_notify]") {
  using std::chrono::microseconds;
  std::string error;
  {
    EnvVar s("NOTIFY_SOCKET", nullptr);
    CHECK_FALSE(SdNotify::from_environment(error));
    CHECK(error.empty());
  }
  EnvVar s("NOTIFY_SOCKET", "@/org/freedesktop/systemd1/notify");
  const std::string me = std::to_string(getpid());
  struct Row {
    const char *usec, *pid;
    std::optional<microseconds> interval;
  };
  auto row = GENERATE_COPY(values<Row>({
      {nullptr, nullptr, std::nullopt},
      {"30000000", nullptr, microseconds(15'000'000)},
      {"30000000", "", microseconds(15'000'000)},
      {"3000000", me.c_str(), microseconds(1'500'000)},
      {"3000000", "1", std::nullopt},  // the watchdog is another process's
  }));
  EnvVar u("WATCHDOG_USEC", row.usec);
  EnvVar p("WATCHDOG_PID", row.pid);
  const auto sd = SdNotify::from_environment(error);
  REQUIRE(sd);
  CHECK(error.empty());
  CHECK(sd->socket() == "@/org/freedesktop/systemd1/notify");
  CHECK(sd->watchdog_interval() == row.interval);
}

TEST_CASE("sd_notify: values vitals cannot use are errors naming the variable", "[sd_notify]") {
  struct Row {
    const char *socket, *usec, *pid, *error;
  };
  auto row = GENERATE(values<Row>({
      {"run/notify", nullptr, nullptr,
       "NOTIFY_SOCKET must be an absolute path or an abstract socket name starting with @, not "
       "'run/notify'"},
      {"/run/notify", "soon", nullptr,
       "WATCHDOG_USEC must be a positive number of microseconds, not 'soon'"},
      {"/run/notify", "-5", nullptr,
       "WATCHDOG_USEC must be a positive number of microseconds, not '-5'"},
      {"/run/notify", "1000", "me", "WATCHDOG_PID must be a process id, not 'me'"},
  }));
  EnvVar s("NOTIFY_SOCKET", row.socket);
  EnvVar u("WATCHDOG_USEC", row.usec);
  EnvVar p("WATCHDOG_PID", row.pid);
  std::string error;
  CHECK_FALSE(SdNotify::from_environment(error));
  CHECK(error == row.error);
}

TEST_CASE("sd_notify: unset_sd_environment leaves no variable for a child", "[sd_notify]") {
  EnvVar s("NOTIFY_SOCKET", "/run/systemd/notify");
  EnvVar u("WATCHDOG_USEC", "1000");
  EnvVar p("WATCHDOG_PID", "1");
  unset_sd_environment();
  CHECK_FALSE(getenv("NOTIFY_SOCKET"));
  CHECK_FALSE(getenv("WATCHDOG_USEC"));
  CHECK_FALSE(getenv("WATCHDOG_PID"));
}

TEST_CASE(
    "sd_notify: the agent's messages: STATUS on change, READY, WATCHDOG while alive, "
    "RELOADING, STOPPING",
    "[sd_notify]") {
  Receiver r(true);
  std::mutex mutex;
  std::string status = "starting ready=false 0/1 db:connect: connection refused\n";
  std::atomic<bool> alive{true};
  AgentSdNotifier agent(SdNotify(r.name, std::chrono::milliseconds(200)));
  agent.start({[&] {
                 std::lock_guard lock(mutex);
                 return status;
               },
               [&] { return alive.load(); }});

  std::string m = r.until("STATUS=");
  CHECK(m.find("STATUS=starting ready=false 0/1 db:connect: connection refused\n") !=
        std::string::npos);
  CHECK(m.find("READY=1") == std::string::npos);
  agent.reloading();  // not ready yet: systemd still waits for the start's READY=1
  {
    std::lock_guard lock(mutex);
    status = "healthy ready=true 1/1\n";
  }
  agent.update(true);
  m = r.until("READY=1");
  CHECK(m.find("STATUS=healthy ready=true 1/1\n") != std::string::npos);
  CHECK(m.find("RELOADING=1") == std::string::npos);
  CHECK_FALSE(r.until("WATCHDOG=1").empty());  // every 100 ms while alive

  agent.reloading();
  m = r.until("RELOADING=1");
  CHECK(m.find("\nMONOTONIC_USEC=") != std::string::npos);
  agent.reloaded();
  CHECK_FALSE(r.until("READY=1").empty());

  alive = false;  // the scheduler stopped going round: no more pings
  for (int i = 0; i < 5; ++i) r.next(std::chrono::milliseconds(150));  // one in flight at most
  for (int i = 0; i < 5; ++i)
    CHECK(r.next(std::chrono::milliseconds(150)).find("WATCHDOG=1") == std::string::npos);
  alive = true;
  CHECK_FALSE(r.until("WATCHDOG=1").empty());

  agent.stopping();
  CHECK_FALSE(r.until("STOPPING=1").empty());
  {
    std::lock_guard lock(mutex);
    status = "unhealthy ready=false 0/1 db:connect: connection refused\n";
  }
  agent.update(false);
  CHECK(r.next(std::chrono::milliseconds(500)).empty());  // nothing after STOPPING=1
  agent.stop();
}
