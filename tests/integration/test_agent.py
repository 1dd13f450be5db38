"""The agent end to end through the real binary: /health tiers and transitions, the HTTP surface,
`vitals check`, `once`, `validate`, reloads, signals, readiness fd, hung and throwing plugins,
secrets. Probes use the shipped tcp/http/exec plugins against real listeners and commands, and
the fake plugins (tests/fakes) where a plugin must misbehave."""
import glob
import json
import os
import shutil
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

from vitals_testlib import (SOURCE_DIR, VITALS, VitalsTestCase, free_port, http_get, once, run_vitals,
                            wait_for, wait_port)

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")


class Listener:
    """A TCP listener the test opens and closes, standing in for a dependency."""

    def __init__(self, port):
        self.port = port
        self.sock = None

    def open(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


TCP_CONFIG = """
listen: 127.0.0.1:@PORT@
start_period: {start_period}
probes:
  dep:
    plugin: tcp
    interval: 200ms
    timeout: 100ms
    failure_threshold: 1
    options: {{port: {dep_port}}}
"""


class TiersAndTransitions(VitalsTestCase):
    def test_starting_healthy_unhealthy_healthy(self):
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        agent = self.start_agent(TCP_CONFIG.format(start_period="30s", dep_port=dep.port))
        status, h = agent.health()
        self.assertEqual((status, h["status"], h["ready"]), (503, "starting", False))
        self.assertEqual(h["probes"]["dep"]["stage"] if h["probes"]["dep"]["stage"] else "connect", "connect")

        dep.open()
        h = agent.wait_status("healthy")
        self.assertTrue(h["ready"])
        self.assertEqual(agent.health()[0], 200)
        p = h["probes"]["dep"]
        for key in ("status", "tier", "gates_readiness", "stage", "message", "duration_ms", "checked_at",
                    "age_ms", "since", "consecutive_failures", "consecutive_successes"):
            self.assertIn(key, p)
        self.assertEqual((p["status"], p["tier"], p["gates_readiness"]), ("pass", "critical", True))
        self.assertEqual(h["version"], run_vitals("version").stdout.split()[1])

        dep.close()
        h = agent.wait_status("unhealthy")  # once ready, no more start-period grace
        self.assertEqual(agent.health()[0], 503)
        self.assertFalse(h["ready"])
        # A run that connected while the listener was closing is reset rather than refused.
        self.assertRegex(h["probes"]["dep"]["message"],
                         r"^unable to connect to 127\.0\.0\.1:\d+: "
                         r"(connection refused|Connection reset by peer)$")

        dep.open()
        agent.wait_status("healthy")

    def test_has_been_ready_is_set_by_results_not_by_requests(self):
        # Ready for a while with nobody asking, then failing, still inside start_period: the agent
        # has been ready, so this is unhealthy, not starting (whether or not /health was asked).
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        agent = self.start_agent(TCP_CONFIG.format(start_period="60s", dep_port=dep.port))
        dep.open()
        wait_for(lambda: "unknown -> pass" in agent.log() or "fail -> pass" in agent.log(), 15,
                 what="the probe to pass")
        dep.close()
        wait_for(lambda: "pass -> fail" in agent.log(), 15, what="the probe to fail")
        status, h = agent.health()
        self.assertEqual((status, h["status"], h["ready"]), (503, "unhealthy", False), agent.log())

    def test_start_period_over_means_unhealthy(self):
        agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=free_port()))
        agent.wait_probe("dep", "fail")  # not "starting": the failure counts at once
        status, h = agent.health()
        self.assertEqual((status, h["status"], h["ready"]), (503, "unhealthy", False))

    def test_optional_failure_is_degraded_and_ready(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
probes:
  dep: {{plugin: tcp, interval: 200ms, options: {{port: {dep.port}}}}}
  extra: {{plugin: tcp, tier: optional, interval: 200ms, options: {{port: {free_port()}}}}}
""")
        h = agent.wait_status("degraded")
        self.assertTrue(h["ready"])
        self.assertEqual(agent.health()[0], 200)
        self.assertFalse(h["probes"]["extra"]["gates_readiness"])
        self.assertEqual(agent.get("/health/extra")[0], 503)
        self.assertEqual(agent.get("/health/dep")[0], 200)
        self.assertEqual(agent.get("/readyz")[0], 200)

    def test_exec_warn_is_degraded_and_not_ready(self):
        agent = self.start_agent("""
listen: 127.0.0.1:@PORT@
start_period: 0s
probes:
  cmd: {plugin: exec, interval: 500ms, options: {command: [sh, -c, "printf 'disk 91%% full|used=91\\n'; exit 1"]}}
""")
        h = agent.wait_status("degraded")
        self.assertFalse(h["ready"])
        self.assertEqual(h["probes"]["cmd"]["message"], "disk 91% full")
        status, body, _ = agent.get("/readyz")
        self.assertEqual((status, body), (503, "[-]cmd failed: exit: disk 91% full\nreadyz check failed\n"))


class HttpSurface(VitalsTestCase):
    def setUp(self):
        super().setUp()
        self.dep = Listener(free_port())
        self.dep.open()
        self.addCleanup(self.dep.close)
        self.agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=self.dep.port))
        self.agent.wait_status("healthy")

    def raw(self, data, read=True):
        with socket.create_connection(("127.0.0.1", self.agent.port), timeout=5) as s:
            s.sendall(data)
            return s.recv(65536).decode(errors="replace") if read else ""

    def test_endpoints(self):
        a = self.agent
        self.assertEqual(a.get("/livez")[:2], (200, "ok\n"))
        self.assertEqual(a.get("/readyz")[:2], (200, "ok\n"))
        self.assertEqual(a.get("/readyz?verbose")[:2], (200, "[+]dep ok\nreadyz check passed\n"))
        status, body, headers = a.get("/health/dep")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["probe"]["status"], "pass")
        self.assertEqual(a.get("/health/nope")[0], 404)
        self.assertEqual(a.get("/nope")[0], 404)
        status, _, headers = a.get("/health", method="POST")
        self.assertEqual((status, headers.get("Allow")), (405, "GET, HEAD"))
        self.assertEqual(a.get("/health", method="DELETE")[0], 405)
        status, body, headers = a.get("/health", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertGreater(int(headers["Content-Length"]), 100)
        self.assertEqual(a.get("/health?format=line")[1], "healthy ready=true 1/1\n")

    def test_malformed_requests_get_400_and_never_a_crash(self):
        self.assertIn(" 400 ", self.raw(b"GARBAGE\r\n\r\n").split("\r\n")[0] + " ")
        # Unknown versions get a 400 in our own version, never an echo of theirs.
        for version in (b"HTTX/1.1", b"HTTP/2.0"):
            line = self.raw(b"GET /health " + version + b"\r\nHost: x\r\n\r\n").split("\r\n")[0]
            self.assertEqual(line, "HTTP/1.1 400 Bad Request")
        self.assertEqual(self.raw(b"POST /health HTTP/1.1\r\nHost: x\r\n\r\n").split("\r\n")[0],
                         "HTTP/1.1 405 Method Not Allowed")
        self.assertIn("400", self.raw(b"GET /health HTTP/1.1\r\nX: " + b"a" * 65536 + b"\r\n\r\n").split("\r\n")[0])
        resp = self.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        self.assertTrue(resp.startswith("HTTP/1.1 400"), resp[:80])
        # Pipelined requests are answered in order.
        resp = self.raw(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.2)
        self.assertGreaterEqual(resp.count("HTTP/1.1 200"), 1)
        self.assertEqual(self.agent.get("/health")[0], 200)
        self.assertIsNone(self.agent.proc.poll())


class Check(VitalsTestCase):
    def check(self, *args):
        p = run_vitals("check", *args, timeout=10)
        return p.returncode, p.stdout

    def test_exit_codes(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=dep.port))
        url = f"http://127.0.0.1:{agent.port}"
        agent.wait_status("healthy")
        self.assertEqual(self.check("--url", url), (0, "healthy ready=true 1/1\n"))
        self.assertEqual(self.check("--url", url, "--ready"), (0, "healthy ready=true 1/1\n"))
        self.assertEqual(self.check("--url", url, "--probe", "dep"), (0, "pass ready=true 1/1\n"))
        # -c reads the listen address from the config file.
        self.assertEqual(self.check("-c", agent.log_path.replace(".stderr", ""))[0], 0)

        dep.close()
        agent.wait_status("unhealthy")
        code, out = self.check("--url", url)
        self.assertEqual(code, 1)
        self.assertRegex(out, r"^unhealthy ready=false 0/1 dep:connect: unable to connect to 127\.0\.0\.1:\d+: connection refused\n$")
        self.assertEqual(self.check("--url", url, "--probe", "nope"), (1, "no such probe: nope\n"))

    def test_reads_a_config_from_a_fifo_and_answers_with_stdout_closed(self):
        agent = self.start_agent("listen: 127.0.0.1:@PORT@\nprobes: {}\n")
        fifo = os.path.join(self.tmp.path, "config.fifo")
        os.mkfifo(fifo)
        # The writer blocks until check opens the FIFO; what it writes must reach the reader.
        def write_config():
            with open(fifo, "w") as f:
                f.write(f"listen: 127.0.0.1:{agent.port}\nprobes: {{}}\n")
        writer = threading.Thread(target=write_config)
        writer.start()
        try:
            self.assertEqual(self.check("-c", fifo), (0, "healthy ready=true 0/0\n"))
        finally:
            if writer.is_alive():  # check never opened it: let the writer go
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            writer.join(5)
        # A HEALTHCHECK may run with stdout closed: the exit code is still the agent's answer.
        p = subprocess.run([VITALS, "check", "--url", f"http://127.0.0.1:{agent.port}"],
                           stdout=subprocess.DEVNULL, timeout=10,
                           preexec_fn=lambda: os.close(1))
        self.assertEqual(p.returncode, 0)
        # ... or with a pipe nobody reads any more: no SIGPIPE death.
        read, write = os.pipe()
        os.close(read)
        try:
            p = subprocess.run([VITALS, "check", "--url", f"http://127.0.0.1:{agent.port}"],
                               stdout=write, timeout=10)
        finally:
            os.close(write)
        self.assertEqual(p.returncode, 0)

    def test_reads_every_listen_form_the_agent_accepts(self):
        # A host name (this machine's own, else localhost), a tab before a comment, flow style,
        # a quoted key with a tag: check connects where the agent listens.
        name = socket.gethostname()
        try:
            loopback = socket.gethostbyname(name).startswith("127.")
        except OSError:
            loopback = False
        host = name if loopback else "localhost"
        for text in (f"listen: {host}:@PORT@\t# comment\nprobes: {{}}\n",
                     "{listen: '127.0.0.1:@PORT@', probes: {}}\n",
                     "---\nprobes: {}\n\"listen\": !!str 127.0.0.1:@PORT@\n"):
            with self.subTest(config=text):
                agent = self.start_agent(text)
                cfg = agent.log_path.replace(".stderr", "")
                self.assertEqual(self.check("-c", cfg), (0, "healthy ready=true 0/0\n"))
                agent.stop()

    def test_reads_the_shipped_container_config(self):
        # The HEALTHCHECK of docker/Dockerfile: `vitals check` on config/container.yaml (a comment
        # header, `listen: ${VITALS_LISTEN:-...}`, then the probes).
        agent = self.start_agent("listen: 127.0.0.1:@PORT@\nprobes: {}\n")
        p = run_vitals("check", "-c", os.path.join(SOURCE_DIR, "config", "container.yaml"), timeout=10,
                       env=dict(os.environ, VITALS_LISTEN=f"127.0.0.1:{agent.port}"))
        self.assertEqual((p.returncode, p.stdout), (0, "healthy ready=true 0/0\n"))

    def test_front_end_is_static(self):
        # What a HEALTHCHECK's cost rests on: `vitals` maps no shared library (no dynamic loader,
        # no relocations against libc.so or libstdc++); the agent executable loads the rest.
        binary = shutil.which(VITALS)
        dynamic = subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout
        if "libasan" in dynamic:
            self.skipTest("sanitizer build: its runtime cannot be linked statically")
        self.assertNotIn("(NEEDED)", dynamic)
        headers = subprocess.run(["readelf", "-l", binary], capture_output=True, text=True, check=True).stdout
        self.assertNotIn("INTERP", headers)

    def test_without_the_agent_executable(self):
        # `vitals` alone (copied away from <libdir>/vitals): the usual HEALTHCHECK is still
        # answered; what it hands over fails with one line naming the missing executable.
        agent = self.start_agent("listen: 127.0.0.1:@PORT@\nprobes: {}\n")
        alone = os.path.join(self.tmp.path, "bin", "vitals")
        os.makedirs(os.path.dirname(alone))
        shutil.copy(shutil.which(VITALS), alone)
        p = subprocess.run([alone, "check", "--url", f"http://127.0.0.1:{agent.port}"],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual((p.returncode, p.stdout), (0, "healthy ready=true 0/0\n"))
        missing = re.escape(os.path.normpath(self.tmp.path)) + r"/lib\S*/vitals/vitals"

        def says_both_ways(why):
            # What is handed over: `check` says why on stdout and exits 1, the rest on stderr, 111.
            p = subprocess.run([alone, "check", "--url", f"http://localhost:{agent.port}"],
                               capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 1)
            self.assertRegex(p.stdout, rf"^{why}\n$")
            p = subprocess.run([alone, "version"], capture_output=True, text=True, timeout=10)
            self.assertEqual(p.returncode, 111)
            self.assertRegex(p.stderr, rf"^vitals: fatal: {why}\n$")

        says_both_ways(rf"unable to run {missing}: No such file or directory")
        # With the agent executable but no core library beside it: the same two ways of saying so.
        agent_exe = glob.glob(os.path.join(os.path.dirname(shutil.which(VITALS)), "..", "lib*", "vitals",
                                           "vitals"))[0]
        pkglib = os.path.join(self.tmp.path, os.path.relpath(os.path.dirname(agent_exe),
                                                             os.path.dirname(os.path.dirname(shutil.which(VITALS)))))
        os.makedirs(pkglib)
        shutil.copy(agent_exe, pkglib)
        says_both_ways(r"unable to load \S*/libvitals-core\.so: cannot open shared object file.*")

    def test_absent_agent_and_usage_errors_exit_1(self):
        code, out = self.check("--url", f"http://127.0.0.1:{free_port()}")
        self.assertEqual(code, 1)
        self.assertIn("unreachable: unable to connect to 127.0.0.1:", out)
        self.assertEqual(self.check("--bogus")[0], 1)
        self.assertEqual(self.check("--url", "https://x:1")[0], 1)
        self.assertEqual(self.check("--probe")[0], 1)
        self.assertEqual(self.check("-c", "/nonexistent.yaml")[0], 1)


class OnceAndValidate(VitalsTestCase):
    def test_once_output_and_exit_codes(self):
        cfg = self.tmp.file("v.yaml", """
probes:
  ok: {plugin: exec, options: {command: [echo, all good]}}
  warn: {plugin: exec, options: {command: [sh, -c, "echo meh; exit 1"]}}
  bad: {plugin: exec, options: {command: [sh, -c, "echo broken; exit 2"]}}
  odd: {plugin: exec, options: {command: [sh, -c, "exit 7"]}}
  slow: {plugin: exec, interval: 2s, timeout: 300ms, options: {command: [sh, -c, "sleep 30 & sleep 30"]}}
  missing: {plugin: exec, options: {command: [/nonexistent/program]}}
""")
        p = run_vitals("once", "-c", cfg, "--probe", "ok")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^ok pass exit \d+ms: all good\n$")
        code, doc, _ = once(cfg, "warn")
        self.assertEqual((code, doc["status"], doc["message"]), (0, "warn", "meh"))
        code, doc, _ = once(cfg, "bad")
        self.assertEqual((code, doc["status"], doc["stage"], doc["message"]), (1, "fail", "exit", "broken"))
        self.assertEqual(doc["numbers"][0]["name"], "exit_code")
        code, doc, _ = once(cfg, "odd")
        self.assertEqual((code, doc["status"], doc["message"]), (1, "fail", "unknown: sh exited with 7"))
        code, _, p = once(cfg, "missing")  # refused at load: a config error (test_exec.py)
        self.assertEqual(code, 100)
        self.assertIn("probes.missing.options: command: unable to run /nonexistent/program", p.stderr)

        marker = f"vitals-test-{os.getpid()}-{time.monotonic_ns()}"
        cfg2 = self.tmp.file("v2.yaml", f"""
probes:
  slow: {{plugin: exec, interval: 2s, timeout: 300ms, options: {{command: [sh, -c, "sleep 30 & sleep 31; echo {marker}"]}}}}
""")
        code, doc, _ = once(cfg2, "slow")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "timeout"))
        # The whole process group was killed: no sleep survives.
        out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
        self.assertEqual(out.strip(), "")

        p = run_vitals("once", "-c", cfg, "--probe", "nope")
        self.assertEqual(p.returncode, 100)
        self.assertIn("no probe named 'nope'", p.stderr)

    def test_validate(self):
        good = self.tmp.file("good.yaml", "probes:\n  a: {plugin: tcp, options: {port: 1}}\n")
        p = run_vitals("validate", "-c", good)
        self.assertEqual((p.returncode, p.stdout), (0, f"{good}: ok (1 probes)\n"))
        bad = self.tmp.file("bad.yaml", "probes:\n  a: {plugin: tcp, options: {port: 1, prot: 2}}\n  b: {plugin: nope}\n")
        p = run_vitals("validate", "-c", bad)
        self.assertEqual(p.returncode, 100)
        lines = p.stderr.strip().split("\n")
        self.assertEqual(len(lines), 2, p.stderr)
        self.assertEqual(lines[0], f"{bad}:2: probes.a.options: unknown option 'prot' for plugin tcp; valid options: host, port")
        self.assertTrue(lines[1].startswith(f"{bad}:3: probes.b.plugin: no plugin 'nope' in "), lines[1])

    def test_every_bad_config_exits_100_with_one_line_naming_the_file(self):
        files = sorted(glob.glob(os.path.join(SOURCE_DIR, "tests", "data", "invalid-*.yaml")))
        self.assertGreaterEqual(len(files), 25)
        for f in files:
            for cmd in ("validate", "run"):
                p = run_vitals(cmd, "-c", f, timeout=20)
                self.assertEqual(p.returncode, 100, f"{cmd} {f}: {p.stderr}")
                first = p.stderr.strip().split("\n")[0]
                self.assertIn(os.path.basename(f), first)

    def test_config_errors_never_print_a_secret(self):
        cfg = self.tmp.file("secret.yaml", """
probes:
  db:
    plugin: postgres
    options: {dsn: "postgresql://app:Tr0ub4dor${x@db/app"}
""")
        for cmd in ("validate", "run", "once"):
            p = run_vitals(cmd, "-c", cfg, *(("--probe", "db") if cmd == "once" else ()), timeout=20)
            self.assertEqual(p.returncode, 100, p.stderr)
            self.assertNotIn("Tr0ub4dor", p.stdout + p.stderr)
            self.assertIn(f"{cfg}:5: probes.db.options.dsn: unterminated ${{ at character 27; write $$ for a "
                          "literal $", p.stderr)

    def test_describe_and_plugins(self):
        p = run_vitals("describe", "tcp")
        self.assertEqual(p.returncode, 0)
        self.assertIn("port", p.stdout)
        self.assertIn("required", p.stdout)
        p = run_vitals("describe", "nope")
        self.assertEqual(p.returncode, 100)
        p = run_vitals("plugins")
        for name in ("tcp", "http", "exec"):
            self.assertIn(f"  {name} ", p.stdout)
        p = run_vitals("plugins", "--plugin-dir", FAKES)
        self.assertIn("refused", p.stdout)
        self.assertIn("(abi_major): built for ABI 2.x, agent speaks 1.x", p.stdout)
        missing = os.path.join(self.tmp.path, "no-such-dir")
        for cmd in (("plugins",), ("describe", "tcp")):
            p = run_vitals(*cmd, "--plugin-dir", missing)
            self.assertEqual((p.returncode, p.stdout), (100, ""), cmd)
            self.assertEqual(p.stderr, f"vitals: unable to read plugin directory {missing}: "
                             "No such file or directory\n")
        self.assertEqual(run_vitals("frobnicate").returncode, 100)


class Reload(VitalsTestCase):
    def test_sighup_valid_and_invalid(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        text = TCP_CONFIG.format(start_period="0s", dep_port=dep.port)
        agent = self.start_agent(text)
        agent.wait_status("healthy")
        wait_for(lambda: agent.probe("dep")["consecutive_successes"] >= 3, what="a few passes")
        cfg = agent.log_path.replace(".stderr", "")

        with open(cfg, "w") as f:
            f.write(text.replace("@PORT@", str(agent.port)) +
                    f"  more:\n    plugin: tcp\n    interval: 200ms\n    options: {{port: {dep.port}}}\n")
        agent.signal(signal.SIGHUP)
        wait_for(lambda: "more" in agent.health()[1]["probes"], what="the new probe")
        # The unchanged probe kept its history.
        self.assertGreaterEqual(agent.probe("dep")["consecutive_successes"], 3)
        agent.wait_probe("more", "pass")
        self.assertIn("vitals_config_last_reload_successful 1", agent.get("/metrics")[1])

        with open(cfg, "w") as f:
            f.write("probes:\n  dep: {plugin: tcp, interval: 1s, timeout: 5s, options: {port: 1}}\n")
        agent.signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in agent.log(), what="the rejection in the log")
        self.assertIn("probes.dep.timeout (5s) must be less than interval (1s)", agent.log())
        self.assertIn("vitals_config_last_reload_successful 0", agent.get("/metrics")[1])
        h = agent.health()[1]
        self.assertEqual(sorted(h["probes"]), ["dep", "more"])  # the old config keeps running
        self.assertEqual(h["status"], "healthy")

    @unittest.skipUnless(FAKES, "needs the fake plugins (run through ctest)")
    def test_sighup_loads_a_replaced_plugin_file(self):
        plugins = os.path.join(self.tmp.path, "plugins")
        os.mkdir(plugins)
        os.chmod(plugins, 0o755)
        installed = os.path.join(plugins, "fake-ok.so")
        shutil.copy(os.path.join(FAKES, "fake-ok.so"), installed)
        os.chmod(installed, 0o644)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {plugins}
start_period: 0s
probes:
  a: {{plugin: fake-ok, interval: 100ms}}
""")
        self.assertEqual(agent.wait_probe("a", "pass")["message"], "pass")
        self.assertIn(f"plugins loaded from {plugins}: fake-ok 0.0.1", agent.log())

        # Replaced as install(1) or a package manager does: a new file renamed over the old one.
        shutil.copy(os.path.join(FAKES, "fake-v2.so"), installed + ".new")
        os.chmod(installed + ".new", 0o644)
        os.rename(installed + ".new", installed)
        agent.signal(signal.SIGHUP)
        wait_for(lambda: agent.probe("a")["message"] == "pass (0.0.2)", what="the new plugin's result")
        self.assertIn(f"plugin fake-ok 0.0.2 reloaded from {installed} (was 0.0.1)", agent.log())
        self.assertIn("  fake-ok    0.0.2 ", run_vitals("plugins", "--plugin-dir", plugins).stdout)

        # An unchanged file is not loaded again, and its probes keep their history.
        def last_reload():
            return re.search(r"^vitals_config_last_reload_success_timestamp_seconds (\S+)$",
                             agent.get("/metrics")[1], re.M).group(1)
        reloaded_at = last_reload()
        self.assertEqual(agent.log().count("[probe.a] created"), 2)
        agent.signal(signal.SIGHUP)
        wait_for(lambda: last_reload() != reloaded_at, what="the second reload")
        self.assertEqual(agent.log().count("[probe.a] created"), 2)  # the same instance
        self.assertEqual(agent.log().count("plugin fake-ok 0.0.2 reloaded"), 1)

    def test_sighup_storm(self):
        dep = Listener(free_port())
        dep.open()
        self.addCleanup(dep.close)
        agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=dep.port))
        agent.wait_status("healthy")
        for _ in range(100):
            agent.signal(signal.SIGHUP)
            time.sleep(0.005)
        time.sleep(0.5)
        self.assertIsNone(agent.proc.poll())
        self.assertEqual(agent.health()[1]["status"], "healthy")


