"""The `ollama` CLI stand-in of the container test (tests/container/ollama/ollama) and the
disk-backed mode of the fake server it runs (tests/fakes/ollama/fake_ollama.py --models).

The container build runs `ollama serve`, `ollama list` and `ollama pull MODEL` as the Dockerfile
does with the real image; these tests hold the stand-in to the real CLI's output, messages and exit
statuses (Ollama v0.12.6: cmd/cmd.go, envconfig/config.go, api/client.go) on the host, against a
temporary OLLAMA_MODELS and a free loopback port. No vitals binary is needed.
"""
import datetime
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from vitals_testlib import SOURCE_DIR, VitalsTestCase, free_port, wait_for, wait_port

CLI = os.path.join(SOURCE_DIR, "tests", "container", "ollama", "ollama")
FAKE = os.path.join(SOURCE_DIR, "tests", "fakes", "ollama", "fake_ollama.py")
HEADER = "NAME    ID    SIZE    MODIFIED \n"  # tablewriter: the header line ends in one space
PULL = {"model": "nomic-embed-text", "stream": False}
NO_SERVER = ("Error: ollama server not responding - could not connect to ollama server, "
             "run 'ollama serve' to start it\n")
LOG_LINE = re.compile(r'^time=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) level=INFO '
                      r'source=[a-z_]+\.go:\d+ msg=(?:"(.*)"|(\S+))$')


