#!/usr/bin/env bash
# Runs the agent under valgrind memcheck for DURATION of wrk load on /health, /metrics and
# /readyz (plus tcp, http and exec probes running at 200 ms), then stops it with SIGTERM and
# reports memcheck's error summary and leak summary.
# Knobs: DURATION=30 CONNS=8 (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-30}
CONNS=${CONNS:-8}
OUT=${OUT:-/tmp/vitals-bench/valgrind}
need valgrind wrk curl python3
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT"
DEP_PORT=$(free_port)
AGENT_PORT=$(free_port)
stop_pids_on_exit
python3 -m http.server --bind 127.0.0.1 "$DEP_PORT" --directory "$OUT" >/dev/null 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$DEP_PORT/"
cat >"$OUT/vitals.yaml" <<YAML
listen: 127.0.0.1:$AGENT_PORT
probes:
  web: {plugin: http, interval: 200ms, timeout: 100ms, options: {url: "http://127.0.0.1:$DEP_PORT/"}}
  port: {plugin: tcp, interval: 200ms, timeout: 100ms, options: {port: $DEP_PORT}}
  cmd: {plugin: exec, tier: optional, interval: 200ms, timeout: 100ms, options: {command: [sh, -c, "echo ok"]}}
  refused: {plugin: tcp, tier: optional, interval: 200ms, timeout: 100ms, options: {port: 1}}
YAML
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect,possible \
  --errors-for-leak-kinds=definite --track-origins=yes --num-callers=30 \
  --log-file="$OUT/memcheck.log" "$VITALS_BUILD/lib/vitals/vitals" run -c "$OUT/vitals.yaml" \
  >"$OUT/agent.log" 2>&1 &  # the agent executable itself: memcheck does not follow `vitals`'s exec
VG=$!
PIDS+=("$VG")
wait_http "http://127.0.0.1:$AGENT_PORT/livez" 600
cat >"$OUT/paths.lua" <<'LUA'
local paths = {"/health", "/metrics", "/readyz?verbose", "/health/web", "/health?format=line"}
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1])
end
LUA
wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$OUT/paths.lua" "http://127.0.0.1:$AGENT_PORT" >"$OUT/wrk.txt" 2>&1
curl -s -X POST "http://127.0.0.1:$AGENT_PORT/health" >/dev/null || true
curl -s "http://127.0.0.1:$AGENT_PORT/health?format=line"
kill -TERM "$VG"
rc=0
wait "$VG" || rc=$?
PIDS=("${PIDS[@]/$VG}")
errors=$(grep -m1 'ERROR SUMMARY' "$OUT/memcheck.log" | sed 's/^==[0-9]*== //')
definite=$(grep -m1 'definitely lost' "$OUT/memcheck.log" | sed 's/^==[0-9]*== *//' || echo "definitely lost: (no leak summary)")
possibly=$(grep -m1 -E 'possibly lost' "$OUT/memcheck.log" | sed 's/^==[0-9]*== *//' || true)
others=$(grep -E 'indirectly lost|still reachable' "$OUT/memcheck.log" | sed 's/^==[0-9]*== *//' | paste -sd, - || true)
requests=$(grep -Eo '[0-9]+ requests in' "$OUT/wrk.txt" | cut -d' ' -f1)
echo "agent exit code $rc; $errors; $definite; $possibly; $requests requests served"
{
  echo "## valgrind memcheck under load"
  echo
  echo "Run $DATE_START on $(machine_line). Command: \`bench/valgrind.sh\` (DURATION=$DURATION CONNS=$CONNS): the agent"
  echo "(tcp, http, exec probes at 200 ms, one failing) under \`valgrind --leak-check=full\` while"
  echo "\`wrk -c$CONNS\` cycles through /health, /metrics, /readyz?verbose, /health/web, ?format=line; then SIGTERM."
  echo
  echo "- requests served under memcheck: $requests; agent exit code: $rc"
  echo "- $errors"
  echo "- $definite"
  [ -n "$possibly" ] && echo "- $possibly"
  [ -n "$others" ] && echo "- $others (still reachable = memory still referenced at exit, not a leak)"
  true
} >"$OUT/section.md"
results_section valgrind "$OUT/section.md"
