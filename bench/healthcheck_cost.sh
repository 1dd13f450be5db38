#!/usr/bin/env bash
# Target 2: cost of one Docker HEALTHCHECK. `vitals check` (asks the running agent, which answers
# from memory) against the seed's script (pg_isready + 2x curl), in the same run, against the
# same servers: a real PostgreSQL 15 and two python http.server stand-ins for Ollama (/api/tags)
# and the MCP server (/health). The agent probes the same three (postgres plugin; http plugin for
# the two stand-ins) at default intervals.
# Wall: hyperfine -N. CPU per check: /usr/bin/time over a loop of CPU_RUNS checks (client side),
# plus what the servers spent meanwhile (postmaster incl. the backends it forked, the HTTP
# stand-ins, and the agent). PostgreSQL backends started: "connection received" lines in its log.
# Against the floor (issue 16): `vitals check` <= 1.5x `/bin/true` in the same hyperfine -N run, with
# `curl -sf` on the agent's /health beside them. That run is repeated ROUNDS times (its order
# reversed every other round; the machine is noisy): the verdict is on the median ratio, given
# with its distribution-free 95 % interval (order statistics of the rounds' ratios).
# Knobs: RUNS=100 WARMUP=10 CPU_RUNS=200 ROUNDS=15 FLOOR_RUNS=100 (and lib.sh's VITALS_BUILD, OUT,
# NO_RESULTS).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-100}
WARMUP=${WARMUP:-10}
CPU_RUNS=${CPU_RUNS:-200}
ROUNDS=${ROUNDS:-15}
FLOOR_RUNS=${FLOOR_RUNS:-100}
OUT=${OUT:-/tmp/vitals-bench/healthcheck}
need hyperfine curl python3
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT/www/api"
chmod 755 "$OUT"
printf '{"models":[]}\n' >"$OUT/www/api/tags"
printf '{"status":"ok"}\n' >"$OUT/www/health"

PG_PORT=$(free_port)
OLLAMA_PORT=$(free_port)
MCP_PORT=$(free_port)
AGENT_PORT=$(free_port)
on_exit() { stop_pg "$OUT/pg"; }
stop_pids_on_exit

start_pg "$OUT/pg" "$PG_PORT"
python3 -m http.server --bind 127.0.0.1 --directory "$OUT/www" "$OLLAMA_PORT" >"$OUT/http1.log" 2>&1 &
PIDS+=($!)
HTTP1=$!
python3 -m http.server --bind 127.0.0.1 --directory "$OUT/www" "$MCP_PORT" >"$OUT/http2.log" 2>&1 &
PIDS+=($!)
HTTP2=$!
wait_http "http://127.0.0.1:$OLLAMA_PORT/api/tags"
wait_http "http://127.0.0.1:$MCP_PORT/health"

cat >"$OUT/vitals.yaml" <<YAML
listen: 127.0.0.1:$AGENT_PORT
probes:
  db:
    plugin: postgres
    options: {dsn: "host=127.0.0.1 port=$PG_PORT user=postgres dbname=postgres"}
  ollama:
    plugin: http
    options: {url: "http://localhost:$OLLAMA_PORT/api/tags"}
  mcp:
    plugin: http
    options: {url: "http://localhost:$MCP_PORT/health"}
YAML
"$VITALS" run -c "$OUT/vitals.yaml" >"$OUT/agent.log" 2>&1 &
PIDS+=($!)
AGENT=$!
for _ in $(seq 200); do "$VITALS" check -c "$OUT/vitals.yaml" >/dev/null 2>&1 && break; sleep 0.05; done
"$VITALS" check -c "$OUT/vitals.yaml"

cat >"$OUT/hc_direct.sh" <<SH
#!/bin/sh
$PGBIN/pg_isready -h localhost -p $PG_PORT -U postgres && curl -sf http://localhost:$OLLAMA_PORT/api/tags && curl -sf http://localhost:$MCP_PORT/health
SH
cat >"$OUT/hc_wrapper.sh" <<SH
#!/bin/sh
pg_isready -h localhost -p $PG_PORT -U postgres && curl -sf http://localhost:$OLLAMA_PORT/api/tags && curl -sf http://localhost:$MCP_PORT/health
SH
chmod 755 "$OUT"/hc_*.sh
PATH=/usr/bin:/bin sh "$OUT/hc_direct.sh" >/dev/null
PATH=/usr/bin:/bin sh "$OUT/hc_wrapper.sh" >/dev/null

