"""The postgres probe against a real PostgreSQL 15 (Debian's binaries), through `vitals once` and
`vitals run`: every stage's failure, secrets, connection reuse, kill -9 and restart, a full server,
a blackholed endpoint.

A server that is "starting up" is played by pg_testlib.FakePostgres (a real one leaves that state
too quickly to catch); "in recovery" is a real standby made with pg_basebackup -R.
"""
import json
import os
import re
import subprocess
import unittest

from pg_testlib import PG_BIN, FakePostgres, PgCluster, pg_available
from vitals_testlib import TempDir, VitalsTestCase, free_port, once, wait_for

SUPER_PASSWORD = "Sup3r-Secret-pg-9f41"
APP_PASSWORD = "App-Pa55word-7c2e"
WRONG_PASSWORD = "Wr0ng-Pa55-b6d8"


def probe_yaml(options, name="db", timeout="500ms", interval="1s", extra=""):
    """Config text with one postgres probe (and `extra` probe YAML appended)."""
    return (
        "listen: 127.0.0.1:@PORT@\n"
        "probes:\n"
        f"  {name}:\n"
        "    plugin: postgres\n"
        "    tier: critical\n"
        f"    interval: {interval}\n"
        f"    timeout: {timeout}\n"
        "    failure_threshold: 1\n"
        f"    options: {json.dumps(options)}\n" + extra)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def make_cluster(base, **settings):
    pg = PgCluster(base, free_port(), password=SUPER_PASSWORD, settings=settings)
    pg.initdb()
    return pg


def add_app(pg):
    pg.psql(f"CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'")
    pg.psql("CREATE DATABASE cocosearch OWNER app")