class Signals(VitalsTestCase):
    def test_sigterm_and_sigint_exit_0(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=free_port()))
            agent.signal(sig)
            self.assertEqual(agent.proc.wait(10), 0)

    def test_bind_failure_exits_111(self):
        busy = Listener(free_port())
        busy.open()
        self.addCleanup(busy.close)
        cfg = self.tmp.file("v.yaml", f"listen: 127.0.0.1:{busy.port}\nprobes: {{}}\n")
        p = run_vitals("run", "-c", cfg)
        self.assertEqual(p.returncode, 111)
        self.assertIn(f"unable to listen on 127.0.0.1:{busy.port}", p.stderr)

    def test_second_agent_on_the_same_port_exits_111(self):
        agent = self.start_agent(TCP_CONFIG.format(start_period="0s", dep_port=free_port()))
        cfg = self.tmp.file("second.yaml", f"listen: 127.0.0.1:{agent.port}\nprobes: {{}}\n")
        try:
            p = run_vitals("run", "-c", cfg, timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("a second agent started serving the port of the first")
        self.assertEqual(p.returncode, 111, p.stderr)
        self.assertIn(f"unable to listen on 127.0.0.1:{agent.port}: address already in use", p.stderr)
        self.assertIsNone(agent.proc.poll())

    def test_listens_before_the_agent_library_loads(self):
        if not shutil.which("strace") or subprocess.run(["strace", "-o", os.devnull, "true"]).returncode:
            self.skipTest("needs strace, and ptrace allowed")
        # `vitals run` opens its socket in the agent executable, then loads libvitals-core.so (Poco,
        # spdlog: most of a cold start) and hands the socket over: one listen() in all.
        port = free_port()
        cfg = self.tmp.file("v.yaml", f"listen: 127.0.0.1:{port}\nprobes: {{}}\n")
        trace = self.tmp.file("strace.log", "")
        # LeakSanitizer cannot run under ptrace (an ASan build would exit 86 at the end).
        env = dict(os.environ)
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":detect_leaks=0").lstrip(":")
        proc = self.spawn(["strace", "-f", "-o", trace, "-e", "trace=listen,openat", VITALS, "run",
                           "-c", cfg], stderr=subprocess.DEVNULL, env=env)
        wait_port(port, timeout=30)
        status, _, _ = http_get(f"http://127.0.0.1:{port}/livez", timeout=15)
        self.assertEqual(status, 200)
        with open(trace) as f:
            calls = [line for line in f if "listen(" in line or "libvitals-core.so" in line]
        os.kill(int(calls[0].split()[0]), signal.SIGTERM)  # strace -f: "PID call(...)"
        self.assertEqual(proc.wait(15), 0)
        self.assertEqual(len(calls), 2, calls)
        self.assertIn("listen(", calls[0])
        self.assertIn("libvitals-core.so", calls[1])

    def test_a_signal_as_soon_as_the_port_accepts_is_handled(self):
        # The port accepts before the agent library is loaded: SIGHUP (a reload) and SIGTERM (a
        # clean stop, exit 0) sent at that moment are taken by the agent, not fatal.
        for sig in (signal.SIGHUP, signal.SIGTERM):
            port = free_port()
            cfg = self.tmp.file("v.yaml", f"listen: 127.0.0.1:{port}\nprobes: {{}}\n")
            proc = self.spawn([VITALS, "run", "-c", cfg], stderr=subprocess.DEVNULL)
            wait_port(port, timeout=30)
            proc.send_signal(sig)
            if sig == signal.SIGHUP:
                status, _, _ = http_get(f"http://127.0.0.1:{port}/livez", timeout=15)
                self.assertEqual(status, 200)
                self.assertIsNone(proc.poll())
                proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(15), 0, f"after {sig.name}")

    def test_runs_a_config_read_from_a_pipe(self):
        # -c /dev/stdin: the config is read once, by the agent (the early listener leaves a file that
        # is not a regular one alone).
        port = free_port()
        read, write = os.pipe()
        os.write(write, f"listen: 127.0.0.1:{port}\nprobes: {{}}\n".encode())
        os.close(write)
        with os.fdopen(read) as stdin:
            proc = self.spawn([VITALS, "run", "-c", "/dev/stdin"], stdin=stdin,
                              stderr=subprocess.PIPE, text=True)
        wait_port(port, timeout=30)
        status, _, _ = http_get(f"http://127.0.0.1:{port}/livez", timeout=15)
        self.assertEqual(status, 200)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(15)
        with proc.stderr:
            self.assertEqual(code, 0, proc.stderr.read())

    def test_refused_plugin_in_use_exits_100(self):
        cfg = self.tmp.file("v.yaml", f"plugin_dir: {FAKES}\nprobes:\n  a: {{plugin: fake-major2}}\n")
        p = run_vitals("run", "-c", cfg)
        self.assertEqual(p.returncode, 100)
        self.assertIn("plugin 'fake-major2' was refused (abi_major)", p.stderr)


