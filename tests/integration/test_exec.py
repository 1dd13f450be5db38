"""The exec plugin through the real binary: its deadline, its environment, and the checks `validate`
(and the agent at load) make on its command. Other exec cases (exit-code contract, output) are in
test_agent.py."""
import os
import subprocess
import time
import unittest

from vitals_testlib import VitalsTestCase, once


def marker():
    return f"vitals-exec-test-{os.getpid()}-{time.monotonic_ns()}"


def survivors(mark):
    return subprocess.run(["pgrep", "-f", mark], capture_output=True, text=True).stdout.strip()


class Deadline(VitalsTestCase):
    def test_deadline_bounds_a_child_that_closed_its_output(self):
        # The child ignores SIGTERM and closes stdout and stderr, so the pipes reach EOF long
        # before it exits: the deadline must still end the run and kill the whole group.
        mark = marker()
        cfg = self.tmp.file("v.yaml", f"""
probes:
  quiet:
    plugin: exec
    interval: 10s
    timeout: 1s
    options: {{command: [/bin/sh, -c, "trap '' TERM; exec >/dev/null 2>&1; sleep 20; : {mark}"]}}
""")
        self.addCleanup(lambda: subprocess.run(["pkill", "-KILL", "-f", mark]))
        started = time.monotonic()
        code, doc, p = once(cfg, "quiet")
        self.assertLess(time.monotonic() - started, 15, "the run outlived its deadline")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "timeout"), p.stdout)
        self.assertIn("killed its process group", doc["message"])
        self.assertEqual(survivors(mark), "", "the child outlived the run")


if __name__ == "__main__":
    unittest.main()
