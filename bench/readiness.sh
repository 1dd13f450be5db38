#!/usr/bin/env bash
# Target 1: readiness lag under a real s6-supervise with a real PostgreSQL 15, against the floor.
# One service directory (notification-fd 3), four run scripts, interleaved run by run (the order
# reversed every other run):
#   vitals   vitals notify -c vitals.yaml --probe db --notify-fd 3 -- s6-setuidgid postgres postgres -D DATA
#   floor    pg_floor 3 DSN -- s6-setuidgid postgres postgres -D DATA  (bench/pg_floor.c: the same
#            structure as vitals notify, a libpq login + SELECT 1 retried every 1 ms: an ideal notifier)
#   s1000    s6-notifyoncheck -d -n 60 -s 1000 -w 5000 -c "pg_isready ..." s6-setuidgid postgres postgres -D DATA  (the seed)
#   s100     the same with -s 100
# lag = when `s6-svwait -U` returned minus when PostgreSQL logged "database system is ready to
# accept connections" (log_line_prefix %n: epoch ms, the postmaster's own clock), as in
# /work/shared/recipes/seed_readiness_latency.sh.
# One pass per AUTHS mode, each on a fresh cluster: trust, and scram-sha-256 (a password for the
# postgres role, pg_hba host lines scram-sha-256, the password in vitals's and the floor's DSN).
# vitals − floor is paired by run: median and a 95 % interval (sign-test order statistics).
# Knobs: RUNS=30 (per variant), SEED_RUNS=8 (the seed variants s1000 and s100 run only in the first
# SEED_RUNS runs: each takes 1 s, or 5 s when its first pg_isready fires before PostgreSQL listens),
# VARIANTS="vitals floor s100 s1000", AUTHS="trust scram-sha-256" (and lib.sh's knobs).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-30}
SEED_RUNS=${SEED_RUNS:-8}
VARIANTS=${VARIANTS:-"vitals floor s100 s1000"}
AUTHS=${AUTHS:-"trust scram-sha-256"}
OUT=${OUT:-/tmp/vitals-bench/readiness}
need s6-supervise s6-svc s6-svwait s6-svok s6-notifyoncheck s6-setuidgid execlineb python3 cc pg_config
[ "$(id -u)" = 0 ] || { echo "run as root (s6-supervise runs postgres via s6-setuidgid)" >&2; exit 1; }
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT/sock" "$OUT/svc"
chmod 755 "$OUT"
chown postgres "$OUT/sock"
FLOOR=$OUT/pg_floor
cc -O2 -Wall -Wextra -I"$(pg_config --includedir)" "$BENCH_DIR/pg_floor.c" -o "$FLOOR" -lpq
PORT=$(free_port)
DATA=$OUT/data
SVC=$OUT/svc/pg
PASSWORD=vitals-bench-secret

# init_cluster AUTH: a fresh cluster; with scram-sha-256 the postgres role has a password and
# TCP logins must give it (local socket logins stay trust).
init_cluster() {
  rm -rf "$DATA"
  mkdir -p "$DATA"
  chown postgres "$DATA"
  local pw=()
  if [ "$1" != trust ]; then
    echo "$PASSWORD" >"$OUT/pwfile"
    chown postgres "$OUT/pwfile"
    pw=(--pwfile="$OUT/pwfile")
  fi
  as_postgres "$PGBIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host="$1" "${pw[@]}" \
    -E UTF8 --no-sync >"$OUT/initdb-$1.log" 2>&1
  cat >>"$DATA/postgresql.conf" <<PGCONF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$OUT/sock'
logging_collector = off
log_line_prefix = '%n [%p] '
PGCONF
  DSN="host=127.0.0.1 port=$PORT user=postgres dbname=postgres connect_timeout=2"
  [ "$1" = trust ] || DSN="$DSN password=$PASSWORD"
  cat >"$OUT/vitals.yaml" <<YAML
probes:
  db:
    plugin: postgres
    options: {dsn: "$DSN"}
YAML
}
mkdir -p "$SVC"
echo 3 >"$SVC/notification-fd"
touch "$SVC/down"
write_run() {
  local cmd
  case "$1" in
    vitals) cmd="$VITALS notify -c $OUT/vitals.yaml --probe db --notify-fd 3 --" ;;
    floor) cmd="$FLOOR 3 \"$DSN\" --" ;;
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
write_run s100
s6-supervise "$SVC" >"$OUT/supervise.out" 2>&1 &
SUP_PID=$!
for _ in $(seq 100); do s6-svok "$SVC" 2>/dev/null && break; sleep 0.05; done