class Readiness(VitalsTestCase):
    def test_notify_fd_gets_one_newline_once_ready(self):
        dep = Listener(free_port())
        self.addCleanup(dep.close)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        agent = self.start_agent(TCP_CONFIG.format(start_period="30s", dep_port=dep.port),
                                 extra_args=["--notify-fd", str(w)], pass_fds=[w])
        os.close(w)
        os.set_blocking(r, False)
        time.sleep(0.5)
        with self.assertRaises(BlockingIOError):
            os.read(r, 10)  # not ready yet: nothing written, fd still open
        dep.open()
        got = wait_for(lambda: self._read(r), what="the readiness newline")
        self.assertEqual(got, b"\n")
        time.sleep(0.2)
        self.assertEqual(os.read(r, 10), b"")  # closed after the newline
        dep.close()
        agent.wait_status("unhealthy")
        self.assertIsNone(agent.proc.poll())  # SIGPIPE-safe, still serving

    @staticmethod
    def _read(fd):
        try:
            return os.read(fd, 10)
        except BlockingIOError:
            return None

    @unittest.skipUnless(FAKES, "needs VITALS_FAKE_PLUGIN_DIR")
    def test_a_probe_runs_while_a_later_plugin_loads_and_readiness_waits_for_every_probe(self):
        # `fast` (the shorter start_interval) starts as soon as its plugin is in, while the plugin
        # of `slow` is still loading (it waits for the gate file); the agent is ready, and serves,
        # only once every probe is in.
        gate, runs = os.path.join(self.tmp.path, "gate"), os.path.join(self.tmp.path, "runs")
        port = free_port()
        cfg = self.tmp.file("v.yaml", f"""listen: 127.0.0.1:{port}
plugin_dir: {FAKES}
start_period: 30s
probes:
  slow: {{plugin: fake-load-gate, interval: 1m}}
  fast: {{plugin: fake-ok, interval: 1m, start_interval: 20ms, isolation: thread, options: {{count: {runs}}}}}
""")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        log = open(cfg + ".stderr", "w")
        self.addCleanup(log.close)
        agent = self.spawn([VITALS, "run", "-c", cfg, "--notify-fd", str(w)], pass_fds=[w],
                           env={**os.environ, "VITALS_FAKE_LOAD_GATE": gate}, stdout=log,
                           stderr=subprocess.STDOUT)
        os.close(w)
        os.set_blocking(r, False)
        wait_for(lambda: os.path.exists(runs), what="a run of `fast` while `slow` loads")
        time.sleep(0.3)
        self.assertIsNone(self._read(r))  # `fast` passed, but `slow` is not in yet
        self.assertIsNone(agent.poll())
        open(gate, "w").close()
        self.assertEqual(wait_for(lambda: self._read(r), what="the readiness newline"), b"\n")
        status, body, _ = http_get(f"http://127.0.0.1:{port}/health")
        doc = json.loads(body)
        self.assertEqual((status, doc["status"], list(doc["probes"])), (200, "healthy", ["slow", "fast"]))

    def test_closed_notify_fd_exits_111(self):
        cfg = self.tmp.file("v.yaml", "probes: {}\n")
        p = run_vitals("run", "-c", cfg, "--notify-fd", "57")
        self.assertEqual(p.returncode, 111)
        self.assertIn("notification-fd 57 is not open", p.stderr)

    def test_closed_notify_fd_with_the_lowest_free_number_exits_111(self):
        # The agent executable opens the listening socket before the agent library loads; it takes the
        # lowest free fd, 3 here, which must not pass for the notification fd.
        cfg = self.tmp.file("v.yaml", f"listen: 127.0.0.1:{free_port()}\nprobes: {{}}\n")
        try:
            p = run_vitals("run", "-c", cfg, "--notify-fd", "3", timeout=10)
        except subprocess.TimeoutExpired:
            self.fail("the agent took its own listening socket for notification-fd 3")
        self.assertEqual(p.returncode, 111, p.stderr)
        self.assertIn("notification-fd 3 is not open", p.stderr)

    def test_read_only_notify_fd_exits_111(self):
        cfg = self.tmp.file("v.yaml", "probes: {}\n")
        with open(os.devnull) as ro:
            fd = ro.fileno()
            p = run_vitals("run", "-c", cfg, "--notify-fd", str(fd), pass_fds=[fd])
        self.assertEqual(p.returncode, 111)
        self.assertIn(f"notification-fd {fd} is open read-only", p.stderr)


