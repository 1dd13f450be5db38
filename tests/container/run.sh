#!/usr/bin/env bash
# shellcheck disable=SC2015  # ok() always succeeds, so `A && ok || bad` is an if/else
# tests/container/run.sh — a real container test with podman: `HEALTHCHECK CMD ["vitals","check"]`
# and `vitals notify` under s6 as PID 1, against PostgreSQL inside the container.
#
#   tests/container/run.sh BUILD_DIR
#
# BUILD_DIR is a cmake build of vitals (default prefix /usr/local); it is installed with
# `cmake --install` into the image's build context (not compiled in the container). The image
# starts from a Debian 12 base made here with debootstrap (no registry is reachable) and installs
# PostgreSQL 15, Debian's s6 and vitals' runtime libraries with apt during `podman build`
# (--network host). Podman settings are the ones the feasibility recipe (container.sh) found to work on
# these machines: runc, host network, explicit ulimits, storage under $WORK via --root/--runroot.
#
# Checks: the image carries the HEALTHCHECK; the db service becomes ready (s6-svwait -U) and so
# does the agent; `podman healthcheck run` says healthy; after `s6-svc -d` of the database inside the
# container it says unhealthy; after `s6-svc -u` healthy again; `podman stop` ends the container
# cleanly (PostgreSQL fast shutdown, exit code 0, well before the stop timeout).
#
# Needs root and apt packages podman runc debootstrap (plus a reachable Debian mirror for apt).
# Environment: WORK=/var/tmp/vitals-container (the debootstrapped rootfs is kept there and reused;
# CLEAN=1 removes WORK at the end), PG_PORT / AGENT_PORT (host network; default: free ports).
set -euo pipefail

BUILD=${1:?usage: $0 BUILD_DIR}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${WORK:-/var/tmp/vitals-container}
CLEAN=${CLEAN:-0}
PODMAN_DIR=$WORK/podman
BASE_IMAGE=localhost/vitals-test-bookworm:minbase
IMAGE=localhost/vitals-test-pg:latest
NAME=vitals-test-pg-$$

PASS=0; FAIL=0
ok()  { PASS=$((PASS+1)); echo "  ok   - $*"; }
bad() { FAIL=$((FAIL+1)); echo "  FAIL - $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
T_ALL=$(now)

[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 2; }
for c in podman runc debootstrap; do
  command -v "$c" >/dev/null || { echo "missing $c (apt-get install podman runc debootstrap)" >&2; exit 2; }
done
[ -x "$BUILD/bin/vitals" ] || { echo "no $BUILD/bin/vitals" >&2; exit 2; }
unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF
PG_PORT=${PG_PORT:-$(free_port)}
AGENT_PORT=${AGENT_PORT:-$(free_port)}
echo "$(podman --version); $(runc --version | head -1); PG port $PG_PORT, agent port $AGENT_PORT"

mkdir -p "$WORK" "$PODMAN_DIR"/{root,run,tmp,netconf}
NOFILE=$(ulimit -Hn); [ "$NOFILE" = unlimited ] && NOFILE=65536
cat >"$PODMAN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=4096:4096"]
[engine]
runtime = "runc"
events_logger = "file"
tmp_dir = "$PODMAN_DIR/tmp"
[network]
network_config_dir = "$PODMAN_DIR/netconf"
EOF
export CONTAINERS_CONF=$PODMAN_DIR/containers.conf TMPDIR=$PODMAN_DIR/tmp
P() { podman --root "$PODMAN_DIR/root" --runroot "$PODMAN_DIR/run" --tmpdir "$PODMAN_DIR/tmp" \
             --network-config-dir "$PODMAN_DIR/netconf" --storage-driver overlay "$@"; }

cleanup() {
  set +e
  if P container exists "$NAME" 2>/dev/null; then
    P logs "$NAME" >"$WORK/container.log" 2>&1
    P rm -f -t 5 "$NAME" >/dev/null 2>&1
  fi
  if [ "$CLEAN" = 1 ]; then
    P rmi -a -f >/dev/null 2>&1; P system reset -f >/dev/null 2>&1; rm -rf "$WORK"
  fi
}
trap cleanup EXIT

