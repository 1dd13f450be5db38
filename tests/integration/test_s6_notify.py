"""`vitals notify` under real s6 (Debian's s6 2.11: s6-svscan, s6-supervise, s6-svwait), with a real
PostgreSQL 15 and a real MCP server from npm.

Each test builds a scan directory of service directories, starts `s6-svscan` on it and stops it with
`s6-svscanctl -t` at the end. A service's run script is what a user writes in a container:

    exec vitals notify -c CFG --probe db -- s6-setuidgid postgres postgres -D DATA ...

(no --notify-fd: the fd number comes from the service's ./notification-fd, as s6 sets it up).
What the tests assert is what s6 users see: `s6-svwait -U` returning (exit 0) or timing out
(exit 99), `s6-svstat`, the service's log, the processes left behind.

Debian has no s6-rc, so a dependent service orders itself the documented way: its run script
starts with `s6-svwait -U ../db`.

Needs (CI): apt packages s6, execline, postgresql-15 (tests/integration/pg_testlib.py), nodejs +
`cd tests/fixtures/mcp && npm ci --no-audit --no-fund` (the MCP test); run as root (CI does) so
PostgreSQL runs as the `postgres` user through s6-setuidgid while the poller keeps root.
"""
import os
import select
import shlex
import shutil
import signal
import subprocess
import time
import unittest

from pg_testlib import PG_BIN, FakePostgres, PgCluster, pg_available
from vitals_testlib import SOURCE_DIR, VITALS, VitalsTestCase, free_port, once, wait_for

S6_TOOLS = ("s6-svscan", "s6-svscanctl", "s6-svwait", "s6-svstat", "s6-svc", "s6-svok", "s6-setuidgid")
HAVE_S6 = all(shutil.which(t) for t in S6_TOOLS)
IS_ROOT = os.geteuid() == 0
NODE = shutil.which("node")
MCP_FIXTURES = os.path.join(SOURCE_DIR, "tests", "fixtures", "mcp")
FAKE_PLUGIN_DIR = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
PSQL = os.path.join(PG_BIN, "psql")
STRACE = shutil.which("strace")


def sh_quote(*words):
    return " ".join(shlex.quote(str(w)) for w in words)


def processes_with(fragment, program=None):
    """Pids of live (non-zombie) processes whose command line contains fragment (and whose
    argv[0] is program, if given)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            cmd = b" ".join(argv).decode(errors="replace")
            if program and argv[0].decode(errors="replace") != program:
                continue
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if fragment in cmd and state != "Z":
            out.append(int(entry))
    return out


def threads_of(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def alive(pid):
    """True while pid is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Scan:
    """An s6 scan directory under `base`, supervised by one s6-svscan for the test's lifetime."""

    def __init__(self, test, base):
        self.test = test
        self.dir = os.path.join(base, "scan")
        self.log_path = os.path.join(base, "svscan.log")
        os.makedirs(self.dir)
        os.chmod(base, 0o755)
        self.proc = None

    def service(self, name, run_script, notification_fd=3, down=False, down_signal=None):
        """Writes a service directory; run_script is the body after `#!/bin/sh`."""
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write("#!/bin/sh\n" + run_script)
        os.chmod(os.path.join(d, "run"), 0o755)
        if notification_fd is not None:
            with open(os.path.join(d, "notification-fd"), "w") as f:
                f.write(f"{notification_fd}\n")
        if down:
            open(os.path.join(d, "down"), "w").close()
        if down_signal:
            with open(os.path.join(d, "down-signal"), "w") as f:
                f.write(down_signal + "\n")
        return d

    def start(self):
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["s6-svscan", self.dir], stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.test.addCleanup(self.stop)
        names = [n for n in os.listdir(self.dir) if not n.startswith(".")]
        wait_for(lambda: all(subprocess.run(["s6-svok", self.path(n)]).returncode == 0 for n in names),
                 20, what="s6-supervise to start on every service")

    def path(self, name):
        return os.path.join(self.dir, name)

    def svwait(self, flag, name, timeout_ms):
        """`s6-svwait FLAG -t timeout_ms SERVICE`: returns its exit code (0 reached, 99 timed out)."""
        p = subprocess.run(["s6-svwait", flag, "-t", str(timeout_ms), self.path(name)],
                           capture_output=True, text=True, timeout=timeout_ms / 1000 + 30)
        return p.returncode

    def svstat(self, name, fields="up,ready,pid"):
        p = subprocess.run(["s6-svstat", "-o", fields, self.path(name)], capture_output=True, text=True,
                           timeout=30)
        self.test.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.split()

    def svc(self, *args):
        subprocess.run(["s6-svc", *args], check=True, timeout=30)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        subprocess.run(["s6-svscanctl", "-t", self.dir], timeout=30)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@unittest.skipUnless(HAVE_S6, "needs Debian's s6 (apt-get install s6 execline)")
