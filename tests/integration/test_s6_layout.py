"""Structural check of the s6-overlay v3 service tree in s6/ and of config/container.yaml.

s6/ is laid out as it is copied into the image under /etc/s6-overlay/:
  s6/s6-rc.d/<service>/                s6-rc source definitions (type, run, finish, dependencies.d ...)
  s6/user-bundles.d/user/contents.d/   the services started at boot (s6-overlay >= 3.2.3.2)
  s6/scripts/                          scripts that oneshot `up` files point to

Checks what s6-rc-compile would refuse at container start (unknown type, missing run/up, a
dependency or bundle entry naming no service, a cycle) plus this project's contract: every
longrun notifies readiness through `vitals notify` with a probe that exists in
config/container.yaml, svc-mcp waits for PostgreSQL and Ollama, finish scripts turn exit 100 into
125, PostgreSQL stops with SIGINT, and `vitals validate -c config/container.yaml` passes with the
built plugins. No s6 needed.
"""
import os
import re
import shlex
import shutil
import stat
import subprocess
import unittest

from vitals_testlib import SOURCE_DIR, free_port, run_vitals

S6 = os.path.join(SOURCE_DIR, "s6")
RC = os.path.join(S6, "s6-rc.d")
USER_BUNDLE = os.path.join(S6, "user-bundles.d", "user", "contents.d")
CONFIG = os.path.join(SOURCE_DIR, "config", "container.yaml")
DOCKERFILE = os.path.join(SOURCE_DIR, "docker", "Dockerfile")
# Services s6-overlay itself defines (its own s6-rc sources), valid as dependencies.
OVERLAY_BUILTINS = {"base", "legacy-cont-init", "legacy-services", "fix-attrs"}
SHEBANGS = ("#!/command/with-contenv sh", "#!/command/execlineb", "#!/bin/sh")


def read(path):
    with open(path) as f:
        return f.read()


def is_executable(path):
    return os.path.isfile(path) and bool(os.stat(path).st_mode & stat.S_IXUSR)


def services():
    return sorted(n for n in os.listdir(RC) if os.path.isdir(os.path.join(RC, n)))


def entries(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def run_script_command(name):
    """The run script's words after joining continuation lines, without comments."""
    lines = [ln for ln in read(os.path.join(RC, name, "run")).splitlines() if not ln.lstrip().startswith("#")]
    return shlex.split("\n".join(lines).replace("\\\n", " "), comments=True)


def notify_args(words):
    """(probe, deadline) of the `vitals notify` chain-load in a run script's words, or None."""
    for i, w in enumerate(words):
        if w == "vitals" and words[i + 1:i + 2] == ["notify"]:
            tail = words[i + 2:words.index("--", i)]
            opts = dict(zip(tail[0::2], tail[1::2]))
            return opts.get("--probe"), opts.get("--deadline")
    return None


def closed_ports_env():
    """The environment with every COCOSEARCH_*_PORT pointing at a free (closed) loopback port."""
    return {**os.environ, "COCOSEARCH_PG_PORT": str(free_port()), "COCOSEARCH_OLLAMA_PORT": str(free_port()),
            "COCOSEARCH_MCP_PORT": str(free_port())}


def duration_ms(text):
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000}[m.group(2)]


