#!/usr/bin/env bash
# bench/liveness.sh — a wedged MCP server in the all-in-one container: how long from the wedge
# (kill -STOP: alive, not answering) until the container is healthy again, with the shipped
# config and run scripts (`vitals notify --liveness`), against the seed's design, in which Docker
# marks the container unhealthy and nothing restarts anything. Details: bench/liveness.py.
#
#   bench/liveness.sh [RUNS]    (root; RUNS default 3 = the mcp probe's max_restarts; SKIP_BUILD=1
#                                reuses the images; SEED=0 skips the seed's side)
# Output: a summary; raw rows in $OUT/liveness.json (OUT default /tmp/vitals-bench/liveness).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/container/lib.sh
. "$HERE/../tests/container/lib.sh"
RUNS=${1:-3}
OUT=${OUT:-/tmp/vitals-bench/liveness}
SEED_IMAGE=${SEED_IMAGE:-localhost/vitals-allinone-seed:test}
export SEED_IMAGE
ct_require
mkdir -p "$OUT"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  ct_build_allinone
  ct_build -t "$SEED_IMAGE" --build-arg ALLINONE_IMAGE="$ALLINONE_IMAGE" \
    "$HERE/seed-image" >"$WORK/build-seed.log" 2>&1 \
    || { tail -30 "$WORK/build-seed.log"; ct_die "building the seed image failed"; }
fi
python3 "$HERE/liveness.py" "$RUNS" "$OUT" | tee "$OUT/liveness.txt"
