#!/usr/bin/env bash
# readiness_latency.sh — how late `vitals notify` reports PostgreSQL ready under s6.
#
# The same measurement as the feasibility recipe seed_readiness_latency.sh (the seed design:
# s6-notifyoncheck + pg_isready), with the service's run script replaced by
#   vitals notify -c CFG --probe db -- s6-setuidgid postgres postgres -D DATA
# (postgres probe: TCP login with scram + SELECT 1, polled every 10 ms, the notify default).
# For every run, on one clock (CLOCK_REALTIME):
#   t_up : just before `s6-svc -u`
#   t_pg : PostgreSQL's own log line "database system is ready to accept connections"
#          (log_line_prefix '%n': epoch with ms, stamped by the postmaster)
#   t_s6 : when `s6-svwait -U` (up and ready) returned
# and reports lag = t_s6 - t_pg, pg_start = t_pg - t_up, total = t_s6 - t_up (ms).
#
# Usage: tests/container/readiness_latency.sh BUILD_DIR      (as root; needs s6, postgresql-15)
# Knobs: RUNS=7 PORT=18011 BASE=/tmp/vitals-readiness OUT=BASE
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR (a cmake build dir of vitals, with bin/vitals)}
VITALS=$(cd "$BUILD" && pwd)/bin/vitals
RUNS=${RUNS:-7}
PORT=${PORT:-18011}
BASE=${BASE:-/tmp/vitals-readiness}
OUT=${OUT:-$BASE}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

[ "$(id -u)" = 0 ] || { echo "run as root (postgres runs as the postgres user via s6-setuidgid)" >&2; exit 2; }
for b in s6-supervise s6-svc s6-svwait s6-svok s6-setuidgid; do
  command -v "$b" >/dev/null || { echo "missing $b (apt-get install s6 execline)" >&2; exit 2; }
done
[ -x "$PGBIN/postgres" ] || { echo "missing $PGBIN/postgres (apt-get install postgresql-15)" >&2; exit 2; }
[ -x "$VITALS" ] || { echo "missing $VITALS" >&2; exit 2; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

SUP_PID=""
SVC="$BASE/svc/pg"
cleanup() {
  set +e
  if [ -n "$SUP_PID" ]; then
    s6-svc -d "$SVC"; s6-svwait -D -t 20000 "$SVC"
    s6-svc -x "$SVC"
    for _ in $(seq 50); do kill -0 "$SUP_PID" 2>/dev/null || break; sleep 0.1; done
    kill "$SUP_PID" 2>/dev/null
  fi
}
trap cleanup EXIT

rm -rf "$BASE"
mkdir -p "$BASE/sock" "$SVC" "$OUT"
chmod 755 "$BASE"
chown postgres "$BASE/sock"
DATA="$BASE/data"
install -d -o postgres -m 700 "$DATA"

PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$PASSWORD" >"$BASE/pw.postgres" && chown postgres "$BASE/pw.postgres"
s6-setuidgid postgres "$PGBIN/initdb" -D "$DATA" -U postgres --pwfile="$BASE/pw.postgres" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >"$BASE/initdb.log" 2>&1
rm -f "$BASE/pw.postgres"
cat >>"$DATA/postgresql.conf" <<EOF
port = $PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$BASE/sock'
logging_collector = off
log_destination = 'stderr'
log_line_prefix = '%n [%p] '
EOF
# The probe's password: root only (the poller keeps root, postgres does not).
(umask 077 && printf '%s\n' "$PASSWORD" >"$BASE/pw")
cat >"$BASE/vitals.yaml" <<EOF
listen: 127.0.0.1:1
log_level: warn
probes:
  db:
    plugin: postgres
    timeout: 2s
    options:
      dsn: "host=127.0.0.1 port=$PORT dbname=postgres user=postgres"
      password_file: $BASE/pw
EOF

echo 3 >"$SVC/notification-fd"
echo SIGINT >"$SVC/down-signal"
touch "$SVC/down"
cat >"$SVC/run" <<EOF
#!/bin/sh
exec >"$BASE/run.out" 2>"$BASE/pg.log"
exec "$VITALS" notify -c "$BASE/vitals.yaml" --probe db -- s6-setuidgid postgres "$PGBIN/postgres" -D "$DATA"
EOF
chmod 755 "$SVC/run"

s6-supervise "$SVC" >"$BASE/supervise.out" 2>&1 &
SUP_PID=$!
for _ in $(seq 100); do s6-svok "$SVC" 2>/dev/null && break; sleep 0.05; done

CSV="$OUT/vitals_readiness_latency.csv"
echo "run,t_up,t_pg_log,t_s6,pg_start_ms,lag_ms,total_ms" >"$CSV"
for i in $(seq "$RUNS"); do
  rm -f "$BASE/s6_ts"
  ( s6-svwait -U -t 60000 "$SVC" && echo "$EPOCHREALTIME" >"$BASE/s6_ts" ) &
  wpid=$!
  sleep 0.3                        # let s6-svwait subscribe to the event fifodir
  t_up=$EPOCHREALTIME
  s6-svc -u "$SVC"
  wait "$wpid" || { echo "s6-svwait failed (run $i)" >&2; cat "$BASE/pg.log" >&2; exit 1; }
  t_s6=$(cat "$BASE/s6_ts")
  t_pg=$(awk '/database system is ready to accept connections/ {print $1; exit}' "$BASE/pg.log")
  [ -n "$t_pg" ] || { echo "no ready line in pg.log" >&2; cat "$BASE/pg.log" >&2; exit 1; }
  python3 - "$i" "$t_up" "$t_pg" "$t_s6" >>"$CSV" <<'PY'
import sys
i, t_up, t_pg, t_s6 = sys.argv[1:]
up, pg, s6 = float(t_up), float(t_pg), float(t_s6)
print(f"{i},{t_up},{t_pg},{t_s6},{(pg-up)*1000:.1f},{(s6-pg)*1000:.1f},{(s6-up)*1000:.1f}")
PY
  tail -n1 "$CSV"
  s6-svc -d "$SVC"
  s6-svwait -D -t 30000 "$SVC"
  sleep 0.5
done

stats() { python3 -c '
import statistics, sys
v = sorted(float(x) for x in sys.stdin if x.strip())
print(f"{sys.argv[1]} n={len(v)} min={v[0]:.1f} median={statistics.median(v):.1f} max={v[-1]:.1f}")' "$1"; }
{
  echo "# vitals notify readiness latency (ms), runs=$RUNS, $(date -u +%Y-%m-%dT%H:%MZ), $("$VITALS" version 2>&1 | head -1)"
  echo "# loadavg at start: $LOAD_START  at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  awk -F, 'NR>1 {print $6}' "$CSV" | stats "lag_ms (s6-svwait -U returned - PG log ready line)"
  awk -F, 'NR>1 {print $5}' "$CSV" | stats "pg_start_ms (s6-svc -u - PG log ready line)"
  awk -F, 'NR>1 {print $7}' "$CSV" | stats "total_ms (s6-svc -u - s6-svwait -U returned)"
} | tee "$OUT/vitals_readiness_latency.summary.txt"
