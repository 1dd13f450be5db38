# shellcheck shell=bash
# tests/container/lib.sh — shared by tests/container/allinone.sh and bench/boot.sh (source it).
#
# Builds the all-in-one image from the shipped docker/Dockerfile with podman, substituting only
# what no registry here can give:
#   DEBIAN_IMAGE   localhost/vitals-bookworm:minbase   debootstrapped Debian 12, made once, reused
#   OLLAMA_IMAGE   localhost/vitals-test-ollama:fake   /usr/bin/ollama = tests/container/ollama
#   MCP_APP_IMAGE  localhost/vitals-test-mcp-app:test  /app/mcp/start = the pinned npm MCP server
#   s6-overlay     S6_OVERLAY_SOURCE=local: ../shared/vendor/s6-overlay-3.2.3.2, verified against
#                  its SHA256SUMS here and by sha256 build arguments inside the build
# and dropping --start-interval from the HEALTHCHECK (podman 4.3 rejects it). The result is
# tagged localhost/vitals-allinone:test in podman's default storage (scripts/setup.sh configures
# podman: runc, rlimits within the host's).
#
# Environment: WORK (default /var/tmp/vitals-container; the rootfs and build logs stay there),
# S6_OVERLAY_DIR (default: ../shared/vendor/s6-overlay-3.2.3.2 beside the repository).

CT_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CT_HERE=$CT_SRC/tests/container
WORK=${WORK:-/var/tmp/vitals-container}
BASE_IMAGE=localhost/vitals-bookworm:minbase
OLLAMA_IMAGE=localhost/vitals-test-ollama:fake
MCP_APP_IMAGE=localhost/vitals-test-mcp-app:test
# ALLINONE_IMAGE may be set to build and test under another tag (engineers sharing a machine).
ALLINONE_IMAGE=${ALLINONE_IMAGE:-localhost/vitals-allinone:test}
export ALLINONE_IMAGE
S6_OVERLAY_DIR=${S6_OVERLAY_DIR:-$CT_SRC/../shared/vendor/s6-overlay-3.2.3.2}

ct_now() { date +%s.%N; }
ct_since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(ct_now)"; }
ct_die() { echo "$*" >&2; exit 2; }

ct_require() {
  [ "$(id -u)" = 0 ] || ct_die "needs root"
  local c
  for c in podman runc debootstrap; do
    command -v "$c" >/dev/null || ct_die "missing $c: run scripts/setup.sh"
  done
  [ "$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null)" = runc ] \
    || ct_die "podman does not use runc: run scripts/setup.sh (it writes /etc/containers/containers.conf)"
  unset CONTAINERS_CONF CONTAINERS_STORAGE_CONF CONTAINERS_REGISTRIES_CONF
  mkdir -p "$WORK"
}

# The first Debian (non-security) URI from apt's own sources: the mirror this machine may reach.
ct_mirror() {
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/{for(i=2;i<=NF;i++) print $i}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk '$1=="deb"{for(i=2;i<=NF;i++) if($i ~ /^[a-z]+:\/\//){print $i; break}}'
  } | grep -v -- '-security' | grep -m1 '/debian/\?$' || true
}

