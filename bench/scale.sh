#!/usr/bin/env bash
# Target 5: scale. One agent with N probes at a 1 s interval: N/2 tcp (against a local listener
# that accepts and closes) and N/2 exec (`date +%s%N`: the command prints its own start time,
# which becomes the probe's message).
#   CPU: the agent's own utime+stime over CPU_SECS with nobody polling it (its exec children's
#        CPU is reported apart: that is the checks' own cost).
#   Slip: then /health is polled every 200 ms for SLIP_SECS; every distinct exec message is a
#        run's start time and every distinct tcp checked_at a run's end. slip = gap between
#        consecutive runs of a probe minus the interval.
# Knobs: N=200 CPU_SECS=30 SLIP_SECS=30 (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
N=${N:-200}
CPU_SECS=${CPU_SECS:-30}
SLIP_SECS=${SLIP_SECS:-30}
OUT=${OUT:-/tmp/vitals-bench/scale}
need curl python3
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT"
DEP_PORT=$(free_port)
AGENT_PORT=$(free_port)
stop_pids_on_exit
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1024)
while True: s.accept()[0].close()' "$DEP_PORT" &
PIDS+=($!)
{
  echo "listen: 127.0.0.1:$AGENT_PORT"
  echo "start_period: 0s"
  echo "probes:"
  for i in $(seq $((N / 2))); do
    echo "  tcp$i: {plugin: tcp, interval: 1s, options: {port: $DEP_PORT}}"
    echo "  exec$i: {plugin: exec, interval: 1s, options: {command: [date, '+%s%N']}}"
  done
} >"$OUT/vitals.yaml"
"$VITALS" run -c "$OUT/vitals.yaml" >"$OUT/agent.log" 2>&1 &
PIDS+=($!)
AGENT=$!
wait_http "http://127.0.0.1:$AGENT_PORT/livez"
sleep 5
curl -s "http://127.0.0.1:$AGENT_PORT/health?format=line" | cut -c1-200
own0=$(proc_ticks "$AGENT")
all0=$(CHILDREN=1 proc_ticks "$AGENT")
sleep "$CPU_SECS"
own1=$(proc_ticks "$AGENT")
all1=$(CHILDREN=1 proc_ticks "$AGENT")
threads=$(find "/proc/$AGENT/task" -mindepth 1 -maxdepth 1 | wc -l)

python3 - "http://127.0.0.1:$AGENT_PORT/health" "$SLIP_SECS" >"$OUT/slip.txt" <<'PY'
import json, sys, time, urllib.request, datetime
url, secs = sys.argv[1], float(sys.argv[2])
execs, tcps = {}, {}
end = time.monotonic() + secs
while time.monotonic() < end:
    t0 = time.monotonic()
    h = json.load(urllib.request.urlopen(url, timeout=5))
    for name, p in h["probes"].items():
        if name.startswith("exec") and p.get("message", "").isdigit():
            execs.setdefault(name, set()).add(int(p["message"]) / 1e6)
        elif name.startswith("tcp") and p.get("checked_at"):
            ts = datetime.datetime.fromisoformat(p["checked_at"].replace("Z", "+00:00")).timestamp() * 1000
            tcps.setdefault(name, set()).add(ts)
    time.sleep(max(0, 0.2 - (time.monotonic() - t0)))
for kind, d in (("exec", execs), ("tcp", tcps)):
    for name, ts in d.items():
        ts = sorted(ts)
        for a, b in zip(ts, ts[1:]):
            print(kind, b - a - 1000)
PY
python3 - "$OUT/slip.txt" "$BENCH_DIR" "$((own1 - own0))" "$((all1 - all0))" "$TCK" "$CPU_SECS" "$N" "$threads" >"$OUT/table.md" <<'PY'
import sys
sys.path.insert(0, sys.argv[2])
from stats import summary
own, allc, tck, secs, n, threads = (int(x) for x in sys.argv[3:9])
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
own_pct = own / tck / secs * 100
print("| figure | value | target |")
print("|---|---|---|")
print(f"| probes | {n} ({n//2} tcp + {n//2} exec `date`), interval 1 s; agent threads {threads} | |")
print(f"| agent CPU (own, over {secs} s) | **{own_pct:.1f} %** of a core | ≤ 10 %: {'met' if own_pct <= 10 else 'MISSED'} |")
print(f"| agent + exec children CPU | {allc / tck / secs * 100:.1f} % of a core (the {n//2} `date` runs/s themselves) | |")
for kind in ("exec", "tcp", None):
    vals = [float(v) for k, v in rows if kind is None or k == kind]
    if not vals:
        continue
    s = summary(vals)
    what = {"exec": "exec slip (command's own start stamps: includes fork/exec latency)",
            "tcp": "tcp slip (checked_at; a tcp run takes < 1 ms)", None: "all slips"}[kind]
    target = f"p99 ≤ 50 ms: {'met' if s['p99'] <= 50 else 'MISSED'}"
    print(f"| {what}, n={s['n']} | median {s['median']:.1f} ms, **p99 {s['p99']:.1f} ms**, max {s['max']:.1f} ms (min {s['min']:.1f}) | {target} |")
PY
cat "$OUT/table.md"
{
  echo "## 5. Scale: $N probes at 1 s"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/scale.sh\` (N=$N CPU_SECS=$CPU_SECS SLIP_SECS=$SLIP_SECS). Slip = gap between a probe's consecutive runs"
  echo "minus its 1 s interval; negative values are jitter in the measuring point (e.g. a shorter run after a longer one)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section scale "$OUT/section.md"
