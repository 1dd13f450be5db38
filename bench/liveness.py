#!/usr/bin/env python3
"""A wedged MCP server in the all-in-one container (run by bench/liveness.sh).

vitals: one container of the shipped image, shipped config (mcp probe every 15 s, failure
threshold 2, liveness after 3 failed runs, at most 3 restarts in 15m). RUNS times: `kill -STOP` of
svc-mcp's process, then GET /health every 100 ms (what `vitals check`, the HEALTHCHECK, answers)
until it has been unhealthy and is healthy again; recorded: seconds from the wedge to unhealthy
and to healthy again, and whether PostgreSQL's and Ollama's pids stayed. Then one wedge more than
the budget: vitals gives up (its log line), and /health stays unhealthy: the orchestrator's turn.

seed: the seed's image (bench/seed-image: no readiness checks, HEALTHCHECK = pg_isready + curl +
curl, --interval=30s --timeout=10s --retries=3). `kill -STOP` of its MCP server, then its
HEALTHCHECK run the way Docker runs it, every 30 s: the time it turns unhealthy, and whether
anything changes in the 2 minutes after (nothing restarts the server). Under podman 4.3 a check
hangs (podman does not apply --timeout to `podman healthcheck run`; the seed's curl has no
--max-time): such a check is recorded as hung.

Usage: liveness.py RUNS OUT_DIR
"""
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "container"))
from ctlib import IMAGE, Container, free_port, health, podman, wait_for  # noqa: E402

RUNS, OUT = int(sys.argv[1]), sys.argv[2]
SEED_IMAGE = os.environ.get("SEED_IMAGE", "localhost/vitals-allinone-seed:test")
TAG = f"vitals-liveness-{os.getpid()}"
PORTS = {"pg": free_port(), "mcp": free_port(), "ollama": free_port(), "vitals": free_port()}
ENV = {"COCOSEARCH_PG_PORT": PORTS["pg"], "COCOSEARCH_MCP_PORT": PORTS["mcp"],
       "COCOSEARCH_OLLAMA_PORT": PORTS["ollama"], "VITALS_LISTEN": f"127.0.0.1:{PORTS['vitals']}",
       "FAKE_OLLAMA_LOAD_SECONDS": "2"}


def status():
    try:
        return health(PORTS["vitals"])["status"]
    except (OSError, ValueError, KeyError):
        return "unreachable"


def wedge(c, limit=240):
    """SIGSTOPs svc-mcp's process; returns (s to unhealthy, s to healthy again or None)."""
    pid = c.svstat("svc-mcp")["pid"]
    c.exec("sh", "-c", f"kill -STOP {pid}")
    t0 = time.monotonic()
    down = None
    while time.monotonic() - t0 < limit:
        s = status()
        if s != "healthy" and down is None:
            down = time.monotonic() - t0
        if s == "healthy" and down is not None:
            return down, time.monotonic() - t0
        time.sleep(0.1)
    return down, None


def vitals_side():
    c = Container(f"{TAG}-v", env=ENV, volume=f"{TAG}-v", image=IMAGE).run()
    rows = []
    try:
        wait_for(lambda: c.healthcheck()[2] == "healthy", 300, interval=1, what="healthy")
        others = {s: c.svstat(s)["pid"] for s in ("svc-postgresql", "svc-ollama", "svc-vitals")}
        for i in range(RUNS):
            down, up = wedge(c)
            same = {s: c.svstat(s)["pid"] for s in others} == others
            rows.append({"run": i + 1, "unhealthy_s": down, "healthy_again_s": up, "others_kept_pids": same})
            print(f"  vitals run {i + 1}: unhealthy after {down:.1f} s, healthy again after "
                  f"{up:.1f} s" if up else f"  vitals run {i + 1}: not healthy again ({down})",
                  f"(PostgreSQL, Ollama, agent pids kept: {same})", flush=True)
            time.sleep(2)
        # One wedge past the budget: vitals gives up, /health stays unhealthy.
        down, up = wedge(c, limit=120)
        gave_up = [line for line in c.stdout().splitlines() if "not restarting:" in line]
        rows.append({"run": "past the budget", "unhealthy_s": down, "healthy_again_s": up,
                     "gave_up_line": gave_up[-1] if gave_up else None})
        print(f"  vitals past the budget: unhealthy after {down:.1f} s, healthy again: {up}; "
              f"log: {gave_up[-1] if gave_up else 'no give-up line'}", flush=True)
        print(f"  /health probes.mcp.liveness: {json.dumps(health(PORTS['vitals'])['probes']['mcp'].get('liveness'))}")
    finally:
        podman("rm", "-f", "-t", "0", c.name, check=False)
        podman("volume", "rm", "-f", f"{TAG}-v", check=False)
    return rows


def seed_side():
    c = Container(f"{TAG}-s", env=ENV, volume=f"{TAG}-s", image=SEED_IMAGE).run()
    try:
        wait_for(lambda: c.healthcheck()[2] == "healthy", 300, interval=1, what="seed healthy")
        pid = c.svstat("svc-mcp")["pid"]
        c.exec("sh", "-c", f"kill -STOP {pid}")
        t0 = time.monotonic()
        checks = []
        # Docker's schedule: a check every --interval (30 s) after the previous one ended.
        while time.monotonic() - t0 < 210:
            time.sleep(30)
            try:
                rc, out, st = c.healthcheck()
            except subprocess.TimeoutExpired:
                # podman 4.3 does not stop the check at its --timeout: the seed's curl (no
                # --max-time) against a stopped server hangs. Docker would fail it after 10 s.
                rc, st = "hung past 120 s", c.inspect("{{.State.Health.Status}}")
            checks.append({"at_s": round(time.monotonic() - t0, 1), "exit": rc, "status": st})
            print(f"  seed check at {checks[-1]['at_s']} s: exit {rc}, container {st}", flush=True)
        unhealthy = next((x["at_s"] for x in checks if x["status"] == "unhealthy"), None)
        after = c.svstat("svc-mcp")
        return {"unhealthy_s": unhealthy, "checks": checks, "healthy_again": any(
            x["status"] == "healthy" for x in checks if unhealthy and x["at_s"] > unhealthy),
            "mcp_pid_unchanged": after["pid"] == pid}
    finally:
        podman("rm", "-f", "-t", "0", c.name, check=False)
        podman("volume", "rm", "-f", f"{TAG}-s", check=False)


def main():
    print(f"# vitals ({IMAGE}): shipped config, {RUNS} wedges of the MCP server", flush=True)
    rows = vitals_side()
    ok = [r["healthy_again_s"] for r in rows[:RUNS] if r["healthy_again_s"]]
    down = [r["unhealthy_s"] for r in rows[:RUNS] if r["unhealthy_s"]]
    result = {"vitals": rows}
    if ok:
        print(f"vitals: wedge -> healthy again median {statistics.median(ok):.1f} s "
              f"(min {min(ok):.1f}, max {max(ok):.1f}, {len(ok)}/{RUNS} runs); "
              f"wedge -> unhealthy median {statistics.median(down):.1f} s", flush=True)
    if os.environ.get("SEED", "1") != "0":
        print(f"# seed ({SEED_IMAGE}): its HEALTHCHECK every 30 s after the wedge", flush=True)
        seed = seed_side()
        result["seed"] = seed
        print(f"seed: unhealthy at {seed['unhealthy_s']} s, healthy again: {seed['healthy_again']}, "
              f"MCP server still the wedged process: {seed['mcp_pid_unchanged']}", flush=True)
    with open(os.path.join(OUT, "liveness.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
