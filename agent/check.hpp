// `vitals check`: the HEALTHCHECK client. Depends on libc (and libstdc++) only, so it starts in
// about a millisecond; exits 0 if the agent answers 200, else 1 (always 0 or 1: Docker reserves 2).
#pragma once

namespace vitals {
int run_check(int argc, char** argv);
}
