#!/usr/bin/env bash
# Installs what vitals needs on Debian 12 (build, run and test), then configures and builds it.
#   scripts/setup.sh [BUILD_DIR]        default BUILD_DIR: build
# Environment: VITALS_SKIP_APT=1 skips apt (packages already there); CMAKE_ARGS adds cmake flags.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

packages=(
  # build
  cmake g++ make pkg-config clang-format
  dpkg-dev  # dpkg-shlibdeps, for the Debian packages (cpack -G DEB)
  libpoco-dev libyaml-cpp-dev libspdlog-dev libpq-dev catch2 libcli11-dev
  # run and test: real components
  postgresql-15 postgresql-contrib s6 execline prometheus python3 curl procps
  strace  # makes pidfd_open fail (ENOSYS) to test the fallback for kernels before 5.3
  chromium python3-websocket  # the status page in a real browser, over the DevTools protocol
  # fuzzing, benchmarks, container test
  clang libclang-rt-14-dev wrk hyperfine nginx-light time valgrind podman runc debootstrap
)

# The machine image ships Node.js 20 with npm; Debian's are the fallback.
command -v npm >/dev/null || packages+=(nodejs npm)

if [ "${VITALS_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi

# podman as this machine kind needs it, for the container tests and for a plain `podman run` of
# their image: runc (crun 1.8 fails on the hybrid cgroup layout here), default rlimits within the
# host's hard limits (podman's defaults exceed them and every container fails to start), and events
# in a file (no journald). A drop-in, so the distribution's containers.conf stays untouched.
if [ "$(id -u)" = 0 ] && command -v podman >/dev/null; then
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; } && nproc=4096
  mkdir -p /etc/containers/containers.conf.d
  cat >/etc/containers/containers.conf.d/50-vitals.conf <<EOF
# Written by vitals' scripts/setup.sh (podman on this machine: runc, rlimits within the host's).
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
events_logger = "file"
EOF
fi

# Real MCP servers for the tests, pinned by the committed lockfile.
if [ ! -d tests/fixtures/mcp/node_modules ] || [ tests/fixtures/mcp/package-lock.json -nt tests/fixtures/mcp/node_modules ]; then
  (cd tests/fixtures/mcp && npm ci --no-audit --no-fund)
fi

# shellcheck disable=SC2086
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo ${CMAKE_ARGS:-}
cmake --build "$build" -j"$(nproc)"
