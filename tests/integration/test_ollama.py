"""The ollama probe against a faithful fake Ollama (tests/fakes/ollama/fake_ollama.py).

Most scenarios use `vitals once` (a fresh probe instance per run). The warm-up sequence
(pulled -> loading -> loaded) lives in one probe instance, so it is tested with `vitals run` and
/health polling. Every test starts its own fake on an ephemeral loopback port and stops it.
"""
import json
import os
import socket
import subprocess
import sys
import unittest
import urllib.request

from vitals_testlib import SOURCE_DIR, Trickle, VitalsTestCase, free_port, once, wait_for, wait_port

FAKE = os.path.join(SOURCE_DIR, "tests", "fakes", "ollama", "fake_ollama.py")
LOAD_BODY = {"model": "nomic-embed-text", "input": "", "keep_alive": -1}


def loopback_alias():
    """A host name other than localhost that resolves to a loopback address, or None."""
    for name in (socket.gethostname(), "ip6-localhost", "localhost.localdomain"):
        if not name or name == "localhost":
            continue
        try:
            if socket.gethostbyname(name).startswith("127."):
                return name
        except OSError:
            pass
    return None


class OllamaProbeTest(VitalsTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        log = open(os.path.join(self.tmp.path, "fake-ollama.log"), "w")
        self.addCleanup(log.close)
        self.spawn([sys.executable, FAKE, "--port", str(self.port)], stdout=log,
                   stderr=subprocess.STDOUT)
        wait_port(self.port)

    # -- helpers -----------------------------------------------------------------------------------

    def fake(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def scenario(self, name, **overrides):
        self.fake("POST", "/_fake/scenario", dict(name=name, **overrides))
        self.fake("DELETE", "/_fake/requests")

    def requests(self, method=None, path=None):
        return [r for r in self.fake("GET", "/_fake/requests")
                if (method is None or r["method"] == method) and (path is None or r["path"] == path)]

    def config(self, timeout="2s", interval="5s", **options):
        options.setdefault("url", self.base)
        opts = "\n".join(f"      {k}: {json.dumps(v)}" for k, v in options.items())
        return (f"listen: 127.0.0.1:@PORT@\n"
                f"probes:\n"
                f"  ollama:\n"
                f"    plugin: ollama\n"
                f"    tier: critical\n"
                f"    interval: {interval}\n"
                f"    timeout: {timeout}\n"
                f"    failure_threshold: 1\n"
                f"    options:\n{opts}\n")

    def run_once(self, timeout="2s", **options):
        cfg = self.tmp.file("once.yaml", self.config(timeout=timeout, **options)
                            .replace("@PORT@", str(free_port())))
        code, doc, proc = once(cfg, "ollama")
        self.assertIsNotNone(doc, f"no JSON from vitals once: {proc.stdout!r} {proc.stderr!r}")
        self.assertEqual(code, 1 if doc["status"] == "fail" else 0, proc.stderr)
        return doc

    def assertResult(self, doc, status, stage, *fragments):
        self.assertEqual((doc["status"], doc["stage"]), (status, stage), doc["message"])
        for f in fragments:
            self.assertIn(f, doc["message"])

    def numbers(self, doc):
        return {n["name"]: n["value"] for n in doc["numbers"]}

    # -- reachable ---------------------------------------------------------------------------------

    def test_not_running(self):
        doc = self.run_once(url=f"http://127.0.0.1:{free_port()}")
        self.assertResult(doc, "fail", "reachable", "unable to reach Ollama at 127.0.0.1:",
                          "connection refused")

    def test_version_500(self):
        self.scenario("version-500")
        doc = self.run_once()
        self.assertResult(doc, "fail", "reachable", "GET /api/version answered 500")

    def test_not_json(self):
        self.scenario("garbage")
        doc = self.run_once()
        self.assertResult(doc, "fail", "reachable", "unable to parse GET /api/version response",
                          "invalid JSON")

    def test_hang_longer_than_timeout(self):
        self.scenario("hang")
        doc = self.run_once(timeout="1s")
        # The plugin's own message (not the host's "did not finish"): the deadline held.
        self.assertResult(doc, "fail", "reachable", "unable to reach Ollama", "timed out")

    def test_wrong_host_403(self):
        self.scenario("forbidden")  # the fake accepts only Host: ollama.example.com
        doc = self.run_once()
        self.assertResult(doc, "fail", "reachable", "403 Forbidden", "Host",
                          f"127.0.0.1:{self.port}")

    def test_sends_a_local_host_header(self):
        self.scenario("loaded")
        doc = self.run_once()
        self.assertResult(doc, "pass", "loaded")
        hosts = {r["host"] for r in self.requests()}
        self.assertEqual(hosts, {f"127.0.0.1:{self.port}"})

    def test_alias_url_sends_localhost(self):
        alias = loopback_alias()
        if alias is None:
            self.skipTest("no host name other than localhost resolves to loopback here")
        # Only "localhost" is accepted, like a loopback-bound Ollama asked by a foreign name.
        self.scenario("loaded", allowed_hosts=["localhost"])
        doc = self.run_once(url=f"http://{alias}:{self.port}")
        self.assertResult(doc, "pass", "loaded")
        self.assertEqual({r["host"] for r in self.requests()}, {f"localhost:{self.port}"})

    def test_require_reachable(self):
        self.scenario("empty")
        doc = self.run_once(require="reachable")
        self.assertResult(doc, "pass", "reachable", "ollama 0.12.6 is reachable")

    # -- pulled ----------------------------------------------------------------------------------

    def test_no_models(self):
        self.scenario("empty")
        doc = self.run_once()
        self.assertResult(doc, "fail", "pulled", "model nomic-embed-text:latest is not pulled",
                          "no models")
        self.assertEqual(self.requests("POST"), [])

    def test_other_tag_is_not_pulled(self):
        self.scenario("loaded")
        doc = self.run_once(model="nomic-embed-text:v1.5")
        self.assertResult(doc, "fail", "pulled", "model nomic-embed-text:v1.5 is not pulled",
                          "nomic-embed-text:latest")

    def test_name_normalisation(self):
        self.scenario("loaded")
        for model in ("registry.ollama.ai/library/Nomic-Embed-Text", "library/nomic-embed-text",
                      "NOMIC-EMBED-TEXT:latest"):
            with self.subTest(model=model):
                doc = self.run_once(model=model)
                self.assertResult(doc, "pass", "loaded", "model nomic-embed-text:latest is loaded")

    def test_tags_500(self):
        self.scenario("tags-500")
        doc = self.run_once()
        self.assertResult(doc, "fail", "pulled", "GET /api/tags answered 500",
                          "something went wrong")

    def test_truncated_tags(self):
        self.scenario("truncated")
        doc = self.run_once()
        self.assertResult(doc, "fail", "pulled", "unable to parse GET /api/tags response")

    def test_model_404_json_error(self):
        # Listed in /api/tags, but the load answers 404 + JSON error: the model is gone.
        self.scenario("model-404")
        doc = self.run_once()
        self.assertResult(doc, "fail", "pulled", "model nomic-embed-text:latest is not pulled",
                          "404", "not found")

    def test_require_pulled(self):
        self.scenario("pulled")
        doc = self.run_once(require="pulled")
        self.assertResult(doc, "pass", "pulled", "is pulled", "digest 0a109f422b47")
        self.assertEqual(self.requests(path="/api/ps") + self.requests("POST"), [])

    # -- loaded ----------------------------------------------------------------------------------

    def test_loaded(self):
        self.scenario("loaded")
        doc = self.run_once()
        self.assertResult(doc, "pass", "loaded", "model nomic-embed-text:latest is loaded",
                          "digest 0a109f422b47", "ollama 0.12.6", "323150151 bytes in VRAM")
        self.assertEqual(self.numbers(doc).get("size_vram"), 323150151)
        self.assertEqual(self.requests("POST"), [])  # nothing to warm up

    def test_loaded_v030_tags(self):
        self.scenario("tags-v0.30")  # /api/tags with capabilities and embedding_length
        doc = self.run_once()
        self.assertResult(doc, "pass", "loaded")

    def test_pulled_not_loaded_without_warmup(self):
        self.scenario("pulled")
        doc = self.run_once(warmup=False)
        self.assertResult(doc, "warn", "loaded", "is pulled but not loaded", "warmup is disabled")
        self.assertEqual(self.requests("POST"), [])

    def test_warmup_within_one_run(self):
        self.scenario("pulled")  # loads at once
        doc = self.run_once(keep_alive="24h")
        self.assertResult(doc, "pass", "loaded", "warmed up in")
        self.assertIn("load_duration", self.numbers(doc))
        posts = self.requests("POST")
        self.assertEqual([(r["path"], r["body"]) for r in posts],
                         [("/api/embed", dict(LOAD_BODY, keep_alive="24h"))])

    def test_slow_load_reports_loading(self):
        self.scenario("loading", load_seconds=60)
        doc = self.run_once(timeout="1s")
        self.assertResult(doc, "warn", "loading", "loading model nomic-embed-text:latest",
                          "warm-up POST /api/embed running")
        self.assertEqual([r["body"] for r in self.requests("POST")], [LOAD_BODY])

    def test_ps_500(self):
        self.scenario("ps-500")
        doc = self.run_once()
        self.assertResult(doc, "warn", "loaded", "GET /api/ps answered 500")

    def test_ps_hangs(self):
        self.scenario("hang-ps")
        doc = self.run_once(timeout="1s")
        self.assertResult(doc, "warn", "loaded", "GET /api/ps", "timed out")

    def test_old_server_without_ps(self):
        self.scenario("old")  # Ollama 0.1.32: no /api/ps, no /api/embed
        doc = self.run_once()
        self.assertResult(doc, "pass", "loaded", "no /api/ps", "POST /api/embeddings",
                          "ollama 0.1.32")
        posts = [(r["path"], r["body"]) for r in self.requests("POST")]
        self.assertEqual(posts, [
            ("/api/embed", LOAD_BODY),
            ("/api/embeddings", {"model": "nomic-embed-text", "prompt": "", "keep_alive": -1})])

    def test_old_server_without_ps_and_warmup(self):
        self.scenario("old")
        doc = self.run_once(warmup=False)
        self.assertResult(doc, "warn", "loaded", "unable to tell whether", "no /api/ps")

    # -- embedding -------------------------------------------------------------------------------

    def test_embedding(self):
        self.scenario("loaded")
        doc = self.run_once(require="embedding")
        self.assertResult(doc, "pass", "embedding", "768 dimensions via POST /api/embed")
        self.assertIn("embed_latency", self.numbers(doc))
        self.assertEqual([(r["path"], r["body"]) for r in self.requests("POST")], [
            ("/api/embed", {"model": "nomic-embed-text", "input": "vitals probe",
                            "keep_alive": -1})])

    def test_embedding_legacy_endpoint(self):
        self.scenario("no-embed")  # Ollama 0.2.5: /api/ps but no /api/embed
        doc = self.run_once(require="embedding")
        self.assertResult(doc, "pass", "embedding", "768 dimensions via POST /api/embeddings")

    def test_embedding_wrong_length(self):
        self.scenario("embed-short")
        doc = self.run_once(require="embedding")
        self.assertResult(doc, "warn", "embedding", "384 dimensions, expected 768")

    def test_embedding_expected_dimensions_option(self):
        self.scenario("embed-short")
        doc = self.run_once(require="embedding", expected_dimensions=384)
        self.assertResult(doc, "pass", "embedding", "384 dimensions")

    def test_embedding_nan(self):
        self.scenario("embed-nan")  # what Ollama answers: 400 + error
        doc = self.run_once(require="embedding")
        self.assertResult(doc, "warn", "embedding", "answered 400", "NaN")

    def test_embedding_nan_literal(self):
        self.scenario("embed-nan-literal")  # a body with a bare NaN (not valid JSON)
        doc = self.run_once(require="embedding")
        self.assertResult(doc, "warn", "embedding", "unable to compute a valid embedding")

    # -- options ---------------------------------------------------------------------------------

    def test_invalid_options(self):
        for opts, fragment in (({"require": "running"}, "require"),
                               ({"keep_alive": "forever"}, "keep_alive"),
                               ({"url": "https://127.0.0.1:11434"}, "http://")):
            with self.subTest(opts=opts):
                cfg = self.tmp.file("bad.yaml", self.config(**opts)
                                    .replace("@PORT@", str(free_port())))
                code, _, proc = once(cfg, "ollama")
                self.assertEqual(code, 100, proc.stdout + proc.stderr)
                self.assertIn(fragment, proc.stdout + proc.stderr)

    # -- the warm-up in a long-running agent -----------------------------------------------------

    def test_warmup_loading_then_loaded(self):
        self.scenario("loading", load_seconds=3)
        agent = self.start_agent(self.config(interval="500ms", timeout="400ms"))
        loading = wait_for(lambda: (p := agent.probe("ollama"))["stage"] == "loading" and p, 30,
                           what="the probe to report loading")
        self.assertEqual(loading["status"], "warn", loading["message"])
        self.assertIn("loading model nomic-embed-text:latest", loading["message"])
        self.assertFalse(agent.health()[1]["ready"])
        self.assertEqual(agent.get("/readyz")[0], 503)

        loaded = agent.wait_probe("ollama", "pass", timeout=60)
        self.assertEqual(loaded["stage"], "loaded", loaded["message"])
        self.assertIn("warmed up in", loaded["message"])
        wait_for(lambda: agent.health()[1]["ready"], 15, what="ready")

        reqs = self.requests()
        posts = [r for r in reqs if r["method"] == "POST"]
        self.assertEqual([(r["path"], r["body"]) for r in posts], [("/api/embed", LOAD_BODY)])
        self.assertEqual([r for r in reqs if r["path"] == "/api/ps" and r["during_load"]], [],
                         "the probe called /api/ps while its warm-up was in flight")
        self.assertTrue([r for r in reqs if r["path"] == "/api/ps" and r["time"] > posts[0]["time"]])

    def test_agent_stops_during_warmup(self):
        self.scenario("loading", load_seconds=120)
        agent = self.start_agent(self.config(interval="500ms", timeout="400ms"))
        wait_for(lambda: agent.probe("ollama")["stage"] == "loading", 30, what="loading")
        # The in-flight warm-up request is aborted: the agent exits by itself, not by SIGKILL.
        self.assertEqual(agent.stop(timeout=10), 0, agent.log())

    def test_failed_warmup_is_reported_and_retried(self):
        self.scenario("pulled", status={"/api/embed": 500})
        agent = self.start_agent(self.config(interval="500ms", timeout="400ms"))
        failed = wait_for(lambda: (p := agent.probe("ollama"))["stage"] == "loading"
                          and "unable to load" in p["message"] and p, 30,
                          what="the failed warm-up to be reported")
        self.assertEqual(failed["status"], "warn")
        self.assertIn("answered 500", failed["message"])
        self.assertIn("retrying", failed["message"])

        self.fake("POST", "/_fake/scenario", {"name": "pulled"})  # the server recovers
        loaded = agent.wait_probe("ollama", "pass", timeout=30)
        self.assertEqual(loaded["stage"], "loaded", loaded["message"])
        self.assertGreaterEqual(len(self.requests("POST", "/api/embed")), 2)

    def test_embedding_interval_limits_embedding_checks(self):
        self.scenario("loaded")
        agent = self.start_agent(self.config(interval="300ms", timeout="250ms",
                                             require="embedding", embedding_interval="1h"))
        first = agent.wait_probe("ollama", "pass", timeout=30)
        self.assertEqual(first["stage"], "embedding", first["message"])
        wait_for(lambda: "checked" in agent.probe("ollama")["message"], 30,
                 what="a run that reuses the last embedding check")
        wait_for(lambda: len(self.requests("GET", "/api/ps")) >= 4, 30, what="more runs")
        self.assertEqual(len(self.requests("POST", "/api/embed")), 1)


class Deadline(VitalsTestCase):
    def test_trickled_answer_ends_at_the_deadline(self):
        """The run's timeout bounds each request as a whole, not each read."""
        for kw in ({}, {"slow_head": True}):
            server = Trickle(**kw)
            self.addCleanup(server.close)
            cfg = self.tmp.file("v.yaml", f"""
probes:
  llm: {{plugin: ollama, timeout: 1s, options: {{url: "http://127.0.0.1:{server.port}"}}}}
""")
            code, doc, p = once(cfg, "llm")
            self.assertEqual((code, doc["stage"]), (1, "reachable"), p.stdout)
            self.assertRegex(doc["message"], rf"^unable to reach Ollama at 127.0.0.1:{server.port}: "
                             r"GET /api/version: timed out after \d+ ms$")


if __name__ == "__main__":
    unittest.main()