class S6LayoutTest(unittest.TestCase):

    def test_every_definition_has_a_valid_type_and_its_files(self):
        self.assertTrue(services(), f"no services in {RC}")
        for name in services():
            d = os.path.join(RC, name)
            with self.subTest(service=name):
                kind = read(os.path.join(d, "type")).strip()
                self.assertIn(kind, ("longrun", "oneshot", "bundle"))
                if kind == "longrun":
                    run = os.path.join(d, "run")
                    self.assertTrue(is_executable(run), f"{run} missing or not executable")
                    self.assertTrue(read(run).startswith(SHEBANGS), f"{run}: unexpected shebang")
                    finish = os.path.join(d, "finish")
                    if os.path.exists(finish):
                        self.assertTrue(is_executable(finish), f"{finish} not executable")
                    fd = read(os.path.join(d, "notification-fd")).strip()
                    self.assertRegex(fd, r"^\d+$")
                    self.assertGreaterEqual(int(fd), 3, "fds 0-2 are stdin/out/err")
                elif kind == "oneshot":
                    up = read(os.path.join(d, "up")).split()
                    self.assertEqual(len(up), 1, "up holds one command line: the path of a script")
                    self.assertTrue(up[0].startswith("/etc/s6-overlay/scripts/"), up)
                    script = os.path.join(S6, "scripts", os.path.basename(up[0]))
                    self.assertTrue(is_executable(script), f"{script} missing or not executable")
                else:
                    self.assertTrue(entries(os.path.join(d, "contents.d")), "empty bundle")
                for f in ("timeout-up", "timeout-down"):
                    if os.path.exists(os.path.join(d, f)):
                        self.assertRegex(read(os.path.join(d, f)).strip(), r"^\d+$")

    def test_dependencies_and_bundle_entries_exist_and_there_is_no_cycle(self):
        known = set(services()) | OVERLAY_BUILTINS
        deps = {}
        for name in services():
            dd = os.path.join(RC, name, "dependencies.d")
            deps[name] = entries(dd)
            for dep in deps[name]:
                with self.subTest(service=name, dependency=dep):
                    self.assertIn(dep, known)
                    self.assertEqual(os.path.getsize(os.path.join(dd, dep)), 0)
            with self.subTest(service=name):
                self.assertIn("base", deps[name], "s6-overlay services must depend on base")
        bundle = entries(USER_BUNDLE)
        self.assertEqual(sorted(bundle), services(), "every service is started by the user bundle")
        for entry in bundle:
            self.assertEqual(os.path.getsize(os.path.join(USER_BUNDLE, entry)), 0)
        # Only the >= 3.2.3.2 location: both at once would define the user bundle twice.
        self.assertFalse(os.path.exists(os.path.join(RC, "user")), "legacy s6-rc.d/user bundle present")

        state = {}

        def visit(node, path):
            if state.get(node) == "done" or node in OVERLAY_BUILTINS:
                return
            self.assertNotEqual(state.get(node), "active", f"dependency cycle: {' -> '.join(path + [node])}")
            state[node] = "active"
            for dep in deps[node]:
                visit(dep, path + [node])
            state[node] = "done"
        for name in services():
            visit(name, [])

    def test_the_containers_services_and_their_order(self):
        for name in ("svc-postgresql", "svc-ollama", "svc-mcp", "svc-vitals"):
            self.assertEqual(read(os.path.join(RC, name, "type")).strip(), "longrun", name)
        mcp_deps = entries(os.path.join(RC, "svc-mcp", "dependencies.d"))
        self.assertIn("svc-postgresql", mcp_deps)
        self.assertIn("svc-ollama", mcp_deps)
        self.assertNotIn("init-warmup", services(), "the ollama probe waits for `loaded` instead")
        self.assertEqual(read(os.path.join(RC, "svc-postgresql", "down-signal")).strip(), "SIGINT",
                         "PostgreSQL must stop with a fast shutdown")
        words = run_script_command("svc-postgresql")
        # The poller must keep root (password file): vitals notify first, s6-setuidgid after it.
        self.assertLess(words.index("vitals"), words.index("s6-setuidgid"))
        self.assertEqual(words[words.index("s6-setuidgid") + 1], "postgres")
        vitals_words = run_script_command("svc-vitals")
        self.assertEqual(vitals_words[vitals_words.index("vitals") + 1], "run")

    def test_run_scripts_use_probes_that_exist_and_deadlines_fit_timeout_up(self):
        notifying = {}
        for name in services():
            if read(os.path.join(RC, name, "type")).strip() != "longrun" or name == "svc-vitals":
                continue
            found = notify_args(run_script_command(name))
            with self.subTest(service=name):
                self.assertIsNotNone(found, f"{name}/run does not chain-load `vitals notify`")
                notifying[name] = found
        self.assertEqual(notifying["svc-postgresql"][0], "postgresql")
        self.assertEqual(notifying["svc-ollama"][0], "ollama")
        self.assertEqual(notifying["svc-mcp"][0], "mcp")
        for name, (probe, deadline) in notifying.items():
            with self.subTest(service=name, probe=probe):
                # The probe exists: `vitals once` on it runs it (exit 0/1), never "no probe" (100).
                p = run_vitals("once", "-c", CONFIG, "--probe", probe, "--json", env=closed_ports_env(),
                               timeout=60)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)  # ran, and nothing listens
                self.assertIn('"status"', p.stdout)
                timeout_up = os.path.join(RC, name, "timeout-up")
                if deadline and os.path.exists(timeout_up):
                    self.assertLess(duration_ms(deadline), int(read(timeout_up)),
                                    "--deadline must log its line before s6-rc's timeout-up fires")

    def test_run_and_finish_scripts_parse(self):
        scripts = [os.path.join(RC, n, f) for n in services() for f in ("run", "finish")
                   if os.path.exists(os.path.join(RC, n, f))]
        scripts += [os.path.join(S6, "scripts", f) for f in entries(os.path.join(S6, "scripts"))]
        for path in scripts:
            with self.subTest(script=path):
                p = subprocess.run(["sh", "-n", path], capture_output=True, text=True)
                self.assertEqual(p.returncode, 0, p.stderr)
        if shutil.which("shellcheck"):
            p = subprocess.run(["shellcheck", "-s", "sh", *scripts], capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stdout)

    def test_finish_scripts_map_exit_100_to_125(self):
        for name in services():
            finish = os.path.join(RC, name, "finish")
            if not os.path.exists(finish):
                continue
            with self.subTest(service=name):
                for args, want in ((["100", "0"], 125), (["0", "0"], 0), (["1", "0"], 0),
                                   (["256", "15"], 0), (["111", "0"], 0)):
                    p = subprocess.run([finish, *args], capture_output=True, text=True, timeout=10)
                    self.assertEqual(p.returncode, want, f"finish {args}: {p.stderr}")
                    if want == 125:
                        self.assertIn("not restarting", p.stderr)

    def test_container_config_validates_with_the_built_plugins(self):
        p = run_vitals("validate", "-c", CONFIG)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("ok (3 probes)", p.stdout + p.stderr)

    def test_container_config_follows_the_environment(self):
        pg, ollama, mcp = free_port(), free_port(), free_port()
        env = {**os.environ, "COCOSEARCH_PG_PORT": str(pg), "COCOSEARCH_OLLAMA_PORT": str(ollama),
               "COCOSEARCH_MCP_PORT": str(mcp), "COCOSEARCH_EMBED_MODEL": "all-minilm",
               "COCOSEARCH_LOG_LEVEL": "error"}
        for probe, port in (("postgresql", pg), ("ollama", ollama), ("mcp", mcp)):
            with self.subTest(probe=probe):
                p = run_vitals("once", "-c", CONFIG, "--probe", probe, "--json", env=env, timeout=60)
                self.assertEqual(p.returncode, 1, p.stdout + p.stderr)  # nothing listens there
                self.assertIn(f"127.0.0.1:{port}", p.stdout)
        env["COCOSEARCH_LOG_LEVEL"] = "loud"
        p = run_vitals("validate", "-c", CONFIG, env=env)
        self.assertEqual(p.returncode, 100)
        self.assertIn("log_level", p.stderr)

    def test_container_config_holds_no_credentials(self):
        text = read(CONFIG)
        self.assertNotRegex(text, r"(?i)password\s*=", "a password literal in the dsn")
        self.assertNotRegex(text, r"postgres(ql)?://[^/\s]*:[^@/\s]*@", "a password in a URI")
        self.assertRegex(text, r"password_file: \$\{COCOSEARCH_PG_PASSWORD_FILE")

    def test_dockerfile_installs_this_tree_and_checks_health_in_exec_form(self):
        lines = read(DOCKERFILE).replace("\\\n", " ").splitlines()  # join continuation lines

        def instruction(keyword, pattern):
            found = [ln for ln in lines if ln.startswith(keyword + " ")]
            self.assertTrue(any(re.search(pattern, ln) for ln in found),
                            f"no {keyword} matching {pattern!r} in docker/Dockerfile: {found}")
        instruction("HEALTHCHECK", r"--start-period=\S+ .*--start-interval=\S+ .*CMD \[\"vitals\", ?\"check\"\]$")
        instruction("STOPSIGNAL", r"^STOPSIGNAL SIG[A-Z]+$")
        instruction("ENTRYPOINT", r'^ENTRYPOINT \["/init"\]$')
        instruction("COPY", r"s6/s6-rc\.d/? /etc/s6-overlay/s6-rc\.d/?$")
        instruction("COPY", r"s6/user-bundles\.d/? /etc/s6-overlay/user-bundles\.d/?$")
        instruction("COPY", r"s6/scripts/? /etc/s6-overlay/scripts/?$")
        instruction("COPY", r"config/container\.yaml /etc/vitals/vitals\.yaml$")
        instruction("FROM", r"^FROM scratch AS vitals$")
        version = [re.fullmatch(r"ARG S6_OVERLAY_VERSION=(\d+)\.(\d+)\.(\d+)\.(\d+)", ln) for ln in lines]
        version = [m for m in version if m]
        self.assertEqual(len(version), 1, "one pinned ARG S6_OVERLAY_VERSION")
        # user-bundles.d is where 3.2.3.2 and later look for the user bundle.
        self.assertGreaterEqual(tuple(int(x) for x in version[0].groups()), (3, 2, 3, 2))


if __name__ == "__main__":
    unittest.main()