@unittest.skipUnless(FAKES, "needs the fake plugins (run through ctest)")
class MisbehavingPlugins(VitalsTestCase):
    def test_hung_and_throwing_plugins_delay_nothing(self):
        flag = self.tmp.file("result", "pass")
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  hangs: {{plugin: fake-hangs, tier: optional, interval: 1s, timeout: 200ms, isolation: thread}}
  throws: {{plugin: fake-throws, tier: optional, interval: 200ms, isolation: thread}}
  good: {{plugin: fake-ok, interval: 100ms, options: {{result: {flag}}}}}
""")
        # On the agent's threads (test_isolation.py has the same in worker processes).
        h = agent.wait_status("degraded")
        hang = agent.wait_probe("hangs", "fail")
        self.assertEqual((hang["stage"], hang["message"]), ("timeout", "did not finish within 200ms"))
        thrown = agent.wait_probe("throws", "fail")
        self.assertEqual(thrown["message"], "unexpected error: thrown on purpose")
        # The good probe keeps running on schedule while the other is stuck.
        before = agent.probe("good")["consecutive_successes"]
        wait_for(lambda: agent.probe("good")["consecutive_successes"] >= before + 5, what="good probe runs")
        # A hung run is never started twice, and after 2*interval+timeout without a result the
        # state is unknown.
        agent.wait_probe("hangs", "unknown", timeout=10)
        self.assertIn("vitals_probe_timeouts_total{probe=\"hangs\",plugin=\"fake-hangs\",tier=\"optional\"} 1\n",
                      agent.get("/metrics")[1])
        self.assertEqual(agent.get("/livez")[0], 200)
        # SIGTERM still ends it cleanly with a run stuck inside a plugin.
        agent.signal(signal.SIGTERM)
        self.assertEqual(agent.proc.wait(10), 0)

    def test_a_run_that_returns_at_its_deadline_keeps_its_result(self):
        # fake-at-deadline returns right at the deadline it is given. The scheduler must time the
        # run from that same deadline (with the same grace), or it gives up on runs in time.
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  punctual: {{plugin: fake-at-deadline, interval: 200ms, timeout: 100ms, failure_threshold: 1}}
""")
        agent.wait_probe("punctual", "pass")

        def counter(pattern):
            m = re.search(pattern + r"\} (\d+)\n", agent.get("/metrics")[1])
            return int(m.group(1)) if m else 0
        runs = r'vitals_probe_runs_total\{probe="punctual"[^}]*result="'
        wait_for(lambda: counter(runs + 'pass"') + counter(runs + 'fail"') >= 15, timeout=30,
                 what="15 runs")
        self.assertEqual(counter(r'vitals_probe_timeouts_total\{probe="punctual"[^}]*'), 0, agent.log())
        self.assertEqual(counter(runs + 'fail"'), 0, agent.log())
        self.assertNotIn("result discarded", agent.log())

    def test_a_create_that_blocks_fails_only_its_probe(self):
        for isolation in ("thread", "process"):
            with self.subTest(isolation=isolation):
                agent = self.start_agent(f"""plugin_dir: {FAKES}
listen: 127.0.0.1:@PORT@
probes:
  stuck: {{plugin: fake-create-blocks, interval: 2s, timeout: 300ms, isolation: {isolation}}}
  good: {{plugin: fake-ok, interval: 100ms}}
""")
                agent.wait_probe("good", "pass")
                stuck = wait_for(lambda: (p := agent.probe("stuck"))["status"] == "fail" and p, 15,
                                 what="stuck to fail")
                self.assertIn(stuck["stage"], ("create", "timeout"))
                self.assertIn("probes.stuck: create() of plugin fake-create-blocks did not return "
                              "within 300ms", agent.log())
                agent.stop()

    def test_listens_before_the_probes_are_created(self):
        # The listener opens once the config is read, before the plugins load and the probes are
        # created: here the port accepts while create() still blocks (3 s until it is given up
        # on), and the request made then is answered once the probes are in.
        port = free_port()
        cfg = self.tmp.file("v.yaml", f"""plugin_dir: {FAKES}
listen: 127.0.0.1:{port}
probes:
  stuck: {{plugin: fake-create-blocks, interval: 1m, timeout: 3s}}
""")
        log_path = self.tmp.file("run.log", "")
        with open(log_path, "w") as log:
            self.spawn([VITALS, "run", "-c", cfg], stderr=log)
            wait_port(port)
            with open(log_path) as f:
                self.assertNotIn("did not return within 3s", f.read())
            status, body, _ = http_get(f"http://127.0.0.1:{port}/health", timeout=15)
        self.assertEqual(status, 503)
        self.assertEqual(list(json.loads(body)["probes"]), ["stuck"])
        with open(log_path) as f:
            self.assertIn("probes.stuck: create() of plugin fake-create-blocks did not return "
                          "within 3s", f.read())

    def test_sigterm_stops_an_agent_stuck_in_create(self):
        cfg = self.tmp.file("v.yaml", f"""plugin_dir: {FAKES}
listen: 127.0.0.1:{free_port()}
probes:
  stuck: {{plugin: fake-create-blocks, interval: 1m, timeout: 30s}}
""")
        # Startup: create() blocks, far from its 30 s deadline.
        with open(self.tmp.file("run.log", ""), "w") as log:
            proc = self.spawn([os.environ.get("VITALS_BIN", "vitals"), "run", "-c", cfg],
                              stderr=log)
            time.sleep(1.0)
            self.assertIsNone(proc.poll())
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(10)
            except subprocess.TimeoutExpired:
                self.fail("SIGTERM did not stop an agent stuck in a plugin's create()")
        self.assertEqual(code, 0)

        # Reload: the running agent keeps answering while a reload is stuck in create(), a SIGTERM
        # then stops it, and a reload that gives up on create() keeps the old config.
        good = self.tmp.file("result", "pass")
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  good: {{plugin: fake-ok, interval: 100ms, options: {{result: {good}}}}}
""")
        agent.wait_status("healthy")
        with open(agent.log_path.replace(".stderr", ""), "a") as f:
            f.write("  stuck: {plugin: fake-create-blocks, tier: optional, interval: 2s, timeout: 300ms}\n")
        agent.signal(signal.SIGHUP)
        # The reload goes through: the stuck probe fails (stage create), the others go on.
        wait_for(lambda: "reloaded" in agent.log(), what="the reload")
        self.assertIn("probes.stuck: create() of plugin fake-create-blocks did not return within 300ms",
                      agent.log())
        self.assertEqual(sorted(agent.health()[1]["probes"]), ["good", "stuck"])
        with open(agent.log_path.replace(".stderr", ""), "a") as f:
            f.write("  stuck2: {plugin: fake-create-blocks, interval: 1m, timeout: 30s}\n")
        agent.signal(signal.SIGHUP)
        time.sleep(1.0)
        self.assertEqual(agent.health()[0], 200)
        agent.signal(signal.SIGTERM)
        try:
            self.assertEqual(agent.proc.wait(10), 0)
        except subprocess.TimeoutExpired:
            self.fail("SIGTERM did not stop an agent with a reload stuck in a plugin's create()")

    def test_secret_options_never_leave_the_host(self):
        secret = "s3cr3t-t0ken-value"
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
log_level: debug
probes:
  a: {{plugin: fake-ok, interval: 100ms, options: {{result: fail, token: {secret}}}}}
""")
        p = agent.wait_probe("a", "fail")
        self.assertEqual(p["message"], "fail token=[redacted]")
        cfg = agent.log_path.replace(".stderr", "")
        outputs = [agent.get(path)[1] for path in ("/health", "/health/a", "/metrics", "/readyz?verbose",
                                                   "/health?format=line")]
        outputs.append(run_vitals("once", "-c", cfg, "--probe", "a").stdout)
        outputs.append(run_vitals("once", "-c", cfg, "--probe", "a", "--json").stdout)
        outputs.append(run_vitals("check", "-c", cfg).stdout)
        outputs.append(run_vitals("describe", "fake-ok", "-c", cfg).stdout)
        agent.stop()
        outputs.append(agent.log())
        for out in outputs:
            self.assertNotIn(secret, out)

    def test_a_short_secret_withholds_the_text_that_holds_it(self):
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
log_level: debug
probes:
  a: {{plugin: fake-ok, interval: 100ms, options: {{result: fail, token: "q7"}}}}
