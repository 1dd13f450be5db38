#!/usr/bin/env python3
"""The all-in-one container's boot timeline, shipped design (vitals) against the seed's
(s6-notifyoncheck + pg_isready + curl), in the same image; run by bench/boot.sh.

For every boot (`podman start` of a container whose cluster already exists), on one clock:
  t0            just before `podman start`
  could[svc]    when the service could first pass its check, from its own log line:
                  postgresql  PostgreSQL's "database system is ready to accept connections"
                  ollama      "Listening on" (seed: /api/tags answers) or, for vitals, whose check
                              is "model loaded", the stand-in's "llama runner started" line
                  mcp         vitals: the server's "first initialize answered" (its port answering
                              an initialize); seed: its "listening on" (the seed has no MCP check)
  up/ready[svc] s6-svstat's updownsince / readysince (TAI64N, nanoseconds)
  healthy       first `podman healthcheck run` that says healthy (polled every 250 ms)
  run[svc]      vitals only: how long the passing probe run took (`vitals notify`'s info line)
Overhead of a hop = ready - could. Chain overhead = the whole readiness time minus what the services
themselves took: ready[mcp] - could[mcp] + up[mcp] - max(could[postgresql], could[ollama]); for the
seed, whose svc-mcp has no readiness check, only the second term.

Usage: boot.py RUNS OUT_DIR   (images built by boot.sh; prints a table, writes OUT_DIR/boot.json)
"""
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "container"))
from ctlib import Container, free_port, podman, utc_epoch, wait_for  # noqa: E402

DESIGNS = {"vitals": "localhost/vitals-allinone:test", "seed": "localhost/vitals-allinone-seed:test"}
LOAD_SECONDS = "2"

# Not anchored to the start of a line: s6-overlay merges every service's output into one stream, so
# a line can follow another service's unfinished one (initdb's "selecting ... " progress, say).
PATTERNS = {
    "postgresql": re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ UTC) \[\d+\] LOG:  database system is ready to accept connections"),
    "ollama-listening": re.compile(r'time=(\S+) .*msg="Listening on'),
    "ollama-loaded": re.compile(r'time=(\S+) .*msg="llama runner started'),
    "mcp-listening": re.compile(r"listening on \d+ at (\S+)"),
    "mcp-initialize": re.compile(r"first initialize answered at (\S+)"),
}
RUN_TOOK = re.compile(r"\[vitals\] probe (\w+) passed after [\d.]+ms \(that run took ([\d.]+)ms\)")


def last_time(logs, key):
    found = PATTERNS[key].findall(logs)
    return utc_epoch(found[-1]) if found else None


def boot(c, design):
    """One boot; returns its timeline in ms since t0."""
    seen = len(c.stdout())  # what earlier boots wrote
    t0 = time.time()
    c.start()

    def healthy():
        return c.healthcheck()[2] == "healthy"
    wait_for(healthy, 300, interval=0.25, what=f"{design} healthy")
    t_healthy = time.time()
    st = {s: c.svstat(f"svc-{s}") for s in ("postgresql", "ollama", "mcp")}
    logs = c.logs()
    could = {
        "postgresql": last_time(logs, "postgresql"),
        "ollama": last_time(logs, "ollama-loaded" if design == "vitals" else "ollama-listening"),
        "mcp": last_time(logs, "mcp-initialize" if design == "vitals" else "mcp-listening"),
    }
    podman("stop", "-t", "30", c.name, timeout=60)
    ms = lambda t: None if t is None else round((t - t0) * 1000, 1)  # noqa: E731
    row = {"healthy": ms(t_healthy)}
    for s in st:
        row[f"{s}.could"] = ms(could[s])
        row[f"{s}.up"] = ms(st[s]["since"])
        row[f"{s}.ready"] = ms(st[s]["readysince"])
        row[f"{s}.overhead"] = None if could[s] is None else round((st[s]["readysince"] - could[s]) * 1000, 1)
    row["mcp.listening"] = ms(last_time(logs, "mcp-listening"))
    if design == "vitals":
        row["ollama.listening"] = ms(last_time(logs, "ollama-listening"))
        for probe, took in RUN_TOOK.findall(c.stdout()[seen:]):
            row[f"{probe}.run"] = float(took)
    first = max(could["postgresql"], could["ollama"])
    chain = st["mcp"]["since"] - first
    if design == "vitals":
        chain += st["mcp"]["readysince"] - could["mcp"]
    row["chain.overhead"] = round(chain * 1000, 1)
    return row


def main():
    runs, out = int(sys.argv[1]), sys.argv[2]
    results = {}
    for design, image in DESIGNS.items():
        env = {"COCOSEARCH_PG_PORT": free_port(), "COCOSEARCH_MCP_PORT": free_port(),
               "COCOSEARCH_OLLAMA_PORT": free_port(), "VITALS_LISTEN": f"127.0.0.1:{free_port()}",
               "FAKE_OLLAMA_LOAD_SECONDS": LOAD_SECONDS, "COCOSEARCH_LOG_LEVEL": "info"}
        name = f"vitals-boot-{design}-{os.getpid()}"
        c = Container(name, env=env, volume=name, image=image).create()
        try:
            boot(c, design)  # first boot: initdb, not counted
            rows = []
            for i in range(runs):
                rows.append(boot(c, design))
                print(f"{design} boot {i + 1}: " + " ".join(f"{k}={v}" for k, v in rows[-1].items()), flush=True)
            results[design] = rows
        finally:
            c.remove()
            podman("volume", "rm", "-f", name, check=False)
    with open(os.path.join(out, "boot.json"), "w") as f:
        json.dump(results, f, indent=1)

    def med(design, key):
        vals = [r[key] for r in results[design] if r.get(key) is not None]
        return statistics.median(vals) if vals else float("nan")
    keys = ["postgresql.overhead", "postgresql.run", "ollama.overhead", "ollama.run", "mcp.overhead",
            "mcp.run", "chain.overhead", "postgresql.ready", "ollama.ready", "mcp.listening",
            "mcp.ready", "healthy"]
    print(f"\nmedians over {runs} boots (ms; overheads = s6 ready - service could pass its check):")
    print(f"{'':22}{'vitals':>10}{'seed':>10}")
    for k in keys:
        print(f"{k:22}{med('vitals', k):10.1f}{med('seed', k):10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
