#!/usr/bin/env bash
# Issue 16, item 5: cold start of `vitals run -c config/container.yaml` (the shipped file, its
# ${VAR}s pointing at local stand-ins): exec -> listening, and exec -> each probe's first recorded
# result against one start_interval + the probe's own time (bench/coldstart.py says how).
# The services: a real PostgreSQL 15 (trust: the container's password is left out), the fake
# Ollama (tests/fakes/ollama, model loaded) and the MCP server of tests/fixtures/mcp (the official
# TypeScript SDK; needs node and `npm ci` there, else nothing listens on its port and the mcp probe
# fails fast, still a recorded result; the table says which).
# Knobs: RUNS=20 (and lib.sh's VITALS_BUILD, OUT, NO_RESULTS).
set -euo pipefail
# shellcheck source=bench/lib.sh disable=SC1091
. "$(dirname "$0")/lib.sh"
RUNS=${RUNS:-20}
OUT=${OUT:-/tmp/vitals-bench/coldstart}
need python3 curl
build_vitals
rm -rf "$OUT"
mkdir -p "$OUT"
chmod 755 "$OUT"
AGENT_PORT=$(free_port)
on_exit() { stop_pg "$OUT/pg"; }
stop_pids_on_exit
start_mission_deps "$OUT"
MCP_TEXT="the MCP server of tests/fixtures/mcp"
[ "$MCP" = 1 ] || MCP_TEXT="nothing (no node or no npm ci in tests/fixtures/mcp): the mcp probe fails fast"

export VITALS CONFIG="$REPO/config/container.yaml" AGENT_PORT OUT RUNS
export VITALS_LISTEN="127.0.0.1:$AGENT_PORT" COCOSEARCH_PG_PORT=$PG_PORT COCOSEARCH_PG_DB=postgres \
  COCOSEARCH_PG_USER=postgres COCOSEARCH_PG_PASSWORD_FILE='' COCOSEARCH_OLLAMA_PORT=$OLLAMA_PORT \
  COCOSEARCH_MCP_PORT=$MCP_PORT VITALS_START_PERIOD=180s
# The probes' start_interval in config/container.yaml (default min(250ms, interval)).
export START_INTERVALS='{"postgresql": 250, "ollama": 25, "mcp": 250}'
"$VITALS" validate -c "$CONFIG" >/dev/null
python3 "$BENCH_DIR/coldstart.py" | tee "$OUT/table.md"

# The same work counted in instructions (valgrind's callgrind, user space only): unlike the times,
# this does not move with the machine's load. `vitals` (static) hands `run` to the agent executable
# at once: its part is counted alone, from a copy with no agent executable beside it (callgrind does
# not follow an exec). To the listen(): the
# agent executable until it loads libvitals-core.so (callgrind's first dump, taken before the
# first dlopen).
if command -v valgrind >/dev/null; then
  instr() { { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null || true; } |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'; }
  AGENT_EXE=$VITALS_BUILD/lib/vitals/vitals
  rm -f "$OUT"/listen.cg*
  timeout 60 valgrind --tool=callgrind --callgrind-out-file="$OUT/listen.cg" --dump-before='dlopen*' \
    "$AGENT_EXE" run -c "$CONFIG" --notify-fd 999 >/dev/null 2>&1 || true  # exits: fd 999 not open
  to_listen=$(sed -n 's/^summary: //p' "$OUT/listen.cg.1")
  # `vitals` alone, with no agent executable to run: what it does before the exec, then it exits.
  mkdir -p "$OUT/alone/bin"
  cp "$VITALS" "$OUT/alone/bin/"
  handover=$(instr "$OUT/alone/bin/vitals" run -c "$CONFIG")
  core=$(instr "$AGENT_EXE" version)
  prepared=$(instr "$AGENT_EXE" validate -c "$CONFIG")
  floor=$(instr /bin/true)
  python3 - "$handover" "$to_listen" "$core" "$prepared" "$floor" >>"$OUT/table.md" <<'PY'
import sys
handover, listen, core, prepared, floor = (int(x) / 1e6 for x in sys.argv[1:6])
print(f"\nWork (callgrind, user-space instructions; independent of the load): `vitals` handing "
      f"`run` to the agent executable {handover:.2f} M; then to the listen() "
      f"**{listen:.2f} M** (command line, `listen:` of the config, socket; then it "
      f"loads the agent library and hands the socket over); `vitals version` {core:.1f} M (the "
      f"agent executable loading libvitals-core.so with Poco, yaml-cpp, spdlog); `vitals validate` "
      f"(parse, load the plugins the probes use, create the probes: what comes before the first "
      f"runs) {prepared:.1f} M; /bin/true {floor:.2f} M.")
PY
  tail -n 2 "$OUT/table.md"
fi

# Where the time to the first runs goes: dlopen() of the agent library, then of each plugin, timed
# in a fresh process (Python's ctypes, RTLD_NOW as the agent loads plugins); medians of 5.
python3 - "$VITALS_BUILD/lib/vitals" >>"$OUT/table.md" <<'PY'
import os, statistics, subprocess, sys
lib = sys.argv[1]
objs = [f"{lib}/libvitals-core.so"] + sorted(
    f"{lib}/plugins/{f}" for f in os.listdir(f"{lib}/plugins") if f.endswith(".so"))
code = ("import ctypes, os, sys, time\n"
        "for p in sys.argv[1:]:\n"
        "    t = time.monotonic(); ctypes.CDLL(p, mode=os.RTLD_NOW | os.RTLD_LOCAL)\n"
        "    print((time.monotonic() - t) * 1000)\n")
runs = [list(map(float, subprocess.run([sys.executable, "-c", code, *objs], check=True,
                                       capture_output=True, text=True).stdout.split()))
        for _ in range(5)]
cells = [f"{os.path.basename(o)} {statistics.median(r[i] for r in runs):.1f} ms"
         for i, o in enumerate(objs)]
print("\nLoading, in that order (dlopen in a fresh process, medians of 5): " + ", ".join(cells) + ".")
PY
tail -n 1 "$OUT/table.md"

{
  echo "## 10. Cold start (\`bench/coldstart.sh\`)"
  echo
  echo "Run $DATE_START on $(machine_line); load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Command: \`bench/coldstart.sh\` (RUNS=$RUNS): \`vitals run -c config/container.yaml\` started $RUNS times"
  echo "against a real PostgreSQL 15 (trust, no password), the fake Ollama (model loaded) and $MCP_TEXT."
  echo "Listening: a connect() every 0.2 ms from just before the exec (Python's \`Popen\`, so the"
  echo "spawn itself is included; the /bin/true row is that cost alone). First result: the oldest"
  echo "\`/health?history=120\` entry's \`at\` (the run's end, 1 ms resolution) minus the wall time before"
  echo "the exec; slack = first − start_interval − the run's \`duration_ms\` (≤ 0: met)."
  echo
  cat "$OUT/table.md"
} >"$OUT/section.md"
results_section coldstart "$OUT/section.md"