echo "auth,variant,run,pg_start_ms,lag_ms,total_ms,login_start_ms,login_ms" >"$OUT/readiness.csv"
mkdir -p "$OUT/logs"
one_run() {   # auth variant run
  rm -f "$OUT/s6_ts"
  (s6-svwait -U -t 60000 "$SVC" && echo "$EPOCHREALTIME" >"$OUT/s6_ts") &
  local wpid=$!
  sleep 0.2
  local t_up=$EPOCHREALTIME
  s6-svc -u "$SVC"
  wait "$wpid" || { echo "s6-svwait failed ($1 $2 run $3)" >&2; cat "$OUT/pg.log" >&2; return 1; }
  local t_pg
  t_pg=$(awk '/database system is ready to accept connections/ {print $1; exit}' "$OUT/pg.log")
  [ -n "$t_pg" ] || { echo "no ready line in pg.log" >&2; cat "$OUT/pg.log" >&2; return 1; }
  cp "$OUT/pg.log" "$OUT/logs/$1-$2-$3.log"
  python3 - "$1,$2,$3" "$t_up" "$t_pg" "$(cat "$OUT/s6_ts")" "$OUT/pg.log" >>"$OUT/readiness.csv" <<'PY'
import datetime, re, sys
key, (up, pg, s6), log = sys.argv[1], map(float, sys.argv[2:5]), open(sys.argv[5]).read()
# The login that succeeded: when it started (from PG ready) and how long it took, from what the
# notifier logged after notifying. vitals: "[<local time, ms>] ... passed after ... (that run took
# X ms)"; the floor: "started at <epoch>, took X ms".
start = took = ""
if m := re.search(r"^\[([^\]]+)\] .*passed after \d+ms \(that run took ([\d.]+)ms\)", log, re.M):
    end = datetime.datetime.fromisoformat(m[1]).timestamp()
    took = float(m[2])
    start = f"{(end - pg) * 1000 - took:.1f}"
elif m := re.search(r"started at ([\d.]+), took ([\d.]+)ms", log):
    start, took = f"{(float(m[1]) - pg) * 1000:.1f}", float(m[2])
print(f"{key},{(pg - up) * 1000:.1f},{(s6 - pg) * 1000:.1f},{(s6 - up) * 1000:.1f},{start},{took}")
PY
  tail -n1 "$OUT/readiness.csv"
  s6-svc -d "$SVC"
  s6-svwait -D -t 30000 "$SVC"
  sleep 0.3
}
T0=$SECONDS
for auth in $AUTHS; do
  init_cluster "$auth"
  for i in $(seq "$RUNS"); do
    order=$VARIANTS
    [ $((i % 2)) = 0 ] && order=$(echo "$VARIANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for v in $order; do
      case $v in s[0-9]*) [ "$i" -gt "$SEED_RUNS" ] && continue ;; esac
      write_run "$v"
      one_run "$auth" "$v" "$i"
    done
  done
done
ELAPSED=$((SECONDS - T0))

python3 - "$OUT/readiness.csv" "$BENCH_DIR" >"$OUT/table.md" <<'PY'
import csv, sys
sys.path.insert(0, sys.argv[2])
from stats import median_ci, summary
rows = list(csv.DictReader(open(sys.argv[1])))
names = {"vitals": "`vitals notify` (postgres probe, default pace)",
         "floor": "floor: `pg_floor` (libpq login + SELECT 1 every 1 ms)",
         "s1000": "`s6-notifyoncheck -s 1000` + pg_isready (seed)",
         "s100": "`s6-notifyoncheck -s 100` + pg_isready"}
