#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages, npm fixtures, build) and runs every test.
#   scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/setup.sh "$build"

# ASan + UBSan (leak detection on): a second build running the unit tests, the fuzz replays and the
# integration tests under the sanitizers. Left out: the container test (the image compiles vitals
# itself), the Ollama CLI stand-in's test (Python only) and the real-Prometheus scrape (its 1 s
# scrape timeout is too tight for an ASan agent).
if [ "${VITALS_SKIP_SANITIZE:-0}" != 1 ]; then
  NO_RESULTS=1 BUILD="$build-asan" \
    TESTS='^(unit\..*|fuzz\..*|integration\.(agent|abuse|cli|http_plugin|install|isolation|mcp_http|notify_backoff|ollama|postgres|s6|s6_layout|s6_liveness|s6_notify))$' \
    bench/sanitize.sh
fi

cd "$build"
ctest --output-on-failure --timeout 900
