"""One command-line behaviour for every subcommand: `--flag=value` and `--flag value`, `-h`/`--help`
on each, an unknown flag is a one-line error with exit 100 (`check`: 1, on stdout, as all it says)."""
import os
import unittest

from vitals_testlib import VitalsTestCase, free_port, run_vitals

SUBCOMMANDS = ("run", "check", "once", "notify", "validate", "plugins", "describe", "version")


class CommandLine(VitalsTestCase):
    def test_help_on_every_subcommand(self):
        for sub in SUBCOMMANDS:
            for flag in ("-h", "--help"):
                with self.subTest(sub=sub, flag=flag):
                    p = run_vitals(sub, flag)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertIn(f"Usage: vitals {sub} [OPTIONS]", p.stdout)
                    self.assertEqual(p.stderr, "")
        p = run_vitals("notify", "--help")
        for flag in ("-c,--config FILE", "--probe NAME", "--notify-fd N", "--deadline D", "-- PROG ARGS..."):
            self.assertIn(flag, p.stdout)
        for args in (["--help"], ["-h"], ["help"]):
            p = run_vitals(*args)
            self.assertEqual(p.returncode, 0)
            self.assertTrue(p.stdout.startswith("usage: vitals <command> [options]"), p.stdout)

    def test_unknown_flag_is_one_line_and_exit_100(self):
        for sub in SUBCOMMANDS:
            if sub == "check":
                continue
            with self.subTest(sub=sub):
                p = run_vitals(sub, "--bogus", "x")
                self.assertEqual(p.returncode, 100, p.stdout + p.stderr)
                self.assertEqual(p.stderr, f"vitals {sub}: unknown option --bogus "
                                           f"(see vitals {sub} --help)\n")
                self.assertEqual(p.stdout, "")
        p = run_vitals("--bogus")
        self.assertEqual((p.returncode, p.stderr), (100, "vitals: unknown option --bogus (see vitals --help)\n"))
        p = run_vitals("bogus")
        self.assertEqual((p.returncode, p.stderr), (100, "vitals: unknown command 'bogus' (see vitals --help)\n"))
        p = run_vitals()
        self.assertEqual((p.returncode, p.stderr), (100, "vitals: missing command (see vitals --help)\n"))

    def test_check_says_usage_errors_on_stdout_and_exits_1(self):
        for args, message in ((["--bogus"], "unknown option --bogus"),
                              (["--probe", "a", "--ready"], "--probe and --ready exclude each other"),
                              (["--probe"], "--probe: 1 required NAME missing")):
            with self.subTest(args=args):
                p = run_vitals("check", *args)
                self.assertEqual(p.returncode, 1)
                self.assertEqual(p.stdout, f"usage error: {message} (see vitals check --help)\n")

    def test_flag_equals_value_and_flag_space_value_agree(self):
        cfg = self.tmp.file("v.yaml", "probes:\n  ok: {plugin: exec, options: {command: [echo, fine]}}\n")
        for args in (["-c", cfg, "--probe", "ok"], [f"--config={cfg}", "--probe=ok"],
                     ["--config", cfg, "--probe=ok"], [f"-c{cfg}", "--probe", "ok"]):
            with self.subTest(args=args):
                p = run_vitals("once", *args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertRegex(p.stdout, r"^ok pass exit \d+ms: fine\n$")
        for args in (["-c", cfg], [f"--config={cfg}"]):
            p = run_vitals("validate", *args)
            self.assertEqual((p.returncode, p.stdout), (0, f"{cfg}: ok (1 probes)\n"))
        port = free_port()
        for args in (["--url", f"http://127.0.0.1:{port}"], [f"--url=http://127.0.0.1:{port}"]):
            p = run_vitals("check", *args)
            self.assertEqual(p.returncode, 1)
            self.assertTrue(p.stdout.startswith(f"unreachable: unable to connect to 127.0.0.1:{port}"), p.stdout)
        for args in (["--notify-fd", "2"], ["--notify-fd=2"]):
            p = run_vitals("run", *args)
            self.assertEqual(p.returncode, 100)
            self.assertIn("--notify-fd needs a number of 3 or more", p.stderr)

    def test_a_missing_value_is_a_usage_error(self):
        p = run_vitals("run", "-c")
        self.assertEqual(p.returncode, 100)
        self.assertEqual(p.stderr, "vitals run: --config: 1 required FILE missing (see vitals run --help)\n")

    def test_notify_takes_prog_after_double_dash_only(self):
        cfg = self.tmp.file("v.yaml", "probes:\n  ok: {plugin: exec, options: {command: [echo, fine]}}\n")
        p = run_vitals("notify", f"--config={cfg}", "--probe=ok")
        self.assertEqual(p.returncode, 100)
        self.assertEqual(p.stderr, "vitals notify: missing -- PROG ARGS... (see vitals notify --help)\n")
        p = run_vitals("notify", "--probe", "ok", "--", "true")
        self.assertEqual(p.returncode, 100)
        self.assertIn("needs -c FILE and --probe NAME", p.stderr)
        p = run_vitals("notify", "-c", cfg, "--probe", "ok", "--deadline=soon", "--", "true")
        self.assertEqual(p.returncode, 100)
        self.assertIn("invalid --deadline 'soon'; use e.g. 30s", p.stderr)
        # What follows -- is PROG's, even flags vitals knows: PROG runs (no notification fd here,
        # so exit 100 comes from that check, after parsing accepted PROG's --help).
        p = run_vitals("notify", "-c", cfg, "--probe", "ok", "--", "sh", "-c", "exit 0", "--help")
        self.assertNotIn("unknown option", p.stderr)
        self.assertNotIn("Usage:", p.stdout)

    def test_plugin_dir_repeats_for_a_list(self):
        fakes = os.environ["VITALS_FAKE_PLUGIN_DIR"]
        empty = os.path.join(self.tmp.path, "empty")
        os.mkdir(empty)
        p = run_vitals("plugins", "--plugin-dir", empty, f"--plugin-dir={fakes}")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith(f"plugin directory: {empty}\nplugin directory: {fakes}\n"), p.stdout)
        p = run_vitals("describe", "fake-ok", f"--plugin-dir={empty}", "--plugin-dir", fakes)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("fake-ok 0.0.1"), p.stdout)
        p = run_vitals("describe", "fake-ok", "--plugin-dir", empty)
        self.assertEqual((p.returncode, p.stderr), (100, f"vitals: no plugin 'fake-ok' in {empty}\n"))


if __name__ == "__main__":
    unittest.main()
