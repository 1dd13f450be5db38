#!/usr/bin/env bash
# tests/container/allinone.sh BUILD_DIR — the all-in-one container, for real (ctest container.allinone).
#
# Builds localhost/vitals-allinone:test from the shipped docker/Dockerfile, s6/ tree and
# config/container.yaml under real s6-overlay 3.2.3.2 (tests/container/lib.sh says what stands in for
# the registries this machine cannot reach), then checks it from outside as a user would
# (tests/container/allinone.py: boot order, ports, passwords, HEALTHCHECK, /metrics, faults, stop).
#
# Needs root and what scripts/setup.sh installs (podman, runc, debootstrap, npm modules).
# BUILD_DIR is not used: the image compiles vitals itself in its builder stage. SKIP_BUILD=1 reuses
# the image already tagged. Logs: $WORK (default /var/tmp/vitals-container).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/container/lib.sh
. "$HERE/lib.sh"
ct_require
t0=$(ct_now)
if [ "${SKIP_BUILD:-0}" != 1 ]; then ct_build_allinone; fi
rc=0
WORK=$WORK python3 "$HERE/allinone.py" || rc=$?
echo "total: $(ct_since "$t0") s"
exit $rc
