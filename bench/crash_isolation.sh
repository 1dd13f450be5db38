#!/usr/bin/env bash
# Crash isolation (issue 13): per-run overhead, memory, 2,000 isolated probes, and a 5-minute crash
# storm, with `isolation: process` beside `isolation: thread` in the same run (bench/crash_isolation.py
# says what each part measures). Knobs: REPS=3 RUN_SECS=15 SCALE_SECS=30 STORM_SECS=300; arguments
# pick parts (overhead memory scale storm). Needs the tests' fake plugins (a full build).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
need python3 curl
build_vitals
export VITALS FAKES="$(cd "$VITALS_BUILD" && pwd)/tests/fakes" REPO OUT=${OUT:-/tmp/vitals-bench/crash_isolation}
[ -f "$FAKES/fake-crash.so" ] || { echo "missing $FAKES/fake-crash.so (build the tests)" >&2; exit 1; }
python3 "$BENCH_DIR/crash_isolation.py" "$@"
