#!/usr/bin/env bash
# What one GET /health costs the agent's HTTP thread with N tcp probes (issue 16 item 4), two
# builds side by side: BASE_BUILD (e.g. a build of main) and VITALS_BUILD. Both agents run at once
# (N tcp probes each at 1 s against one accept-and-close target); a plain socket client asks them
# in turn, ROUNDS rounds of REQS requests each, GAP_MS apart (more than the 1 ms the body is
# cached for: every request renders). Per round: each HTTP thread's CPU (utime+stime, from /proc)
# divided by the requests, and the ratio VITALS_BUILD / BASE_BUILD; the median ratio and its 95 %
# interval over the rounds. CPU, not latency: the machine's noise moves latency far more.
# Knobs: BASE_BUILD (required) N=2000 ROUNDS=7 REQS=400 GAP_MS=10 (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
N=${N:-2000}
ROUNDS=${ROUNDS:-7}
REQS=${REQS:-400}
GAP_MS=${GAP_MS:-10}
OUT=${OUT:-/tmp/vitals-bench/health_cost}
: "${BASE_BUILD:?set BASE_BUILD to the build tree to compare against}"
need curl python3 cc
build_vitals
BASE="$BASE_BUILD/bin/vitals"
[ -x "$BASE" ] || { echo "no vitals binary in $BASE_BUILD" >&2; exit 1; }
rm -rf "$OUT"
mkdir -p "$OUT"
stop_pids_on_exit
DEP_PORT=$(free_port)
cc -O2 -o "$OUT/accept_close" "$BENCH_DIR/accept_close.c"
"$OUT/accept_close" "$DEP_PORT" &
PIDS+=($!)
start_agent() {   # NAME BINARY: sets PORT and PID
  PORT=$(free_port)
  {
    echo "listen: 127.0.0.1:$PORT"
    echo "start_period: 0s"
    echo "probes:"
    for i in $(seq "$N"); do echo "  tcp$i: {plugin: tcp, interval: 1s, options: {port: $DEP_PORT}}"; done
  } >"$OUT/$1.yaml"
  "$2" run -c "$OUT/$1.yaml" >"$OUT/$1.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  wait_http "http://127.0.0.1:$PORT/livez"
}
start_agent base "$BASE"
BASE_PORT=$PORT BASE_PID=$PID
start_agent new "$VITALS"
NEW_PORT=$PORT NEW_PID=$PID
sleep 5  # every probe has a result

python3 - "$BASE_PORT:$BASE_PID" "$NEW_PORT:$NEW_PID" "$ROUNDS" "$REQS" "$GAP_MS" "$BENCH_DIR" >"$OUT/table.md" <<'PY'
import os, socket, statistics, sys, time
sys.path.insert(0, sys.argv[6])
from stats import median_ci
agents = [tuple(int(x) for x in a.split(":")) for a in sys.argv[1:3]]  # (port, pid)
rounds, reqs, gap = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]) / 1000
tck = os.sysconf("SC_CLK_TCK")

def ticks(pid):  # per thread
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        out[t] = int(f[11]) + int(f[12])
    return out

def get(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        size = 0
        while chunk := s.recv(1 << 20):
            size += len(chunk)
    return size

def ask(n, pause=gap):
    for i in range(n):
        for port, _ in agents if i % 2 == 0 else agents[::-1]:
            get(port)
            time.sleep(pause)

# The HTTP thread of each: the one whose CPU grows the most while /health is asked, against as
# long a time without requests (the probe runners' CPU is the same in both), among the threads
# alive throughout (runners come and go with the load).
def growth(work):
    before = [ticks(pid) for _, pid in agents]
    work()
    after = [ticks(pid) for _, pid in agents]
    return [{t: a[t] - b[t] for t in a if t in b} for a, b in zip(after, before)]
def ask_for(secs):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        ask(10, 0)
idle = growth(lambda: time.sleep(3))
busy = growth(lambda: ask_for(3))
http = [max((t for t in b if t in i), key=lambda t: b[t] - i[t]) for i, b in zip(idle, busy)]

def thread_ticks(pid, tid):
    f = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])

per_req = [[], []]
for _ in range(rounds):
    start = [thread_ticks(pid, tid) for (_, pid), tid in zip(agents, http)]
    ask(reqs)
    for k, ((_, pid), tid) in enumerate(zip(agents, http)):
        per_req[k].append((thread_ticks(pid, tid) - start[k]) / tck * 1000 / reqs)
ratios = [n / b for b, n in zip(*per_req)]
size = get(agents[1][0])
ci = median_ci(ratios)
print("| figure | BASE_BUILD | VITALS_BUILD | ratio VITALS/BASE |")
print("|---|---|---|---|")
print(f"| HTTP thread CPU per GET /health ({size / 1000:.0f} KB), median of {rounds} rounds of {reqs} | "
      f"{statistics.median(per_req[0]):.3f} ms | {statistics.median(per_req[1]):.3f} ms | "
      f"**{statistics.median(ratios):.3f}**" + (f" (95 % {ci[0]:.3f}–{ci[1]:.3f})" if ci else "") + " |")
print(f"| rounds | {' '.join(f'{x:.3f}' for x in per_req[0])} | {' '.join(f'{x:.3f}' for x in per_req[1])} | "
      f"{' '.join(f'{x:.3f}' for x in ratios)} |")
PY
cat "$OUT/table.md"
{
  echo "## 5c. /health with $N tcp probes: the HTTP thread's CPU per request, two builds"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`BASE_BUILD=${BASE_LABEL:-$BASE_BUILD} bench/health_cost.sh\` (N=$N ROUNDS=$ROUNDS REQS=$REQS GAP_MS=$GAP_MS): two agents"
  echo "at once, a plain socket client asking each in turn; every request renders (GAP_MS > the 1 ms cache)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section health_cost "$OUT/section.md"
