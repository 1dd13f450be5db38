#!/usr/bin/env bash
# Runs the HTTP abuse tests (tests/integration/test_abuse.py, class HttpAbuse) REPS times and
# records how long the fresh GET /health sent during each kind of abuse took (the tests print
# "FIGURE name ms"; they assert only that it is answered 200 within 5 s).
# Knobs: REPS=5 (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-5}
OUT=${OUT:-/tmp/vitals-bench/abuse}
need python3
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT"
for rep in $(seq "$REPS"); do
  # shellcheck disable=SC2153 # REPO comes from lib.sh
  (cd "$REPO/tests/integration" &&
    VITALS_BIN=$VITALS VITALS_SOURCE_DIR=$REPO VITALS_FAKE_PLUGIN_DIR=$VITALS_BUILD/tests/fakes \
      PYTHONDONTWRITEBYTECODE=1 python3 -m unittest test_abuse.HttpAbuse) >"$OUT/run$rep.log" 2>&1 ||
    { echo "the abuse tests failed (rep $rep):" >&2; tail -n 30 "$OUT/run$rep.log" >&2; exit 1; }
  grep -o 'FIGURE [a-z0-9_]* [0-9.]*' "$OUT/run$rep.log" >>"$OUT/figures.txt" || true
  echo "rep $rep: $(grep -o 'FIGURE [a-z0-9_]* [0-9.]*' "$OUT/run$rep.log" | wc -l) figures"
done
python3 - "$OUT/figures.txt" "$BENCH_DIR" >"$OUT/table.md" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
from stats import summary
names = {
    "slowloris_500": "500 idle half-sent requests (slowloris) held open",
    "concurrent_1000": "1000 concurrent keep-alive connections, each with a request in flight",
    "oversized_headers": "after 64 KiB headers / names / targets",
    "malformed": "after malformed request lines, TLS hello, binary",
    "odd_requests": "after odd-but-parseable requests",
    "bodies": "after requests with bodies where none belong",
}
vals = {}
for line in open(sys.argv[1]):
    _, name, ms = line.split()
    vals.setdefault(name.replace("_fresh_health_ms", ""), []).append(float(ms))
print("| abuse going on | fresh GET /health, median ms | max ms | reps | target ≤ 50 ms |")
print("|---|---|---|---|---|")
for k, v in vals.items():
    s = summary(v)
    print(f"| {names.get(k, k)} | **{s['median']:.1f}** | {s['max']:.1f} | {s['n']} | {'met' if s['max'] <= 50 else 'MISSED'} |")
PY
cat "$OUT/table.md"
{
  echo "## Abuse: a fresh /health request while the agent is being abused"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/abuse.sh\` (REPS=$REPS): runs \`tests/integration/test_abuse.py\` (HttpAbuse) and collects the time"
  echo "of the fresh GET /health (new connection, Python urllib) each test sends during or right after its abuse."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section abuse "$OUT/section.md"
