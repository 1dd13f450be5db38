// The agent's listening socket, opened by the same code in the agent executable (main.cpp) and in
// the core: `vitals run` opens it before it loads libvitals-core.so (most of a cold start) and the
// core adopts it, so clients connect from the first milliseconds and wait in the backlog until the
// probes are in (bench/coldstart.sh). Without Poco: main.cpp loads no library before it.
#pragma once

#include <optional>
#include <string>

namespace vitals {

// A listening TCP socket on "host:port" (a numeric address, or a name: its first IPv4 address,
// else its first one): SO_REUSEADDR (a restart binds while old connections linger), never
// SO_REUSEPORT (a second agent would share the port), backlog 1024, non-blocking, close-on-exec.
// Returns the fd, or -1 with `error` set to the reason alone ("address already in use",
// "name or service not known").
int open_listener(const std::string& listen, std::string& error);

// What main.cpp did for `listen`: the socket it opened, or why it could not (fd -1). The
// core's HttpServer takes it if its config still says the same address; a failure is then
// reported as the agent's own, without trying again.
struct AdoptedListener {
  int fd = -1;
  std::string error;
};
void adopt_listener(const std::string& listen, AdoptedListener adopted);
// What was adopted for `listen`, once (the socket is then the caller's); nothing if nothing was
// or it was for another address (that socket is closed).
std::optional<AdoptedListener> take_adopted_listener(const std::string& listen);
// The fd of the adopted socket not yet taken, else -1: a notification fd of that number was not
// open when the process started (the socket took the free number).
int adopted_listener_fd();

}  // namespace vitals
