"""Crash isolation (docs/ISOLATION.md): a plugin that segfaults, aborts, exits, throws across the
raw C ABI, allocates without bound, hangs in run() or create(), or floods stderr, under `vitals run`,
`once` and `notify`. Each time the agent keeps serving, the other probes keep passing, the failing
probe says `crashed` (or `timeout`, `create`) with the signal or exit status, and the probe's secret
appears in no output. The plugin is tests/fakes' fake-crash (raw C ABI, no C++ layer)."""
import os
import re
import select
import subprocess
import time
import unittest

from vitals_testlib import VITALS, Listener, VitalsTestCase, free_port, once, wait_for

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
TOKEN = "tok-3a1f9e7c"  # the probes' secret: it must never show
ASAN = b"libasan" in subprocess.run(["ldd", VITALS], capture_output=True).stdout


def sanitizer_env():
    """Under ASan the crashes must end the worker as they would without it (a signal, no report
    in the sanitizer log, which the sanitizer run counts as a failure)."""
    env = dict(os.environ)
    if ASAN:
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                               ":handle_segv=0:handle_abort=0:handle_sigbus=0:detect_leaks=0")
    return env


CONFIG = """
listen: 127.0.0.1:@PORT@
plugin_dir: {plugins}
worker_memory_limit: 64MiB
probes:
  dep:
    plugin: tcp
    interval: 300ms
    timeout: 200ms
    options: {{port: {port}}}
  calm:
    plugin: fake-crash
    interval: 300ms
    timeout: 200ms
    options: {{mode: pass, token: {token}}}
  bad:
    plugin: fake-crash
    tier: optional
    interval: {interval}
    timeout: {timeout}
    failure_threshold: 1
    options: {{mode: {mode}, create: {create}, token: {token}}}
{bad_extra}"""

# mode -> what the failing probe's message must say
CRASHES = {
    "segv": r"killed by signal 11 \(SIGSEGV",
    "abort": r"killed by signal 6 \(SIGABRT",
    "exit": "exited with status 3",
    "throw": r"killed by signal 6 \(SIGABRT",  # std::terminate
    "alloc": "(SIGABRT|SIGSEGV|exited with status)",  # bad_alloc -> terminate, or a NULL write
}