echo "== hyperfine: runs=$RUNS warmup=$WARMUP"
hyperfine -N --warmup "$WARMUP" --runs "$RUNS" --export-json "$OUT/hyperfine.json" \
  -n "vitals check" "$VITALS check -c $OUT/vitals.yaml" \
  -n "seed script (real pg_isready)" "env PATH=/usr/bin:/bin sh $OUT/hc_direct.sh" \
  -n "seed script (Debian pg_isready wrapper)" "env PATH=/usr/bin:/bin sh $OUT/hc_wrapper.sh" \
  -n "/bin/true (spawn floor)" "/bin/true" \
  -n "curl -sf (the agent's /health)" "curl -sf http://127.0.0.1:$AGENT_PORT/health?format=line" \
  >"$OUT/hyperfine.txt" 2>&1

echo "== against the floor: $ROUNDS rounds of hyperfine -N, runs=$FLOOR_RUNS"
floor=(-n "vitals check" "$VITALS check -c $OUT/vitals.yaml" -n "/bin/true (spawn floor)" "/bin/true"
       -n "curl -sf (the agent's /health)" "curl -sf http://127.0.0.1:$AGENT_PORT/health?format=line")
reversed=("${floor[@]:6:3}" "${floor[@]:3:3}" "${floor[@]:0:3}")
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then set -- "${floor[@]}"; else set -- "${reversed[@]}"; fi
  hyperfine -N --warmup "$WARMUP" --runs "$FLOOR_RUNS" --export-json "$OUT/floor$r.json" "$@" \
    >"$OUT/floor$r.txt" 2>&1
done

echo "== CPU over $CPU_RUNS checks each"
: >"$OUT/cpu.csv"
cpu_loop() {   # name command...
  local name=$1
  shift
  local pg0 h0 a0 pg1 h1 a1 c0 c1
  pg0=$(CHILDREN=1 proc_ticks "$PM_PID"); h0=$(proc_ticks "$HTTP1" "$HTTP2"); a0=$(proc_ticks "$AGENT")
  c0=$(grep -c "connection received" "$OUT/pg/pg.log" || true)
  /usr/bin/time -f "%e %U %S" -o "$OUT/time.txt" sh -c \
    "i=0; while [ \$i -lt $CPU_RUNS ]; do $* >/dev/null 2>&1 || echo FAIL >&2; i=\$((i+1)); done"
  pg1=$(CHILDREN=1 proc_ticks "$PM_PID"); h1=$(proc_ticks "$HTTP1" "$HTTP2"); a1=$(proc_ticks "$AGENT")
  c1=$(grep -c "connection received" "$OUT/pg/pg.log" || true)
  read -r wall user sys <"$OUT/time.txt"
  echo "$name,$CPU_RUNS,$wall,$user,$sys,$((pg1 - pg0)),$((h1 - h0)),$((a1 - a0)),$((c1 - c0))" >>"$OUT/cpu.csv"
}
cpu_loop "vitals check" "$VITALS check -c $OUT/vitals.yaml"
cpu_loop "seed script (real pg_isready)" "env PATH=/usr/bin:/bin sh $OUT/hc_direct.sh"
cpu_loop "seed script (Debian pg_isready wrapper)" "env PATH=/usr/bin:/bin sh $OUT/hc_wrapper.sh"

