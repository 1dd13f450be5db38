// The agent's listening socket, opened by the same code in the front end and in the core: `vitals
// run` opens it in the front end before it loads libvitals-core.so (most of a cold start) and the
// core adopts it, so clients connect from the first milliseconds and wait in the backlog until the
// probes are in (bench/coldstart.sh). Without Poco: the front end links libc only.
#pragma once

#include <string>

namespace vitals {

// A listening TCP socket on "host:port" (a numeric address, or a name: its first IPv4 address,
// else its first one): SO_REUSEADDR (a restart binds while old connections linger), never
// SO_REUSEPORT (a second agent would share the port), backlog 1024, non-blocking, close-on-exec.
// Returns the fd, or -1 with `error` set to the reason alone ("address already in use").
int open_listener(const std::string& listen, std::string& error);

// The front end hands the socket it opened for `listen` to the core (vitals_core_listener in
// cli.cpp); the core's HttpServer takes it if its config still says the same address.
void adopt_listener(int fd, const std::string& listen);
// The adopted socket if it was opened for `listen` (it is then the caller's), else -1 (an
// adopted socket for another address is closed).
int take_adopted_listener(const std::string& listen);
// The fd of the adopted socket not yet taken, else -1: a notification fd of that number was not
// open when the process started (the socket took the free number).
int adopted_listener_fd();

}  // namespace vitals