class IsolationTest(VitalsTestCase):
    def setUp(self):
        super().setUp()
        self.dep = Listener()
        self.addCleanup(self.dep.close)
        # fake-crash (not from the installed plugin folder: a worker process by default) and the
        # installed tcp plugin, side by side.
        self.plugins = os.path.join(self.tmp.path, "plugins")
        os.mkdir(self.plugins)
        installed = os.path.join(os.path.dirname(VITALS), "..", "lib", "vitals", "plugins")
        os.symlink(os.path.join(FAKES, "fake-crash.so"), os.path.join(self.plugins, "fake-crash.so"))
        os.symlink(os.path.realpath(os.path.join(installed, "tcp.so")),
                   os.path.join(self.plugins, "tcp.so"))

    def config(self, mode="pass", create="ok", interval="300ms", timeout="200ms", bad_extra=""):
        return CONFIG.format(plugins=self.plugins, port=self.dep.port, token=TOKEN, mode=mode,
                             create=create, interval=interval, timeout=timeout,
                             bad_extra=bad_extra)

    def assert_no_secret(self, *texts):
        for t in texts:
            self.assertNotIn(TOKEN, t)

    def workers(self, agent):
        """Pids of the agent's worker processes."""
        out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(agent.proc.pid)],
                             capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "vitals worker" in line]

    def test_run_survives_every_crash(self):
        for mode, expected in CRASHES.items():
            if mode == "alloc" and ASAN:
                continue  # the sanitizers' shadow memory needs the limit off
            with self.subTest(mode=mode):
                slow = mode == "alloc"
                agent = self.start_agent(self.config(mode, interval="20s" if slow else "300ms",
                                                     timeout="10s" if slow else "200ms"),
                                         env=sanitizer_env())
                bad = wait_for(lambda: (p := agent.probe("bad"))["stage"] == "crashed"
                               and "during this run" in p["message"] and p, 20,
                               what=f"probe bad to crash ({mode})")
                self.assertEqual(bad["status"], "fail")
                self.assertRegex(bad["message"], f"^plugin fake-crash's worker .*{expected}")
                # The others: the tcp probe in the agent, and `calm`, which shared the worker
                # until `bad` was found alone in it when it crashed and moved to its own (on a
                # loaded machine their runs may overlap a few times first: the backoff holds both).
                agent.wait_probe("dep", "pass")
                wait_for(lambda: (p := agent.probe("calm"))["status"] == "pass"
                         and p["stage"] == "fake" and p, 30, what="calm to pass after the crash")
                time.sleep(1)
                self.assertEqual(agent.probe("calm")["status"], "pass")
                self.assertIsNone(agent.proc.poll())
                _, metrics, _ = agent.get("/metrics")
                crashes = re.search(r'vitals_probe_crashes_total\{probe="bad",plugin="fake-crash"'
                                    r',tier="optional"\} (\d+)', metrics)
                self.assertTrue(crashes and int(crashes.group(1)) >= 1, metrics)
                log = agent.log()
                self.assertRegex(log, r"plugin fake-crash: worker \d+ .* while running probe bad")
                self.assertIn("[probe.bad]", log)
                _, health, _ = agent.get("/health")
                self.assert_no_secret(log, health, metrics)
                agent.stop()

    def test_stderr_is_logged_scrubbed_and_named(self):
        agent = self.start_agent(self.config("stderr"), env=sanitizer_env())
        agent.wait_probe("bad", "pass")
        wait_for(lambda: "a line on stderr" in agent.log(), 10, what="the plugin's stderr in the log")
        log = agent.log()
        self.assertRegex(log, r"plugin fake-crash \(probes [a-z, ]*bad[a-z, ]*\): worker output: "
                              r"fake-crash: a line on stderr \(token=\[redacted\]\)")
        self.assert_no_secret(log)

    def test_hung_run_is_killed_and_nothing_piles_up(self):
        agent = self.start_agent(self.config("hang"), env=sanitizer_env())
        bad = agent.wait_probe("bad", "fail")
        self.assertEqual(bad["stage"], "timeout")
        # Several hung runs later: each one's worker was killed and reaped.
        wait_for(lambda: len(re.findall(r"hung past its deadline", agent.log())) >= 3, 30,
                 what="three hung runs to be killed")
        self.assertLessEqual(len(self.workers(agent)), 2, self.workers(agent))
        self.assertEqual(agent.probe("bad")["status"], "fail")
        self.assertEqual(agent.probe("calm")["status"], "pass")
        self.assertEqual(agent.probe("dep")["status"], "pass")
        self.assert_no_secret(agent.log())
        # SIGTERM stops it promptly although a run hangs in a worker.
        started = time.monotonic()
        self.assertEqual(agent.stop(timeout=10), 0)
        self.assertLess(time.monotonic() - started, 5)

    def test_create_that_hangs_or_crashes_fails_only_its_probe(self):
        for create, stages, message in (("hang", ("create", "timeout"), "did not (return|finish)"),
                                        ("segv", ("create",), "killed by signal 11")):
            with self.subTest(create=create):
                agent = self.start_agent(self.config(create=create), env=sanitizer_env())
                agent.wait_probe("dep", "pass")
                agent.wait_probe("calm", "pass")
                bad = wait_for(lambda: (p := agent.probe("bad"))["stage"] in stages and p, 20,
                               what="bad to fail at create")
                self.assertEqual(bad["status"], "fail")
                self.assertRegex(bad["message"], message)
                self.assertRegex(agent.log(), r"probes\.bad: create\(\)")
                self.assert_no_secret(agent.log())
                agent.stop()

    def test_thread_isolation_create_that_hangs(self):
        """isolation: thread keeps the in-process path: a hung create() is left behind on its
        thread, and the probe fails with stage create while the agent serves."""
        agent = self.start_agent(self.config(create="hang", bad_extra="    isolation: thread\n"),
                                 env=sanitizer_env())
        bad = wait_for(lambda: (p := agent.probe("bad"))["stage"] == "create" and p, 20,
                       what="bad to fail at create")
        self.assertIn("did not return within 200ms", bad["message"])
        agent.wait_probe("calm", "pass")
        self.assertIn("probes.bad: create() of plugin fake-crash did not return within 200ms",
                      agent.log())

    def test_once_reports_the_crash(self):
        for mode, expected in CRASHES.items():
            if mode == "alloc":
                continue
            with self.subTest(mode=mode):
                cfg = self.tmp.file(f"{mode}.yaml", self.config(mode).replace("@PORT@",
                                                                                str(free_port())))
                env_before = os.environ.copy()
                os.environ.update(sanitizer_env())
                try:
                    code, doc, p = once(cfg, "bad")
                finally:
                    os.environ.clear()
                    os.environ.update(env_before)
                self.assertEqual(code, 1, p.stderr)
                self.assertEqual(doc["stage"], "crashed")
                self.assertRegex(doc["message"], expected)
                self.assert_no_secret(p.stdout, p.stderr)

    def test_notify_retries_a_crash_until_it_passes(self):
        mode_file = self.tmp.file("mode", "segv\n")
        cfg = self.tmp.file("notify.yaml", self.config(mode_file).replace("@PORT@", "1"))
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        err_path = os.path.join(self.tmp.path, "notify.stderr")
        with open(err_path, "w") as err:
            self.spawn([VITALS, "notify", "-c", cfg, "--probe", "bad", "--notify-fd", str(w), "--",
                        "sleep", "60"], pass_fds=(w,), stderr=err, stdin=subprocess.DEVNULL,
                       env=sanitizer_env())
        os.close(w)
        ready, _, _ = select.select([r], [], [], 2.5)
        self.assertEqual(ready, [], "ready while the probe crashes")
        with open(mode_file, "w") as f:
            f.write("pass\n")
        ready, _, _ = select.select([r], [], [], 15)
        self.assertEqual(ready, [r], "never ready after the plugin stopped crashing")
        self.assertEqual(os.read(r, 16), b"\n")
        with open(err_path) as f:
            text = f.read()
        self.assertIn("SIGSEGV", text)
        self.assert_no_secret(text)


if __name__ == "__main__":
    unittest.main()
