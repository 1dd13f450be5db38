// `vitals notify`: a chain-loader like s6-notifyoncheck. Forks a poller, execs into PROG (which
// keeps the supervised pid), and the poller writes one "\n" to the notification fd once the probe
// passes, then exits. The poller exits without notifying if PROG dies first.
#pragma once

#include "command_line.hpp"

namespace vitals {
int cmd_notify(const CommandLine& cl);
}
