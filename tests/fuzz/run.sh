#!/usr/bin/env bash
# Builds the fuzz targets with clang's libFuzzer (+ ASan + UBSan, vitals_agent instrumented for
# coverage) and runs each for RUNS executions, starting from the committed corpus.
#   tests/fuzz/run.sh                 # every target, 1M runs each
#   RUNS=100000 tests/fuzz/run.sh http
# Needs: clang, libclang-rt-14-dev (Debian 12). Debian's yaml-cpp and Poco are not instrumented:
# they are linked as they are, so the fuzzer only sees coverage of vitals' own code.
# Knobs: BUILD=dir (default <repo>/build-fuzz), RUNS=1000000, MAX_LEN=4096, JOBS=$(nproc),
# KEEP_GOING=1 (libFuzzer's -fork=1 -ignore_crashes=1: record each crash and go on fuzzing).
# New inputs go to $BUILD/corpus-new/<target>/ (the committed corpus is only read); crashes to
# $BUILD/artifacts/<target>/. Copy interesting new inputs into tests/fuzz/corpus/<target>/ by hand.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-$REPO/build-fuzz}
RUNS=${RUNS:-1000000}
MAX_LEN=${MAX_LEN:-4096}
JOBS=${JOBS:-$(nproc)}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(config http wire)

command -v clang++ >/dev/null || { echo "missing clang++ (apt-get install clang libclang-rt-14-dev)" >&2; exit 1; }

# The fuzz folder is part of the tree once tests/CMakeLists.txt adds it; until then a small
# wrapper project adds it next to the main one.
mkdir -p "$BUILD"
SRC=$REPO
if ! grep -q 'add_subdirectory(fuzz)' "$REPO/tests/CMakeLists.txt"; then
  SRC=$BUILD/wrapper-src
  mkdir -p "$SRC"
  cat >"$SRC/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.25)
project(vitals_fuzz_wrapper LANGUAGES C CXX)
add_subdirectory("$REPO" vitals)
add_subdirectory("$REPO/tests/fuzz" fuzz)
CMAKE
fi

FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -gline-tables-only"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_C_FLAGS="$FLAGS" -DCMAKE_CXX_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DVITALS_FUZZ=ON >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
for t in "${TARGETS[@]}"; do
  cmake --build "$BUILD" -j"$JOBS" --target "fuzz_$t" fake_ok >/dev/null
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${TARGETS[@]}"; do
  bin=$(find "$BUILD" -type f -name "fuzz_$t" -perm -u+x | head -n1)
  mkdir -p "$BUILD/corpus-new/$t" "$BUILD/artifacts/$t"
  echo "== fuzz_$t: $RUNS runs, max_len $MAX_LEN"
  start=$(date +%s)
  extra=()
  [ "${KEEP_GOING:-0}" = 1 ] && extra=(-fork=1 -ignore_crashes=1)
  if "$bin" "${extra[@]}" -runs="$RUNS" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      -artifact_prefix="$BUILD/artifacts/$t/" "$BUILD/corpus-new/$t" "$HERE/corpus/$t" \
      >"$BUILD/fuzz_$t.log" 2>&1; then
    echo "   ok in $(( $(date +%s) - start )) s: $(grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$BUILD/fuzz_$t.log" | tr -s ' ' | tr '\n' ' ')"
    grep -E '^#[0-9]+ +DONE' "$BUILD/fuzz_$t.log" || true
  else
    status=1
    echo "   FAILED after $(( $(date +%s) - start )) s; see $BUILD/fuzz_$t.log and $BUILD/artifacts/$t/"
    grep -E 'ERROR|runtime error|invariant|SUMMARY' "$BUILD/fuzz_$t.log" | head -n 5
  fi
done
exit $status
