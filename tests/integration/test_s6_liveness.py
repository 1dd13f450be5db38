"""`vitals notify --liveness` under real s6 (Debian's s6-svscan, s6-supervise, s6-svwait, s6-svstat):
a service that is alive but wedged is restarted by vitals, and ready again only once it answers.

The service is tests/integration/wedge_server.py (an HTTP server that stops answering while a
"wedge" file exists, or after its first N answers, with its process alive), probed by the `http`
plugin. What the tests assert is what s6 users see: s6-svstat's pid and readiness, s6-svwait -U,
a dependent service ordered with `s6-svwait -U ../web`, the service log, and the agent's /health
and /metrics.

Needs (CI): apt packages s6, execline; run as root or not.
"""
import os
import re
import signal
import sys
import time
import unittest

from test_s6_notify import HAVE_S6, Scan, sh_quote
from vitals_testlib import VITALS, Agent, VitalsTestCase, free_port, wait_for

SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wedge_server.py")


def log_of(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


@unittest.skipUnless(HAVE_S6, "needs Debian's s6 (apt-get install s6 execline)")
class S6LivenessTest(VitalsTestCase):

    def setUp(self):
        super().setUp()
        self.scan = Scan(self, self.tmp.path)
        self.port = free_port()
        self.wedge = os.path.join(self.tmp.path, "wedge")
        self.state = os.path.join(self.tmp.path, "state")
        self.log = os.path.join(self.tmp.path, "web.log")

    def config(self, liveness):
        return self.tmp.file("vitals.yaml", f"""listen: 127.0.0.1:{free_port()}
state_dir: {self.state}
probes:
  web:
    plugin: http
    interval: 1s
    start_interval: 50ms
    timeout: 500ms
    liveness: {liveness}
    options:
      url: http://127.0.0.1:{self.port}/health
""")

    def web(self, cfg, *server_args, extra=()):
        """Service web: `vitals notify --liveness` chain-loading the wedge server."""
        self.scan.service("web", f"""exec >>{self.log} 2>&1
exec {sh_quote(VITALS, "notify", "-c", cfg, "--probe", "web", "--liveness", *extra, "--")} \\
  {sh_quote(sys.executable, SERVER, self.port, self.wedge, *server_args)}
""")

    def wait(self, predicate, what, timeout=60):
        try:
            return wait_for(predicate, timeout, interval=0.05, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {self.log}:\n{log_of(self.log)}") from None

    def status(self):
        up, ready, pid = self.scan.svstat("web")
        return up == "true", ready == "true", int(pid)

    def starts(self):
        """The pids the server started with, in order (one line per start)."""
        return [int(p) for p in re.findall(r"wedge_server pid (\d+) serving", log_of(self.log))]

    def restart_lines(self):
        return [line for line in log_of(self.log).splitlines() if "liveness: probe web failed" in line and "runs in a row" in line]

    def test_a_wedged_service_is_restarted_and_ready_again_only_once_it_answers(self):
        cfg = self.config("{after: 3, max_restarts: 5, within: 10m}")
        self.web(cfg)
        app_saw = os.path.join(self.tmp.path, "app-saw")
        # The dependent orders itself the plain-s6 way, then asks web at once: it must answer.
        self.scan.service("app", f"""exec >>{self.tmp.path}/app.log 2>&1
s6-svwait -U ../web || exit 1
{sh_quote(sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode().strip())", f"http://127.0.0.1:{self.port}/health")} >{app_saw} 2>&1
exec sleep 100000
""", notification_fd=None, down=True)
        self.scan.start()
        self.assertEqual(self.scan.svwait("-U", "web", 30000), 0, log_of(self.log))
        _, _, first = self.status()

        # 1. SIGSTOP: the process lives (s6 sees nothing wrong), the probe times out. After 3
        # failed runs vitals ends it (SIGTERM + SIGCONT); s6 starts ./run again, and the new
        # `vitals notify` signals readiness once the new server answers.
        os.kill(first, signal.SIGSTOP)
        self.addCleanup(lambda: os.path.exists(f"/proc/{first}") and os.kill(first, signal.SIGKILL))
        up, ready, second = self.wait(lambda: (s := self.status())[2] != first and s[1] and s, "web restarted and ready")
        self.assertTrue(up)
        self.wait(lambda: not os.path.exists(f"/proc/{first}"), "the wedged process to be gone")
        self.assertEqual(self.scan.svwait("-U", "web", 1000), 0)
        lines = self.restart_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], r"\[warn(ing)?\] \[vitals\] liveness: probe web failed 3 runs in a row \(last: fail at "
                                   r"(timeout|status|body|connect): .*\); restarting the service: SIGTERM to "
                                   rf"pid {first} \(restart 1 of at most 5 within 10m\)$")
        # Once per restart: a few intervals later it is still the same, answering server.
        time.sleep(3)
        self.assertEqual(self.status()[2], second)
        self.assertEqual(self.starts(), [first, second])

        # 2. A wedge that outlives the restart: vitals restarts it once, and the new server is
        # never called ready while it does not answer, so a dependent starting now waits.
        open(self.wedge, "w").close()
        _, _, third = self.wait(lambda: (s := self.status())[0] and s[2] not in (-1, first, second) and s,
                                "the second restart")
        self.assertEqual(len(self.restart_lines()), 2)
        self.scan.svc("-u", self.scan.path("app"))
        self.assertEqual(self.scan.svwait("-U", "web", 3000), 99, log_of(self.log))
        self.assertEqual(self.status(), (True, False, third))
        self.assertFalse(os.path.exists(app_saw), "the dependent went ahead while web was wedged")
        os.unlink(self.wedge)
        self.assertEqual(self.scan.svwait("-U", "web", 30000), 0, log_of(self.log))
        self.wait(lambda: os.path.exists(app_saw) and log_of(app_saw), "the dependent's request")
        self.assertEqual(log_of(app_saw), "ok\n")
        self.assertEqual(self.starts(), [first, second, third])
        self.assertEqual(len(self.restart_lines()), 2)

        # The restarts are kept where the agent reads them.
        with open(os.path.join(self.state, "web.liveness")) as f:
            self.assertRegex(f.read(), r"(?m)^restarts 2$")

    def test_the_budget_stops_restarting_a_service_that_always_wedges(self):
        # The server answers once (readiness), then never again: every restart ends the same way.
        # max_restarts 2: the third time vitals gives up, says so once and leaves it running.
        cfg = self.config("{after: 2, max_restarts: 2, within: 10m}")
        self.web(cfg, "1")
        # The agent (another process) reads the restarts from the state folder; its own probe of
        # web is a TCP connect, which takes none of the server's one answer.
        agent_port = free_port()
        agent_cfg = self.tmp.file("agent.yaml", f"""listen: 127.0.0.1:{agent_port}
state_dir: {self.state}
probes:
  web:
    plugin: tcp
    interval: 500ms
    liveness: {{after: 2, max_restarts: 2, within: 10m}}
    options: {{port: {self.port}}}
""")
        agent = Agent(agent_cfg, agent_port)
        self.addCleanup(agent.stop)
        self.assertEqual(agent.probe("web")["liveness"],
                         {"restarts": 0, "last_restart": None, "last_restart_reason": None, "gave_up_at": None})
        self.scan.start()
        self.wait(lambda: "not restarting: 2 restarts within 10m already" in log_of(self.log), "the give-up", 120)
        lines = self.restart_lines()
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("(restart 1 of at most 2 within 10m)", lines[0])
        self.assertIn("(restart 2 of at most 2 within 10m)", lines[1])
        self.assertRegex(lines[2], r"\[error\] \[vitals\] liveness: probe web failed 2 runs in a row \(last: fail at \w+: .*\); "
                                   r"not restarting: 2 restarts within 10m already \(max_restarts 2\); leaving it failing$")
        # Three starts, and the last one stays: up, still the same pid, no poller left.
        time.sleep(4)
        starts = self.starts()
        self.assertEqual(len(starts), 3, starts)
        up, _, pid = self.status()
        self.assertEqual((up, pid), (True, starts[-1]))
        self.assertEqual(len(self.restart_lines()), 3)

        def seen():
            live = agent.probe("web")["liveness"]
            return live["gave_up_at"] and live
        live = wait_for(seen, 15, what="the agent to read the give-up")
        self.assertEqual(live["restarts"], 2)
        self.assertRegex(live["last_restart"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertRegex(live["last_restart_reason"], r"^fail at \w+: ")
        status, body, _ = agent.get("/metrics")
        self.assertEqual(status, 200)
        self.assertIn('vitals_liveness_restarts_total{probe="web"} 2\n', body)
        self.assertIn("# TYPE vitals_liveness_restarts_total counter\n", body)

    def test_a_state_folder_that_cannot_be_used_stops_before_prog_starts(self):
        blocker = self.tmp.file("not-a-folder", "x")
        cfg = self.tmp.file("vitals.yaml", f"""state_dir: {blocker}/vitals
probes:
  web: {{plugin: tcp, options: {{port: {self.port}}}}}
""")
        marker = os.path.join(self.tmp.path, "prog-ran")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        p = self.spawn([VITALS, "notify", "-c", cfg, "--probe", "web", "--liveness", "--notify-fd", str(w), "--",
                        "touch", marker], pass_fds=(w,), stderr=-1, text=True)
        os.close(w)
        _, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 100, err)
        self.assertEqual(err.splitlines(), [f"vitals notify: unable to create state_dir {blocker}/vitals: Not a directory"])
        self.assertFalse(os.path.exists(marker))


if __name__ == "__main__":
    unittest.main()
