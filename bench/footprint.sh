#!/usr/bin/env bash
# Target 4: footprint with the three mission plugins loaded and passing: postgres (a real
# PostgreSQL 15, one persistent libpq connection), ollama (tests/fakes/ollama/fake_ollama.py,
# model loaded) and mcp-http (tests/fixtures/mcp/server.mjs, the official TypeScript SDK; needs
# node and `npm ci` in that folder, else the mcp probe is left out and the table says so).
# RSS: VmRSS/VmHWM from /proc after WARM seconds. Idle CPU: the agent's utime+stime over IDLE
# seconds at default intervals (10 s), nobody asking it anything.
# Knobs: WARM=15 IDLE=60 (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
WARM=${WARM:-15}
IDLE=${IDLE:-60}
OUT=${OUT:-/tmp/vitals-bench/footprint}
need python3 curl
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 755 "$OUT"
AGENT_PORT=$(free_port)
on_exit() { stop_pg "$OUT/pg"; }
stop_pids_on_exit
start_mission_deps "$OUT"
cat >"$OUT/vitals.yaml" <<YAML
listen: 127.0.0.1:$AGENT_PORT
probes:
  db:
    plugin: postgres
    options: {dsn: "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"}
  ollama:
    plugin: ollama
    options: {url: "http://127.0.0.1:$OLLAMA_PORT"}
YAML
if [ "$MCP" = 1 ]; then
  cat >>"$OUT/vitals.yaml" <<YAML
  mcp:
    plugin: mcp-http
    options: {url: "http://127.0.0.1:$MCP_PORT/mcp"}
YAML
fi
"$VITALS" run -c "$OUT/vitals.yaml" >"$OUT/agent.log" 2>&1 &
PIDS+=($!)
AGENT=$!
wait_http "http://127.0.0.1:$AGENT_PORT/livez"
sleep "$WARM"
curl -s "http://127.0.0.1:$AGENT_PORT/health?format=line" | tee "$OUT/health.txt"
rss_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT/status")
hwm_kb=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT/status")
threads=$(find "/proc/$AGENT/task" -mindepth 1 -maxdepth 1 | wc -l)
t0=$(proc_ticks "$AGENT")
sleep "$IDLE"
t1=$(proc_ticks "$AGENT")
rss2_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT/status")
libs=$(awk '$6 ~ /\.so/ {print $6}' "/proc/$AGENT/maps" | sort -u | wc -l)
pg_backend_kb=$(ps -o rss= --ppid "$PM_PID" | sort -n | tail -n1)

python3 - "$rss_kb" "$hwm_kb" "$rss2_kb" "$((t1 - t0))" "$TCK" "$IDLE" "$threads" "$libs" "$MCP" "$pg_backend_kb" "$(cat "$OUT/health.txt")" >"$OUT/table.md" <<'PY'
import sys
rss, hwm, rss2, ticks, tck, idle, threads, libs, mcp, pgb = (int(x) for x in sys.argv[1:11])
health = sys.argv[11].strip()
cpu = ticks / tck / idle * 100
plugins = "postgres, ollama, mcp-http" if mcp else "postgres, ollama (mcp-http LEFT OUT: no node/npm fixtures)"
print(f"| figure | value | target |")
print(f"|---|---|---|")
print(f"| probes loaded | {plugins}; /health: `{health}` | |")
print(f"| RSS after warm-up (VmRSS) | **{rss/1024:.1f} MB** (peak VmHWM {hwm/1024:.1f} MB; after the idle period {rss2/1024:.1f} MB) | ≤ 20 MB: {'met' if max(rss, rss2) <= 20 * 1024 else 'MISSED'} |")
print(f"| idle CPU over {idle} s at default intervals | **{cpu:.3f} %** of a core ({ticks} ticks of 1/{tck} s) | ≤ 0.2 %: {'met' if cpu <= 0.2 else 'MISSED'} |")
print(f"| threads / shared objects mapped | {threads} / {libs} | |")
print(f"| for scale: the largest PostgreSQL backend's RSS | {pgb/1024:.1f} MB | |")
PY
cat "$OUT/table.md"
{
  echo "## 4. Footprint with the mission plugins loaded"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/footprint.sh\` (WARM=$WARM IDLE=$IDLE). RSS from /proc/PID/status; CPU from /proc/PID/stat;"
  echo "CPU tick resolution is 10 ms, so over $IDLE s one tick is $(python3 -c "print(round(1/$TCK/$IDLE*100, 3))") % of a core."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section footprint "$OUT/section.md"
