#!/usr/bin/env bash
# Issue 14: what recording history costs on the probe path. Builds bench/history_bench.cpp
# against the agent library and runs it (Probe::record() with `history: 0` against 120).
# Knobs: BUILD=build
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake --build "$BUILD" --target history_bench -j2 >/dev/null
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench/history_bench"
