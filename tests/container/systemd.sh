#!/usr/bin/env bash
# tests/container/systemd.sh BUILD_DIR — vitals under real systemd (ctest container.systemd).
#
# Builds localhost/vitals-systemd:test: the shared Debian 12 base (tests/container/lib.sh), systemd
# and the libraries vitals links, then BUILD_DIR installed with `cmake --install --prefix /usr`
# (host and image are both Debian 12, so the binaries run as built), with the unit files of
# packaging/systemd/ in /usr/lib/systemd/system. Then tests/container/systemd.py runs it with
# `podman run --systemd=always` (systemd is PID 1 inside) and checks, as a user would with
# systemctl and journalctl: a Type=notify unit wrapped by `vitals notify` starts only once its
# probe passes, the agent's STATUS= line in `systemctl status`, reload, the watchdog restarting a
# SIGSTOPped agent; and
# `podman run --sdnotify=container` with a NOTIFY_SOCKET the test binds on the host.
#
# Needs root and what scripts/setup.sh installs (podman, runc, debootstrap). About 1-2 minutes
# once the base image exists (the apt layer is reused while the library list stays the same).
set -euo pipefail
BUILD=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/container/lib.sh
. "$HERE/lib.sh"
ct_require
[ -x "$BUILD/bin/vitals" ] || ct_die "no $BUILD/bin/vitals: build first"
IMAGE=localhost/vitals-systemd:test
t0=$(ct_now)
ct_base_image

ctx=$WORK/ctx-systemd
rm -rf "$ctx"; mkdir -p "$ctx/root"
DESTDIR=$ctx/root cmake --install "$BUILD" --prefix /usr >"$WORK/install-systemd.log" \
  || { tail -20 "$WORK/install-systemd.log"; ct_die "cmake --install failed"; }
# The Debian packages holding the libraries the installed binaries and plugins link (one dpkg -S
# for every path as linked, resolved, and under /usr: usrmerge registers either).
libs=$(find "$ctx/root" -type f \( -name '*.so*' -o -perm -u+x \) -exec ldd {} + 2>/dev/null \
  | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
packages=$(for lib in $libs; do echo "$lib"; readlink -f "$lib"; echo "/usr$lib"; done | sort -u \
  | xargs dpkg -S 2>/dev/null | grep -v '^diversion ' | cut -d: -f1 | sort -u | tr '\n' ' ' || true)
[ -n "$packages" ] || ct_die "found no library packages for the installed binaries"
cp "$HERE/systemd/Containerfile" "$ctx/"
ct_build --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg PACKAGES="$packages" -t "$IMAGE" "$ctx" \
  >"$WORK/build-systemd.log" 2>&1 || { tail -30 "$WORK/build-systemd.log"; ct_die "building $IMAGE failed"; }
echo "built $IMAGE (with $packages): $(ct_since "$t0") s"
rc=0
WORK=$WORK IMAGE=$IMAGE python3 "$HERE/systemd.py" || rc=$?
echo "total: $(ct_since "$t0") s"
exit $rc
