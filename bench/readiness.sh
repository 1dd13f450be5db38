#!/usr/bin/env bash
# Target 1: readiness lag under a real s6-supervise with a real PostgreSQL 15.
# One service directory (notification-fd 3), three run scripts, interleaved run by run:
#   vitals   vitals notify -c vitals.yaml --probe db --notify-fd 3 -- s6-setuidgid postgres postgres -D DATA
#   s1000    s6-notifyoncheck -d -n 60 -s 1000 -w 5000 -c "pg_isready ..." s6-setuidgid postgres postgres -D DATA  (the seed)
#   s100     the same with -s 100
# lag = when `s6-svwait -U` returned minus when PostgreSQL logged "database system is ready to
# accept connections" (log_line_prefix %n: epoch ms, the postmaster's own clock), as in
# /work/shared/recipes/seed_readiness_latency.sh.
# Knobs: RUNS=15 (per variant), VARIANTS="vitals s1000 s100" (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-15}
VARIANTS=${VARIANTS:-"vitals s1000 s100"}
OUT=${OUT:-/tmp/vitals-bench/readiness}
need s6-supervise s6-svc s6-svwait s6-svok s6-notifyoncheck s6-setuidgid execlineb python3
[ "$(id -u)" = 0 ] || { echo "run as root (s6-supervise runs postgres via s6-setuidgid)" >&2; exit 1; }
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT/sock" "$OUT/svc"
chmod 755 "$OUT"
chown postgres "$OUT/sock"
PORT=$(free_port)
DATA=$OUT/data
SVC=$OUT/svc/pg

mkdir -p "$DATA"
chown postgres "$DATA"
as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >"$OUT/initdb.log" 2>&1
cat >>"$DATA/postgresql.conf" <<PGCONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$OUT/sock'
logging_collector = off
log_line_prefix = '%n [%p] '
PGCONF
cat >"$OUT/vitals.yaml" <<YAML
probes:
  db:
    plugin: postgres
    options: {dsn: "host=127.0.0.1 port=$PORT user=postgres dbname=postgres connect_timeout=2"}
YAML
mkdir -p "$SVC"
echo 3 >"$SVC/notification-fd"
touch "$SVC/down"
write_run() {
  local cmd
  case "$1" in
    vitals) cmd="$VITALS notify -c $OUT/vitals.yaml --probe db --notify-fd 3 --" ;;
    s*) cmd="s6-notifyoncheck -d -n 60 -s ${1#s} -w 5000 -c \"pg_isready -h localhost -p $PORT -U postgres\"" ;;
  esac
  cat >"$SVC/run" <<RUN
#!/bin/sh
PATH=$PGBIN:\$PATH
export PATH
exec >"$OUT/run.out" 2>"$OUT/pg.log"
exec $cmd s6-setuidgid postgres postgres -D "$DATA"
RUN
  chmod 755 "$SVC/run"
}

SUP_PID=""
cleanup() {
  set +e
  if [ -n "$SUP_PID" ]; then
    s6-svc -d "$SVC"
    s6-svwait -D -t 20000 "$SVC"
    s6-svc -x "$SVC"
    for _ in $(seq 50); do kill -0 "$SUP_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$SUP_PID" 2>/dev/null
  fi
}
trap cleanup EXIT
write_run vitals
s6-supervise "$SVC" >"$OUT/supervise.out" 2>&1 &
SUP_PID=$!
for _ in $(seq 100); do s6-svok "$SVC" 2>/dev/null && break; sleep 0.05; done

echo "variant,run,pg_start_ms,lag_ms,total_ms" >"$OUT/readiness.csv"
one_run() {   # variant run
  rm -f "$OUT/s6_ts"
  (s6-svwait -U -t 60000 "$SVC" && echo "$EPOCHREALTIME" >"$OUT/s6_ts") &
  local wpid=$!
  sleep 0.3
  local t_up=$EPOCHREALTIME
  s6-svc -u "$SVC"
  wait "$wpid" || { echo "s6-svwait failed ($1 run $2)" >&2; cat "$OUT/pg.log" >&2; return 1; }
  local t_pg
  t_pg=$(awk '/database system is ready to accept connections/ {print $1; exit}' "$OUT/pg.log")
  [ -n "$t_pg" ] || { echo "no ready line in pg.log" >&2; cat "$OUT/pg.log" >&2; return 1; }
  python3 -c "import sys; up, pg, s6 = map(float, sys.argv[1:4]); print(f'$1,$2,{(pg-up)*1000:.1f},{(s6-pg)*1000:.1f},{(s6-up)*1000:.1f}')" \
    "$t_up" "$t_pg" "$(cat "$OUT/s6_ts")" >>"$OUT/readiness.csv"
  tail -n1 "$OUT/readiness.csv"
  s6-svc -d "$SVC"
  s6-svwait -D -t 30000 "$SVC"
  sleep 0.5
}
for i in $(seq "$RUNS"); do
  for v in $VARIANTS; do
    write_run "$v"
    one_run "$v" "$i"
  done
done

python3 - "$OUT/readiness.csv" "$BENCH_DIR" >"$OUT/table.md" <<'PY'
import csv, sys
sys.path.insert(0, sys.argv[2])
from stats import summary
rows = list(csv.DictReader(open(sys.argv[1])))
names = {"vitals": "`vitals notify` (postgres probe, 10 ms polls)",
         "s1000": "`s6-notifyoncheck -s 1000` + pg_isready (seed)",
         "s100": "`s6-notifyoncheck -s 100` + pg_isready"}
print("| variant | lag: PG ready → s6 ready, min / **median** / max ms | PG start (`s6-svc -u` → PG ready) median ms | runs |")
print("|---|---|---|---|")
med = {}
for v in dict.fromkeys(r["variant"] for r in rows):
    lag = summary([float(r["lag_ms"]) for r in rows if r["variant"] == v])
    start = summary([float(r["pg_start_ms"]) for r in rows if r["variant"] == v])
    med[v] = lag
    print(f"| {names.get(v, v)} | {lag['min']:.1f} / **{lag['median']:.1f}** / {lag['max']:.1f} | {start['median']:.1f} | {lag['n']} |")
if "vitals" in med:
    v = med["vitals"]
    print()
    for a in ("s1000", "s100"):
        if a in med:
            print(f"- vitals is **{med[a]['median'] / v['median']:.0f}×** sooner than {names[a]} (median lag).")
    print(f"- Target median ≤ 15 ms: **{v['median']:.1f} ms** {'met' if v['median'] <= 15 else 'MISSED'}; "
          f"max ≤ 50 ms: **{v['max']:.1f} ms** {'met' if v['max'] <= 50 else 'MISSED'}.")
PY
cat "$OUT/table.md"
{
  echo "## 1. Readiness lag under s6 with a real PostgreSQL 15"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/readiness.sh\` (RUNS=$RUNS, variants interleaved run by run). lag = \`s6-svwait -U\` returns minus"
  echo "PostgreSQL's own \"ready to accept connections\" log time (1 ms resolution, truncated)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section readiness "$OUT/section.md"
