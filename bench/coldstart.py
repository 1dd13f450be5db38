#!/usr/bin/env python3
"""Cold start of `vitals run -c config/container.yaml` (issue 16, item 5). Run by bench/coldstart.sh,
which starts the services the config names and exports COCOSEARCH_* / VITALS_LISTEN to point at them.

Each of RUNS starts (interleaved with a /bin/true spawn, the floor of starting any process here):
  listening  exec -> the listening socket accepts a connection: a connect() to the agent's port
             every 0.2 ms from just before Popen (monotonic clock);
  answered   exec -> the first GET /health, sent once listening, is answered (after the plugins
             are loaded and the probes created);
  first      per probe, exec -> its first recorded result: the oldest `history` entry's `at` (the
             end of the run, wall clock, 1 ms resolution) minus the wall time just before Popen;
             with that run's `duration_ms` and the probe's `start_interval`, the target being
             first <= start_interval + duration_ms.
Prints a markdown table (medians over the runs, min-max) and writes raw.json.
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

VITALS = os.environ["VITALS"]
CONFIG = os.environ["CONFIG"]
PORT = int(os.environ["AGENT_PORT"])
OUT = os.environ["OUT"]
RUNS = int(os.environ.get("RUNS", "20"))
POLL_S = 0.0002
# The config's start_interval per probe (container.yaml: ollama 25ms; default min(250ms, interval)).
START_INTERVAL_MS = json.loads(os.environ["START_INTERVALS"])


def accepts():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.05)  # loopback: refused or accepted at once
    try:
        return s.connect_ex(("127.0.0.1", PORT)) == 0
    finally:
        s.close()


def get_health():
    url = f"http://127.0.0.1:{PORT}/health?history=120"
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:  # 503 while starting: the body is the same JSON
        return json.load(e)


def parse_at(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def one_start(i):
    log = open(os.path.join(OUT, f"agent{i}.log"), "w")
    wall0 = time.time()
    t0 = time.monotonic()
    proc = subprocess.Popen([VITALS, "run", "-c", CONFIG], stderr=log, stdout=log)
    listen_ms = None
    while time.monotonic() - t0 < 5:
        if accepts():
            listen_ms = (time.monotonic() - t0) * 1000
            break
        if proc.poll() is not None:
            raise SystemExit(f"run {i}: the agent exited ({proc.returncode}); see {log.name}")
        time.sleep(POLL_S)
    if listen_ms is None:
        raise SystemExit(f"run {i}: not listening after 5 s")
    first = {}
    answer_ms = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        h = get_health()
        if answer_ms is None:
            answer_ms = (time.monotonic() - t0) * 1000
        for name, p in h["probes"].items():
            if p.get("history"):
                r = p["history"][-1]  # newest first: the last is the first run
                first[name] = {"first_ms": (parse_at(r["at"]) - wall0) * 1000,
                               "duration_ms": r["duration_ms"], "status": r["status"],
                               "stage": r.get("stage", ""), "message": r.get("message", "")}
        if len(first) == len(h["probes"]):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    # The spawn floor, right after: exec of /bin/true until it has exited.
    t1 = time.monotonic()
    subprocess.run(["/bin/true"], check=True)
    floor_ms = (time.monotonic() - t1) * 1000
    return {"listen_ms": listen_ms, "answer_ms": answer_ms, "floor_ms": floor_ms, "probes": first}


def span(vals):
    return f"**{statistics.median(vals):.1f}** ({min(vals):.1f}–{max(vals):.1f})"


def main():
    runs = []
    for i in range(RUNS):
        runs.append(one_start(i))
        time.sleep(0.2)
    json.dump(runs, open(os.path.join(OUT, "raw.json"), "w"), indent=1)
    listen = [r["listen_ms"] for r in runs]
    floor = [r["floor_ms"] for r in runs]
    lm = statistics.median(listen)
    print(f"| figure ({RUNS} starts) | median (min–max) ms | target | verdict |")
    print("|---|---|---|---|")
    print(f"| exec → listening socket accepts | {span(listen)} | ≤ 10 ms | "
          f"{'met' if lm <= 10 else 'MISSED'} |")
    print(f"| exec → first `/health` answered (asked once listening; the probes are in) | "
          f"{span([r['answer_ms'] for r in runs])} | | |")
    print(f"| for scale: spawn of /bin/true until it exited | {span(floor)} | | |")
    names = sorted({n for r in runs for n in r["probes"]})
    verdicts = []
    for name in names:
        got = [r["probes"][name] for r in runs if name in r["probes"]]
        first = [g["first_ms"] for g in got]
        dur = [g["duration_ms"] for g in got]
        si = START_INTERVAL_MS[name]
        slack = [g["first_ms"] - si - g["duration_ms"] for g in got]
        ok = sum(s <= 0 for s in slack)
        verdicts.append(statistics.median(slack) <= 0)
        statuses = sorted({f"{g['status']} at {g['stage']}" for g in got})
        print(f"| exec → first recorded result of `{name}` ({', '.join(statuses)}; "
              f"{len(got)}/{RUNS} runs) | {span(first)}; its run took {span(dur)} | "
              f"≤ start_interval {si} ms + the run | median slack "
              f"{statistics.median(slack):+.1f} ms, met in {ok}/{len(got)} starts: "
              f"{'met' if verdicts[-1] else 'MISSED'} |")
    print()
    print(f"Targets: listening ≤ 10 ms: **{lm:.1f} ms** ({'met' if lm <= 10 else 'MISSED'}); "
          f"first result ≤ start_interval + the probe's own time (median slack ≤ 0): met for "
          f"{sum(verdicts)}/{len(verdicts)} probes ({'met' if all(verdicts) else 'MISSED'}).")
    example = runs[-1]["probes"]
    print()
    print("Last start's first results: " + "; ".join(
        f"`{n}` {p['status']} at {p['stage']}: {p['message'][:100]}" for n, p in sorted(example.items())))


if __name__ == "__main__":
    sys.exit(main())