def load_cli():
    """The CLI as a module (its file name has no .py)."""
    loader = importlib.machinery.SourceFileLoader("ollama_cli", CLI)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def log_lines(path):
    """[(time as epoch seconds, message)] of the Ollama-format lines in a log file."""
    out = []
    with open(path) as f:
        for line in f:
            if m := LOG_LINE.match(line.rstrip("\n")):
                t = datetime.datetime.strptime(m[1], "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append((t.replace(tzinfo=datetime.timezone.utc).timestamp(), m[2] or m[3]))
    return out


def read(path):
    with open(path) as f:
        return f.read()


def table_rows(stdout):
    """A CLI table's lines split into cells (columns are separated by at least 2 spaces)."""
    return [re.split(r" {2,}", line.strip()) for line in stdout.splitlines()]


class OllamaCliTest(VitalsTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.models = os.path.join(self.tmp.path, "models")
        self.env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{self.port}",
                        OLLAMA_MODELS=self.models, FAKE_OLLAMA_LOAD_SECONDS="1",
                        HOME=self.tmp.path)
        self.serves = 0

    # -- helpers -----------------------------------------------------------------------------------

    def cli(self, *args, env=None):
        return subprocess.run([sys.executable, CLI, *args], capture_output=True, text=True,
                              timeout=60, env=env or self.env)

    def serve(self):
        """`ollama serve` in the background; returns (process, log path, start time)."""
        self.serves += 1
        path = os.path.join(self.tmp.path, f"serve-{self.serves}.log")
        log = open(path, "w")
        self.addCleanup(log.close)
        started = time.time()
        proc = self.spawn([sys.executable, CLI, "serve"], env=self.env, stdout=log,
                          stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=30)
        return proc, path, started

    def stop_serve(self, proc):
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(10), 0, "ollama serve should exit 0 on SIGTERM")

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def ps_names(self):
        return [m["name"] for m in self.api("GET", "/api/ps")["models"]]

    def blob_file(self, digest):
        return os.path.join(self.models, "blobs", digest.replace(":", "-"))

    def manifest_file(self):
        return os.path.join(self.models, "manifests", "registry.ollama.ai", "library",
                            "nomic-embed-text", "latest")

    # -- tests -------------------------------------------------------------------------------------

    def test_without_a_server_every_client_command_fails_like_ollama(self):
        for args in (["list"], ["ls"], ["ps"], ["pull", "nomic-embed-text"],
                     ["stop", "nomic-embed-text"]):
            p = self.cli(*args)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (1, "", NO_SERVER), args)
        p = self.cli("-v")  # versionHandler warns and exits 0
        self.assertEqual((p.returncode, p.stdout), (0, "Warning: could not connect to a running "
                                                    "Ollama instance\nWarning: client version "
                                                    "is 0.12.6\n"))

    def test_pull_list_load_stop_and_restart(self):
        proc, log, started = self.serve()
        ready = time.time()

        # The "Listening on" line, stamped when the socket was already listening.
        # (The port can accept before the line is written: wait for the line, check its stamp.)
        listening = wait_for(lambda: [t for t, msg in log_lines(log)
                                      if msg == f"Listening on 127.0.0.1:{self.port} (version 0.12.6)"],
                             what="the Listening on line")
        self.assertEqual(len(listening), 1, read(log))
        self.assertTrue(started - 0.001 <= listening[0] <= ready + 0.5, (started, listening, ready))
        self.assertEqual(self.cli("-v").stdout, "ollama version is 0.12.6\n")

        # Nothing pulled yet: the table is its header only; the folders exist as Ollama makes them.
        p = self.cli("list")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, HEADER, ""))
        self.assertTrue(os.path.isdir(os.path.join(self.models, "blobs")))

        # pull writes Ollama's layout: a manifest naming blobs by the sha256 of their content.
        p = self.cli("pull", "nomic-embed-text")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        lines = p.stderr.splitlines()
        self.assertEqual(lines[0], "pulling manifest ")
        self.assertEqual(lines[-3:], ["verifying sha256 digest ", "writing manifest ", "success "])
        with open(self.manifest_file(), "rb") as f:
            raw = f.read()
        manifest = json.loads(raw)
        self.assertEqual(manifest["schemaVersion"], 2)
        self.assertEqual(manifest["mediaType"],
                         "application/vnd.docker.distribution.manifest.v2+json")
        self.assertEqual([lay["mediaType"] for lay in manifest["layers"]],
                         ["application/vnd.ollama.image.model",
                          "application/vnd.ollama.image.license",
                          "application/vnd.ollama.image.params"])
        for lay in manifest["layers"] + [manifest["config"]]:
            with open(self.blob_file(lay["digest"]), "rb") as f:
                blob = f.read()
            self.assertEqual("sha256:" + hashlib.sha256(blob).hexdigest(), lay["digest"])
            self.assertEqual(len(blob), lay["size"])
            self.assertIn(f"pulling {lay['digest'][7:19]}: 100% ", p.stderr)
        with open(self.blob_file(manifest["layers"][0]["digest"]), "rb") as f:
            self.assertEqual(f.read(4), b"GGUF")

        # list shows it with the manifest's digest, as /api/tags does.
        digest = hashlib.sha256(raw).hexdigest()
        tags = self.api("GET", "/api/tags")["models"]
        self.assertEqual([(m["name"], m["digest"], m["details"]["family"]) for m in tags],
                         [("nomic-embed-text:latest", digest, "nomic-bert")])
        rows = table_rows(self.cli("list").stdout)
        self.assertEqual(rows[0], ["NAME", "ID", "SIZE", "MODIFIED"])
        self.assertEqual(rows[1][:2], ["nomic-embed-text:latest", digest[:12]])
        self.assertRegex(rows[1][3], r"(second|seconds) ago$")

        # A model the registry does not have: the real error, exit 1.
        p = self.cli("pull", "no-such-model")
        self.assertEqual(p.returncode, 1)
        self.assertEqual(p.stderr,
                         "pulling manifest \nError: pull model manifest: file does not exist\n")

        # Pulled is not loaded: /api/ps stays empty until the first embed, which takes the load.
        self.assertEqual(self.ps_names(), [])
        t0 = time.time()
        out = self.api("POST", "/api/embed", {"model": "nomic-embed-text", "input": "ping"})
        t1 = time.time()
        self.assertEqual(len(out["embeddings"][0]), 768)
        self.assertTrue(0.9 <= t1 - t0 < 10, t1 - t0)
        ps = self.api("GET", "/api/ps")["models"]
        self.assertEqual([(m["name"], m["digest"]) for m in ps],
                         [("nomic-embed-text:latest", digest)])
        started_lines = [(t, m) for t, m in log_lines(log)
                         if m.startswith("llama runner started in ")]
        self.assertEqual(len(started_lines), 1, read(log))
        self.assertRegex(started_lines[0][1], r"^llama runner started in 1\.\d\d seconds$")
        self.assertTrue(t0 + 0.9 <= started_lines[0][0] <= t1 + 0.001, (t0, started_lines, t1))
        rows = table_rows(self.cli("ps").stdout)
        self.assertEqual(rows[0], ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"])
        self.assertEqual(rows[1][:5], ["nomic-embed-text:latest", digest[:12], "323 MB",
                                       "100% GPU", "2048"])
        self.assertRegex(rows[1][5], r"^\d minutes from now$")

        # stop unloads it (POST /api/generate keep_alive 0); an unknown model cannot be stopped.
        p = self.cli("stop", "nomic-embed-text")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))
        self.assertEqual(self.ps_names(), [])
        self.assertEqual(len(table_rows(self.cli("ps").stdout)), 1)
        p = self.cli("stop", "llama3.2")
        self.assertEqual((p.returncode, p.stderr),
                         (1, 'Error: couldn\'t find model "llama3.2" to stop\n'))

        # A restart on the same folder: still pulled (on disk), not loaded.
        self.stop_serve(proc)
        wait_for(lambda: self.cli("list").returncode == 1, 10, what="the server to be gone")
        proc, log, _ = self.serve()
        self.assertEqual(table_rows(self.cli("list").stdout)[1][:2],
                         ["nomic-embed-text:latest", digest[:12]])
        self.assertEqual(self.ps_names(), [])
        self.stop_serve(proc)

    def test_pull_api_as_ollama_answers_it(self):
        self.serve()
        for body in ({"model": "registry.ollama.ai/library/NOMIC-embed-text:latest"},
                     {"name": "nomic-embed-text"}):  # any spelling; legacy "name"
            with urllib.request.urlopen(urllib.request.Request(
                    self.base + "/api/pull", data=json.dumps(body).encode()), timeout=30) as r:
                self.assertEqual(r.headers["Content-Type"], "application/x-ndjson")
                steps = [json.loads(line) for line in r.read().splitlines()]
            self.assertEqual(steps[-1], {"status": "success"})
        self.assertEqual(self.api("POST", "/api/pull", PULL), {"status": "success"})
        for body, status, error in (
                ({"model": "llama3.2", "stream": False}, 500,
                 "pull model manifest: file does not exist"),
                ({"model": "bad name"}, 400, "invalid model name"),
                ({}, 400, "invalid model name")):
            with self.assertRaises(urllib.error.HTTPError) as cm:
                self.api("POST", "/api/pull", body)
            self.assertEqual((cm.exception.code, json.loads(cm.exception.read())),
                             (status, {"error": error}))
        # `ollama stop` of a model that is not loaded still answers an unload.
        out = self.api("POST", "/api/generate", {"model": "nomic-embed-text", "keep_alive": 0})
        self.assertEqual({k: out[k] for k in ("model", "response", "done", "done_reason")},
                         {"model": "nomic-embed-text", "response": "", "done": True,
                          "done_reason": "unload"})

    def test_fake_flags_host_models_and_load_seconds(self):
        """fake_ollama.py run directly: --host 0.0.0.0 listens on every address and (not bound to
        loopback) skips the Host check; --models reads what is on disk; --load-seconds."""
        log = os.path.join(self.tmp.path, "fake.log")
        with open(log, "w") as f:
            self.spawn([sys.executable, FAKE, "--port", str(self.port), "--host", "0.0.0.0",
                        "--models", self.models, "--load-seconds", "0.5"],
                       stdout=f, stderr=subprocess.STDOUT,
                       env=dict(os.environ, FAKE_OLLAMA_LOAD_SECONDS="7"))
        wait_port(self.port, timeout=30)
        msgs = wait_for(lambda: [m for _, m in log_lines(log)], what="the Listening on line")
        self.assertIn(msgs[0], (f"Listening on [::]:{self.port} (version 0.12.6)",
                                f"Listening on 0.0.0.0:{self.port} (version 0.12.6)"))
        req = urllib.request.Request(self.base + "/api/version",
                                     headers={"Host": "ollama.example.com"})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(json.loads(r.read()), {"version": "0.12.6"})
        with self.assertRaises(urllib.error.HTTPError) as cm:  # not on disk
            self.api("POST", "/api/embed", {"model": "nomic-embed-text", "input": ""})
        self.assertEqual(cm.exception.code, 404)
        self.assertEqual(self.api("POST", "/api/pull", PULL), {"status": "success"})
        t0 = time.monotonic()
        self.api("POST", "/api/embed", {"model": "nomic-embed-text", "input": ""})
        self.assertTrue(0.45 <= time.monotonic() - t0 < 5)
        # The manifest is what counts: remove it and the model is gone.
        os.remove(self.manifest_file())
        self.assertEqual(self.api("GET", "/api/tags"), {"models": []})

    def test_fake_in_memory_pull(self):
        """Without --models, /api/pull makes the in-memory state pulled (scenario "empty")."""
        with open(os.devnull, "w") as devnull:
            self.spawn([sys.executable, FAKE, "--port", str(self.port), "--scenario", "empty"],
                       stdout=devnull, stderr=devnull)
        wait_port(self.port, timeout=30)
        self.assertEqual(self.api("GET", "/api/tags"), {"models": []})
        self.assertEqual(self.api("POST", "/api/pull", PULL), {"status": "success"})
        names = [m["name"] for m in self.api("GET", "/api/tags")["models"]]
        self.assertIn("nomic-embed-text:latest", names)

    def test_ollama_host_is_read_as_envconfig_does(self):
        """The table of envconfig/config_test.go TestHost (Ollama v0.12.6)."""
        cli = load_cli()
        cases = {"": "http://127.0.0.1:11434", "1.2.3.4": "http://1.2.3.4:11434",
                 ":1234": "http://:1234", "1.2.3.4:1234": "http://1.2.3.4:1234",
                 "example.com": "http://example.com:11434",
                 "example.com:1234": "http://example.com:1234",
                 ":0": "http://:0", ":66000": "http://:11434", ":-1": "http://:11434",
                 "[::1]": "http://[::1]:11434", "[::]": "http://[::]:11434",
                 "::1": "http://[::1]:11434",
                 "[::1]:1337": "http://[::1]:1337", " 1.2.3.4 ": "http://1.2.3.4:11434",
                 '"1.2.3.4"': "http://1.2.3.4:11434", ' " 1.2.3.4 " ': "http://1.2.3.4:11434",
                 "'1.2.3.4'": "http://1.2.3.4:11434", "http://1.2.3.4": "http://1.2.3.4:80",
                 "http://1.2.3.4:4321": "http://1.2.3.4:4321",
                 "https://1.2.3.4": "https://1.2.3.4:443",
                 "https://1.2.3.4:4321": "https://1.2.3.4:4321",
                 "https://example.com/ollama": "https://example.com:443/ollama",
                 "ollama.com": "https://ollama.com:443",
                 "0.0.0.0:11434": "http://0.0.0.0:11434"}
        saved = os.environ.get("OLLAMA_HOST")
        self.addCleanup(lambda: os.environ.__setitem__("OLLAMA_HOST", saved) if saved is not None
                        else os.environ.pop("OLLAMA_HOST", None))
        for value, want in cases.items():
            os.environ["OLLAMA_HOST"] = value
            scheme, host, port, path = cli.ollama_host()
            got = f"{scheme}://{cli.join_host_port(host, port)}" + (f"/{path}" if path else "")
            self.assertEqual(got, want, repr(value))
        os.environ.pop("OLLAMA_HOST")
        self.assertEqual(cli.ollama_host(), ("http", "127.0.0.1", 11434, ""))

    def test_formats_match_ollama(self):
        """format.HumanBytes and format.HumanTime: the tables of format/bytes_test.go and
        format/time_test.go (Ollama v0.12.6), plus the durations cmd.go shows."""
        cli = load_cli()
        for n, want in ((0, "0 B"), (1, "1 B"), (999, "999 B"), (1000, "1 KB"), (1500, "1.5 KB"),
                        (999999, "999 KB"), (1000000, "1 MB"), (1500000, "1.5 MB"),
                        (999999999, "999 MB"), (1000000000, "1 GB"), (1500000000, "1.5 GB"),
                        (999999999999, "999 GB"), (1000000000000, "1 TB"),
                        (1500000000000, "1.5 TB"), (1999999999999, "2.0 TB"), (1234, "1.2 KB"),
                        (1234567, "1.2 MB"), (1234567890, "1.2 GB")):
            self.assertEqual(cli.human_bytes(n), want, n)

        def at(offset):
            t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset)
            return t.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        self.assertEqual(cli.human_time("0001-01-01T00:00:00Z", "never"), "never")
        for offset, want in ((48 * 3600, "2 days from now"), (-48 * 3600, "2 days ago"),
                             (0.8, "Less than a second from now"),
                             (200 * 365 * 86400, "Forever"), (-90, "About a minute ago"),
                             (299.5, "4 minutes from now"), (-3 * 3600, "3 hours ago")):
            self.assertEqual(cli.human_time(at(offset)), want, offset)

if __name__ == "__main__":
    import unittest
    unittest.main()
