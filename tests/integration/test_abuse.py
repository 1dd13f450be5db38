"""Fault and abuse suite: the agent under hostile HTTP clients, flapping dependencies, timing-out
and misbehaving probes, reload storms and signals under load, and a combined secrets check.

Each HTTP abuse test asserts that the agent survives and that a fresh GET /health, sent while the
abuse is going on, is answered 200 (within a generous 5 s bound; no latency is asserted). The time
that request took is printed to stderr as "FIGURE <name> <ms>" lines, which bench/abuse.sh
collects into bench/RESULTS.md.

Leak checks count the agent's threads (/proc/PID/task) and open fds (/proc/PID/fd) in a quiet
steady state before and after a fault episode. HTTP connections cost no thread (one event loop
serves them all), so the test's own requests do not change the count.
"""
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from vitals_testlib import VitalsTestCase, free_port, http_get, run_vitals, wait_for

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
NOFILE_WANTED = 8192


def setUpModule():
    # 1000 concurrent connections need more than the usual 1024 fds, in this process and in the
    # agent (which inherits the limit). The hard limit is left alone.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(hard, NOFILE_WANTED)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def figure(name, value_ms):
    print(f"FIGURE {name} {value_ms:.2f}", file=sys.stderr, flush=True)


class Listener:
    """A TCP listener standing in for a dependency; opened and closed by the test. It accepts and
    closes every connection, so its backlog never fills however long a test runs."""

    def __init__(self, port):
        self.port = port
        self.sock = None
        self.thread = None

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.thread = threading.Thread(target=self._accept, args=(self.sock,), daemon=True)
        self.thread.start()

    @staticmethod
    def _accept(sock):
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            conn.close()

    def close(self):
        if self.sock:
            # shutdown() wakes the accept() in the thread; close() alone would not.
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()
            self.thread.join()
            self.sock = None


