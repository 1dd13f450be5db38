#!/usr/bin/env bash
# bench/boot.sh — the all-in-one container's boot timeline, side by side: the shipped design
# (`vitals notify` readiness, `vitals check` HEALTHCHECK) against the seed's original one
# (s6-notifyoncheck + pg_isready + curl, bench/seed-image), in the same image, same services, same
# s6-overlay. Details and definitions: bench/boot.py.
#
#   bench/boot.sh [RUNS]        (root; RUNS default 10; SKIP_BUILD=1 reuses the images)
# Output: a table of medians; raw rows in $OUT/boot.json (OUT default /tmp/vitals-bench/boot).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/container/lib.sh
. "$HERE/../tests/container/lib.sh"
RUNS=${1:-10}
OUT=${OUT:-/tmp/vitals-bench/boot}
ct_require
mkdir -p "$OUT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  ct_build_allinone
  ct_build -t localhost/vitals-allinone-seed:test --build-arg ALLINONE_IMAGE="$ALLINONE_IMAGE" \
    "$HERE/seed-image" >"$WORK/build-seed.log" 2>&1 \
    || { tail -30 "$WORK/build-seed.log"; ct_die "building the seed image failed"; }
fi
python3 "$HERE/boot.py" "$RUNS" "$OUT" | tee "$OUT/boot.txt"