for auth in dict.fromkeys(r["auth"] for r in rows):
    mine = [r for r in rows if r["auth"] == auth]
    print(f"**{auth}**" + (" (SCRAM: a password for the postgres role)" if auth != "trust" else ""))
    print()
    print("| variant | lag: PG ready → s6 ready, min / **median** / max ms | the login that passed: start (from PG ready) / duration / its end → s6 ready, medians ms | PG start (`s6-svc -u` → PG ready) median ms | runs |")
    print("|---|---|---|---|---|")
    med = {}
    for v in dict.fromkeys(r["variant"] for r in mine):
        lag = summary([float(r["lag_ms"]) for r in mine if r["variant"] == v])
        start = summary([float(r["pg_start_ms"]) for r in mine if r["variant"] == v])
        med[v] = lag
        login = [(float(r["login_start_ms"]), float(r["login_ms"]), float(r["lag_ms"])) for r in mine
                 if r["variant"] == v and r["login_ms"]]
        login_text = (f"{summary([a for a, _, _ in login])['median']:+.1f} / {summary([b for _, b, _ in login])['median']:.1f}"
                      f" / {summary([c - a - b for a, b, c in login])['median']:.1f}" if login else "–")
        print(f"| {names.get(v, v)} | {lag['min']:.1f} / **{lag['median']:.1f}** / {lag['max']:.1f} | {login_text} | {start['median']:.1f} | {lag['n']} |")
    print()
    if "vitals" in med and "floor" in med:
        by_run = {}
        for r in mine:
            if r["variant"] in ("vitals", "floor"):
                by_run.setdefault(r["run"], {})[r["variant"]] = float(r["lag_ms"])
        diffs = [d["vitals"] - d["floor"] for d in by_run.values() if len(d) == 2]
        d = summary(diffs)
        ci = median_ci(diffs)
        ci_text = f"95 % interval {ci[0]:+.1f} … {ci[1]:+.1f} ms" if ci else "too few pairs for an interval"
        print(f"- vitals − floor, paired by run ({d['n']} pairs): median **{d['median']:+.1f} ms**, {ci_text}; "
              f"vitals was behind in {sum(x > 0 for x in diffs)} of {d['n']}.")
        print(f"- vitals − floor median ≤ 3 ms: **{'met' if d['median'] <= 3 else 'MISSED'}**.")
    if "vitals" in med:
        v = med["vitals"]
        for a in ("s1000", "s100"):
            if a in med:
                print(f"- vitals is **{med[a]['median'] / v['median']:.0f}×** sooner than {names[a]} (median lag).")
        if auth == "trust":
            floor = f" (the floor in this run: {med['floor']['median']:.1f} ms)" if "floor" in med else ""
            print(f"- Earlier target (trust) median ≤ 15 ms: **{v['median']:.1f} ms** {'met' if v['median'] <= 15 else 'MISSED'}{floor}; "
                  f"max ≤ 50 ms: **{v['max']:.1f} ms** {'met' if v['max'] <= 50 else 'MISSED'}.")
    print()
PY
cat "$OUT/table.md"
{
  echo "## 1. Readiness lag under s6 with a real PostgreSQL 15, against the floor"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg); took $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
  echo "Command: \`bench/readiness.sh\` (RUNS=$RUNS, SEED_RUNS=$SEED_RUNS, AUTHS=\"$AUTHS\"; variants interleaved run by run,"
  echo "the order reversed every other run; a fresh cluster per auth mode). lag = \`s6-svwait -U\` returns minus"
  echo "PostgreSQL's own \"ready to accept connections\" log time (1 ms resolution, truncated). The floor is"
  echo "\`bench/pg_floor.c\`, built like \`vitals notify\` (the service keeps the pid, a grandchild polls) with the"
  echo "same readiness criterion and DSN: a blocking libpq login and \`SELECT 1\`, retried 1 ms after each failure."
  echo "The login that passed comes from each notifier's own log (vitals: its \`passed after\` line, 1 ms resolution;"
  echo "the floor: its stderr line); it may start before PG's ready line (a connection queued while the startup"
  echo "finished). Each pair is two separate PostgreSQL starts, hence the wide intervals on a shared machine."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section readiness "$OUT/section.md"
