#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (packages, npm fixtures, build) and runs every test.
#   scripts/test.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/setup.sh "$build"
cd "$build"
ctest --output-on-failure --timeout 900
