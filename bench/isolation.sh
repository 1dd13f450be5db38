#!/usr/bin/env bash
# Target 6: isolation. /health latency under wrk -c32 for three agents, interleaved per repetition:
#   base     three tcp probes
#   hung     two of them plus a probe whose plugin never returns (tests/fakes fake-hangs: a run that
#            hangs past its 200 ms timeout, forever)
#   timeouts two of them plus an exec probe that runs past its 200 ms timeout every second
#            (`sleep 5`, killed at the deadline)
# Knobs: REPS=6 DURATION=5s (and lib.sh's knobs). Verdict: the median over repetitions of
# p99(agent) / p99(base) within the repetition.
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
REPS=${REPS:-6}
DURATION=${DURATION:-5s}
OUT=${OUT:-/tmp/vitals-bench/isolation}
need wrk curl python3
build_vitals
FAKE=$VITALS_BUILD/tests/fakes/fake-hangs.so
[ -f "$FAKE" ] || { echo "missing $FAKE (build the tests)" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT/plugins" "$OUT/logs"
chmod 755 "$OUT" "$OUT/plugins"
install -m 644 "$VITALS_BUILD/lib/vitals/plugins/tcp.so" "$VITALS_BUILD/lib/vitals/plugins/exec.so" "$FAKE" "$OUT/plugins/"

DEP_PORT=$(free_port)
stop_pids_on_exit
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(512)
while True: s.accept()[0].close()' "$DEP_PORT" &
PIDS+=($!)

declare -A PORT
for v in base hung timeouts; do
  PORT[$v]=$(free_port)
  {
    echo "listen: 127.0.0.1:${PORT[$v]}"
    echo "plugin_dir: $OUT/plugins"
    echo "probes:"
    echo "  web: {plugin: tcp, interval: 1s, options: {port: $DEP_PORT}}"
    echo "  web2: {plugin: tcp, tier: optional, interval: 1s, options: {port: $DEP_PORT}}"
    # The same number of probes everywhere (the /health body, and so its cost, stays the same):
    # base's third probe is a well-behaved optional tcp probe.
    [ "$v" = base ] && echo "  quiet: {plugin: tcp, tier: optional, interval: 1s, options: {port: $DEP_PORT}}"
    [ "$v" = hung ] && echo "  stuck: {plugin: fake-hangs, tier: optional, interval: 1s, timeout: 200ms}"
    [ "$v" = timeouts ] && echo "  slow: {plugin: exec, tier: optional, interval: 1s, timeout: 200ms, options: {command: [sleep, '5']}}"
  } >"$OUT/$v.yaml"
  "$VITALS" run -c "$OUT/$v.yaml" >"$OUT/$v.log" 2>&1 &
  PIDS+=($!)
done
for v in base hung timeouts; do wait_http "http://127.0.0.1:${PORT[$v]}/livez"; done
sleep 3
for v in base hung timeouts; do echo "$v: $(curl -s "http://127.0.0.1:${PORT[$v]}/health?format=line")"; done

echo "agent,rep,rps,p50_us,p90_us,p99_us,max_us,requests,socket_errors,non2xx,cpu" >"$OUT/iso.csv"
ORDER=(base hung timeouts)
for rep in $(seq "$REPS"); do
  # The order rotates each repetition, so that no agent always runs first or last.
  for k in 0 1 2; do
    v=${ORDER[$(((rep + k) % 3))]}
    log="$OUT/logs/wrk_${v}_r$rep.txt"
    wrk -t1 -c32 -d"$DURATION" --latency "http://127.0.0.1:${PORT[$v]}/health" >"$log" 2>&1
    echo "$v,$rep,$(python3 "$BENCH_DIR/wrkparse.py" "$log")" >>"$OUT/iso.csv"
    tail -n1 "$OUT/iso.csv"
    sleep 1
  done
done
for v in hung timeouts; do echo "$v: $(curl -s "http://127.0.0.1:${PORT[$v]}/health?format=line")"; done | tee "$OUT/states.txt"

python3 - "$OUT/iso.csv" "$OUT/states.txt" >"$OUT/table.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = lambda v, k: statistics.median(float(r[k]) for r in rows if r["agent"] == v)
print("| agent | req/s median | p50 µs | p90 µs | p99 µs (median of reps) | per-rep p99 µs | socket errors |")
print("|---|---|---|---|---|---|---|")
for v in ("base", "hung", "timeouts"):
    per = ", ".join(r["p99_us"] for r in rows if r["agent"] == v)
    errs = sum(int(r["socket_errors"]) for r in rows if r["agent"] == v)
    print(f"| {v} | {med(v,'rps'):.0f} | {med(v,'p50_us'):.0f} | {med(v,'p90_us'):.0f} | **{med(v,'p99_us'):.0f}** | {per} | {errs} |")
print()
for v in ("hung", "timeouts"):
    per = []
    for rep in sorted({r["rep"] for r in rows}):
        a = [float(r["p99_us"]) for r in rows if r["agent"] == v and r["rep"] == rep]
        b = [float(r["p99_us"]) for r in rows if r["agent"] == "base" and r["rep"] == rep]
        if a and b:
            per.append(a[0] / b[0])
    r = statistics.median(per)
    print(f"- p99 {v} / base = **{r:.2f}×** (median of per-repetition ratios {', '.join(f'{x:.2f}' for x in per)}); "
          f"target ≤ 1.2× {'met' if r <= 1.2 else 'MISSED'}")
print("- states at the end: " + "; ".join(f"`{l.strip()}`" for l in open(sys.argv[2]) if l.strip()))
PY
cat "$OUT/table.md"
{
  echo "## 6. Isolation: /health latency with a probe stuck past its timeout"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/isolation.sh\` (REPS=$REPS DURATION=$DURATION): \`wrk -t1 -c32 -d$DURATION --latency /health\` against three agents"
  echo "run side by side and measured in turn, each with three probes (so the /health body costs the same): base (3 tcp),"
  echo "hung (2 tcp + fake-hangs, a plugin run that never returns), timeouts (2 tcp + an exec probe killed at its 200 ms"
  echo "deadline every second)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section isolation "$OUT/section.md"
