#!/usr/bin/env bash
# tests/container/deb.sh BUILD_DIR — the Debian packages, installed for real (ctest container.deb).
#
# Configures a tree for /usr in BUILD_DIR/deb (the package layout), runs `cpack -G DEB` there, then
# in a clean container FROM the shared Debian 12 minbase image (tests/container/lib.sh) installs
# vitals_<version>_<arch>.deb with `apt-get install ./...` (apt fetches the dependencies
# dpkg-shlibdeps computed from Debian's registry) and checks what a user would: the conffile, the
# systemd units of packaging/systemd/, `vitals plugins`, `vitals validate` of the shipped config, an
# agent answering `vitals check`, and `vitals once` with the tcp and exec plugins. Then it installs
# vitals-dev with a compiler and builds examples/loadavg against it with CMake and pkg-config, and
# runs it. Needs root, podman and dpkg-dev (dpkg-shlibdeps). SKIP_DEV=1 leaves the SDK part out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/container/lib.sh
. "$HERE/lib.sh"
BUILD=$(cd "${1:?usage: deb.sh BUILD_DIR}" && pwd)
ct_require
command -v dpkg-shlibdeps >/dev/null || ct_die "missing dpkg-shlibdeps: apt-get install dpkg-dev"
t0=$(ct_now)

