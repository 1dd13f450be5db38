"""Shared helpers for the integration tests: run the real `vitals` binary against real servers.

Environment (set by ctest, see tests/CMakeLists.txt):
  VITALS_BIN         path of the built `vitals` binary
  VITALS_SOURCE_DIR  the source tree (fixtures live under tests/ and ../shared is NOT assumed)
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

VITALS = os.environ.get("VITALS_BIN", "vitals")
SOURCE_DIR = os.environ.get(
    "VITALS_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def free_port():
    """An ephemeral loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout=10.0, interval=0.02, what="condition"):
    """Polls predicate() until it returns a truthy value; returns it or raises AssertionError."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def wait_port(port, host="127.0.0.1", timeout=10.0):
    def up():
        with socket.socket() as s:
            s.settimeout(0.2)
            return s.connect_ex((host, port)) == 0
    wait_for(up, timeout, what=f"{host}:{port} to accept connections")


def http_get(url, timeout=5.0, method="GET", headers=None):
    """Returns (status, body text, headers dict) without raising on 4xx/5xx."""
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class Listener:
    """A dependency for the tcp probe on a free local port: accepts and closes every connection
    (so its backlog never fills however long a test runs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self):
        self.sock.close()


class TempDir:
    def __init__(self, prefix="vitals-test-"):
        self.path = tempfile.mkdtemp(prefix=prefix)

    def file(self, name, text, mode=None):
        p = os.path.join(self.path, name)
        with open(p, "w") as f:
            f.write(text)
        if mode is not None:
            os.chmod(p, mode)
        return p

    def cleanup(self):
        shutil.rmtree(self.path, ignore_errors=True)


def run_vitals(*args, timeout=30, env=None, **kw):
    """Runs `vitals ARGS...`; returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([VITALS, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, **kw)


def once(config_path, probe, *extra, timeout=60):
    """`vitals once -c CONFIG --probe NAME --json`: returns (exit code, parsed JSON or None, proc)."""
    p = run_vitals("once", "-c", config_path, "--probe", probe, "--json", *extra, timeout=timeout)
    try:
        doc = json.loads(p.stdout)
    except ValueError:
        doc = None
    return p.returncode, doc, p


class Agent:
    """A running `vitals run -c CONFIG`, with stderr captured to a file."""

    def __init__(self, config_path, port, extra_args=(), env=None, pass_fds=(), preexec_fn=None):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = config_path + ".stderr"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([VITALS, "run", "-c", config_path, *extra_args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     pass_fds=pass_fds, preexec_fn=preexec_fn)
        wait_for(lambda: self.proc.poll() is not None or self._answers(), 15,
                 what="agent to listen")
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited with {self.proc.returncode}: {self.log()}")

    def _answers(self):
        try:
            http_get(self.base + "/livez", timeout=0.5)
            return True
        except OSError:
            return False

    def get(self, path, **kw):
        return http_get(self.base + path, **kw)

    def health(self):
        status, body, _ = self.get("/health")
        return status, json.loads(body)

    def probe(self, name):
        return self.health()[1]["probes"][name]

    def wait_probe(self, name, status, timeout=15.0):
        """Waits until probes.<name>.status == status; returns that probe's JSON."""
        return wait_for(lambda: (p := self.probe(name))["status"] == status and p, timeout,
                        what=f"probe {name} to be {status}")

    def wait_status(self, status, timeout=15.0):
        return wait_for(lambda: (h := self.health()[1])["status"] == status and h, timeout,
                        what=f"overall status {status}")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def log(self):
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class VitalsTestCase(unittest.TestCase):
    """Gives each test a temp dir (self.tmp) and stops every Agent/process it registered."""

    def setUp(self):
        self.tmp = TempDir()
        self._procs = []
        self.addCleanup(self.tmp.cleanup)

    def start_agent(self, config_text, **kw):
        port = kw.pop("port", None) or free_port()
        cfg = self.tmp.file("vitals.yaml", config_text.replace("@PORT@", str(port)))
        agent = Agent(cfg, port, **kw)
        self.addCleanup(agent.stop)
        return agent

    def spawn(self, args, **kw):
        """Starts a helper process (server, fake) that is killed at the end of the test."""
        p = subprocess.Popen(args, **kw)

        def kill():
            if p.poll() is None:
                p.kill()
            p.wait()
        self.addCleanup(kill)
        return p


class Trickle:
    """A server that never finishes an answer: after the request it sends `head` (the status line
    and headers) at once, or one byte at a time with `slow_head`, then one body byte every
    300 ms, for up to 60 s. A client whose deadline bounds each read only keeps reading;
    `ended` holds how long each connection lasted (seconds) once the client dropped it."""

    def __init__(self, head=b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000\r\n\r\n", slow_head=False):
        self.head, self.slow_head = head, slow_head
        self.accepted = 0
        self.ended = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        start = time.monotonic()
        try:
            conn.recv(65536)
            if self.slow_head:
                for i in range(len(self.head) - 2):  # never the blank line that ends the head
                    conn.send(self.head[i:i + 1])
                    time.sleep(0.3)
                while time.monotonic() - start < 60 and not self.stop:
                    conn.send(b"X")  # an endless header name
                    time.sleep(0.3)
            else:
                conn.sendall(self.head)
                while time.monotonic() - start < 60 and not self.stop:
                    conn.send(b" ")
                    time.sleep(0.3)
        except OSError:
            pass
        finally:
            self.ended.append(time.monotonic() - start)
            conn.close()

    def close(self):
        self.stop = True
        self.sock.close()