# Instructions per command (valgrind's callgrind, user space only): independent of the load.
: >"$OUT/instr.txt"
if command -v valgrind >/dev/null; then
  for cmd in "$VITALS check -c $OUT/vitals.yaml" "/bin/true"; do
    # shellcheck disable=SC2086
    n=$({ valgrind --tool=callgrind --callgrind-out-file=/dev/null $cmd 2>&1 >/dev/null || true; } |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    echo "$n" >>"$OUT/instr.txt"
  done
fi
python3 - "$OUT" "$TCK" "$ROUNDS" >"$OUT/table.md" <<'PY'
import csv, json, math, statistics, sys
out, tck, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hf = {r["command"]: r for r in json.load(open(f"{out}/hyperfine.json"))["results"]}
rows = list(csv.reader(open(f"{out}/cpu.csv")))
print("| command | wall median (min–max) ms | client CPU ms/check | PostgreSQL CPU ms/check | HTTP stand-ins ms/check | agent ms/check | **total CPU ms/check** | PG backends started per check |")
print("|---|---|---|---|---|---|---|---|")
total = {}
for name, n, wall, user, sys_, pg, http, agent, conns in rows:
    n = int(n)
    client = (float(user) + float(sys_)) / n * 1000
    pg_ms, http_ms, ag_ms = (int(x) / tck / n * 1000 for x in (pg, http, agent))
    total[name] = client + pg_ms + http_ms + ag_ms
    h = hf[name]
    print(f"| {name} | **{h['median']*1000:.2f}** ({h['min']*1000:.2f}–{h['max']*1000:.2f}) | {client:.2f} | "
          f"{pg_ms:.2f} | {http_ms:.2f} | {ag_ms:.2f} | **{total[name]:.2f}** | {int(conns)/n:.2f} |")
t = hf["/bin/true (spawn floor)"]
print(f"| /bin/true (spawn floor) | {t['median']*1000:.2f} ({t['min']*1000:.2f}–{t['max']*1000:.2f}) | | | | | | |")
c = hf["curl -sf (the agent's /health)"]
print(f"| curl -sf (the agent's /health) | {c['median']*1000:.2f} ({c['min']*1000:.2f}–{c['max']*1000:.2f}) | | | | | | |")
v = hf["vitals check"]["median"]
for seed in ("seed script (real pg_isready)", "seed script (Debian pg_isready wrapper)"):
    print(f"\nvs {seed}: wall {hf[seed]['median']/v:.1f}× faster, total CPU {total[seed]/total['vitals check']:.1f}× less")
print(f"\nTarget: `vitals check` median wall ≤ 5 ms: **{v*1000:.2f} ms** ({'met' if v*1000 <= 5 else 'MISSED'}); "
      f"≥ 5× less total CPU than the seed script (real pg_isready): "
      f"**{total['seed script (real pg_isready)']/total['vitals check']:.1f}×** "
      f"({'met' if total['seed script (real pg_isready)']/total['vitals check'] >= 5 else 'MISSED'}).")

print("\n**Against the floor** (issue 16: `vitals check` ≤ 1.5× `/bin/true` in the same `hyperfine -N` run; "
      f"{rounds} rounds, the order reversed every other round; medians in ms):\n")
print("| round | vitals check | /bin/true | curl -sf | **vitals / true** | curl / true |")
print("|---|---|---|---|---|---|")
ratios = []
for r in range(1, rounds + 1):
    f = {x["command"]: x["median"] * 1000 for x in json.load(open(f"{out}/floor{r}.json"))["results"]}
    v, t, c = f["vitals check"], f["/bin/true (spawn floor)"], f["curl -sf (the agent's /health)"]
    ratios.append(v / t)
    print(f"| {r} | {v:.2f} | {t:.2f} | {c:.2f} | **{v/t:.2f}×** | {c/t:.1f}× |")
m = statistics.median(ratios)
# The 95 % interval of the median: the k-th smallest and k-th largest ratio, k the largest rank
# with P(Binomial(n, 1/2) < k) <= 2.5 % (k = 1 below 6 rounds: then it is the range).
n, k, below = len(ratios), 1, 0.0
while True:
    below += math.comb(n, k - 1) / 2**n
    if below + math.comb(n, k) / 2**n > 0.025 or k + 1 > (n + 1) // 2:
        break
    k += 1
lo, hi = sorted(ratios)[k - 1], sorted(ratios)[n - k]
main = hf["vitals check"]["median"] / t_main if (t_main := hf["/bin/true (spawn floor)"]["median"]) else 0
print(f"\nTarget: `vitals check` ≤ 1.5× `/bin/true`: median ratio **{m:.2f}×** over {rounds} rounds "
      f"(95 % interval {lo:.2f}–{hi:.2f}; range {min(ratios):.2f}–{max(ratios):.2f}; "
      f"{sum(x <= 1.5 for x in ratios)}/{rounds} rounds ≤ 1.5×; "
      f"{main:.2f}× in the run of the table above): {'met' if m <= 1.5 else 'MISSED'}.")
instr = open(f"{out}/instr.txt").read().split()
if len(instr) == 2:
    print(f"\nUser-space instructions (callgrind; independent of the load): `vitals check` "
          f"{int(instr[0])/1e6:.2f} M, /bin/true {int(instr[1])/1e6:.2f} M.")
PY
cat "$OUT/table.md"

{
  echo "## 2. HEALTHCHECK cost: \`vitals check\` against the seed's script"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/healthcheck_cost.sh\` (RUNS=$RUNS WARMUP=$WARMUP CPU_RUNS=$CPU_RUNS ROUNDS=$ROUNDS FLOOR_RUNS=$FLOOR_RUNS)."
  echo "Wall: \`hyperfine -N\`;"
  echo "CPU: \`/usr/bin/time\` over $CPU_RUNS checks plus the servers' /proc CPU over the same loop (the agent's"
  echo "column includes its own probe runs at default intervals); backends: PostgreSQL's \`log_connections\`."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section healthcheck "$OUT/section.md"
