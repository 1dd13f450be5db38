# Shared helpers for the bench scripts (sourced, not run).
# Knobs every script honours:
#   VITALS_BUILD=dir   build tree to use (default: <repo>/build-bench, configured and built if absent)
#   OUT=dir            where raw results go (default: /tmp/vitals-bench/<script>)
#   NO_RESULTS=1       do not touch bench/RESULTS.md
# shellcheck shell=bash disable=SC2034
# (variables here are used by the scripts that source this file)

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
VITALS_BUILD=${VITALS_BUILD:-$REPO/build-bench}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
TCK=$(getconf CLK_TCK)
LOAD_START=$(cut -d" " -f1-3 /proc/loadavg)
DATE_START=$(date -u +%Y-%m-%dT%H:%MZ)

need() {
  local b
  for b in "$@"; do
    command -v "$b" >/dev/null || { echo "missing $b (see bench/README in RESULTS.md)" >&2; exit 1; }
  done
}

build_vitals() {   # configures and builds $VITALS_BUILD (Release-like RelWithDebInfo) if needed
  if [ ! -x "$VITALS_BUILD/bin/vitals" ] || [ "${REBUILD:-0}" = 1 ]; then
    cmake -S "$REPO" -B "$VITALS_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$VITALS_BUILD" -j"$(nproc)" >/dev/null
  fi
  VITALS="$VITALS_BUILD/bin/vitals"
  [ -x "$VITALS" ] || { echo "no vitals binary in $VITALS_BUILD" >&2; exit 1; }
}

# Every script keeps the pids it starts in PIDS; on exit they are killed and reaped, then the
# script's own on_exit (if it defines one) runs.
PIDS=()
stop_pids_on_exit() {
  trap '_stop_pids' EXIT
}
_stop_pids() {
  set +e
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  declare -F on_exit >/dev/null && on_exit
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() {   # url [tries]: waits until the URL answers at all
  local i
  for _ in $(seq "${2:-200}"); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "$1 never answered" >&2
  return 1
}

proc_ticks() {   # utime+stime (+cutime+cstime with CHILDREN=1) of the given pids, in clock ticks
  local t=0 p f
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    f=$(sed 's/^.*) //' "/proc/$p/stat")
    # shellcheck disable=SC2086
    set -- $f
    t=$((t + ${12} + ${13}))
    [ "${CHILDREN:-0}" = 1 ] && t=$((t + ${14} + ${15}))
  done
  echo "$t"
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi
}

# start_pg DIR PORT: a throwaway trust-auth PostgreSQL 15 on 127.0.0.1:PORT; sets PM_PID.
start_pg() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_postgres "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1
  cat >>"$dir/data/postgresql.conf" <<PGCONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
log_connections = on
log_line_prefix = '%n [%p] '
fsync = off
PGCONF
  as_postgres "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/pg.log" -w start >/dev/null
  PM_PID=$(head -n1 "$dir/data/postmaster.pid")
}

stop_pg() {   # DIR
  [ -f "$1/data/postmaster.pid" ] && as_postgres "$PGBIN/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null 2>&1
  return 0
}

# The all-in-one container's three services on free ports, for a config like config/container.yaml:
# a real PostgreSQL 15 (trust) in DIR/pg, the fake Ollama (tests/fakes/ollama, model loaded) and the
# MCP server of tests/fixtures/mcp (the official TypeScript SDK), if node and its `npm ci` are there.
# Sets PG_PORT, OLLAMA_PORT, MCP_PORT and MCP (1, or 0: nothing listens on MCP_PORT); returns once
# they answer. The caller stops PostgreSQL: on_exit() { stop_pg DIR/pg; }.
start_mission_deps() {   # DIR
  local dir=$1 fixtures=$REPO/tests/fixtures/mcp
  PG_PORT=$(free_port)
  OLLAMA_PORT=$(free_port)
  MCP_PORT=$(free_port)
  start_pg "$dir/pg" "$PG_PORT"
  python3 "$REPO/tests/fakes/ollama/fake_ollama.py" --port "$OLLAMA_PORT" --scenario loaded \
    >"$dir/ollama.log" 2>&1 &
  PIDS+=($!)
  MCP=0
  if command -v node >/dev/null && [ -d "$fixtures/node_modules" ]; then
    (cd "$fixtures" && PORT=$MCP_PORT exec node server.mjs) >"$dir/mcp.log" 2>&1 </dev/null &
    PIDS+=($!)
    MCP=1
    for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$MCP_PORT/" && break; sleep 0.1; done
  fi
  wait_http "http://127.0.0.1:$OLLAMA_PORT/api/version"
}

machine_line() {
  echo "$(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(uname -sr), $(sed -n "s/^PRETTY_NAME=//p" /etc/os-release | tr -d \")"
}

# results_section NAME FILE: replaces the NAME section of bench/RESULTS.md with FILE's text.
results_section() {
  [ "${NO_RESULTS:-0}" = 1 ] && return 0
  python3 "$BENCH_DIR/results.py" "$BENCH_DIR/RESULTS.md" "$1" "$2"
}
