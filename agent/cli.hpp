// The agent side of the `vitals` command: every subcommand except `check`.
#pragma once

extern "C" __attribute__((visibility("default"))) int vitals_core_main(int argc, char** argv);