# ---- base image: Debian 12 minbase from debootstrap, imported once -----------------------------
mirror() { # first Debian (non-security) URI from apt's configured sources
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{for(i=2;i<=NF;i++) print $i}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1=="deb"{for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){print $i; break}}'
  } | grep -v -- '-security' | grep -m1 '/debian/\?$' || true; }
if [ ! -e "$WORK/rootfs/.vitals-done" ]; then
  MIRROR=$(mirror); [ -n "$MIRROR" ] || { echo "no Debian mirror in apt sources" >&2; exit 2; }
  rm -rf "$WORK/rootfs"; t0=$(now)
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log"; exit 1; }
  rm -f "$WORK"/rootfs/var/cache/apt/archives/*.deb; rm -rf "$WORK"/rootfs/var/lib/apt/lists/*
  touch "$WORK/rootfs/.vitals-done"
  echo "debootstrap --variant=minbase bookworm: $(since "$t0") s"
fi
if ! P image exists "$BASE_IMAGE"; then
  t0=$(now)
  tar -C "$WORK/rootfs" -c . | P import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  echo "podman import -> $BASE_IMAGE: $(since "$t0") s"
fi

# ---- build context: the host's vitals build installed into staging/ ------------------------------
CTX=$WORK/context
rm -rf "$CTX"; mkdir -p "$CTX"
cp -a "$HERE/image/." "$CTX/"
DESTDIR="$CTX/staging" cmake --install "$BUILD" --strip >"$WORK/install.log"
rm -rf "$CTX/staging/usr/local/include"
VITALS_IN_IMAGE=$(cd "$CTX/staging" && find . -path '*/bin/vitals' | sed 's/^\.//')
[ "$VITALS_IN_IMAGE" = /usr/local/bin/vitals ] \
  || { echo "expected a /usr/local build (vitals at /usr/local/bin/vitals), got '$VITALS_IN_IMAGE'" >&2; exit 2; }

t0=$(now)
if P build --pull=never --format docker --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
     -f "$CTX/Containerfile" -t "$IMAGE" "$CTX" >"$WORK/build.log" 2>&1; then
  ok "podman build (apt-get install inside, host's vitals build copied in): $(since "$t0") s"
else
  bad "podman build"; tail -30 "$WORK/build.log"; exit 1
fi
HC=$(P image inspect "$IMAGE" --format '{{json .Config.Healthcheck}}')
[[ $HC == *'"Test":["CMD","vitals","check"]'* ]] && ok "image HEALTHCHECK in exec form: $HC" \
  || bad "unexpected HEALTHCHECK: $HC"

PLUGINS=$(P run --rm --network host "$IMAGE" vitals plugins 2>&1 | grep -v "^time=" || true)
if [[ $PLUGINS == *postgres* && $PLUGINS != *refused* ]]; then
  ok "every plugin loads in the image (runtime libraries complete): $(echo "$PLUGINS" | awk 'NF {print $1}' | tr '\n' ' ')"
else bad "vitals plugins in the image:"; echo "$PLUGINS"; fi

# ---- run: s6-svscan is PID 1 ---------------------------------------------------------------------
t0=$(now)
# stderr: podman 4.3 without systemd says "unable to get systemd connection to add healthchecks"
# (no periodic timer); `podman healthcheck run` works regardless.
P run -d --name "$NAME" --network host -e VITALS_TEST_PG_PORT="$PG_PORT" \
  -e VITALS_TEST_AGENT_PORT="$AGENT_PORT" "$IMAGE" >/dev/null 2>"$WORK/run.err" \
  || { bad "podman run -d"; cat "$WORK/run.err"; exit 1; }
ok "podman run -d: $(since "$t0") s"