class S6NotifyTest(VitalsTestCase):

    def setUp(self):
        super().setUp()
        os.chmod(self.tmp.path, 0o755)  # the postgres user must reach the cluster below it
        self.scan = Scan(self, self.tmp.path)

    # ---- helpers -------------------------------------------------------------------------------

    def config(self, name, probes_yaml, plugin_dir=None):
        text = "listen: 127.0.0.1:%d\n" % free_port()
        if plugin_dir:
            text += f"plugin_dir: {plugin_dir}\n"
        return self.tmp.file(name, text + "probes:\n" + probes_yaml)

    def log_of(self, path):
        try:
            with open(path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_log(self, path, fragment, timeout=60):
        return self.wait_until(lambda: fragment in self.log_of(path), f"{fragment!r} in the log", path,
                               timeout)

    def wait_until(self, predicate, what, log_path, timeout=30):
        """wait_for, with the service's log in the failure message."""
        try:
            return wait_for(predicate, timeout, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {log_path}:\n{self.log_of(log_path)}") from None

    def notify_cmd(self, cfg, probe, *extra):
        return sh_quote(VITALS, "notify", "-c", cfg, "--probe", probe, *extra, "--")

    def pg_cluster(self, password):
        if not pg_available():
            self.skipTest(f"needs PostgreSQL 15 in {PG_BIN} (apt-get install postgresql-15)")
        pg = PgCluster(os.path.join(self.tmp.path, "pg"), free_port(), password=password)
        pg.initdb()
        return pg

    def postgres_argv(self, pg):
        """The postmaster command line of pg_testlib's clusters, run as `postgres` when root."""
        conf = {"listen_addresses": "127.0.0.1", "port": str(pg.port), "unix_socket_directories": pg.base_dir,
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
                "shared_buffers": "16MB", "logging_collector": "off", "log_min_messages": "info"}
        argv = ["s6-setuidgid", "postgres"] if IS_ROOT else []
        argv += [os.path.join(PG_BIN, "postgres"), "-D", pg.data_dir]
        for k, v in conf.items():
            argv += ["-c", f"{k}={v}"]
        return sh_quote(*argv)

    def root_only_file(self, name, text):
        """A secret file only its owner (root in CI) can read: the postgres user cannot."""
        return self.tmp.file(name, text, mode=0o600)

    # ---- PostgreSQL ----------------------------------------------------------------------------

    @unittest.skipUnless(NODE, "needs node + the npm MCP fixtures (cd tests/fixtures/mcp && npm ci)")
    def test_db_ready_only_with_authenticated_queries_and_dependents_start_after(self):
        server_mjs = os.path.join(MCP_FIXTURES, "server.mjs")
        if not os.path.isdir(os.path.join(MCP_FIXTURES, "node_modules", "@modelcontextprotocol")):
            raise AssertionError(f"run `cd {MCP_FIXTURES} && npm ci --no-audit --no-fund` first")
        pg = self.pg_cluster("s3cret")
        # The probe logs in over TCP with scram; its password file is readable by root only, so the
        # poller (forked before s6-setuidgid drops to postgres) must keep root to ever pass. It
        # starts out wrong: PostgreSQL then accepts connections (pg_isready would say "ready") but
        # refuses the login.
        pw = self.root_only_file("db-password", "not-the-password\n")
        mcp_port = free_port()
        cfg = self.config("vitals.yaml", f"""
  db:
    plugin: postgres
    timeout: 2s
    options:
      dsn: "host=127.0.0.1 port={pg.port} dbname=postgres user=postgres"
      password_file: {pw}
  mcp:
    plugin: mcp-http
    timeout: 3s
    options:
      url: http://127.0.0.1:{mcp_port}/mcp
""")
        db_log = os.path.join(self.tmp.path, "db.log")
        app_log = os.path.join(self.tmp.path, "app.log")
        app_saw = os.path.join(self.tmp.path, "app-saw")
        self.scan.service("db", f"""exec >>{db_log} 2>&1
exec {self.notify_cmd(cfg, "db")} {self.postgres_argv(pg)}
""", down_signal="SIGINT")
        # The dependent: waits for db's readiness, then proves the database answers an
        # authenticated query at its very first attempt, then runs the MCP server (readiness by
        # `vitals notify` too, with the mcp-http probe).
        self.scan.service("app", f"""exec >>{app_log} 2>&1
s6-svwait -U ../db || exit 1
PGPASSWORD=s3cret PGCONNECT_TIMEOUT=5 {sh_quote(PSQL, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", pg.port,
                                               "-U", "postgres", "-d", "postgres", "-c", "SELECT 'db-ok ' || count(*) FROM pg_database")} >{app_saw} 2>&1
PORT={mcp_port} exec {self.notify_cmd(cfg, "mcp")} {sh_quote(NODE, server_mjs)}
""")
        self.scan.start()

        # PostgreSQL is up and accepts connections, the login fails: not ready, the dependent waits.
        self.wait_log(db_log, "database system is ready to accept connections")
        self.wait_log(db_log, "probe db not ready yet: fail at auth: ")
        self.assertEqual(pg.psql("SELECT 1"), "1")  # the server works over its trusted socket
        self.assertEqual(self.scan.svwait("-U", "db", 2000), 99, self.log_of(db_log))
        self.assertEqual(self.scan.svstat("db", "up,ready"), ["true", "false"])
        self.assertFalse(os.path.exists(app_saw), "the dependent started before db was ready")

        # A failure that does not change is said once at warn, and the server is not hammered:
        # after a second of fast polling, one login attempt a second at most (not 100).
        self.wait_log(db_log, "probe db not ready after ")
        settled = [line for line in self.log_of(db_log).splitlines() if "probe db not ready after " in line]
        self.assertEqual(len(settled), 1, settled)
        self.assertRegex(settled[0], r"\[warn(ing)?\] .*: fail at auth: .*; retrying every 1s until it "
                                     r"passes \(no --deadline\)$")
        time.sleep(1.5)  # past the ramp (20 ms, 40 ms, ... up to 1 s)
        refused = self.log_of(db_log).count("password authentication failed")
        time.sleep(3)
        self.assertLessEqual(self.log_of(db_log).count("password authentication failed") - refused, 6)
        self.assertNotIn("not-the-password", self.log_of(db_log))

        # The right password: ready, and the dependent then sees a working database at once.
        with open(pw, "w") as f:
            f.write("s3cret\n")
        self.assertEqual(self.scan.svwait("-U", "db", 60000), 0, self.log_of(db_log))
        self.assertEqual(self.scan.svstat("db", "up,ready"), ["true", "true"])
        self.assertIn("probe db passed after", self.log_of(db_log))
        self.assertEqual(self.scan.svwait("-U", "app", 60000), 0, self.log_of(app_log))
        with open(app_saw) as f:
            self.assertRegex(f.read(), r"^db-ok \d+\n$")
        code, doc, p = once(cfg, "mcp")
        self.assertEqual((code, doc and doc["status"]), (0, "pass"), p.stdout + p.stderr)

        # The poller is gone once it notified; PROG kept the supervised pid, and PostgreSQL did
        # not mistake its exiting child for a crashed backend.
        wait_for(lambda: processes_with(cfg) == [], 30, what="the pollers to exit after notifying")
        pid = int(self.scan.svstat("db", "pid")[0])
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assertEqual(f.read().split(b"\0")[0], os.path.join(PG_BIN, "postgres").encode())
        self.assertEqual(pg.psql("SELECT 2"), "2")
        self.assertNotIn("terminated by signal", self.log_of(db_log))
        self.assertNotIn("terminating any other active server processes", self.log_of(db_log))

        # Down with down-signal SIGINT: fast shutdown.
        self.scan.svc("-d", self.scan.path("db"))
        self.assertEqual(self.scan.svwait("-D", "db", 60000), 0)
        self.assertIn("received fast shutdown request", self.log_of(db_log))

    # The postmaster treats any child of its own that dies by a signal as a crashed backend, so
    # the poller must never be PROG's child: killing it (an admin's pkill, the OOM killer, a
    # plugin crash) must not make PostgreSQL terminate every session and reinitialize.
    def test_killing_the_poller_does_not_crash_restart_postgresql(self):
        pg = self.pg_cluster("s3cret")
        cfg = self.config("vitals.yaml", f"""
  never:
    plugin: tcp
    start_interval: 200ms
    timeout: 1s
    options:
      host: 127.0.0.1
      port: {free_port()}
""")
        log = os.path.join(self.tmp.path, "db.log")
        self.scan.service("db", f"""exec >>{log} 2>&1
exec {self.notify_cmd(cfg, "never")} {self.postgres_argv(pg)}
""", down_signal="SIGINT")
        self.scan.start()
        self.wait_log(log, "database system is ready to accept connections")
        self.wait_log(log, "probe never not ready yet")
        pollers = processes_with(cfg)
        self.assertEqual(len(pollers), 1)
        os.kill(pollers[0], signal.SIGTERM)
        # Gone from /proc entirely = reaped by the postmaster, whose reaper logs a crash at once.
        self.wait_until(lambda: not os.path.exists(f"/proc/{pollers[0]}"), "the poller to be reaped", log)
        self.assertEqual(pg.psql("SELECT 1"), "1")
        self.assertNotIn("terminating any other active server processes", self.log_of(log))

    def start_gated_db(self, cfg):
        """Supervises service db = `vitals notify` chain-loading a PROG that runs until the test
        removes the gate file, then exits 3; started once (no restart). Returns (gate, log)."""
        gate = os.path.join(self.tmp.path, "gate")
        log = os.path.join(self.tmp.path, "db.log")
        prog = sh_quote("sh", "-c", f'touch {gate}; while [ -e {gate} ]; do sleep 0.05; done; exit 3')
        self.scan.service("db", f"""exec >>{log} 2>&1
exec {self.notify_cmd(cfg, "db")} {prog}
""", down=True)
        self.scan.start()
        self.scan.svc("-o", self.scan.path("db"))
        # PROG starts once the poller has loaded the probe; it may run the probe before the gate
        # file is there.
        self.wait_until(lambda: os.path.exists(gate), "PROG to start", log)
        return gate, log

    def test_prog_exiting_before_readiness_takes_the_poller_with_it(self):
        # The poller is blocked inside a probe run (a server that accepts and never answers, with a
        # 120 s timeout) when PROG exits: it must go at once, not after the timeout, and s6 must
        # never see the service ready.
        blackhole = FakePostgres("blackhole")
        self.addCleanup(blackhole.close)
        cfg = self.config("vitals.yaml", f"""
  db:
    plugin: postgres
    interval: 300s
    timeout: 120s
    options:
      dsn: "host=127.0.0.1 port={blackhole.port} dbname=postgres user=postgres password=x"
""")
        gate, log = self.start_gated_db(cfg)
        self.wait_until(lambda: blackhole.accepted >= 1, "the poller to connect to the blackhole", log)
        pollers = processes_with(cfg)
        self.assertEqual(len(pollers), 1, pollers)
        os.unlink(gate)
        self.wait_until(lambda: processes_with(cfg) == [], "the poller to exit after PROG", log)
        self.assertEqual(self.scan.svwait("-d", "db", 30000), 0)
        self.assertEqual(self.scan.svstat("db", "up,ready,exitcode"), ["false", "false", "3"])
        self.assertNotIn("passed", self.log_of(log))

    def test_prog_exiting_between_probe_runs_leaves_no_poller(self):
        # Same, with the poller between two runs (nothing listens: each run fails at once).
        cfg = self.config("vitals.yaml", f"""
  db:
    plugin: postgres
    start_interval: 200ms
    timeout: 2s
    options:
      dsn: "host=127.0.0.1 port={free_port()} dbname=postgres user=postgres password=x"
""")
        gate, log = self.start_gated_db(cfg)
        self.wait_log(log, "probe db not ready yet: fail at reachable")
        self.assertEqual(len(processes_with(cfg)), 1)
        os.unlink(gate)
        wait_for(lambda: processes_with(cfg) == [], 30, what="the poller to exit after PROG")
        # The poller may see PROG go before s6-supervise has reaped it: wait for "down" first.
        self.assertEqual(self.scan.svwait("-d", "db", 30000), 0)
        self.assertEqual(self.scan.svstat("db", "up,ready,exitcode"), ["false", "false", "3"])

    # ---- --deadline and warn -------------------------------------------------------------------

    def test_deadline_gives_up_with_a_log_line_and_leaves_prog_running(self):
        cfg = self.config("vitals.yaml", f"""
  db:
    plugin: tcp
    start_interval: 100ms
    timeout: 1s
    options:
      host: 127.0.0.1
      port: {free_port()}
""")
        log = os.path.join(self.tmp.path, "db.log")
        self.scan.service("db", f"""exec >>{log} 2>&1
exec {self.notify_cmd(cfg, "db", "--deadline", "1s")} sleep 100000
""")
        self.scan.start()
        self.wait_log(log, "giving up: probe db did not pass within 1s (last: fail at ")
        wait_for(lambda: processes_with(cfg) == [], 30, what="the poller to exit after giving up")
        # PROG is untouched (still the supervised, running process); s6 never saw readiness.
        up, ready, pid = self.scan.svstat("db")
        self.assertEqual((up, ready), ("true", "false"))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assertEqual(f.read().split(b"\0")[:2], [b"sleep", b"100000"])
        self.assertEqual(self.scan.svwait("-U", "db", 1000), 99)

    @unittest.skipUnless(FAKE_PLUGIN_DIR, "needs VITALS_FAKE_PLUGIN_DIR (set by ctest)")
    def test_warn_never_notifies_pass_does(self):
        verdict = self.tmp.file("verdict", "warn\n")
        cfg = self.config("vitals.yaml", f"""
  model:
    plugin: fake-ok
    start_interval: 50ms
    options:
      result: {verdict}
""", plugin_dir=FAKE_PLUGIN_DIR)
        log = os.path.join(self.tmp.path, "svc.log")
        self.scan.service("svc", f"""exec >>{log} 2>&1
exec {self.notify_cmd(cfg, "model")} sleep 100000
""")
        self.scan.start()
        self.wait_log(log, "probe model not ready yet: warn at fake: warn")
        time.sleep(0.5)  # several more warn runs (every 50 ms)
        self.assertEqual(self.scan.svwait("-U", "svc", 1000), 99, self.log_of(log))
        self.assertEqual(self.scan.svstat("svc", "up,ready"), ["true", "false"])
        self.assertEqual(len(processes_with(cfg)), 1, "the poller stopped polling on warn")
        with open(verdict, "w") as f:
            f.write("pass\n")
        self.assertEqual(self.scan.svwait("-U", "svc", 30000), 0, self.log_of(log))
        self.assertIn("probe model passed after", self.log_of(log))
        wait_for(lambda: processes_with(cfg) == [], 30, what="the poller to exit after notifying")


class NotifyWithoutS6Test(VitalsTestCase):
    """What `vitals notify` refuses before PROG starts, and what it never claims; the notification
    fd is a pipe (or a file) passed with --notify-fd, no s6 needed."""

    def config(self, probes_yaml, plugin_dir=None):
        text = f"plugin_dir: {plugin_dir}\n" if plugin_dir else ""
        return self.tmp.file("vitals.yaml", text + "probes:\n" + probes_yaml)

    def notify(self, cfg, probe, fd, prog, shell_redirect="", strace=()):
        """Runs `vitals notify -c CFG --probe PROBE --notify-fd FD -- PROG...` through sh (so a test
        can set fds up with SHELL_REDIRECT) and STRACE; returns the Popen, stderr going to
        self.stderr_path."""
        self.stderr_path = os.path.join(self.tmp.path, "stderr")
        words = [*strace, VITALS, "notify", "-c", cfg, "--probe", probe, "--notify-fd", fd, "--", *prog]
        cmd = f"exec {sh_quote(*words)}"
        with open(self.stderr_path, "w") as err:
            return self.spawn(["sh", "-c", cmd + " " + shell_redirect], stderr=err,
                              stdin=subprocess.DEVNULL, pass_fds=(fd,) if shell_redirect == "" else ())

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def test_a_read_only_notification_fd_exits_111_before_prog_starts(self):
        cfg = self.config("  chk: {plugin: exec, options: {command: [\"true\"]}}\n")
        marker = os.path.join(self.tmp.path, "prog-ran")
        p = self.notify(cfg, "chk", 3, ["touch", marker], shell_redirect="3</dev/null")
        self.assertEqual(p.wait(30), 111, self.stderr())
        self.assertIn("notification-fd 3 is open read-only", self.stderr())
        self.assertEqual(len(self.stderr().splitlines()), 1, self.stderr())
        self.assertFalse(os.path.exists(marker), "PROG ran")

    def test_prog_gets_default_signal_dispositions(self):
        # vitals ignores SIGPIPE for itself; an ignored signal stays ignored across exec, and a
        # server (or a shell pipeline in it) must not inherit that, nor blocked signals.
        cfg = self.config("  chk: {plugin: exec, options: {command: [\"true\"]}}\n")
        out = os.path.join(self.tmp.path, "status")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        p = self.notify(cfg, "chk", w, ["sh", "-c", f"grep -E '^Sig(Ign|Blk):' /proc/$$/status > {out}"])
        os.close(w)
        self.assertEqual(p.wait(30), 0, self.stderr())
        with open(out) as f:
            masks = dict(line.split(":\t") for line in f.read().splitlines())
        sigpipe = 1 << (signal.SIGPIPE - 1)
        self.assertEqual(int(masks["SigIgn"], 16) & sigpipe, 0, f"PROG inherited SIGPIPE ignored: {masks}")
        self.assertEqual(int(masks["SigBlk"], 16), 0, f"PROG inherited blocked signals: {masks}")

    def test_a_probe_that_cannot_load_exits_100_before_prog_starts(self):
        # Errors only the plugin can find (unknown plugin, unknown or badly typed option, a probe
        # that is not there): one line naming file, line and field, exit 100, PROG never runs.
        marker = os.path.join(self.tmp.path, "prog-ran")
        cases = [
            ("  db: {plugin: nosuch}\n", "db", r"vitals\.yaml:2: probes\.db\.plugin: no plugin 'nosuch' in "),
            ("  db: {plugin: tcp, options: {port: 5432, colour: red}}\n", "db",
             r"vitals\.yaml:2: probes\.db\.options: unknown option 'colour' for plugin tcp"),
            ("  db: {plugin: tcp, options: {port: many}}\n", "db", r"vitals\.yaml:2: probes\.db\.options\.port"),
            ("  db: {plugin: tcp, options: {port: 5432}}\n", "nope", r"vitals\.yaml: no probe named 'nope'; probes: db"),
        ]
        for probes, probe, error in cases:
            with self.subTest(error=error):
                cfg = self.config(probes)
                r, w = os.pipe()
                self.addCleanup(os.close, r)
                p = self.notify(cfg, probe, w, ["touch", marker])
                os.close(w)
                self.assertEqual(p.wait(30), 100, self.stderr())
                lines = self.stderr().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertRegex(lines[0], error)
                self.assertFalse(os.path.exists(marker), "PROG ran")
                self.assertEqual(os.read(r, 1), b"", "something was written to the notification fd")

    @unittest.skipUnless(STRACE, "needs strace (apt-get install strace)")
    def test_without_pidfd_open_readiness_and_prog_exit_still_work(self):
        # Kernels before 5.3 have no pidfd_open: strace makes it fail with ENOSYS. The poller must
        # still notify once the probe passes, and still leave as soon as PROG exits.
        flag = os.path.join(self.tmp.path, "up")
        cfg = self.config(f"  chk: {{plugin: exec, options: {{command: [test, -e, {flag}]}}}}\n")
        for prog, passes in ((["sleep", "60"], True), (["sleep", "1"], False)):
            with self.subTest(prog=prog):
                trace = os.path.join(self.tmp.path, "strace.out")
                r, w = os.pipe()
                self.addCleanup(os.close, r)
                self.notify(cfg, "chk", w, prog, strace=["strace", "-f", "-qq", "-o", trace, "-e",
                                                         "trace=pidfd_open", "-e", "inject=pidfd_open:error=ENOSYS"])
                os.close(w)
                wait_for(lambda: "probe chk not ready yet" in self.stderr(), 30, what="the first run")
                with open(trace) as f:
                    self.assertIn("ENOSYS (Function not implemented) (INJECTED)", f.read())
                if passes:
                    open(flag, "w").close()
                    self.assertEqual(select.select([r], [], [], 30)[0], [r], self.stderr())
                    os.unlink(flag)
                    self.assertEqual(os.read(r, 16), b"\n", self.stderr())
                    wait_for(lambda: "probe chk passed after" in self.stderr(), 30, what="the log line")
                # The poller leaves after notifying, or after PROG (strace, which keeps a copy of
                # the fd, stays while PROG runs).
                wait_for(lambda: processes_with(cfg, program=VITALS) == [], 30, what="the poller to exit")

    @unittest.skipUnless(FAKE_PLUGIN_DIR, "needs VITALS_FAKE_PLUGIN_DIR (set by ctest)")
    def test_a_hung_run_is_never_joined_by_a_second_one(self):
        # The same rule as `vitals run`: a run that overran its timeout is reported as a timeout,
        # and the probe is not started again until that run returns (this one never does).
        cfg = self.config("  chk: {plugin: fake-hangs, timeout: 500ms, start_interval: 50ms}\n",
                          plugin_dir=FAKE_PLUGIN_DIR)
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.notify(cfg, "chk", w, ["sleep", "60"])
        os.close(w)
        wait_for(lambda: "not ready yet: fail at timeout" in self.stderr(), 30, what="the first timeout")
        [poller] = processes_with(cfg, program=VITALS)
        before = threads_of(poller)
        time.sleep(3)  # six timeouts' worth: without the rule, six more runs (and threads)
        after = threads_of(poller)
        self.assertLessEqual(after, before, self.stderr())
        self.assertEqual(self.stderr().count("run still going after its 500ms timeout; not started again"), 1,
                         self.stderr())
        print(f"\n  poller threads: {before} after the first timeout, {after} 3 s later", end=" ")

    def test_a_command_in_flight_does_not_outlive_the_poller(self):
        # PROG exits while an exec probe's command is running (a 120 s timeout): the poller leaves
        # at once, and takes the command with it instead of orphaning it.
        pidfile = os.path.join(self.tmp.path, "command.pid")
        gate = os.path.join(self.tmp.path, "gate")
        script = f"echo $$$$ > {pidfile}; exec sleep 300"
        cfg = self.config(f"  chk: {{plugin: exec, interval: 300s, timeout: 120s, "
                          f"options: {{command: [sh, -c, '{script}']}}}}\n")
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        open(gate, "w").close()
        self.notify(cfg, "chk", w, ["sh", "-c", f"while [ -e {gate} ]; do sleep 0.05; done"])
        os.close(w)
        wait_for(lambda: os.path.exists(pidfile) and os.path.getsize(pidfile) > 0, 30, what="the command")
        with open(pidfile) as f:
            command = int(f.read())
        self.assertTrue(alive(command))
        self.addCleanup(lambda: alive(command) and os.kill(command, signal.SIGKILL))
        os.unlink(gate)
        wait_for(lambda: processes_with(cfg, program=VITALS) == [], 30, what="the poller to exit")
        wait_for(lambda: not alive(command), 30, what="the command to be killed")

    def test_a_newline_that_could_not_be_written_is_never_called_ready(self):
        # The reader is gone before the probe passes: the write fails (EPIPE), and the poller must
        # say so instead of "ready".
        cfg = self.config("  chk: {plugin: exec, options: {command: [\"true\"]}}\n")
        r, w = os.pipe()
        os.close(r)
        self.notify(cfg, "chk", w, ["sleep", "60"])
        os.close(w)
        wait_for(lambda: "probe chk passed after" in self.stderr(), 30, what="the probe to pass")
        log = self.stderr()
        self.assertIn("but unable to write the readiness newline to notification-fd", log)
        self.assertNotIn(": ready", log)


if __name__ == "__main__":
    unittest.main()
