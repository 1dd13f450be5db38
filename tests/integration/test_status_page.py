"""Issue 14: each probe's recent history in /health, the status page at /, /events (Server-Sent
Events) and `vitals status`, against the real agent with fake plugins whose result a file scripts."""
import json
import os
import socket
import threading
import time
import unittest

from vitals_testlib import VitalsTestCase, http_get, run_vitals, wait_for

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")


class EventStream:
    """A raw /events client: reads the response head, then parses events as they come."""

    def __init__(self, port, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(b"GET /events HTTP/1.1\r\nHost: vitals\r\nAccept: text/event-stream\r\n\r\n")
        self.buf = b""

    def head(self, timeout=5.0):
        """The status line and headers (reads until the blank line)."""
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head.decode()

    def next(self, timeout=10.0):
        """The next event as a dict (id, event, data parsed as JSON), or {"comment": text}."""
        end = time.monotonic() + timeout
        while b"\n\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no event within {timeout}s; buffered: {self.buf[:200]!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the stream ended")
            self.buf += chunk
        block, _, self.buf = self.buf.partition(b"\n\n")
        event = {}
        for line in block.decode().split("\n"):
            if line.startswith(":"):
                return {"comment": line[1:].strip()}
            key, _, value = line.partition(": ")
            event[key] = value
        event["id"] = int(event["id"])
        event["data"] = json.loads(event["data"])
        return event

    def close(self):
        self.sock.close()


