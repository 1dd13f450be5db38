"""`vitals notify` paces itself: fast while the probe's result changes, a capped backoff on a failure
that does not change, and one warn line saying so.

The poller runs the probe every start_interval (10 ms by default; unless start_interval is set,
every 2 ms during the first second of a failure at stage reachable, connect or accepting: the
service is coming up). A failure (fail or unknown) that
stays the same (status, stage, message) for 1 s is settled, unless nothing answered at all (stage
reachable or connect: not listening yet): the wait then doubles after each
further identical run, up to 1 s, and vitals logs one warn line naming the probe, the result and
what happens next. A warn (progress in flight) or any change of result keeps or restores the fast
pace. The probes here are `exec` probes whose command appends a line to a counter file, so the
tests count runs the way a server counts login attempts. No s6 needed: the notification fd is a
pipe passed with --notify-fd.

Bounds are generous (a shared, loaded 2-core machine): without the backoff an unchanging failure
runs 300-400 times in 4 s, with it about 100 + a handful.
"""
import os
import select
import shlex
import socket
import subprocess
import time
import unittest

from vitals_testlib import VITALS, VitalsTestCase, free_port, wait_for

FAKE_PLUGIN_DIR = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
SETTLED = "not ready after "  # the warn line, once per settled failure


class NotifyBackoffTest(VitalsTestCase):

    # ---- helpers -------------------------------------------------------------------------------

    def exec_probe(self, script, **extra):
        """A config (log_level warn, as in the container) with probe `chk` running `sh -c SCRIPT`,
        which first appends a line to self.counter."""
        self.counter = os.path.join(self.tmp.path, "runs")
        command = f"echo run >> {shlex.quote(self.counter)}; {script}"
        lines = [f"    {k}: {v}" for k, v in extra.items()]
        return self.tmp.file("vitals.yaml", "log_level: warn\nprobes:\n  chk:\n    plugin: exec\n"
                             + "".join(line + "\n" for line in lines)
                             + f"    options:\n      command: [sh, -c, {command!r}]\n")

    def notify(self, cfg, probe="chk", *extra):
        """Starts `vitals notify ... --notify-fd W ... -- sleep 60`; returns the pipe's read end.
        Stops PROG (and with it the poller) at the end of the test."""
        r, w = os.pipe()
        self.addCleanup(os.close, r)
        self.stderr_path = os.path.join(self.tmp.path, "stderr")
        with open(self.stderr_path, "w") as err:
            self.proc = self.spawn([VITALS, "notify", "-c", cfg, "--probe", probe, "--notify-fd", str(w),
                                    *extra, "--", "sleep", "60"], pass_fds=(w,), stderr=err,
                                   stdin=subprocess.DEVNULL)
        os.close(w)  # only the poller holds it now (PROG closes its copy before exec)
        self.started = time.monotonic()
        return r

    def runs(self):
        try:
            with open(self.counter) as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def stderr(self):
        with open(self.stderr_path) as f:
            return f.read()

    def settled_lines(self):
        return [line for line in self.stderr().splitlines() if SETTLED in line]

    def sleep_until(self, seconds):
        """Sleeps until `seconds` after the notify process started."""
        time.sleep(max(0.0, self.started + seconds - time.monotonic()))

    def read_pipe(self, r, timeout):
        """What the poller wrote, or None if nothing within timeout (b"" = closed)."""
        ready, _, _ = select.select([r], [], [], timeout)
        return os.read(r, 16) if ready else None

    def stop_prog_and_wait_for_the_poller(self, r):
        """Kills PROG; the poller follows at once. Returns whatever was left in the pipe."""
        self.proc.kill()
        self.proc.wait()
        left = b""
        while (chunk := self.read_pipe(r, 30)):  # EOF once the poller (the last writer) is gone
            left += chunk
        self.assertEqual(chunk, b"", "the poller did not exit after PROG")
        return left

    # ---- tests ---------------------------------------------------------------------------------

    def test_an_unchanging_failure_backs_off_and_is_logged_once_at_warn(self):
        cfg = self.exec_probe("echo 'cannot log in: token rejected'; exit 2")
        r = self.notify(cfg, "chk", "--deadline", "110s")
        self.sleep_until(2.5)
        at_2_5s = self.runs()
        self.sleep_until(4.5)
        at_4_5s = self.runs()
        self.assertEqual(self.stop_prog_and_wait_for_the_poller(r), b"", "notified on a failure")
        log = self.stderr()

        # The first second at full pace (about 100 runs), then 20, 40, ... ms up to one run a second.
        self.assertGreater(at_4_5s, 20, log)
        self.assertLess(at_4_5s, 150, log)
        self.assertLessEqual(at_4_5s - at_2_5s, 10, f"runs between 2.5 s and 4.5 s; {log}")
        print(f"\n  runs: {at_2_5s} by 2.5 s, {at_4_5s} by 4.5 s", end=" ")

        # One line a user sees at log_level warn: probe, status, stage, message, and what is next.
        settled = self.settled_lines()
        self.assertEqual(len(settled), 1, log)
        self.assertRegex(settled[0], r"\[warn(ing)?\] .*probe chk not ready after 1\.\ds: fail at exit: "
                                     r"cannot log in: token rejected; retrying every 1s until the "
                                     r"1m50s deadline$")

    def test_a_settled_failure_still_notifies_soon_after_the_probe_passes(self):
        flag = os.path.join(self.tmp.path, "up")
        cfg = self.exec_probe(f"if [ -e {shlex.quote(flag)} ]; then echo up; exit 0; fi; "
                              "echo 'waiting for the flag'; exit 2")
        r = self.notify(cfg)
        self.sleep_until(3.0)  # settled, polling once a second by now
        self.assertIsNone(self.read_pipe(r, 0), self.stderr())
        open(flag, "w").close()
        appeared = time.monotonic()
        got = self.read_pipe(r, 10)
        lag = time.monotonic() - appeared
        log = self.stderr()
        self.assertEqual(got, b"\n", log)
        self.assertLess(lag, 1.5, f"notified {lag:.2f}s after the probe could pass; {log}")
        print(f"\n  notified {lag * 1000:.0f} ms after the flag appeared", end=" ")
        self.assertEqual(self.read_pipe(r, 30), b"", "the poller kept the fd open after notifying")
        settled = self.settled_lines()
        self.assertEqual(len(settled), 1, log)
        self.assertIn("probe chk not ready after", settled[0])
        self.assertTrue(settled[0].endswith(
            ": fail at exit: waiting for the flag; retrying every 1s until it passes (no --deadline)"),
            settled[0])

    def test_a_changed_failure_returns_to_the_fast_pace_and_is_logged_when_it_settles(self):
        message = self.tmp.file("message", "first failure\n")
        cfg = self.exec_probe(f"cat {shlex.quote(message)}; exit 2")
        r = self.notify(cfg)
        self.sleep_until(2.5)
        self.assertEqual(len(self.settled_lines()), 1, self.stderr())
        with open(message, "w") as f:
            f.write("second failure\n")
        changed_at = self.runs()
        wait_for(lambda: len(self.settled_lines()) == 2, 10, what="the second failure to settle")
        # At most one slow (1 s) wait to notice the change, then a second at full pace.
        after_change = self.runs() - changed_at
        self.assertEqual(self.stop_prog_and_wait_for_the_poller(r), b"")
        log = self.stderr()
        self.assertGreaterEqual(after_change, 30, log)
        first, second = self.settled_lines()
        self.assertIn("fail at exit: first failure;", first)
        self.assertIn("fail at exit: second failure;", second)

    def test_an_unchanging_warn_keeps_the_fast_pace(self):
        # warn is progress in flight (a model loading): readiness must be noticed at once.
        cfg = self.exec_probe("echo 'loading model 40%'; exit 1")
        r = self.notify(cfg)
        self.sleep_until(1.5)
        before = self.runs()
        self.sleep_until(3.0)
        during = self.runs() - before
        self.assertEqual(self.stop_prog_and_wait_for_the_poller(r), b"")
        log = self.stderr()
        self.assertGreaterEqual(during, 15, f"runs between 1.5 s and 3 s; {log}")
        self.assertEqual(self.settled_lines(), [], log)

    def test_nothing_listening_keeps_the_fast_pace(self):
        # Connection refused (stage `connect`/`reachable`) costs the server nothing and is what a
        # slow-starting service looks like: no backoff, so readiness is noticed at once however
        # long the start took (a backoff would be at up to 1 s a run by now).
        port = free_port()
        cfg = self.tmp.file("vitals.yaml", "log_level: warn\nprobes:\n  db:\n    plugin: tcp\n"
                            f"    options:\n      port: {port}\n")
        r = self.notify(cfg, "db")
        self.sleep_until(4.0)
        self.assertIsNone(self.read_pipe(r, 0), self.stderr())
        self.assertEqual(self.settled_lines(), [], self.stderr())
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))
            listener.listen(16)
            opened = time.monotonic()
            got = self.read_pipe(r, 10)
            lag = time.monotonic() - opened
        self.assertEqual(got, b"\n", self.stderr())
        self.assertLess(lag, 0.3, f"notified {lag:.2f}s after the port opened; {self.stderr()}")
        print(f"\n  notified {lag * 1000:.0f} ms after the port opened", end=" ")

    def coming_up_runs(self, start_interval=None):
        """A fake probe failing the same way at stage `connect` (nothing listening yet), counting
        its runs in self.counter: those in the first 0.9 s and in 0.9 s from 1.6 s on."""
        self.counter = os.path.join(self.tmp.path, "runs")
        extra = f"    start_interval: {start_interval}\n" if start_interval else ""
        cfg = self.tmp.file("vitals.yaml", f"""log_level: warn
plugin_dir: {FAKE_PLUGIN_DIR}
probes:
  db:
    plugin: fake-ok
{extra}    options: {{result: fail, stage: connect, count: {self.counter}}}
""")
        r = self.notify(cfg, "db")
        self.sleep_until(0.9)
        first = self.runs()
        self.sleep_until(1.6)
        before = self.runs()
        self.sleep_until(2.5)
        later = self.runs() - before
        self.assertEqual(self.stop_prog_and_wait_for_the_poller(r), b"")
        self.assertEqual(self.settled_lines(), [], self.stderr())
        print(f"\n  runs: {first} in the first 0.9 s, {later} in 0.9 s from 1.6 s", end=" ")
        return first, later

    @unittest.skipUnless(FAKE_PLUGIN_DIR, "needs VITALS_FAKE_PLUGIN_DIR (set by ctest)")
    def test_a_service_coming_up_is_followed_closer_during_its_first_second(self):
        # The default pace: every 2 ms (about 450 runs in 0.9 s) while the failure is new, then
        # every 10 ms (about 90). Generous bounds: the machine is shared.
        first, later = self.coming_up_runs()
        self.assertGreater(later, 10)
        self.assertGreater(first, 2 * later)

    @unittest.skipUnless(FAKE_PLUGIN_DIR, "needs VITALS_FAKE_PLUGIN_DIR (set by ctest)")
    def test_a_chosen_start_interval_is_kept_while_the_service_comes_up(self):
        first, later = self.coming_up_runs("50ms")  # 18 runs in 0.9 s
        self.assertLess(first, 30)
        self.assertLess(later, 30)

    @unittest.skipUnless(FAKE_PLUGIN_DIR, "needs VITALS_FAKE_PLUGIN_DIR (set by ctest)")
    def test_the_warn_line_never_shows_a_secret(self):
        cfg = self.tmp.file("vitals.yaml", f"""log_level: warn
plugin_dir: {FAKE_PLUGIN_DIR}
probes:
  chk:
    plugin: fake-ok
    options:
      result: fail
      token: hunter2-secret
""")
        r = self.notify(cfg)
        wait_for(lambda: self.settled_lines(), 10, what="the warn line")
        self.assertEqual(self.stop_prog_and_wait_for_the_poller(r), b"")
        log = self.stderr()
        self.assertNotIn("hunter2", log)
        self.assertIn("fail at fake: fail token=[redacted];", self.settled_lines()[0])


if __name__ == "__main__":
    unittest.main()
