"""mcp-http probe against real MCP servers from npm (tests/fixtures/mcp, installed with `npm ci`).

Servers used:
  - @modelcontextprotocol/server-everything in streamableHttp mode (forced onto 127.0.0.1 by
    force-loopback.cjs), the reference server most MCP clients are tested against;
  - tests/fixtures/mcp/server.mjs, a small server written with @modelcontextprotocol/sdk that also
    serves /health and /stats and can be switched to JSON responses, 503 health, stalling, a
    stall after the SSE headers, a 307 redirect, a bearer token, or the stateless 2026-07-28
    revision (MODE=modern, hand-written: no published SDK speaks it yet);
  - a plain Python HTTP server that answers 200 "OK" to everything.

Setup (CI): `cd tests/fixtures/mcp && npm ci --no-audit --no-fund`. Without node the tests are
skipped; with node but without node_modules they fail and say how to install them.
"""
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import unittest

from vitals_testlib import SOURCE_DIR, Trickle, VitalsTestCase, free_port, http_get, once, wait_for, wait_port

FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures", "mcp")
NODE = shutil.which("node")
EVERYTHING = os.path.join(FIXTURES, "node_modules", "@modelcontextprotocol", "server-everything",
                          "dist", "index.js")
SETUP_HINT = f"run `cd {FIXTURES} && npm ci --no-audit --no-fund` first"


def config(options, timeout="3s", interval="10s"):
    """A vitals config with one mcp-http probe named `mcp`; options is a dict (JSON is YAML)."""
    return f"""listen: 127.0.0.1:@PORT@
probes:
  mcp:
    plugin: mcp-http
    tier: critical
    interval: {interval}
    timeout: {timeout}
    failure_threshold: 1
    options: {json.dumps(options)}
"""