class StatusPageTest(VitalsTestCase):
    def agent(self, probes, top=""):
        flags = {}
        for name in probes:
            flags[name] = self.tmp.file(f"{name}.result", probes[name] + "\n")
        lines = "".join(
            f"  {name}: {{plugin: fake-ok, interval: 300ms, timeout: 250ms, failure_threshold: 1,"
            f" tier: {'optional' if name.startswith('opt') else 'critical'},"
            f" options: {{result: {flags[name]}}}}}\n" for name in probes)
        agent = self.start_agent(f"listen: 127.0.0.1:@PORT@\nplugin_dir: {FAKES}\nstart_period: 0s\n"
                                 f"{top}probes:\n{lines}")
        return agent, flags

    def set(self, flag, result):
        with open(flag + ".tmp", "w") as f:
            f.write(result + "\n")
        os.replace(flag + ".tmp", flag)

    def test_health_history_and_transitions(self):
        agent, flags = self.agent({"a": "pass", "b": "warn"}, top="history: 5\n")
        agent.wait_probe("a", "pass")
        self.set(flags["a"], "fail")
        agent.wait_probe("a", "fail")
        self.set(flags["a"], "pass")
        agent.wait_probe("a", "pass")
        wait_for(lambda: len(json.loads(agent.get("/health?history=9")[1])["probes"]["a"]["history"]) == 5,
                 what="5 runs in the history")

        status, body, headers = agent.get("/health?history=3")
        self.assertEqual(headers["Content-Type"], "application/json")
        a = json.loads(body)["probes"]["a"]
        self.assertEqual(len(a["history"]), 3)
        for run in a["history"]:
            self.assertEqual(set(run), {"at", "status", "stage", "duration_ms", "message"})
            self.assertIn(run["status"], ("pass", "warn", "fail"))
            self.assertEqual(run["stage"], "fake")
            self.assertEqual(run["message"], run["status"])
        ats = [r["at"] for r in a["history"]]
        self.assertEqual(ats, sorted(ats, reverse=True), "newest first")
        # Transitions in effective statuses, newest first: unknown -> pass -> fail -> pass.
        self.assertEqual([(t["from"], t["to"]) for t in a["transitions"]],
                         [("fail", "pass"), ("pass", "fail"), ("unknown", "pass")])
        for t in a["transitions"]:
            self.assertEqual(set(t), {"at", "from", "to"})
        self.assertEqual(a["transitions"][0]["at"], a["since"])

        # The history is bounded by `history: 5`; without the query there is none.
        self.assertEqual(len(json.loads(agent.get("/health?history=1000")[1])["probes"]["b"]["history"]), 5)
        self.assertNotIn("history", json.loads(agent.get("/health")[1])["probes"]["a"])
        status, body, _ = agent.get("/health/b?history=2")
        b = json.loads(body)["probe"]
        self.assertEqual([r["status"] for r in b["history"]], ["warn", "warn"])
        self.assertEqual([(t["from"], t["to"]) for t in b["transitions"]], [("unknown", "warn")])
        self.assertEqual(json.loads(agent.get("/health?history=0")[1])["probes"]["a"]["history"], [])
        for bad in ("x", "-1", "", "1e3"):
            status, body, _ = agent.get(f"/health?history={bad}")
            self.assertEqual(status, 400, bad)
            self.assertEqual(body, "history must be a whole number of runs\n")

    def test_history_follows_expose_details_and_can_be_off(self):
        agent, flags = self.agent({"a": "fail"}, top="expose_details: false\nhistory: 0\n")
        agent.wait_probe("a", "fail")
        a = json.loads(agent.get("/health?history=10")[1])["probes"]["a"]
        self.assertEqual(a["history"], [])
        self.assertEqual(a["transitions"], [])
        agent.stop()
        agent, flags = self.agent({"a": "fail"}, top="expose_details: false\n")
        agent.wait_probe("a", "fail")
        a = wait_for(lambda: (p := json.loads(agent.get("/health?history=10")[1])["probes"]["a"])["history"] and p)
        self.assertNotIn("message", a)
        self.assertNotIn("message", a["history"][0])
        page = agent.get("/")[1]
        self.assertIn("hidden (expose_details: false)", page)
        self.assertRegex(page, r'<span class="vh">fail at \d\d:\d\d:\d\d UTC, [\d.]+ ms, fake</span>')

    def test_history_config_errors(self):
        cfg = self.tmp.file("bad.yaml", "history: lots\nprobes: {}\n")
        p = run_vitals("validate", "-c", cfg)
        self.assertEqual(p.returncode, 100)
        self.assertIn("bad.yaml:1: history: expected an integer, got 'lots'", p.stderr)
        cfg = self.tmp.file("bad.yaml", "history: 10001\nprobes: {}\n")
        p = run_vitals("validate", "-c", cfg)
        self.assertEqual(p.returncode, 100)
        self.assertIn("bad.yaml:1: history", p.stderr)

    def test_page_without_javascript(self):
        agent, flags = self.agent({"up": "pass", "slow": "warn", "down": "fail"})
        agent.wait_probe("down", "fail")
        agent.wait_probe("slow", "warn")
        status, page, headers = agent.get("/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn("<title>vitals: unhealthy</title>", page)
        self.assertIn("\u2717 Unhealthy", page)
        self.assertIn("\u2717 Not ready", page)
        for name, word in (("up", "pass"), ("slow", "warn"), ("down", "fail")):
            row = page.split(f'<tr data-probe="{name}">')[1].split("</tr>")[0]
            self.assertIn(f'<span class="st s-{word}">', row)
            self.assertIn(f" {word}</span>", row)
            self.assertIn('<ol class="runs"', row)
            self.assertRegex(row, f'<li class="s-{word}" tabindex="0" data-at="[^"]+"><span class="vh">{word} at ')
            self.assertIn("<svg class=\"spark\"", row)
        self.assertNotIn("{{", page)
        self.assertNotIn("src=", page)  # nothing external
        self.assertEqual(agent.get("/", method="HEAD")[0], 200)

    def test_events_in_order(self):
        agent, flags = self.agent({"a": "pass", "optb": "pass"})
        agent.wait_status("healthy")
        stream = EventStream(agent.port)
        self.addCleanup(stream.close)
        head = stream.head()
        self.assertTrue(head.startswith("HTTP/1.1 200 OK"), head)
        self.assertIn("Content-Type: text/event-stream", head)
        first = stream.next()
        self.assertEqual(first["event"], "snapshot")
        self.assertEqual(first["data"]["status"], "healthy")
        self.assertEqual(set(first["data"]["probes"]), {"a", "optb"})

        # A scripted sequence; each state is held until /health shows it, so each is recorded.
        script = [("a", "fail"), ("a", "pass"), ("optb", "warn"), ("a", "warn"), ("optb", "fail"),
                  ("a", "pass"), ("optb", "pass")]
        state = {"a": "pass", "optb": "pass"}
        expected = []
        for name, result in script:
            expected.append((name, state[name], result))
            state[name] = result
            self.set(flags[name], result)
            agent.wait_probe(name, result)
        agent.wait_status("healthy")

        events, last_id = [], first["id"]
        probe_events = []
        overall = "healthy"
        end = time.monotonic() + 20
        while len(probe_events) < len(expected) or overall != "healthy" or not events:
            self.assertLess(time.monotonic(), end, f"events so far: {events}")
            e = stream.next()
            if "comment" in e:
                continue
            self.assertGreater(e["id"], last_id, "ids increase")
            last_id = e["id"]
            events.append(e)
            if e["event"] == "probe":
                d = e["data"]
                self.assertEqual(set(d), {"at", "name", "from", "to", "stage", "message"})
                self.assertEqual(d["stage"], "fake")
                self.assertEqual(d["message"], d["to"])
                probe_events.append((d["name"], d["from"], d["to"]))
            else:
                self.assertEqual(e["event"], "overall")
                d = e["data"]
                self.assertEqual(set(d), {"at", "from", "to", "ready"})
                self.assertEqual(d["from"], overall, "each overall event starts where the last ended")
                overall = d["to"]
                self.assertIsInstance(d["ready"], bool)
        self.assertEqual(probe_events, expected)
        kinds = [e["event"] for e in events]
        # The first change makes the agent unhealthy, after the probe event that caused it.
        self.assertEqual(kinds[:2], ["probe", "overall"])
        self.assertEqual(events[1]["data"]["to"], "unhealthy")
        self.assertFalse(events[1]["data"]["ready"])

    def test_stalled_reader_dropped_and_health_stays_fast(self):
        # 60 probes that change on most runs, with long messages: a busy stream.
        names = [f"p{i}" for i in range(60)]
        flag = self.tmp.file("flip.result", "pass\n")
        long = "m" * 300
        lines = "".join(f"  {n}: {{plugin: fake-ok, interval: 1s, timeout: 900ms, failure_threshold: 1,"
                        f" options: {{result: {flag}, message: {long}}}}}\n" for n in names)
        agent = self.start_agent(f"listen: 127.0.0.1:@PORT@\nplugin_dir: {FAKES}\nprobes:\n{lines}")
        stalled = EventStream(agent.port, rcvbuf=4096)
        self.addCleanup(stalled.close)
        self.assertTrue(stalled.head().startswith("HTTP/1.1 200"))
        reader = EventStream(agent.port)  # one that reads keeps getting events
        self.addCleanup(reader.close)
        reader.head()

        stop = threading.Event()

        def flip():
            on = False
            while not stop.is_set():
                self.set(flag, "fail" if on else "pass")
                on = not on
                time.sleep(0.15)
        flipper = threading.Thread(target=flip)
        flipper.start()
        self.addCleanup(flipper.join)
        self.addCleanup(stop.set)

        # /health keeps answering (2 s is generous: it answers from memory) while the stalled
        # reader backs up and is dropped.
        def dropped():
            self.assertIn(agent.get("/health", timeout=2.0)[0], (200, 503))
            reader.next()
            return "dropping an event stream" in agent.log()
        wait_for(dropped, timeout=90, interval=0.2, what="the stalled reader to be dropped")
        self.assertRegex(agent.log(), r"dropping an event stream whose reader (took nothing|fell)")
        # The stalled client, reading now, finds the end (a reset or EOF) after what was buffered.
        stalled.sock.settimeout(10)
        with self.assertRaises((ConnectionResetError, EOFError)):
            while True:
                if not stalled.sock.recv(65536):
                    raise EOFError
        # The reader that reads is still served.
        e = reader.next()
        self.assertTrue("comment" in e or e["event"] in ("probe", "overall"))

    def test_stream_cap(self):
        agent, flags = self.agent({"a": "pass"})
        streams = []
        self.addCleanup(lambda: [s.close() for s in streams])
        for _ in range(64):
            s = EventStream(agent.port)
            streams.append(s)
            self.assertTrue(s.head().startswith("HTTP/1.1 200"))
            self.assertEqual(s.next()["event"], "snapshot")
        extra = EventStream(agent.port)
        self.addCleanup(extra.close)
        head = extra.head()
        self.assertTrue(head.startswith("HTTP/1.1 503"), head)
        self.assertIn("too many event streams open (64)", extra.buf.decode())
        self.assertEqual(agent.get("/health")[0], 200)  # other requests are not affected
        streams.pop().close()

        def room():
            s = EventStream(agent.port)
            ok = s.head().startswith("HTTP/1.1 200")
            if ok:
                streams.append(s)
            else:
                s.close()
            return ok
        wait_for(room, timeout=10, interval=0.1, what="a stream slot after one closed")

    def test_status_command(self):
        agent, flags = self.agent({"db": "pass", "optcache": "warn"})
        agent.wait_probe("optcache", "warn")
        agent.wait_probe("db", "pass")
        p = run_vitals("status", "--url", agent.base)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        lines = p.stdout.splitlines()
        self.assertTrue(lines[0].startswith(f"vitals at 127.0.0.1:{agent.port}: degraded, ready, 1/2 probes passing"),
                        p.stdout)
        self.assertRegex(lines[1], r"^PROBE\s+STATUS\s+TIER\s+GATES\s+STAGE\s+SINCE\s+RUNS\s+MESSAGE$")
        self.assertRegex(lines[2], r"^db\s+pass\s+critical\s+yes\s+fake\s+\d+s ago\s+\++\s+pass$")
        self.assertRegex(lines[3], r"^optcache\s+warn\s+optional\s+no\s+fake\s+\d+s ago\s+~+\s+warn$")
        cfg = os.path.join(self.tmp.path, "vitals.yaml")
        self.assertEqual(run_vitals("status", "-c", cfg).returncode, 0)

        self.set(flags["db"], "fail")
        agent.wait_probe("db", "fail")
        p = run_vitals("status", "-c", cfg)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn(": unhealthy, not ready, 0/2 probes passing", p.stdout)
        self.assertRegex(p.stdout, r"\ndb\s+fail\s+critical\s+yes\s+fake\s+\d+s ago\s+[+x]*x\s+fail\n")

        agent.stop()
        p = run_vitals("status", "--url", agent.base)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"unreachable: unable to connect to 127.0.0.1:{agent.port}: connection refused", p.stdout)
        p = run_vitals("status", "--bogus")
        self.assertEqual(p.returncode, 1)
        self.assertIn("usage error: unknown option --bogus", p.stdout)


if __name__ == "__main__":
    unittest.main()