def read_until(sock, done, timeout):
    """Reads until done(data) holds, the peer closes (or resets), or timeout; returns
    (bytes, closed)."""
    data = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not done(data):
        sock.settimeout(max(0.05, end - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_until_closed(sock, timeout=15.0):
    """Reads until the peer closes (or resets) the connection; returns (bytes, closed)."""
    return read_until(sock, lambda data: False, timeout)


def one_whole_response(data):
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    m = re.search(rb"\r\ncontent-length: *(\d+)", data[:head_end], re.I)
    return len(data) >= head_end + 4 + (int(m.group(1)) if m else 0)


def read_first_response(sock, timeout=10.0):
    """Reads until one whole response (headers + Content-Length body) is in, or the peer closes."""
    return read_until(sock, one_whole_response, timeout)


def parse_responses(data, head=False):
    """Splits a byte stream into HTTP/1.1 responses: [(status, headers dict, body)], rest.
    Answers to HEAD (head=True) have no body whatever their Content-Length says."""
    out = []
    while True:
        head_end = data.find(b"\r\n\r\n")
        if head_end < 0:
            return out, data
        lines = data[:head_end].decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            return out, data
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = 0 if head else int(headers.get("content-length", "0"))
        if len(data) < head_end + 4 + length:
            return out, data
        body = data[head_end + 4:head_end + 4 + length]
        out.append((int(m.group(1)), headers, body))
        data = data[head_end + 4 + length:]


def counts(pid):
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def describe(pid):
    """Threads and fds of pid, for failure messages."""
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return counts(pid), sorted(fds)


def steady_counts(pid, samples=9, gap=0.05):
    """The most frequent (threads, fds) pair over a few samples, ignoring a run caught in flight."""
    seen = []
    for _ in range(samples):
        seen.append(counts(pid))
        time.sleep(gap)
    return max(set(seen), key=seen.count)


BASE_CONFIG = """
listen: 127.0.0.1:@PORT@
start_period: 0s
probes:
  dep:
    plugin: tcp
    interval: 1s
    timeout: 500ms
    options: {{port: {dep_port}}}
"""


class AgentCase(VitalsTestCase):
    """An agent with one passing tcp probe, healthy before the test starts."""

    def setUp(self):
        super().setUp()
        self.dep = Listener(free_port())
        self.dep.open()
        self.addCleanup(self.dep.close)
        self.agent = self.start_agent(BASE_CONFIG.format(dep_port=self.dep.port))
        self.agent.wait_status("healthy")

    def connect(self, timeout=10.0):
        s = socket.create_connection(("127.0.0.1", self.agent.port), timeout=timeout)
        self.addCleanup(s.close)
        return s

    def assert_fresh_health(self, name):
        """A new connection's GET /health is answered 200 while the abuse goes on."""
        t0 = time.monotonic()
        status, body, _ = http_get(self.agent.base + "/health", timeout=5.0)
        figure(name, (time.monotonic() - t0) * 1000)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "healthy")

    def assert_alive(self):
        self.assertIsNone(self.agent.proc.poll(), self.agent.log())
        self.assertEqual(self.agent.get("/livez")[:2], (200, "ok\n"))


class HttpAbuse(AgentCase):
    def test_500_idle_slowloris_connections_are_dropped_and_health_still_answers(self):
        conns = []
        for _ in range(500):
            s = self.connect()
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
            conns.append(s)
        time.sleep(0.5)
        self.assert_fresh_health("slowloris_500_fresh_health_ms")
        # Every read has a deadline: the agent drops each half-sent request on its own.
        for s in conns:
            data, closed = read_until_closed(s, timeout=30.0)
            self.assertTrue(closed, "a half-sent request was never dropped")
            self.assertNotIn(b"HTTP/1.1 200", data)
        self.assert_alive()

    def test_oversized_headers_get_400(self):
        cases = {
            "one 64 KiB header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 65536 + b"\r\n\r\n",
            "64 KiB of small headers": b"GET /health HTTP/1.1\r\nHost: x\r\n" +
                                        b"".join(b"X-%d: v\r\n" % i for i in range(8000)) + b"\r\n",
            "64 KiB header name": b"GET /health HTTP/1.1\r\n" + b"X" * 65536 + b": v\r\n\r\n",
            "64 KiB request target": b"GET /health?" + b"a" * 65536 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        for what, request in cases.items():
            with self.subTest(what):
                s = self.connect()
                try:
                    s.sendall(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the agent answered and closed before reading everything
                data, closed = read_until_closed(s)
                self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:80])
                self.assertTrue(closed)
        self.assert_fresh_health("oversized_headers_fresh_health_ms")
        self.assert_alive()

    def test_malformed_request_lines_get_400_and_a_close(self):
        requests = [
            b"GARBAGE\r\n\r\n",
            b"\r\n\r\n\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /health\r\n\r\n",
            b"M" * 10000 + b" /health HTTP/1.1\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 4,  # a TLS hello
            bytes(range(256)) * 16,
        ]
        for request in requests:
            with self.subTest(request=request[:40]):
                s = self.connect()
                try:
                    s.sendall(request)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                data, closed = read_until_closed(s)
                self.assertTrue(data.startswith(b"HTTP/1.1 400 "), data[:80])
                self.assertTrue(closed)
        self.assert_fresh_health("malformed_fresh_health_ms")
        self.assert_alive()

    def test_a_client_that_half_closes_gets_its_answer_and_then_the_end(self):
        # Request and FIN sent back to back (`printf ... | nc -N`, a script's shutdown(SHUT_WR)):
        # on loopback both are queued before the agent reads, so the FIN brings no event of its
        # own. The agent must still see it: answer, then close at once, not at the 10 s
        # keep-alive deadline (or the 5 s request deadline for half a head, or after a 2 s linger
        # for HTTP/1.0). The 4 s read bound is below all three.
        cases = {
            "HTTP/1.1 keep-alive": (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 "),
            "HTTP/1.0": (b"GET /health HTTP/1.0\r\n\r\n", b"HTTP/1.1 200 "),
            "half a head": (b"GET /health HTTP/1.1\r\nHo", b""),
        }
        for what, (request, answer) in cases.items():
            with self.subTest(what):
                s = self.connect()
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
                data, closed = read_until_closed(s, timeout=4.0)
                self.assertTrue(closed, f"not closed after the client's FIN: {data[:80]!r}")
                self.assertTrue(data.startswith(answer), data[:80])
                if not answer:
                    self.assertEqual(data, b"")
        self.assert_alive()

    def test_clients_streaming_input_after_their_400_do_not_starve_the_others(self):
        # After a 400 the agent reads and discards until the client closes (or 2 s pass). Clients
        # that send faster than it reads keep their sockets readable: the loop must still take
        # its turn at every other connection, and end theirs at the deadline. Each flooder is a
        # process of its own, so that together they outpace the agent's one thread.
        flooder = (
            "import socket, sys\n"
            "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
            "s.sendall(b'GARBAGE\\r\\n\\r\\n')\n"
            "chunk = b'x' * (4 << 20)\n"
            "try:\n"
            "    while True:\n"
            "        s.sendall(chunk)\n"
            "except OSError:\n"
            "    pass  # closed by the agent at its linger deadline\n"
        )
        procs = [subprocess.Popen([sys.executable, "-c", flooder, str(self.agent.port)])
                 for _ in range(4)]
        try:
            time.sleep(0.3)
            for _ in range(5):
                self.assert_fresh_health("input_flood_fresh_health_ms")
                time.sleep(0.2)
            for p in procs:
                p.wait(timeout=15.0)  # the agent closed each at its deadline
        finally:
            for p in procs:
                p.kill()
                p.wait()
        self.assert_alive()

    def test_odd_but_parseable_requests_are_answered_or_closed(self):
        # Poco's head parser is lenient with some of these: what matters here is one
        # answer or a close, never a hang or a crash.
        requests = [
            b"GET /health HTTP/1.1 extra\r\n\r\n",
            b"GET /health HTTX/1.1\r\nHost: x\r\n\r\n",
            b"GET  HTTP/1.1\r\nHost: x\r\n\r\n",
            b"G\x00T /health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/1.1\r\nNo colon here\r\n\r\n",
            b"GET /health HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\n folded: continuation\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GET http://evil/health HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /health HTTP/1.1\n\n",
            b"GET /health HTTP/2.0\r\n\r\n",
        ]
        for request in requests:
            with self.subTest(request=request[:40]):
                s = self.connect()
                s.sendall(request)
                data, closed = read_first_response(s)
                if data:
                    self.assertRegex(data, rb"^\S+ [1-5]\d\d ", data[:80])
                else:
                    self.assertTrue(closed, "neither an answer nor a close")
                self.assertIsNone(self.agent.proc.poll(), self.agent.log())
        self.assert_fresh_health("odd_requests_fresh_health_ms")
        self.assert_alive()

    def test_pipelined_requests_are_answered_in_order(self):
        paths = ["/livez", "/health/dep", "/nope", "/readyz", "/health?format=line"] * 10
        request = b"".join(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % p.encode() for p in paths)
        s = self.connect()
        s.sendall(request)
        got, data = [], b""
        end = time.monotonic() + 15
        while len(got) < len(paths) and time.monotonic() < end:
            s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
            more, data = parse_responses(data)
            got += more
        self.assertEqual(len(got), len(paths))
        expected = {"/livez": (200, b"ok\n"), "/nope": (404, b"not found\n"),
                    "/readyz": (200, b"ok\n"), "/health?format=line": (200, b"healthy ready=true 1/1\n")}
        for path, (status, _, body) in zip(paths, got):
            if path == "/health/dep":
                self.assertEqual((status, json.loads(body)["probe"]["status"]), (200, "pass"))
            else:
                self.assertEqual((status, body), expected[path], path)
        self.assert_alive()

    def test_request_bodies_where_none_belong(self):
        cases = [
            # (request, expected status); every one ends with the agent closing the connection,
            # so an unread body is never taken for the next request.
            (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
            (b"HEAD /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 400),
            (b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 405),
            (b"PUT /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", 405),
            (b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400),
            # A declared body that never comes.
            (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", 400),
            # A request smuggled in a body: never answered.
            (b"GET /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 35\r\n\r\n"
             b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ]
        for request, status in cases:
            with self.subTest(request=request[:60]):
                s = self.connect()
                s.sendall(request)
                data, closed = read_until_closed(s)
                responses, rest = parse_responses(data, head=request.startswith(b"HEAD"))
                self.assertEqual([r[0] for r in responses], [status], data[:200])
                self.assertEqual(rest, b"")
                self.assertTrue(closed)
                self.assertNotIn(b"vitals_", data)
        self.assert_fresh_health("bodies_fresh_health_ms")
        self.assert_alive()

    @unittest.skipIf("ASAN_OPTIONS" in os.environ, "ASan's quarantine keeps freed memory resident")
    def test_idle_connections_give_back_what_a_burst_needed(self):
        # Two waves of 100 connections, each pipelining 200 /metrics requests and reading every
        # answer, then staying open and idle: each one needed ~256 KiB of output buffer at its
        # peak, which an idle connection must not keep (that was 50+ MB here).
        def rss_kb():
            with open(f"/proc/{self.agent.proc.pid}/status") as f:
                return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))

        burst = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200
        before = rss_kb()
        for _ in range(2):
            socks = [self.connect() for _ in range(100)]
            for s in socks:
                s.sendall(burst)
            for s in socks:
                data, _ = read_until(s, lambda d: d.count(b"HTTP/1.1 200 ") == 200, 30.0)
                self.assertEqual(data.count(b"HTTP/1.1 200 "), 200)
        grown_mb = (rss_kb() - before) / 1024
        self.assertLess(grown_mb, 20, f"RSS grew {grown_mb:.1f} MB")
        self.assert_alive()

    def test_1000_concurrent_connections(self):
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2200:
            self.skipTest("needs a nofile limit of 2200 or more (this process and the agent)")
        sel = selectors.DefaultSelector()
        self.addCleanup(sel.close)
        threads_before = steady_counts(self.agent.proc.pid)[0]
        socks = []
        for _ in range(1000):
            s = socket.socket()
            self.addCleanup(s.close)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.agent.port))
            socks.append(s)
            sel.register(s, selectors.EVENT_WRITE)
        pending, end = set(socks), time.monotonic() + 30
        while pending and time.monotonic() < end:
            for key, _ in sel.select(timeout=1.0):
                err = key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                self.assertEqual(err, 0, os.strerror(err))
                key.fileobj.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                sel.modify(key.fileobj, selectors.EVENT_READ)
                pending.discard(key.fileobj)
        self.assertEqual(len(pending), 0, "connections not established")
        # One event loop serves them all: a thousand connections add no thread.
        self.assertEqual(steady_counts(self.agent.proc.pid)[0], threads_before)
        # All 1000 are open (keep-alive) while a fresh client asks for /health.
        self.assert_fresh_health("concurrent_1000_fresh_health_ms")
        answers, buffers, end = 0, {}, time.monotonic() + 60
        while answers < len(socks) and time.monotonic() < end:
            for key, _ in sel.select(timeout=1.0):
                chunk = key.fileobj.recv(4096)
                buffers[key.fileobj] = buffers.get(key.fileobj, b"") + chunk
                responses, _ = parse_responses(buffers[key.fileobj])
                if responses or not chunk:
                    self.assertEqual([r[0] for r in responses], [200])
                    answers += 1
                    sel.unregister(key.fileobj)
        self.assertEqual(answers, len(socks))
        for s in socks:
            s.close()
        self.assert_alive()


class FdLimit(VitalsTestCase):
    def test_idle_connections_never_take_the_probes_fds_or_a_fresh_health(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
start_period: 0s
probes:
  dep: {{plugin: tcp, interval: 100ms, timeout: 50ms, failure_threshold: 1, options: {{port: {dep.port}}}}}
""", preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
        agent.wait_status("healthy")
        self.assertIn("(at most 128 connections)", agent.log())

        socks = []
        for _ in range(400):  # idle: connected, nothing sent
            s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
            self.addCleanup(s.close)
            socks.append(s)
        time.sleep(0.5)
        t0 = time.monotonic()
        status, body, _ = http_get(agent.base + "/health", timeout=3.0)
        figure("fresh_health_behind_400_idle_at_fd_limit_256", (time.monotonic() - t0) * 1000)
        self.assertEqual((status, json.loads(body)["status"]), (200, "healthy"))
        time.sleep(1.0)  # ten more probe runs while the connections are held
        self.assertLess(len(os.listdir(f"/proc/{agent.proc.pid}/fd")), 256)
        metrics = agent.get("/metrics")[1]
        failed = re.search(r'vitals_probe_runs_total\{probe="dep"[^}]*result="fail"\} (\d+)', metrics)
        self.assertEqual(failed.group(1), "0", agent.log()[-2000:])
        # The oldest connections made room; the newest are still open.
        socks[0].settimeout(2)
        self.assertTrue(read_until_closed(socks[0], 2)[1])
        socks[-1].settimeout(0.2)
        with self.assertRaises(socket.timeout):
            socks[-1].recv(1)
        self.assertIn("closing the ones quiet the longest", agent.log())


class Faults(VitalsTestCase):
    """Fault episodes must leave the agent's threads and fds where they were."""

    def test_flapping_dependency_timeouts_and_reloads_leak_nothing(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        marker = f"vitals-abuse-{os.getpid()}-{time.monotonic_ns()}"
        steady = f"""
listen: 127.0.0.1:@PORT@
start_period: 0s
probes:
  dep: {{plugin: tcp, interval: 100ms, timeout: 50ms, failure_threshold: 1, options: {{port: {dep.port}}}}}
"""
        # A program that passes the load check but cannot be started (exec format error).
        broken = self.tmp.file(f"broken-{marker}", "not a program\n", mode=0o755)
        faulty = steady + f"""
  slow: {{plugin: exec, tier: optional, interval: 200ms, timeout: 100ms,
          options: {{command: [sh, -c, "sleep 30 & sleep 31; echo {marker}"]}}}}
  broken: {{plugin: exec, tier: optional, interval: 100ms, options: {{command: [{broken}]}}}}
"""
        agent = self.start_agent(steady)
        cfg = agent.log_path.replace(".stderr", "")
        agent.wait_status("healthy")
        time.sleep(0.5)
        before = steady_counts(agent.proc.pid)

        # Episode: the dependency flaps 20 times while two exec probes time out and fail to start.
        with open(cfg, "w") as f:
            f.write(faulty.replace("@PORT@", str(agent.port)))
        agent.signal(signal.SIGHUP)
        agent.wait_probe("slow", "fail")
        for _ in range(20):
            dep.close()
            agent.wait_probe("dep", "fail")
            dep.open()
            agent.wait_probe("dep", "pass")
        # The slow command ran past its deadline several times (the exec plugin or the scheduler
        # may be the one to stop it: either way the stage is "timeout").
        self.assertEqual(agent.probe("slow")["stage"], "timeout")
        m = agent.get("/metrics")[1]
        failed = re.search(r'vitals_probe_runs_total\{probe="slow"[^}]*result="fail"\} (\d+)', m)
        self.assertIsNotNone(failed, m)
        self.assertGreaterEqual(int(failed.group(1)), 3)
        self.assertEqual(agent.probe("broken")["stage"], "exec")
        # Back to the steady config: the episode's probes retire, dep keeps its runner.
        with open(cfg, "w") as f:
            f.write(steady.replace("@PORT@", str(agent.port)))
        agent.signal(signal.SIGHUP)
        wait_for(lambda: sorted(agent.health()[1]["probes"]) == ["dep"], what="the steady config")
        agent.wait_status("healthy")

        end = time.monotonic() + 15
        while steady_counts(agent.proc.pid) != before:
            self.assertLess(time.monotonic(), end, f"threads and fds not back to {before}: "
                            f"{describe(agent.proc.pid)}; log: {agent.log()[-3000:]}")
            time.sleep(0.2)
        # Every timed-out command's process group was killed.
        wait_for(lambda: subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1,
                 timeout=10, what="no process of the timed-out command left")
        self.assertIsNone(agent.proc.poll())

    @unittest.skipUnless(FAKES, "needs the fake plugins (run through ctest)")
    def test_misbehaving_plugins_do_not_grow_threads_or_fds(self):
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  hangs: {{plugin: fake-hangs, tier: optional, interval: 200ms, timeout: 100ms, isolation: thread}}
  throws: {{plugin: fake-throws, tier: optional, interval: 100ms, isolation: thread}}
  good: {{plugin: fake-ok, interval: 100ms}}
""")
        agent.wait_probe("hangs", "fail")
        agent.wait_probe("throws", "fail")
        time.sleep(0.5)
        first = steady_counts(agent.proc.pid)
        before = agent.probe("throws")["consecutive_failures"]
        wait_for(lambda: agent.probe("throws")["consecutive_failures"] >= before + 20,
                 what="20 more thrown runs")
        # The hung run holds its one runner; nothing more piles up behind it or the throws: a
        # pile-up would add a thread per hung run (10 or more by now). On a loaded machine the
        # runner pool may grow by one (a queued run waited while every runner looked busy).
        threads, fds = steady_counts(agent.proc.pid)
        self.assertEqual(fds, first[1])
        self.assertLessEqual(threads, first[0] + 1)
        self.assertIsNone(agent.proc.poll())


    @unittest.skipUnless(FAKES, "needs the fake plugins (run through ctest)")
    def test_reloads_that_change_a_hung_probe_do_not_pile_up_hung_runs(self):
        config = f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  good: {{plugin: fake-ok, interval: 100ms}}
  hangs: {{plugin: fake-hangs, tier: optional, interval: {{interval}}ms, timeout: 100ms, isolation: thread}}
"""
        agent = self.start_agent(config.replace("{interval}", "1000"))
        cfg = agent.log_path.replace(".stderr", "")
        agent.wait_probe("hangs", "fail")
        threads_before = steady_counts(agent.proc.pid)[0]
        reloads = 30
        for i in range(1, reloads + 1):
            # Each reload changes the hung probe's definition: a new instance of it.
            with open(cfg, "w") as f:
                f.write(config.replace("{interval}", str(1000 + i)).replace("@PORT@", str(agent.port)))
            agent.signal(signal.SIGHUP)
            wait_for(lambda: agent.log().count("reloaded ") >= i, what=f"reload {i}")
        time.sleep(0.5)
        threads_after = steady_counts(agent.proc.pid)[0]
        # One hung run for the probe whatever the number of reloads: a pile-up would add a thread
        # per reload (30). The runner pool may grow meanwhile on a loaded machine, by at most its
        # eager size (4 runners) plus the new definition's idle runner (it flaked at +1 at load 5).
        self.assertLessEqual(threads_after, threads_before + 5,
                             f"{reloads} reloads: {threads_before} -> {threads_after} threads")
        hangs = agent.probe("hangs")
        self.assertEqual((hangs["status"], hangs["stage"]), ("fail", "timeout"))
        self.assertEqual(hangs["message"], "not started: the run of its previous definition is still going")
        self.assertEqual(agent.probe("good")["status"], "pass")


@unittest.skipUnless(shutil.which("wrk"), "needs wrk")
class SignalsUnderLoad(AgentCase):
    def test_sigterm_under_wrk_load_exits_0(self):
        wrk = self.spawn(["wrk", "-t1", "-c32", "-d20s", self.agent.base + "/health"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        self.assertIsNone(wrk.poll(), "wrk ended early")
        self.agent.signal(signal.SIGTERM)
        self.assertEqual(self.agent.proc.wait(15), 0, self.agent.log())

    def test_reload_storm_under_load_ends_on_the_last_config(self):
        stop = threading.Event()
        errors = []

        def hammer():
            while not stop.is_set():
                try:
                    status, _, _ = http_get(self.agent.base + "/health", timeout=5)
                    if status not in (200, 503):
                        errors.append(status)
                except OSError as e:
                    errors.append(repr(e))
        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        self.addCleanup(lambda: [stop.set()] + [t.join() for t in threads])
        cfg = self.agent.log_path.replace(".stderr", "")
        base = BASE_CONFIG.format(dep_port=self.dep.port).replace("@PORT@", str(self.agent.port))
        for i in range(100):
            extra = f"  extra{i % 7}: {{plugin: tcp, tier: optional, interval: 1s, options: {{port: {self.dep.port}}}}}\n"
            with open(cfg + ".new", "w") as f:
                f.write(base + extra)
            os.replace(cfg + ".new", cfg)
            self.agent.signal(signal.SIGHUP)
            time.sleep(0.01)
        wait_for(lambda: sorted(self.agent.health()[1]["probes"]) == ["dep", "extra1"], timeout=15,
                 what="the last config (extra1) to be in effect")
        stop.set()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.agent.wait_probe("extra1", "pass")
        self.assertIsNone(self.agent.proc.poll())


class _LeakyHandler(BaseHTTPRequestHandler):
    """Answers every request 401 and echoes the request headers back (a careless server)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = ("unauthorized; you sent Authorization: " + str(self.headers.get("Authorization"))
                + " " + str(dict(self.headers))).encode()
        self.send_response(401)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST

    def log_message(self, *args):
        pass


class Secrets(VitalsTestCase):
    def test_dsn_password_and_bearer_token_never_leave(self):
        password = "pg-pa55w0rd-abuse"
        token = "mcp-bearer-t0ken-abuse"
        server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        # A port that refuses, and one that hangs up at once: two failure paths of libpq.
        silent = Listener(free_port())
        silent.open()
        self.addCleanup(silent.close)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
log_level: debug
start_period: 0s
probes:
  db:
    plugin: postgres
    interval: 500ms
    timeout: 300ms
    options: {{dsn: "postgresql://app:{password}@127.0.0.1:{free_port()}/app?connect_timeout=1"}}
  db2:
    plugin: postgres
    interval: 500ms
    timeout: 300ms
    options: {{dsn: "host=127.0.0.1 port={silent.port} user=app password={password} dbname=app"}}
  mcp:
    plugin: mcp-http
    interval: 500ms
    timeout: 300ms
    options:
      url: http://127.0.0.1:{server.server_port}/mcp
      headers: {{Authorization: "Bearer {token}"}}
""")
        for name in ("db", "db2", "mcp"):
            agent.wait_probe(name, "fail")
        cfg = agent.log_path.replace(".stderr", "")
        outputs = [agent.get(path)[1] for path in
                   ("/health", "/health/db", "/health/db2", "/health/mcp", "/metrics",
                    "/readyz?verbose", "/health?format=line")]
        for probe in ("db", "db2", "mcp"):
            p = run_vitals("once", "-c", cfg, "--probe", probe, "--json")
            outputs += [p.stdout, p.stderr]
        p = run_vitals("check", "-c", cfg)
        outputs += [p.stdout, p.stderr]
        p = run_vitals("validate", "-c", cfg)
        outputs += [p.stdout, p.stderr]
        agent.stop()
        outputs.append(agent.log())
        self.assertIn("mcp", outputs[0])
        for out in outputs:
            self.assertNotIn(password, out)
            self.assertNotIn(token, out)


if __name__ == "__main__":
    unittest.main()
