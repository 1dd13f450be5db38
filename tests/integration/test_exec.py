"""The exec plugin through the real binary: its deadline, its environment, and the checks `validate`
(and the agent at load) make on its command. Other exec cases (exit-code contract, output) are in
test_agent.py."""
import os
import signal
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


class IgnoredSigchld(VitalsTestCase):
    def test_a_failing_command_fails_when_sigchld_was_ignored(self):
        # A supervisor or a shell's `trap '' CHLD` may start vitals with SIGCHLD ignored, which exec
        # keeps: the kernel then reaps children itself and waitpid() finds none. The verdict must
        # still be the command's exit code, in the agent's process and in a worker process.
        for isolation in ("thread", "process"):
            with self.subTest(isolation=isolation):
                cfg = self.tmp.file(f"{isolation}.yaml", f"""
probes:
  bad:
    plugin: exec
    isolation: {isolation}
    options: {{command: [/bin/sh, -c, "echo boom; exit 2"]}}
""")
                p = run_vitals("once", "-c", cfg, "--probe", "bad",
                               preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
                self.assertRegex(p.stdout, r"^bad fail exit \d+ms: boom\n$")


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


class LoadChecks(VitalsTestCase):
    """`validate` and the agent at load refuse a command that cannot run, naming probe and program."""

    def validate(self, command, extra=""):
        cfg = self.tmp.file("v.yaml", f"probes:\n  disk:\n    plugin: exec\n    options:\n"
                            f"      command: {command}\n{extra}")
        p = run_vitals("validate", "-c", cfg)
        return cfg, p

    def test_scalar_command_with_arguments_is_refused(self):
        cfg, p = self.validate("/usr/lib/nagios/plugins/check_disk -w 10%")
        self.assertEqual(p.returncode, 100)
        self.assertEqual(p.stderr, f"{cfg}:2: probes.disk.options: command: unable to run "
                         "/usr/lib/nagios/plugins/check_disk -w 10%: No such file or directory; "
                         "command is a list: [program, arg, ...]\n")
        # The agent refuses it at start too, before listening.
        p = run_vitals("run", "-c", cfg, timeout=20)
        self.assertEqual(p.returncode, 100)
        self.assertIn("probes.disk.options: command: unable to run /usr/lib/nagios/plugins/check_disk",
                      p.stderr)

    def test_programs_that_cannot_run_are_refused(self):
        script = self.tmp.file("check.sh", "#!/bin/sh\necho fine\n", mode=0o644)
        cases = [
            (f"[{script}]", f"unable to run {script}: not executable"),
            (f"[{self.tmp.path}]", f"unable to run {self.tmp.path}: not a regular file"),
            ("[no-such-check-xyz, -w, 1]", "unable to run no-such-check-xyz: no executable "
             "no-such-check-xyz in PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ]
        for command, message in cases:
            cfg, p = self.validate(command)
            self.assertEqual((p.returncode, p.stderr),
                             (100, f"{cfg}:2: probes.disk.options: command: {message}\n"), command)

    def test_program_is_found_in_the_commands_own_path(self):
        self.tmp.file("check_it", "#!/bin/sh\necho found via env PATH\n", mode=0o755)
        cfg, p = self.validate("[check_it]", f"      env: {{PATH: '{self.tmp.path}:/bin'}}\n")
        self.assertEqual(p.returncode, 0, p.stderr)
        code, doc, _ = once(cfg, "disk")
        self.assertEqual((code, doc["message"]), (0, "found via env PATH"))


if __name__ == "__main__":
    unittest.main()
