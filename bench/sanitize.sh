#!/usr/bin/env bash
# Builds everything with AddressSanitizer + UndefinedBehaviorSanitizer (-DVITALS_SANITIZE=ON) in
# a separate build tree and runs the unit tests, the fuzz corpus replays and the integration
# tests of the agent under it (leak detection on). The plugins are built with the same flags and
# dlopen()ed into the instrumented binary, so their errors are caught too.
#   bench/sanitize.sh                       # unit + fuzz + integration.agent + integration.abuse
#   TESTS='unit\.|integration\.postgres' bench/sanitize.sh
# Knobs: BUILD=dir (default <repo>/build-asan), TESTS=ctest -R regex, JOBS.
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
BUILD=${BUILD:-$REPO/build-asan}
TESTS=${TESTS:-'^(unit\.|fuzz\.|integration\.agent$|integration\.abuse$)'}
JOBS=${JOBS:-$(nproc)}
OUT=${OUT:-/tmp/vitals-bench/sanitize}
mkdir -p "$OUT"
cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVITALS_SANITIZE=ON >"$OUT/configure.log"
cmake --build "$BUILD" -j"$JOBS" >"$OUT/build.log"
# halt_on_error: a sanitizer report fails the test that triggered it. The agent's exit code is
# what the integration tests check, so a report in the agent shows as a failed test.
# intercept_tls_get_addr=0: GCC 12's libasan takes some dynamic TLS blocks for glibc 2.19 ones
# (when the block's address is 16 mod 4096, by chance of malloc placement) and reads a bogus range
# from them; LeakSanitizer's tracer then dies at exit with "Tracer caught signal 11" and no
# report (google/sanitizers#1322, fixed after GCC 13). It hit `vitals run` on every exit with
# `probes: {}`. Dynamic TLS is then not scanned for pointers, which can only add leak reports.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86:intercept_tls_get_addr=0:log_path=$OUT/asan}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:log_path=$OUT/ubsan}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$BENCH_DIR/lsan.supp}
rm -f "$OUT"/asan.* "$OUT"/ubsan.*
status=0
ctest --test-dir "$BUILD" -R "$TESTS" --output-on-failure -j1 --timeout 900 | tee "$OUT/ctest.log" || status=$?
reports=$(find "$OUT" -maxdepth 1 -name 'asan.*' -o -maxdepth 1 -name 'ubsan.*' | wc -l)
summary="$(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -n1); sanitizer report files: $reports"
echo "$summary"
if [ "$reports" -gt 0 ]; then
  status=1
  for f in "$OUT"/asan.* "$OUT"/ubsan.*; do [ -f "$f" ] && { echo "--- $f"; head -n 30 "$f"; }; done
fi
{
  echo "## Sanitizers (ASan + UBSan, leak detection on)"
  echo
  echo "Run $DATE_START on $(machine_line). Command: \`bench/sanitize.sh\` (ctest -R '$TESTS' in a -DVITALS_SANITIZE=ON tree)."
  echo
  echo "Result: $summary."
  grep -E '^ *[0-9]+/[0-9]+ Test' "$OUT/ctest.log" | grep -v ' Passed ' | sed 's/^/    /' || true
  for f in "$OUT"/asan.* "$OUT"/ubsan.*; do
    [ -f "$f" ] || continue
    echo
    echo "\`$(basename "$f")\`: $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$f" || head -n1 "$f")"
  done
} >"$OUT/section.md"
results_section sanitize "$OUT/section.md"
exit "$status"
