// The agent side of the `vitals` command: every subcommand except `check`.
#pragma once

extern "C" __attribute__((visibility("default"))) int vitals_core_main(int argc, char** argv);
// `vitals run`: the listening socket the front end opened for `listen` before it loaded this
// library; the agent takes it if its config still says that address (agent/listener.hpp).
extern "C" __attribute__((visibility("default"))) void vitals_core_listener(int fd,
                                                                            const char* listen);
