"""Helpers for the all-in-one container checks (allinone.py) and the boot benchmark (bench/boot.py).

Everything is done from outside the container, as a user would: podman, its healthcheck, HTTP and
PostgreSQL on the published (host network) ports, and s6's own state read with `podman exec`.
"""
import datetime
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from vitals_testlib import free_port, wait_for  # noqa: E402,F401 - shared with the integration tests

IMAGE = os.environ.get("ALLINONE_IMAGE", "localhost/vitals-allinone:test")  # set by lib.sh


def run(*args, check=True, timeout=120, input=None):
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return p


def podman(*args, **kw):
    return run("podman", *args, **kw)


def http_get(url, timeout=3):
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def utc_epoch(text):
    """Seconds since the epoch of an ISO/RFC 3339 time (Z or +00:00) or PostgreSQL's '... UTC'."""
    text = text.strip().replace(" UTC", "+00:00").replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text.replace(" ", "T", 1)).timestamp()


class Container:
    """One podman container of the all-in-one image, on the host network."""

    def __init__(self, name, env=None, volume=None, mounts=(), image=IMAGE):
        self.name, self.env, self.volume, self.image = name, dict(env or {}), volume, image
        self.mounts = list(mounts)  # "HOST:CONTAINER[:OPTIONS]"
        self._tai = None

    def create(self):
        args = ["create", "--name", self.name, "--network", "host"]
        for k, v in self.env.items():
            args += ["-e", f"{k}={v}"]
        if self.volume:
            args += ["-v", f"{self.volume}:/data"]
        for m in self.mounts:
            args += ["-v", m]
        podman("rm", "-f", "-t", "0", self.name, check=False)
        podman(*args, self.image)
        return self

    def start(self):
        podman("start", self.name)
        self._tai = None
        return self

    def run(self):
        return self.create().start()

    def remove(self):
        podman("rm", "-f", "-t", "0", self.name, check=False)

    def exec(self, *cmd, check=True, timeout=60):
        return podman("exec", self.name, *cmd, check=check, timeout=timeout)

    def inspect(self, fmt):
        return podman("inspect", self.name, "--format", fmt).stdout.strip()

    def running(self):
        return self.inspect("{{.State.Running}}") == "true"

    def logs(self):
        """Everything the container wrote: its stdout (the services: run scripts say exec 2>&1),
        then its stderr (s6-overlay's own lines); podman keeps the two apart."""
        p = podman("logs", self.name, check=False)
        return p.stdout + p.stderr

    def stdout(self):
        return podman("logs", self.name, check=False).stdout

    def healthcheck(self):
        """`podman healthcheck run` (the image's HEALTHCHECK, i.e. `vitals check`):
        (exit code, its output, the container's health status afterwards)."""
        p = podman("healthcheck", "run", self.name, check=False)
        return p.returncode, (p.stdout + p.stderr).strip(), self.inspect("{{.State.Health.Status}}")

    def svstat(self, service):
        """s6's own view of a service: up, ready, pid and the up/ready times as epoch seconds."""
        out = self.exec("/command/s6-svstat", "-o", "up,ready,pid,updownsince,readysince",
                        f"/run/service/{service}").stdout.split()
        up, ready, pid, since, readysince = out
        return {"up": up == "true", "ready": ready == "true", "pid": int(pid),
                "since": self.tai_epoch(since), "readysince": self.tai_epoch(readysince)}

    def tai_epoch(self, label):
        """A TAI64N label from s6 as epoch seconds; the TAI-UTC offset s6 uses is measured once
        per container (s6-tai64n stamps a line while `date` reads the clock)."""
        if self._tai is None:
            out = self.exec("sh", "-c", "date +%s.%N; echo | /command/s6-tai64n; date +%s.%N").stdout.split()
            before, label0, after = float(out[0]), out[1], float(out[2])
            self._tai = round(self._tai_raw(label0) - (before + after) / 2)
        return self._tai_raw(label) - self._tai

    @staticmethod
    def _tai_raw(label):
        h = label.lstrip("@")
        return int(h[:16], 16) - (1 << 62) + int(h[16:24], 16) / 1e9


def health(port, probe=None):
    status, body = http_get(f"http://127.0.0.1:{port}/health" + (f"/{probe}" if probe else ""))
    doc = json.loads(body)
    return doc["probe"] if probe else doc


def mcp_initialize(port):
    """POSTs an MCP initialize to the server; returns the serverInfo name it answers with."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "allinone-test", "version": "1"}}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", data=body, method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
    with urllib.request.urlopen(req, timeout=5) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if line.startswith("data:"):
            text = line[5:]
    return json.loads(text)["result"]["serverInfo"]["name"]


class Checks:
    """ok/bad counters printing TAP-like lines and the closing 'N passed, N failed'."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"  ok   - {what}" + (f": {detail}" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"  FAIL - {what}" + (f": {detail}" if detail else ""), flush=True)
        return cond

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1
