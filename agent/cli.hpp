// The agent side of the `vitals` command: every subcommand except `check`.
#pragma once

extern "C" __attribute__((visibility("default"))) int vitals_core_main(int argc, char** argv);
// `vitals run`: what the agent executable did for `listen` before it loaded this library: the
// socket it opened, or (fd -1) why it could not; the agent takes either if its config still says
// that address (agent/listener.hpp).
extern "C" __attribute__((visibility("default"))) void vitals_core_listener(const char* listen,
                                                                            int fd,
                                                                            const char* error);