# DEBIAN_IMAGE: debootstrap --variant=minbase bookworm, once; imported once into podman.
ct_base_image() {
  if [ ! -e "$WORK/rootfs/.vitals-done" ]; then
    local mirror t0
    mirror=$(ct_mirror); [ -n "$mirror" ] || ct_die "no Debian mirror in apt sources"
    rm -rf "$WORK/rootfs"; t0=$(ct_now)
    debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log"; ct_die "debootstrap failed"; }
    rm -f "$WORK"/rootfs/var/cache/apt/archives/*.deb; rm -rf "$WORK"/rootfs/var/lib/apt/lists/*
    touch "$WORK/rootfs/.vitals-done"
    echo "debootstrap --variant=minbase bookworm: $(ct_since "$t0") s"
  fi
  if ! podman image exists "$BASE_IMAGE"; then
    tar -C "$WORK/rootfs" --exclude=./.vitals-done -c . \
      | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
    echo "podman import -> $BASE_IMAGE"
  fi
}

# podman build with the settings every build here needs: no registry pulls, host network for apt,
# Docker format (OCI images drop HEALTHCHECK).
ct_build() { podman build --pull=never --format docker --network host "$@"; }

# Builds the stand-ins and the all-in-one image; logs in $WORK/build-*.log.
ct_build_allinone() {
  local t0 ctx sums noarch arch
  ct_base_image

  # s6-overlay: the vendored tarballs, checked against their SHA256SUMS before anything else.
  [ -f "$S6_OVERLAY_DIR/SHA256SUMS" ] || ct_die "no $S6_OVERLAY_DIR/SHA256SUMS (set S6_OVERLAY_DIR)"
  (cd "$S6_OVERLAY_DIR" && sha256sum --quiet -c SHA256SUMS) || ct_die "s6-overlay tarballs do not match SHA256SUMS"
  sums=$S6_OVERLAY_DIR/SHA256SUMS
  noarch=$(awk '$2 ~ /(^|\/)s6-overlay-noarch\.tar\.xz$/ {print $1}' "$sums")
  arch=$(awk '$2 ~ /(^|\/)s6-overlay-x86_64\.tar\.xz$/ {print $1}' "$sums")
  if [ -z "$noarch" ] || [ -z "$arch" ]; then ct_die "SHA256SUMS lacks the noarch or x86_64 tarball"; fi

  # OLLAMA_IMAGE: the CLI and the fake server, in the layout of the real image (/usr/bin/ollama,
  # /usr/lib/ollama/).
  ctx=$WORK/ctx-ollama; rm -rf "$ctx"; mkdir -p "$ctx/lib"
  cp "$CT_HERE/ollama/Containerfile" "$CT_HERE/ollama/ollama" "$ctx/"
  cp -r "$CT_SRC/tests/fakes/ollama/fake_ollama.py" "$CT_SRC/tests/fakes/ollama/fixtures" "$ctx/lib/"
  t0=$(ct_now)
  ct_build --build-arg BASE_IMAGE="$BASE_IMAGE" -t "$OLLAMA_IMAGE" "$ctx" >"$WORK/build-ollama.log" 2>&1 \
    || { tail -30 "$WORK/build-ollama.log"; ct_die "building $OLLAMA_IMAGE failed"; }
  echo "built $OLLAMA_IMAGE: $(ct_since "$t0") s"

  # MCP_APP_IMAGE: /app/mcp holds the MCP server of the tests (pinned by package-lock.json).
  [ -d "$CT_SRC/tests/fixtures/mcp/node_modules" ] || ct_die "no npm modules: run scripts/setup.sh"
  ctx=$WORK/ctx-mcp; rm -rf "$ctx"; mkdir -p "$ctx/app"
  cp "$CT_HERE/mcp-app/Containerfile" "$ctx/"
  cp "$CT_HERE/mcp-app/start" "$ctx/app/"
  cp -r "$CT_SRC/tests/fixtures/mcp/server.mjs" "$CT_SRC/tests/fixtures/mcp/package.json" \
    "$CT_SRC/tests/fixtures/mcp/node_modules" "$ctx/app/"
  t0=$(ct_now)
  ct_build -t "$MCP_APP_IMAGE" "$ctx" >"$WORK/build-mcp.log" 2>&1 \
    || { tail -30 "$WORK/build-mcp.log"; ct_die "building $MCP_APP_IMAGE failed"; }
  echo "built $MCP_APP_IMAGE: $(ct_since "$t0") s"

  # The shipped Dockerfile, from a copy of the sources: the only edit is --start-interval.
  ctx=$WORK/ctx-allinone; rm -rf "$ctx"; mkdir -p "$ctx/docker/s6-overlay"
  (cd "$CT_SRC" && cp -r CMakeLists.txt cmake agent plugins config s6 "$ctx/")
  sed 's/ --start-interval=[^ ]*//' "$CT_SRC/docker/Dockerfile" >"$ctx/docker/Dockerfile"
  cp "$S6_OVERLAY_DIR/s6-overlay-noarch.tar.xz" "$S6_OVERLAY_DIR/s6-overlay-x86_64.tar.xz" "$ctx/docker/s6-overlay/"
  t0=$(ct_now)
  ct_build -f "$ctx/docker/Dockerfile" -t "$ALLINONE_IMAGE" \
    --build-arg DEBIAN_IMAGE="$BASE_IMAGE" \
    --build-arg OLLAMA_IMAGE="$OLLAMA_IMAGE" \
    --build-arg MCP_APP_IMAGE="$MCP_APP_IMAGE" \
    --build-arg MCP_RUNTIME_PACKAGES="nodejs python3" \
    --build-arg S6_OVERLAY_SOURCE=local \
    --build-arg S6_OVERLAY_NOARCH_SHA256="$noarch" \
    --build-arg S6_OVERLAY_ARCH_SHA256="$arch" \
    "$ctx" >"$WORK/build-allinone.log" 2>&1 \
    || { tail -40 "$WORK/build-allinone.log"; ct_die "building $ALLINONE_IMAGE failed"; }
  echo "built $ALLINONE_IMAGE from docker/Dockerfile: $(ct_since "$t0") s"
}
