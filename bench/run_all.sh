#!/usr/bin/env bash
# Runs every benchmark once, in the order of the targets, refreshing bench/RESULTS.md.
# (sanitize.sh, valgrind.sh and tests/fuzz/run.sh are separate: they take longer.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for s in readiness healthcheck_cost http_throughput footprint scale isolation abuse; do
  echo "=== $s ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$here/$s.sh"
done