@unittest.skipUnless(pg_available(), f"PostgreSQL 15 not installed in {PG_BIN}")
class PostgresProbeTest(VitalsTestCase):
    """Tests that share one running primary (created once; nothing here stops it)."""

    @classmethod
    def setUpClass(cls):
        cls.pgtmp = TempDir(prefix="vitals-pg-")
        cls.pg = make_cluster(os.path.join(cls.pgtmp.path, "primary"))
        try:
            cls.pg.start().wait_ready()
            add_app(cls.pg)
        except BaseException:
            cls.pg.stop()
            cls.pgtmp.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()
        cls.pgtmp.cleanup()

    def app_dsn(self, **kw):
        kw.setdefault("user", "app")
        kw.setdefault("password", APP_PASSWORD)
        kw.setdefault("dbname", "cocosearch")
        return self.pg.dsn(**kw)

    def run_once(self, options, **kw):
        cfg = self.tmp.file(f"once-{len(os.listdir(self.tmp.path))}.yaml",
                            probe_yaml(options, **kw).replace("@PORT@", str(free_port())))
        code, doc, proc = once(cfg, "db")
        self.assertIsNotNone(doc, f"no JSON from vitals once: {proc.stdout!r} {proc.stderr!r}")
        return code, doc, proc

    def assertFails(self, options, stage, message_part, **kw):
        code, doc, proc = self.run_once(options, **kw)
        self.assertEqual((doc["status"], doc["stage"]), ("fail", stage), doc)
        self.assertIn(message_part, doc["message"])
        self.assertEqual(code, 1)
        return doc

    # -- happy path --------------------------------------------------------------------------

    def test_passes_with_numbers_via_host_name(self):
        # "localhost" goes through the probe's own resolver and libpq's hostaddr list.
        code, doc, _ = self.run_once({"dsn": self.app_dsn(host="localhost"),
                                      "require_extensions": ["plpgsql"], "expect_role": "primary"})
        self.assertEqual((code, doc["status"], doc["stage"]), (0, "pass", "role"), doc)
        self.assertIn('database "cocosearch"', doc["message"])
        numbers = {n["name"]: n for n in doc["numbers"]}
        version = int(self.pg.psql("SHOW server_version_num"))
        self.assertEqual(numbers["server_version"]["value"], version)
        self.assertEqual(numbers["connect"]["unit"], "seconds")
        self.assertGreater(numbers["connect"]["value"], 0)
        self.assertIn("query", numbers)

    def test_uri_dsn_and_password_file(self):
        pwfile = self.tmp.file("pw", APP_PASSWORD + "\n", mode=0o600)
        uri = f"postgresql://app@127.0.0.1:{self.pg.port}/cocosearch"
        code, doc, _ = self.run_once({"dsn": uri, "password_file": pwfile})
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)

    # -- each stage's failure --------------------------------------------------------------------

    def test_wrong_password_fails_at_auth_and_never_leaks(self):
        dsn = self.app_dsn(password=WRONG_PASSWORD)
        doc = self.assertFails({"dsn": dsn}, "auth", 'authentication failed for user "app"')
        uri = f"postgresql://app:{WRONG_PASSWORD}@localhost:{self.pg.port}/cocosearch"
        self.assertFails({"dsn": uri}, "auth", 'authentication failed for user "app"')
        pwfile = self.tmp.file("wrongpw", WRONG_PASSWORD + "\n", mode=0o600)
        self.assertFails({"dsn": self.pg.dsn(user="app", dbname="cocosearch"),
                          "password_file": pwfile}, "auth", 'authentication failed for user "app"')

        # Everything a user can see, from both commands, in JSON and text form.
        seen = [json.dumps(doc)]
        for args in (["--json"], []):
            cfg = self.tmp.file("leak.yaml", probe_yaml({"dsn": dsn}).replace("@PORT@", "1"))
            p = subprocess.run([os.environ.get("VITALS_BIN", "vitals"), "once", "-c", cfg,
                                "--probe", "db", *args], capture_output=True, text=True,
                               timeout=60)
            seen += [p.stdout, p.stderr]
        agent = self.start_agent(probe_yaml(
            {"dsn": dsn}, extra="  db2:\n    plugin: postgres\n    interval: 1s\n"
            "    timeout: 500ms\n    options: " + json.dumps({"dsn": uri}) + "\n"))
        failed = agent.wait_probe("db", "fail")
        self.assertEqual(failed["stage"], "auth")
        agent.wait_probe("db2", "fail")
        seen += [agent.get("/health")[1], agent.get("/metrics")[1], agent.get("/readyz")[1]]
        agent.stop()
        with open(agent.log_path) as f:
            seen.append(f.read())
        for text in seen:
            self.assertNotIn(WRONG_PASSWORD, text)

    def test_missing_database(self):
        self.assertFails({"dsn": self.app_dsn(dbname="nope")}, "auth",
                         'database "nope" does not exist')

    def test_extensions(self):
        code, doc, _ = self.run_once({"dsn": self.app_dsn(), "require_extensions": ["plpgsql"]})
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)
        doc = self.assertFails({"dsn": self.app_dsn(), "require_extensions": ["plpgsql", "vector"]},
                               "extensions", 'extension "vector" is not installed')
        self.assertNotIn("plpgsql", doc["message"])

    def test_failing_and_slow_queries(self):
        self.assertFails({"dsn": self.app_dsn(), "query": "SELECT * FROM no_such_table"},
                         "query", 'relation "no_such_table" does not exist')
        # A query that outlives the probe's timeout is cut by statement_timeout: the probe says so
        # itself at stage `query` instead of the host reporting a bare timeout.
        doc = self.assertFails({"dsn": self.app_dsn(), "query": "SELECT pg_sleep(30)"},
                               "query", "statement timeout", timeout="700ms", interval="2s")
        self.assertIn("57014", doc["message"])

    def test_role_on_primary(self):
        self.assertFails({"dsn": self.app_dsn(), "expect_role": "replica"}, "role",
                         "server is a primary")

    def test_not_listening_is_connection_refused(self):
        port = free_port()
        self.assertFails({"dsn": f"host=127.0.0.1 port={port} user=app password={APP_PASSWORD}"},
                         "reachable", f"unable to connect to 127.0.0.1:{port}: connection refused")

    def test_starting_up_server_fails_at_accepting(self):
        fake = FakePostgres("starting")
        self.addCleanup(fake.close)
        self.assertFails({"dsn": f"host=127.0.0.1 port={fake.port} user=app password=x"},
                         "accepting", "server is starting up")
        self.assertGreater(fake.accepted, 0)

    def test_bad_options_are_config_errors(self):
        for options, part in (
                ({"dsn": self.app_dsn(), "expect_role": "leader"}, "expect_role"),
                ({"dsn": f"host=127.0.0.1 bogus=1 password={WRONG_PASSWORD}"}, "bogus"),
                ({"dsn": f"postgresql://app:{WRONG_PASSWORD}%zz@127.0.0.1/db"}, "dsn"),
                ({"dsn": self.app_dsn(), "password_file": "/x"}, "not both")):
            with self.subTest(part=part):
                code, doc, proc = once(self.tmp.file("bad.yaml", probe_yaml(options).replace(
                    "@PORT@", "1")), "db")
                self.assertEqual(code, 100, proc.stdout + proc.stderr)
                self.assertIn(part, proc.stdout + proc.stderr)
                self.assertNotIn(WRONG_PASSWORD, proc.stdout + proc.stderr)

    # -- the agent keeps one connection ------------------------------------------------------

    def test_reuses_one_backend_across_runs(self):
        agent = self.start_agent(probe_yaml({"dsn": self.app_dsn(application_name="vitals-reuse")},
                                            interval="300ms", timeout="250ms"))
        agent.wait_probe("db", "pass")
        sql = ("SELECT pid, query_start FROM pg_stat_activity "
               "WHERE application_name = 'vitals-reuse'")
        first = self.pg.psql(sql).splitlines()
        self.assertEqual(len(first), 1, first)
        # Wait for more runs to happen (the backend's last query start moves) ...
        later = wait_for(lambda: (rows := self.pg.psql(sql).splitlines()) != first and rows,
                         timeout=20, what="another run")
        later = wait_for(lambda: (rows := self.pg.psql(sql).splitlines()) != later and rows,
                         timeout=20, what="a third run")
        # ... all on the same backend.
        self.assertEqual([r.split("|")[0] for r in later], [first[0].split("|")[0]])