svwait() { P exec "$NAME" s6-svwait "$@"; }
if svwait -U -t 60000 /etc/s6/scan/db; then ok "db ready (s6-svwait -U) $(since "$t0") s after podman run"
else bad "db never became ready"; P logs "$NAME" | tail -30; exit 1; fi
if svwait -U -t 60000 /etc/s6/scan/vitals; then ok "agent ready (its notification-fd): every critical probe passes"
else bad "agent never became ready"; P logs "$NAME" | tail -30; fi
Q=$(P exec "$NAME" s6-setuidgid postgres psql -h /run/postgresql -p "$PG_PORT" -At -c 'SELECT 40 + 2' 2>&1 || true)
[ "$Q" = 42 ] && ok "PostgreSQL answers queries inside the container" || bad "psql: $Q"

status() { P inspect "$NAME" --format '{{.State.Health.Status}}'; }
hc() { local rc=0 out; out=$(P healthcheck run "$NAME" 2>&1) || rc=$?; echo "rc=$rc out='$out' status=$(status)"; }
# Repeats `podman healthcheck run` (one per second, at most $2 times) until the status is $1.
hc_until() {
  local want=$1 tries=$2 r
  for _ in $(seq "$tries"); do
    r=$(hc); [[ $r == *"status=$want" ]] && { echo "$r"; return 0; }
    sleep 1
  done
  echo "$r"; return 1
}
sleep 2.2   # failures inside --start-period (2s) do not count: wait it out
R=$(hc); echo "    $R"
[[ $R == rc=0*status=healthy ]] && ok "podman healthcheck run -> healthy" || bad "expected healthy"
CHECK=$(P exec "$NAME" vitals check 2>&1 || true); echo "    vitals check: $CHECK"

P exec "$NAME" s6-svc -d /etc/s6/scan/db
svwait -D -t 30000 /etc/s6/scan/db && ok "database stopped inside the container (s6-svc -d)" || bad "db did not stop"
if R=$(hc_until unhealthy 30); then ok "podman healthcheck run -> unhealthy after the database stopped: $R"
else bad "not unhealthy after the database stopped: $R"; fi
CHECK=$(P exec "$NAME" vitals check 2>&1 || true); echo "    vitals check: $CHECK"

P exec "$NAME" s6-svc -u /etc/s6/scan/db
svwait -U -t 60000 /etc/s6/scan/db && ok "database restarted and ready again" || bad "db not ready again"
if R=$(hc_until healthy 30); then ok "podman healthcheck run -> healthy again: $R"
else bad "not healthy again: $R"; fi
echo "    health log exit codes: $(P inspect "$NAME" --format '{{range .State.Health.Log}}{{.ExitCode}} {{end}}')"

# ---- stop: SIGTERM to s6-svscan, which brings every service down (PostgreSQL with SIGINT) ---------
t0=$(now)
P stop -t 30 "$NAME" >/dev/null 2>>"$WORK/run.err"
STOP_S=$(since "$t0")
EXIT=$(P inspect "$NAME" --format '{{.State.ExitCode}}')
P logs "$NAME" >"$WORK/container.log" 2>&1
if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 25 else 1)" "$STOP_S"; then
  ok "podman stop -t 30 returned after $STOP_S s (no SIGKILL at the timeout), exit code $EXIT"
else bad "podman stop took $STOP_S s (killed at the timeout?), exit code $EXIT"; fi
grep -q "received fast shutdown request" "$WORK/container.log" \
  && ok "PostgreSQL got a fast shutdown request (down-signal SIGINT)" || bad "no fast shutdown in the log"
[ "$(grep -c 'database system is shut down' "$WORK/container.log")" -ge 2 ] \
  && ok "PostgreSQL shut down cleanly both times" || bad "no clean shutdown in the log"
if grep -q "terminated by signal\|terminating any other active server processes" "$WORK/container.log"; then
  bad "PostgreSQL saw a crashed child (see $WORK/container.log)"
else ok "no crashed-child restarts in PostgreSQL's log"; fi
P rm "$NAME" >/dev/null 2>>"$WORK/run.err"

echo "total: $(since "$T_ALL") s; logs in $WORK (container.log, build.log)"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