# The packages: a tree configured for /usr, built without the tests.
pkg=$BUILD/deb
cmake -S "$CT_SRC" -B "$pkg" -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DBUILD_TESTING=OFF >"$pkg.configure.log" 2>&1 || { cat "$pkg.configure.log"; exit 1; }
nice cmake --build "$pkg" -j"$(nproc)" >"$pkg.build.log" 2>&1 || { tail -40 "$pkg.build.log"; exit 1; }
rm -f "$pkg"/*.deb
(cd "$pkg" && cpack -G DEB) >"$pkg.cpack.log" 2>&1 || { cat "$pkg.cpack.log"; exit 1; }
version=$("$pkg/bin/vitals" version | awk '{print $2}')
arch=$(dpkg --print-architecture)
deb=vitals_${version}_${arch}.deb
dev=vitals-dev_${version}_${arch}.deb
[ -f "$pkg/$deb" ] && [ -f "$pkg/$dev" ] || { ls -l "$pkg"/*.deb; ct_die "expected $deb and $dev"; }
echo "built $deb and $dev: $(ct_since "$t0") s"
echo "$deb: Depends: $(dpkg-deb -f "$pkg/$deb" Depends)"
dpkg-deb -f "$pkg/$deb" Depends | grep -q 'libpq5' || ct_die "$deb: no libpq5 in Depends (shlibdeps)"
dpkg-deb -f "$pkg/$deb" Depends | grep -q 'libpoco' || ct_die "$deb: no Poco in Depends (shlibdeps)"
[ "$(dpkg-deb -f "$pkg/$dev" Depends)" = "vitals (= $version)" ] || ct_die "$dev: Depends is not vitals (= $version)"

# Unit files the package must carry: whatever packaging/systemd/ holds.
units=
if [ -d "$CT_SRC/packaging/systemd" ]; then
  units=$(find "$CT_SRC/packaging/systemd" -maxdepth 1 \( -name '*.service' -o -name '*.socket' \
    -o -name '*.timer' -o -name '*.target' -o -name '*.path' \) -printf '%f\n' | sort | tr '\n' ' ')
fi

ct_base_image
mkdir -p "$WORK/deb"
rm -f "$WORK"/deb/*.deb
cp "$pkg/$deb" "$pkg/$dev" "$WORK/deb/"
cp -r "$CT_SRC/examples/loadavg" "$WORK/deb/"

cat >"$WORK/deb/check.sh" <<'SCRIPT'
#!/bin/bash
# Runs inside the clean container: install, then use as a user would.
set -euo pipefail
cd /debs
fail() { echo "FAIL: $*" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "./$DEB" >/tmp/apt.log 2>&1 || { tail -30 /tmp/apt.log; fail "apt-get install ./$DEB"; }
echo "installed $DEB"
command -v vitals | grep -qx /usr/bin/vitals || fail "vitals is not /usr/bin/vitals"
dpkg-query -W -f='${Conffiles}\n' vitals | grep -q '^ /etc/vitals/vitals.yaml ' || fail "/etc/vitals/vitals.yaml is not a conffile"
for u in $UNITS; do
  dpkg -L vitals | grep -qx "/usr/lib/systemd/system/$u" || fail "unit $u not in the package"
done
echo "conffile and units ($UNITS): ok"
out=$(vitals plugins)
echo "$out"
plugdir=$(dpkg -L vitals | grep '/vitals/plugins$')
echo "$out" | grep -qx "plugin directory: $plugdir" || fail "vitals plugins: not $plugdir"
for p in postgres ollama mcp-http http tcp exec; do
  echo "$out" | grep -q "^  $p " || fail "vitals plugins: no $p"
done
echo "$out" | grep -q refused && fail "vitals plugins: a plugin is refused"
vitals validate | grep -qx '/etc/vitals/vitals.yaml: ok (1 probes)' || fail "vitals validate of the shipped config"
cat >/tmp/v.yaml <<'YAML'
listen: 127.0.0.1:9851
probes:
  self: {plugin: tcp, options: {port: 9851}}
  true: {plugin: exec, options: {command: [/bin/true]}}
YAML
vitals run -c /tmp/v.yaml 2>/tmp/agent.log &
agent=$!
for _ in $(seq 100); do vitals check -c /tmp/v.yaml >/tmp/check.out 2>&1 && break; sleep 0.1; done
cat /tmp/check.out
grep -q '^healthy ready=true 2/2' /tmp/check.out || { cat /tmp/agent.log; fail "vitals check"; }
vitals once -c /tmp/v.yaml --probe self | tee /tmp/once.out
grep -q '^self pass connect ' /tmp/once.out || fail "vitals once --probe self (tcp)"
vitals once -c /tmp/v.yaml --probe true | grep -q '^true pass exit ' || fail "vitals once --probe true (exec)"
kill -TERM $agent; wait $agent || fail "vitals run did not stop cleanly"
echo "agent, check and once: ok"

[ "$SKIP_DEV" = 1 ] && exit 0
apt-get install -y -q --no-install-recommends "./$DEV" g++ cmake make pkg-config >/tmp/apt-dev.log 2>&1 \
  || { tail -30 /tmp/apt-dev.log; fail "apt-get install ./$DEV"; }
echo "installed $DEV"
cmake -S /debs/loadavg -B /tmp/b >/tmp/b.log 2>&1 && cmake --build /tmp/b >>/tmp/b.log 2>&1 \
  && cmake --install /tmp/b --prefix /usr/local >>/tmp/b.log 2>&1 || { cat /tmp/b.log; fail "example with find_package"; }
mkdir -p /opt/pc
c++ -std=c++17 -O2 $(pkg-config --cflags vitals-probe) -o /opt/pc/loadavg.so /debs/loadavg/loadavg.cpp \
  $(pkg-config --libs vitals-probe) || fail "example with pkg-config"
for dir in /usr/local/lib/vitals/plugins /opt/pc; do
  printf 'plugin_dir: [%s, %s]\nprobes:\n  load: {plugin: loadavg}\n' "$(pkg-config --variable=plugindir vitals-probe)" "$dir" >/tmp/l.yaml
  vitals once -c /tmp/l.yaml --probe load | tee /tmp/l.out
  grep -Eq '^load (pass|warn) load ' /tmp/l.out || fail "loadavg from $dir"
done
echo "SDK: ok"
SCRIPT
chmod +x "$WORK/deb/check.sh"

rc=0
podman run --rm --network host -v "$WORK/deb:/debs:ro" \
  -e DEB="$deb" -e DEV="$dev" -e UNITS="$units" -e SKIP_DEV="${SKIP_DEV:-0}" \
  "$BASE_IMAGE" /debs/check.sh || rc=$?
echo "total: $(ct_since "$t0") s"
exit $rc