""")
        withheld = "[withheld: holds a secret shorter than 3 characters]"
        p = agent.wait_probe("a", "fail")
        self.assertEqual((p["stage"], p["message"]), ("fake", withheld))
        cfg = agent.log_path.replace(".stderr", "")
        code, doc, _ = once(cfg, "a")
        self.assertEqual((code, doc["message"]), (1, withheld))
        text = run_vitals("once", "-c", cfg, "--probe", "a").stdout
        self.assertRegex(text, r"^a fail fake \d+ms: " + re.escape(withheld) + "\n$")
        agent.stop()
        self.assertIn(withheld, agent.log())
        self.assertNotIn("token=q7", agent.log())

    def test_plugin_text_becomes_one_line_of_utf8(self):
        # The fake plugin returns and logs these bytes: ff fe, a newline, then a forged log line.
        forged = " [error] [vitals] forged line"
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
probes:
  a: {{plugin: fake-ok, interval: 100ms, options: {{result: fail, message: '\\xff\\xfe\\x0a{forged}'}}}}
""")
        want = "\ufffd\ufffd " + forged
        self.assertEqual(agent.wait_probe("a", "fail")["message"], want)
        cfg = agent.log_path.replace(".stderr", "")
        p = subprocess.run([os.environ["VITALS_BIN"], "once", "-c", cfg, "--probe", "a"], capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertRegex(p.stdout.decode("utf-8"), r"^a fail fake \d+ms: " + re.escape(want) + "\n$")
        agent.stop()
        with open(agent.log_path, "rb") as f:
            log = f.read()
        for out in (p.stderr, log):
            text = out.decode("utf-8")  # strict: raises on a byte that is not UTF-8
            self.assertIn(want, text)
            self.assertFalse([line for line in text.split("\n") if line.startswith(forged)], text)

    def test_details_hidden_when_not_exposed(self):
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
expose_details: false
probes:
  a: {{plugin: fake-ok, interval: 100ms, options: {{result: fail}}}}
""")
        agent.wait_probe("a", "fail")
        self.assertNotIn("message", agent.probe("a"))
        self.assertEqual(agent.get("/readyz")[1], "[-]a failed: reason withheld\nreadyz check failed\n")


if __name__ == "__main__":
    unittest.main()
