#!/usr/bin/env bash
# Sets up this machine (scripts/setup.sh), starts a throwaway local PostgreSQL with a password,
# and runs the agent on the default config (config/vitals.yaml) against it, showing live /health.
# Ctrl-C stops the agent and the database. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh build

demo=/tmp/vitals-demo
export PGPORT=${PGPORT:-55432}
export VITALS_PG_PASSWORD_FILE=$demo/pg-password
pgbin=/usr/lib/postgresql/15/bin
as_pg() { runuser -u postgres -- "$@"; }

rm -rf "$demo" && mkdir -p "$demo" && chown postgres: "$demo"
head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$VITALS_PG_PASSWORD_FILE"
chmod 600 "$VITALS_PG_PASSWORD_FILE"
cp "$VITALS_PG_PASSWORD_FILE" "$demo/pwfile" && chown postgres: "$demo/pwfile"
as_pg "$pgbin/initdb" -D "$demo/pgdata" -U postgres --auth=scram-sha-256 --pwfile="$demo/pwfile" >/dev/null
rm "$demo/pwfile"
as_pg "$pgbin/pg_ctl" -D "$demo/pgdata" -l "$demo/postgres.log" -w \
  -o "-c listen_addresses=127.0.0.1 -c port=$PGPORT -c unix_socket_directories=$demo" start >/dev/null
echo "demo: PostgreSQL 15 on 127.0.0.1:$PGPORT (password in $VITALS_PG_PASSWORD_FILE)"

build/bin/vitals run -c config/vitals.yaml 2>"$demo/vitals.log" &
agent=$!
cleanup() {
  kill "$agent" 2>/dev/null || true
  wait "$agent" 2>/dev/null || true
  as_pg "$pgbin/pg_ctl" -D "$demo/pgdata" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for _ in $(seq 100); do
  build/bin/vitals check -c config/vitals.yaml >/dev/null && break
  sleep 0.1
done
echo "demo: vitals is serving http://127.0.0.1:9851/health (log: $demo/vitals.log)"
curl -s http://127.0.0.1:9851/health | python3 -m json.tool
echo "demo: live status every 2 s (vitals check); Ctrl-C to stop"
while kill -0 "$agent" 2>/dev/null; do
  echo "$(date +%T) $(build/bin/vitals check -c config/vitals.yaml)"
  sleep 2
done
