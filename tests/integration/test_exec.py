"""The exec plugin through the real binary: its deadline, its environment, and the checks `validate`
(and the agent at load) make on its command. Other exec cases (exit-code contract, output) are in
test_agent.py."""
import os
import subprocess
import time
import unittest

from vitals_testlib import VitalsTestCase, once, run_vitals


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


class Environment(VitalsTestCase):
    # ($$ is a literal $ in the config)
    SHOW = ('[/bin/sh, -c, \'echo "token=$${SECRET_TOKEN-unset} home=$${HOME-unset} path=$$PATH '
            'lang=$$LANG extra=$${EXTRA-unset}"\']')

    def run_with_secret(self, options):
        cfg = self.tmp.file("v.yaml", f"probes:\n  show: {{plugin: exec, options: {{{options}}}}}\n")
        env = dict(os.environ, SECRET_TOKEN="s3cr3t-agent-token", HOME="/root")
        p = run_vitals("once", "-c", cfg, "--probe", "show", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout

    def test_clean_default_environment(self):
        out = self.run_with_secret(f"command: {self.SHOW}")
        self.assertIn("token=unset home=unset path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                      "/sbin:/bin lang=C.UTF-8 extra=unset", out)

    def test_env_adds_and_names_variables(self):
        # An agent variable reaches the command only when the config names it.
        out = self.run_with_secret(
            f"command: {self.SHOW}, env: {{EXTRA: 'a b', LANG: C, SECRET_TOKEN: '${{SECRET_TOKEN}}'}}")
        self.assertIn("token=s3cr3t-agent-token home=unset path=/usr/local/sbin:", out)
        self.assertIn("lang=C extra=a b", out)

    def test_invalid_env_name_is_refused(self):
        cfg = self.tmp.file("v.yaml", "probes:\n  show: {plugin: exec, options: {command: [true], "
                            "env: {'A=B': x}}}\n")
        p = run_vitals("validate", "-c", cfg)
        self.assertEqual(p.returncode, 100)
        self.assertEqual(p.stderr, f"{cfg}:2: probes.show.options: env: invalid variable name 'A=B'\n")


if __name__ == "__main__":
    unittest.main()
