#!/usr/bin/env python3
"""Crash isolation costs and robustness (issue 13), `isolation: process` beside `isolation: thread`
in the same run. Usage: bench/crash_isolation.sh (builds, then runs this with VITALS and FAKES).

  overhead  200 tcp probes at 100 ms (2,000 runs/s) for RUN_SECS, thread and process interleaved
            REPS times: CPU (agent + workers, utime+stime) per run; the difference is the per-run
            overhead of a worker process.
  memory    total PSS (/proc/PID/smaps_rollup) of agent + workers: config/container.yaml (ports
            pointing at nothing: the probes fail fast, the code and connections are what count) at
            its default and with every probe isolated; 2,000 tcp probes isolated.
  scale     2,000 tcp probes at 1 s, isolated: CPU % of a core (agent + workers) and slip p99.
  storm     a probe that segfaults on every run (interval 100 ms) beside 20 healthy ones for
            STORM_SECS: agent RSS, threads and fds at start and end, the healthy probes' slip p99
            and /health p99 against a quiet run of the same 20.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

VITALS = os.environ["VITALS"]
FAKES = os.environ["FAKES"]
REPO = os.environ["REPO"]
OUT = os.environ.get("OUT", "/tmp/vitals-bench/crash_isolation")
REPS = int(os.environ.get("REPS", "3"))
RUN_SECS = float(os.environ.get("RUN_SECS", "15"))
SCALE_SECS = float(os.environ.get("SCALE_SECS", "30"))
STORM_SECS = float(os.environ.get("STORM_SECS", "300"))
TICK = os.sysconf("SC_CLK_TCK")
os.makedirs(OUT, exist_ok=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)

    def serve():
        while True:
            c, _ = s.accept()
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    return s.getsockname()[1]


DEP = listener()


class Agent:
    def __init__(self, name, text, env=None):
        self.port = free_port()
        path = os.path.join(OUT, name + ".yaml")
        head = "" if env else f"listen: 127.0.0.1:{self.port}\nstart_period: 0s\n"
        with open(path, "w") as f:
            f.write(head + text)
        if env:
            env = dict(os.environ, VITALS_LISTEN=f"127.0.0.1:{self.port}", **env)
        self.log = open(os.path.join(OUT, name + ".log"), "w")
        self.proc = subprocess.Popen([VITALS, "run", "-c", path], stderr=self.log, env=env)
        for _ in range(500):
            try:
                self.get("/livez")
                break
            except OSError:
                time.sleep(0.02)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            return e.read()

    def health(self):
        return json.loads(self.get("/health"))

    def pids(self):
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
                             capture_output=True, text=True).stdout.split()
        return [self.proc.pid] + [int(p) for p in out]

    def ticks(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    def pss_kb(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    total += int(re.search(r"^Pss:\s+(\d+)", f.read(), re.M).group(1))
            except OSError:
                pass
        return total

    def counts(self):
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            status = f.read()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
        return rss, threads, len(os.listdir(f"/proc/{pid}/fd"))

    def runs(self):
        text = self.get("/metrics").decode()
        return sum(float(v) for v in re.findall(r"^vitals_probe_runs_total\{[^}]*\} (\S+)$", text,
                                                 re.M))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()


def tcp_probes(n, interval, timeout, isolation):
    return "probes:\n" + "".join(
        f"  tcp{i}: {{plugin: tcp, interval: {interval}, timeout: {timeout}, "
        f"isolation: {isolation}, options: {{port: {DEP}}}}}\n" for i in range(n))


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def slip_p99(agent, secs, names=None):
    """Polls /health every 200 ms; each new checked_at of a probe is a run; slip = gap - interval."""
    seen, gaps = {}, []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for name, p in agent.health()["probes"].items():
            if names and name not in names:
                continue
            at = p.get("checked_at")
            if not at:
                continue
            prev = seen.get(name)
            if prev and prev[0] != at:
                t = time.mktime(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) + float(at[19:-1] or 0)
                gaps.append(t - prev[1])
            if not prev or prev[0] != at:
                t = time.mktime(time.strptime(at[:19], "%Y-%m-%dT%H:%M:%S")) + float(at[19:-1] or 0)
                seen[name] = (at, t)
        time.sleep(0.2)
    return gaps


def overhead():
    per_run = {"thread": [], "process": []}
    for rep in range(REPS):
        for iso in ("thread", "process"):
            a = Agent(f"overhead-{iso}", tcp_probes(200, "100ms", "50ms", iso))
            time.sleep(2)
            t0, r0 = a.ticks(), a.runs()
            time.sleep(RUN_SECS)
            t1, r1 = a.ticks(), a.runs()
            a.stop()
            per_run[iso].append((t1 - t0) / TICK / max(1, r1 - r0) * 1e6)
    thread, process = statistics.median(per_run["thread"]), statistics.median(per_run["process"])
    diffs = [p - t for p, t in zip(per_run["process"], per_run["thread"])]
    return (f"| CPU per tcp run, 200 probes at 100 ms | {thread:.1f} µs | {process:.1f} µs | "
            f"overhead {statistics.median(diffs):.1f} µs/run (reps: "
            f"{', '.join(f'{d:.1f}' for d in diffs)}) |")


def memory():
    rows = []
    with open(os.path.join(REPO, "config", "container.yaml")) as f:
        container = f.read()
    password = os.path.join(OUT, "pgpass")
    with open(password, "w") as f:
        f.write("x\n")
    # Every service port points at nothing: the probes fail fast; code and threads are what count.
    env = {"COCOSEARCH_PG_PORT": "1", "COCOSEARCH_OLLAMA_PORT": "1", "COCOSEARCH_MCP_PORT": "1",
           "COCOSEARCH_PG_PASSWORD_FILE": password}
    pss = {}
    for iso in ("default", "process"):
        text = container if iso == "default" else "isolation: process\n" + container
        a = Agent(f"memory-{iso}", text, env)
        time.sleep(5)
        pss[iso] = a.pss_kb() / 1024
        workers = len(a.pids()) - 1
        a.stop()
        rows.append(f"| PSS, config/container.yaml, isolation {iso} | {pss[iso]:.1f} MB "
                    f"(agent + {workers} workers) |")
    return rows


def scale():
    a = Agent("scale-process", tcp_probes(2000, "1s", "500ms", "process"))
    time.sleep(5)
    t0 = a.ticks()
    start = time.monotonic()
    time.sleep(SCALE_SECS)
    cpu = (a.ticks() - t0) / TICK / (time.monotonic() - start) * 100
    pss = a.pss_kb() / 1024
    gaps = slip_p99(a, 20)
    a.stop()
    slip = pct([(g - 1.0) * 1000 for g in gaps], 0.99)
    return [f"| 2,000 tcp probes at 1 s, isolated: CPU (agent + workers) | {cpu:.1f} % of a core |",
            f"| 2,000 tcp probes at 1 s, isolated: slip p99 | {slip:.1f} ms ({len(gaps)} gaps) |",
            f"| 2,000 tcp probes at 1 s, isolated: PSS (agent + workers) | {pss:.1f} MB |"]


def health_p99(agent, secs):
    lat = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        t = time.perf_counter()
        agent.get("/health")
        lat.append((time.perf_counter() - t) * 1000)
        time.sleep(0.005)
    return pct(lat, 0.99)


def storm():
    healthy = "".join(f"  ok{i}: {{plugin: fake-ok, interval: 1s}}\n" for i in range(20))
    quiet_secs = min(60.0, STORM_SECS)
    q = Agent("storm-quiet", f"plugin_dir: {FAKES}\nprobes:\n" + healthy)
    time.sleep(2)
    quiet_gaps = []
    t = threading.Thread(target=lambda: quiet_gaps.extend(slip_p99(q, quiet_secs)))
    t.start()
    quiet_health = health_p99(q, quiet_secs)
    t.join()
    q.stop()
    s = Agent("storm", f"plugin_dir: {FAKES}\nprobes:\n" + healthy +
              "  boom: {plugin: fake-crash, tier: optional, interval: 100ms, timeout: 50ms, "
              "options: {mode: segv}}\n")
    time.sleep(5)
    before = s.counts()
    storm_gaps = []
    t = threading.Thread(target=lambda: storm_gaps.extend(
        slip_p99(s, STORM_SECS, {f"ok{i}" for i in range(20)})))
    t.start()
    storm_health = health_p99(s, STORM_SECS)
    t.join()
    after = s.counts()
    crashes = re.search(r'vitals_probe_crashes_total\{probe="boom"[^}]*\} (\S+)',
                        s.get("/metrics").decode()).group(1)
    s.stop()
    qs, ss = pct([(g - 1) * 1000 for g in quiet_gaps], 0.99), pct([(g - 1) * 1000 for g in storm_gaps], 0.99)
    return [f"| crash storm {STORM_SECS:.0f} s: crashes of the segfaulting probe | {float(crashes):.0f} |",
            f"| crash storm: agent RSS, threads, fds at start -> end | {before[0] / 1024:.1f} MB, "
            f"{before[1]}, {before[2]} -> {after[0] / 1024:.1f} MB, {after[1]}, {after[2]} |",
            f"| crash storm: healthy probes' slip p99, quiet -> storm | {qs:.1f} ms -> {ss:.1f} ms |",
            f"| crash storm: /health p99, quiet -> storm | {quiet_health:.2f} ms -> {storm_health:.2f} ms "
            f"({storm_health / quiet_health:.2f}x) |"]


def main():
    parts = sys.argv[1:] or ["overhead", "memory", "scale", "storm"]
    rows = []
    for part in parts:
        result = globals()[part]()
        rows.extend(result if isinstance(result, list) else [result])
        print("\n".join(rows[-(len(result) if isinstance(result, list) else 1):]), flush=True)
    with open(os.path.join(OUT, "rows.md"), "w") as f:
        f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