@unittest.skipUnless(pg_available(), f"PostgreSQL 15 not installed in {PG_BIN}")
class PostgresLifecycleTest(VitalsTestCase):
    """Tests that start, kill or fill their own servers."""

    def cluster(self, name="primary", **settings):
        pg = make_cluster(os.path.join(self.tmp.path, name), **settings)
        self.addCleanup(pg.stop)
        return pg

    def test_not_started_then_started(self):
        pg = self.cluster()
        cfg = self.tmp.file("c.yaml", probe_yaml({"dsn": pg.dsn(host="localhost")}).replace(
            "@PORT@", "1"))
        code, doc, _ = once(cfg, "db")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "reachable"), doc)
        self.assertIn("connection refused", doc["message"])
        pg.start().wait_ready()
        code, doc, _ = once(cfg, "db")
        self.assertEqual((code, doc["status"], doc["stage"]), (0, "pass", "role"), doc)

    def test_kill9_then_restart_under_a_running_agent(self):
        pg = self.cluster()
        pg.start().wait_ready()
        agent = self.start_agent(probe_yaml({"dsn": pg.dsn()}, interval="1s", timeout="500ms"))
        agent.wait_probe("db", "pass")
        pg.kill9()
        # Upper bound only; the contract is timeout + interval (1.5s) with failure_threshold 1.
        failed = agent.wait_probe("db", "fail", timeout=20)
        self.assertEqual(failed["stage"], "reachable", failed)
        self.assertIn("connection refused", failed["message"])
        self.assertEqual(agent.health()[1]["status"], "unhealthy")
        pg.start().wait_ready()
        agent.wait_probe("db", "pass", timeout=30)
        self.assertEqual(agent.proc.poll(), None)
        metrics = agent.get("/metrics")[1]
        m = re.search(r'^vitals_probe_postgres_connects\{[^}]*probe="db"[^}]*\} (\S+)$', metrics,
                      re.M)
        self.assertIsNotNone(m, metrics)
        self.assertGreaterEqual(float(m.group(1)), 2)  # it reconnected by itself

    def test_replica_role_and_standby_not_accepting(self):
        primary = self.cluster()
        primary.start().wait_ready()
        replica = PgCluster(os.path.join(self.tmp.path, "replica"), free_port())
        self.addCleanup(replica.stop)
        replica.basebackup_from(primary)
        replica.start().wait_ready()
        self.assertEqual(replica.psql("SELECT pg_is_in_recovery()"), "t")

        cfg_for = lambda role: self.tmp.file(f"{role}.yaml", probe_yaml(  # noqa: E731
            {"dsn": replica.dsn(), "expect_role": role}).replace("@PORT@", "1"))
        code, doc, _ = once(cfg_for("primary"), "db")
        self.assertEqual((doc["status"], doc["stage"]), ("fail", "role"), doc)
        self.assertIn("replica", doc["message"])
        code, doc, _ = once(cfg_for("replica"), "db")
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)
        code, doc, _ = once(cfg_for("any"), "db")
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)

        # The same standby with hot_standby off stays in recovery and refuses every login (57P03).
        replica.stop()
        replica.start(hot_standby="off")
        replica.wait_status("standby", "starting")
        # (For a moment after start it says "starting up"; both are stage `accepting`.)
        doc = wait_for(lambda: (d := once(cfg_for("primary"), "db")[1]) and
                       "not accepting connections" in d["message"] and d, timeout=30,
                       what="the standby to settle in recovery")
        self.assertEqual((doc["status"], doc["stage"]), ("fail", "accepting"), doc)
        self.assertIn("hot standby mode is disabled", doc["message"])

    def test_max_connections_exhausted(self):
        pg = self.cluster(max_connections="3", superuser_reserved_connections="0")
        pg.start().wait_ready()
        holders = []
        for _ in range(3):  # idle sessions: each psql waits on its stdin and holds one slot
            holders.append(self.spawn(
                [os.path.join(PG_BIN, "psql"), "-X", "-h", pg.base_dir, "-p", str(pg.port),
                 "-U", "postgres"], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        # Count the idle backends from /proc (a psql to check would itself take a slot).
        def idle_backends():
            self.assertTrue(all(h.poll() is None for h in holders), "a holder could not connect")
            return len([k for k in pg.children() if b"[local] idle" in _cmdline(k)])
        wait_for(lambda: idle_backends() == 3, timeout=30, what="3 idle sessions")
        cfg = self.tmp.file("c.yaml", probe_yaml({"dsn": pg.dsn()}).replace("@PORT@", "1"))
        code, doc, _ = once(cfg, "db")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "auth"), doc)
        self.assertIn("too many clients", doc["message"])
        for h in holders:  # end of input: psql quits, its backend exits and frees the slot
            h.stdin.close()
            h.wait(10)
        wait_for(lambda: once(cfg, "db")[0] == 0, timeout=30, what="a free slot")

    def test_blackholed_endpoint_fails_at_deadline_and_others_stay_pass(self):
        hole = FakePostgres("blackhole")
        self.addCleanup(hole.close)
        live = FakePostgres("blackhole")  # any listening port: the tcp probe only connects
        self.addCleanup(live.close)
        dsn = f"host=127.0.0.1 port={hole.port} user=app password={APP_PASSWORD}"
        tcp = ("  live:\n    plugin: tcp\n    tier: critical\n    interval: 1s\n"
               "    timeout: 500ms\n    options: {host: 127.0.0.1, port: %d}\n" % live.port)
        agent = self.start_agent(probe_yaml({"dsn": dsn}, extra=tcp))
        failed = agent.wait_probe("db", "fail")
        self.assertEqual(failed["stage"], "reachable", failed)
        self.assertIn(f"127.0.0.1:{hole.port} to answer", failed["message"])
        self.assertEqual(agent.probe("live")["status"], "pass")
        self.assertEqual(agent.wait_probe("db", "fail")["stage"], "reachable")
        self.assertEqual(agent.probe("live")["status"], "pass")
        # `vitals once` too: a precise stage from the probe itself, not the host's timeout.
        code, doc, _ = once(agent.log_path.replace(".stderr", ""), "db")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "reachable"), doc)
        self.assertIn("timed out", doc["message"])


if __name__ == "__main__":
    unittest.main()