class PlainOK(http.server.BaseHTTPRequestHandler):
    """Answers 200 "OK" (text/plain) to every request: an HTTP server that is not MCP."""

    def _ok(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = do_DELETE = do_HEAD = _ok

    def log_message(self, *args):
        pass


@unittest.skipUnless(NODE, "node is not installed; the mcp-http tests need node + npm (" + SETUP_HINT + ")")
class McpHttpTest(VitalsTestCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(EVERYTHING):
            raise AssertionError(f"{EVERYTHING} is missing: {SETUP_HINT}")

    # ---- helpers -------------------------------------------------------------------------------

    def start_everything(self):
        """server-everything on an ephemeral loopback port; returns (url, log path)."""
        port = free_port()
        log = os.path.join(self.tmp.path, f"everything-{port}.log")
        with open(log, "w") as out:
            self.spawn([NODE, "-r", "./force-loopback.cjs", EVERYTHING, "streamableHttp"], cwd=FIXTURES,
                       env={**os.environ, "PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL)
        wait_port(port, timeout=60)
        return f"http://127.0.0.1:{port}/mcp", log

    def start_sdk(self, **env):
        """server.mjs (written with the official SDK); returns its base URL http://127.0.0.1:PORT."""
        port = free_port()
        log = os.path.join(self.tmp.path, f"sdk-{port}.log")
        with open(log, "w") as out:
            self.spawn([NODE, "server.mjs"], cwd=FIXTURES,
                       env={**os.environ, "PORT": str(port), **env}, stdout=out,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_port(port, timeout=30)
        return f"http://127.0.0.1:{port}"

    def start_plain(self):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainOK)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop():
            server.shutdown()
            server.server_close()
            thread.join()
        self.addCleanup(stop)
        return f"http://127.0.0.1:{server.server_address[1]}"

    def control(self, base, what):
        status, body, _ = http_get(f"{base}/{what}", method="POST")
        self.assertEqual(status, 200, body)

    def stats(self, base):
        status, body, _ = http_get(f"{base}/stats")
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def run_once(self, options, timeout="3s", name="vitals.yaml"):
        cfg = self.tmp.file(name, config(options, timeout=timeout).replace("@PORT@", str(free_port())))
        code, doc, proc = once(cfg, "mcp")
        self.assertIsNotNone(doc, f"no JSON from vitals once (exit {code}): {proc.stdout} {proc.stderr}")
        return code, doc, proc

    def assertResult(self, doc, status, stage, *fragments):
        self.assertEqual((doc["status"], doc["stage"]), (status, stage), doc)
        for f in fragments:
            self.assertIn(f, doc["message"], doc)

    # ---- server-everything ---------------------------------------------------------------------

    @staticmethod
    def everything_counts(log):
        """(sessions opened, DELETEs received, sessions dropped) from server-everything's log."""
        with open(log) as f:
            text = f.read()
        return (len(re.findall(r"Session initialized with ID", text)),
                len(re.findall(r"Received session termination request", text)),
                len(re.findall(r"Transport closed for session .* removing from transports map", text)))

    def assertEverythingCounts(self, log, expected):
        try:
            wait_for(lambda: self.everything_counts(log) == expected, timeout=10,
                     what="server-everything's log to settle")
        except AssertionError:
            self.assertEqual(self.everything_counts(log), expected,
                             "(sessions opened, DELETEs, sessions dropped) in server-everything's log")

    def test_everything_passes_and_checks_tools(self):
        url, log = self.start_everything()
        code, doc, _ = self.run_once({"url": url, "expect_tools": ["echo"]})
        self.assertEqual(code, 0, doc)
        self.assertResult(doc, "pass", "cleanup", "mcp-servers/everything", "2025-06-18",
                          "session closed")
        names = {n["name"] for n in doc["numbers"]}
        self.assertTrue({"handshake", "ping", "tools"} <= names, doc["numbers"])

        code, doc, _ = self.run_once({"url": url, "expect_tools": ["echo", "no-such-tool"]})
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "tools", "no-such-tool")
        self.assertNotIn("lacks expected tools echo", doc["message"])
        # the failed run closed its session too
        self.assertEverythingCounts(log, (2, 2, 2))

    def test_everything_newest_legacy_revision_with_priming_event(self):
        # 2025-11-25 makes server-everything send an empty-data priming event first.
        url, _ = self.start_everything()
        code, doc, _ = self.run_once({"url": url, "protocol_version": "2025-11-25"})
        self.assertResult(doc, "pass", "cleanup", "speaks 2025-11-25")

    def test_everything_pinned_to_2026_fails_at_discover(self):
        url, _ = self.start_everything()
        code, doc, _ = self.run_once({"url": url, "protocol_version": "2026-07-28"})
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "discover", "does not speak MCP 2026-07-28")

    def test_fifty_runs_leave_no_session_in_everything(self):
        url, log = self.start_everything()
        cfg = self.tmp.file("v.yaml", config({"url": url, "expect_tools": ["echo"]}).replace(
            "@PORT@", str(free_port())))
        for i in range(50):
            code, doc, proc = once(cfg, "mcp")
            self.assertEqual(code, 0, f"run {i}: {proc.stdout} {proc.stderr}")
        # server-everything logs every session it opens, every DELETE it gets and every session
        # it drops from its transport map.
        self.assertEverythingCounts(log, (50, 50, 50))

    # ---- the SDK server ------------------------------------------------------------------------

    def test_sdk_server_sse_and_json(self):
        for mode, env in (("sse", {}), ("json", {"JSON_RESPONSE": "1"})):
            with self.subTest(mode=mode):
                base = self.start_sdk(**env)
                code, doc, _ = self.run_once({"url": base + "/mcp", "health_path": "/health",
                                              "expect_tools": ["echo"]})
                self.assertEqual(code, 0, doc)
                self.assertResult(doc, "pass", "cleanup", "vitals-test-mcp 0.3.0", "session closed")
                s = self.stats(base)
                self.assertEqual((s["opened"], s["deletes"], s["sessions"]), (1, 1, 0), s)

    def test_sdk_server_unhealthy_fails_at_health(self):
        base = self.start_sdk()
        self.control(base, "health/fail")
        code, doc, _ = self.run_once({"url": base + "/mcp", "health_path": "/health"})
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "health", "503")
        self.assertEqual(self.stats(base)["methods"], {}, "no MCP request after a failed health check")

    def test_sdk_server_stalling_fails_at_the_deadline(self):
        base = self.start_sdk()
        self.control(base, "control/stall")
        code, doc, _ = self.run_once({"url": base + "/mcp", "protocol_version": "2025-06-18"},
                                     timeout="1s")
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "initialize", "timed out waiting for the initialize response")
        # auto mode starts with server/discover, so that is where it waits
        code, doc, _ = self.run_once({"url": base + "/mcp"}, timeout="1s")
        self.assertResult(doc, "fail", "discover", "timed out")

    def test_sdk_server_stalling_mid_sse_fails_at_the_deadline(self):
        base = self.start_sdk()
        self.control(base, "control/stall-sse")
        code, doc, _ = self.run_once({"url": base + "/mcp", "protocol_version": "2025-06-18"},
                                     timeout="1s")
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "initialize", "timed out", "SSE stream")
        # the response headers carried a session id: the failed run still sent its DELETE
        self.assertEqual(self.stats(base)["deletes"], 1)

    def test_fifty_runs_leave_no_session_in_the_sdk_server(self):
        base = self.start_sdk()
        cfg = self.tmp.file("v.yaml", config({"url": base + "/mcp"}).replace("@PORT@", str(free_port())))
        for i in range(50):
            code, doc, proc = once(cfg, "mcp")
            self.assertEqual(code, 0, f"run {i}: {proc.stdout} {proc.stderr}")
        status, body, _ = http_get(base + "/health")
        self.assertEqual(json.loads(body)["sessions"], 0, body)
        s = self.stats(base)
        self.assertEqual((s["opened"], s["deletes"], s["closed"]), (50, 50, 50), s)

    def test_follows_307_and_reports_it(self):
        base = self.start_sdk()
        code, doc, _ = self.run_once({"url": base + "/redirect/mcp"})
        self.assertEqual(code, 0, doc)
        self.assertResult(doc, "pass", "cleanup", "redirected (307)", base + "/mcp/")
        self.assertEqual(self.stats(base)["sessions"], 0)

    def test_headers_are_sent_and_never_printed(self):
        secret = "s3cr3t-token-value"
        base = self.start_sdk(AUTH_TOKEN=secret)
        code, doc, _ = self.run_once({"url": base + "/mcp", "protocol_version": "2025-06-18"})
        self.assertResult(doc, "fail", "initialize", "401")
        code, doc, proc = self.run_once({"url": base + "/mcp",
                                         "headers": {"Authorization": "Bearer " + secret}})
        self.assertResult(doc, "pass", "cleanup")
        self.assertNotIn(secret, proc.stdout + proc.stderr)

    # ---- 2026-07-28 and auto mode --------------------------------------------------------------

    def test_modern_server(self):
        base = self.start_sdk(MODE="modern")
        code, doc, _ = self.run_once({"url": base + "/mcp", "expect_tools": ["echo"]})
        self.assertEqual(code, 0, doc)
        self.assertResult(doc, "pass", "tools", "vitals-test-modern", "2026-07-28")
        code, doc, _ = self.run_once({"url": base + "/mcp", "protocol_version": "2026-07-28"})
        self.assertResult(doc, "pass", "discover", "2026-07-28")
        code, doc, _ = self.run_once({"url": base + "/mcp", "protocol_version": "2025-06-18"})
        self.assertResult(doc, "fail", "initialize", "400")
        s = self.stats(base)
        self.assertEqual(s["methods"], {"server/discover": 2, "tools/list": 1, "initialize": 1}, s)

    def test_auto_mode_remembers_what_worked(self):
        legacy = self.start_sdk()
        modern = self.start_sdk(MODE="modern")
        # Warm both node servers up (a separate `vitals once` process: its memory is not the
        # agent's), so that the agent's first runs are not slowed down by node's JIT.
        for base in (legacy, modern):
            self.assertEqual(self.run_once({"url": base + "/mcp"})[1]["status"], "pass")
        before_legacy = self.stats(legacy)["methods"]
        before_modern = self.stats(modern)["methods"]
        agent = self.start_agent(f"""listen: 127.0.0.1:@PORT@
probes:
  legacy:
    plugin: mcp-http
    tier: critical
    interval: 1s
    timeout: 900ms
    options: {{url: "{legacy}/mcp"}}
  modern:
    plugin: mcp-http
    tier: critical
    interval: 1s
    timeout: 900ms
    options: {{url: "{modern}/mcp"}}
""")
        wait_for(lambda: self.stats(legacy)["methods"]["ping"] >= before_legacy["ping"] + 3
                 and self.stats(modern)["methods"]["server/discover"]
                 >= before_modern["server/discover"] + 3,
                 timeout=30, what="three agent runs against each server")
        self.assertEqual(agent.probe("legacy")["status"], "pass", agent.probe("legacy"))
        self.assertEqual(agent.probe("modern")["status"], "pass", agent.probe("modern"))
        agent.stop()
        s = self.stats(legacy)["methods"]
        self.assertEqual(s["server/discover"] - before_legacy["server/discover"], 1,
                         f"only the agent's first run tries server/discover: {s}")
        self.assertGreaterEqual(s["initialize"] - before_legacy["initialize"], 3, s)
        m = self.stats(modern)["methods"]
        self.assertEqual(set(m), {"server/discover"}, f"one exchange per run: {m}")

    # ---- not MCP / not there -------------------------------------------------------------------

    def test_plain_http_server_is_not_mcp(self):
        base = self.start_plain()
        code, doc, _ = self.run_once({"url": base + "/mcp"})
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "initialize", "not an MCP Streamable HTTP endpoint")

    def test_nothing_listening_fails_at_reachable(self):
        port = free_port()
        code, doc, _ = self.run_once({"url": f"http://127.0.0.1:{port}/mcp"})
        self.assertEqual(code, 1, doc)
        self.assertResult(doc, "fail", "reachable", f"unable to connect to 127.0.0.1:{port}",
                          "connection refused")

    def test_invalid_options_are_config_errors(self):
        for options in ({"url": "https://127.0.0.1:1/mcp"},
                        {"url": "http://127.0.0.1:1/mcp", "protocol_version": "2024-11-05"},
                        {"url": "http://127.0.0.1:1/mcp", "headers": {"Accept": "text/html"}}):
            with self.subTest(options=options):
                cfg = self.tmp.file("bad.yaml", config(options).replace("@PORT@", str(free_port())))
                code, _, proc = once(cfg, "mcp")
                self.assertEqual(code, 100, proc.stdout + proc.stderr)


class Deadline(VitalsTestCase):
    def test_trickled_answer_ends_at_the_deadline(self):
        """The run's timeout bounds each exchange as a whole, not each read."""
        for kw in ({}, {"slow_head": True}):
            server = Trickle(**kw)
            self.addCleanup(server.close)
            url = f"http://127.0.0.1:{server.port}/mcp"
            cfg = self.tmp.file("v.yaml", f"""
probes:
  mcp: {{plugin: mcp-http, timeout: 1s, options: {{url: "{url}"}}}}
""")
            code, doc, p = once(cfg, "mcp")
            self.assertEqual((code, doc["stage"], doc["message"]),
                             (1, "discover", f"timed out waiting for the server/discover response from {url}"),
                             p.stdout)


if __name__ == "__main__":
    unittest.main()
