#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>
#include <vitals/net.hpp>

namespace {

vitals::Deadline in_ms(int ms) {
  return vitals::Deadline(vitals::monotonic_ns() + static_cast<uint64_t>(ms) * 1'000'000);
}

long threads() {
  long n = 0;
  for ([[maybe_unused]] const auto& t : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A connected pair; the watchdog watches end 0, the test reads end 1.
struct Pair {
  int fd[2] = {-1, -1};
  Pair() {
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd) == 0);
    timeval tv{5, 0};  // a watchdog that never fires fails the test, not hangs it
    setsockopt(fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Pair() {
    close(fd[0]);
    close(fd[1]);
  }
  // What a read of end 1 gets: 0 once end 0 was shut down.
  ssize_t read_peer() {
    char c;
    return recv(fd[1], &c, 1, 0);
  }
};

}  // namespace

TEST_CASE("socket watchdogs share one thread and shut each socket down at its own time", "[net]") {
  vitals::SocketWatchdog::start_thread();
  const long before = threads();
  std::vector<std::unique_ptr<vitals::SocketWatchdog>> many;
  for (int i = 0; i < 50; ++i)
    many.push_back(std::make_unique<vitals::SocketWatchdog>(in_ms(60'000)));
  CHECK(threads() == before);  // no thread per watchdog

  Pair soon, late, dropped;
  vitals::SocketWatchdog late_dog(in_ms(30'000));
  late_dog.watch(late.fd[0]);
  {
    vitals::SocketWatchdog gone(in_ms(300));  // destroyed before its time: never fires
    gone.watch(dropped.fd[0]);
  }
  vitals::SocketWatchdog soon_dog(in_ms(50));
  soon_dog.watch(soon.fd[0]);
  CHECK(soon.read_peer() == 0);  // shut down: the peer reads end-of-file
  CHECK(soon_dog.fired());
  CHECK_FALSE(late_dog.fired());
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // past the time `gone` had
  CHECK(send(dropped.fd[1], "x", 1, MSG_NOSIGNAL) == 1);        // both ends still open
  char c;
  CHECK(recv(dropped.fd[0], &c, 1, 0) == 1);

  late_dog.reset(in_ms(0));  // a passed deadline fires at once
  CHECK(late.read_peer() == 0);
  CHECK(late_dog.fired());
  late_dog.reset(in_ms(60'000));  // a new deadline: not fired again until then
  CHECK_FALSE(late_dog.fired());
}
