#!/usr/bin/env python3
"""A faithful fake Ollama server for the ollama probe's tests (Python 3 standard library only).

Ollama itself cannot be installed in CI, so this serves the documented endpoints with the response
bodies in fixtures/ (copied from the project's protocol notes, which name the source of each) and
reproduces the behaviour a probe must cope with:

  GET|HEAD /              "Ollama is running" (text/plain)
  GET|HEAD /api/version   {"version": ...}
  GET|HEAD /api/tags      models on disk
  GET  /api/ps            models in memory; *blocks while a load is in progress* (Ollama >= 0.32.4)
  POST /api/embed         empty input = load only -> {"model":<as sent>,"embeddings":[]};
                          unknown model -> 404 {"error":"model \"x\" not found, try pulling it first"}
  POST /api/embeddings    legacy endpoint: {"embedding":[...]} (not normalised for nomic-bert)
  POST /api/generate      embedding models -> 400 "does not support generate"
  unknown path            404 text "404 page not found"; known path, wrong method: 405 text
  Host check              a loopback-bound Ollama answers 403 with an empty body unless Host is a
                          loopback/private/unspecified IP, localhost, the machine's hostname or ends
                          in .localhost/.local/.internal

Control endpoints (never Host-checked, never logged):
  POST   /_fake/scenario   {"name": PRESET, ...field overrides}: reset the state to PRESET
  GET    /_fake/state      the current state
  GET    /_fake/requests   every request received: [{"method","path","host","body","during_load"}]
  DELETE /_fake/requests   clear the request log

Usage: fake_ollama.py --port PORT [--scenario PRESET]   (binds 127.0.0.1)
"""
import argparse
import copy
import datetime
import ipaddress
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MODEL = "nomic-embed-text:latest"  # the only model this fake can load and embed with


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


# The state a scenario sets. Every field can be overridden in POST /_fake/scenario.
DEFAULTS = {
    "version": "0.12.6",           # /api/version
    "tags": "tags-with-nomic.json",  # fixture for /api/tags while the model is pulled
    "pulled": True,                # model listed in /api/tags
    "manifest": None,              # model exists for /api/embed (None: same as "pulled")
    "loaded": False,               # model listed in /api/ps
    "load_seconds": 0.0,           # how long a load takes
    "ps_endpoint": True,           # False: Ollama < 0.1.38 (no /api/ps)
    "embed_endpoint": True,        # False: Ollama < 0.2.6 (no /api/embed)
    "ps_blocks_during_load": True,  # Ollama >= 0.32.4
    "embed": "ok",                 # ok | short | nan | nan-literal
    "status": {},                  # path -> HTTP status answered with a JSON error instead
    "garbage": [],                 # paths answered 200 with a body that is not JSON
    "truncate": [],                # paths whose body is cut off (Content-Length says more)
    "hang": [],                    # paths that never answer (until hang_seconds or a new scenario)
    "hang_seconds": 60.0,
    "allowed_hosts": None,         # list: only these Host names are accepted (tests the 403)
}

PRESETS = {
    "empty": {"pulled": False},                              # running, no models
    "pulled": {},                                            # pulled, not loaded, loads at once
    "loading": {"load_seconds": 3.0},                        # pulled, a load takes 3 s
    "loaded": {"loaded": True},
    "tags-v0.30": {"loaded": True, "tags": "tags-with-nomic-v0.30.json"},
    "old": {"version": "0.1.32", "loaded": True, "ps_endpoint": False, "embed_endpoint": False},
    "old-unloaded": {"version": "0.1.32", "ps_endpoint": False, "embed_endpoint": False,
                     "load_seconds": 3.0},
    "no-embed": {"version": "0.2.5", "loaded": True, "embed_endpoint": False},
    "model-404": {"manifest": False},                        # listed, but the manifest is gone
    "tags-500": {"status": {"/api/tags": 500}},
    "ps-500": {"status": {"/api/ps": 500}},
    "version-500": {"status": {"/api/version": 500}},
    "garbage": {"garbage": ["/api/version"]},
    "truncated": {"truncate": ["/api/tags"]},
    "hang": {"hang": ["/api/version"]},
    "hang-ps": {"hang": ["/api/ps"]},
    "embed-short": {"loaded": True, "embed": "short"},
    "embed-nan": {"loaded": True, "embed": "nan"},
    "embed-nan-literal": {"loaded": True, "embed": "nan-literal"},
    "forbidden": {"loaded": True, "allowed_hosts": ["ollama.example.com"]},
}

ROUTES = {
    "/": ("GET", "HEAD"),
    "/api/version": ("GET", "HEAD"),
    "/api/tags": ("GET", "HEAD"),
    "/api/ps": ("GET",),
    "/api/embed": ("POST",),
    "/api/embeddings": ("POST",),
    "/api/generate": ("POST",),
}


def normalize(name):
    """PROTOCOLS.md 1.10: default registry.ollama.ai/library/, tag latest, case-insensitive."""
    n = name.lower()
    if n.startswith("registry.ollama.ai/"):
        n = n[len("registry.ollama.ai/"):]
    if n.startswith("library/"):
        n = n[len("library/"):]
    if ":" not in n.rsplit("/", 1)[-1]:
        n += ":latest"
    return n


def keep_alive_seconds(value):
    """api.Duration: number = seconds, string = Go duration; negative = forever; None = 5 min."""
    if value is None:
        return 300.0
    if isinstance(value, bool):
        raise ValueError(f"Unsupported type: '{type(value).__name__}'")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        s, sign, total = value, 1, 0.0
        if s.startswith("-"):
            sign, s = -1, s[1:]
        if not s:
            raise ValueError(f'time: invalid duration "{value}"')
        while s:
            i = 0
            while i < len(s) and (s[i].isdigit() or s[i] == "."):
                i += 1
            j = i
            while j < len(s) and not (s[j].isdigit() or s[j] == "."):
                j += 1
            if i == 0 or s[i:j] not in units:
                raise ValueError(f'time: invalid duration "{value}"')
            total += float(s[:i]) * units[s[i:j]]
            s = s[j:]
        return sign * total
    raise ValueError(f"Unsupported type: '{type(value).__name__}'")


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.release = threading.Event()  # set to end every hang of the previous scenario
        self.log = []
        self.apply({"name": "pulled"})

    def apply(self, spec):
        name = spec.get("name", "pulled")
        if name not in PRESETS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(PRESETS))}")
        s = copy.deepcopy(DEFAULTS)
        s.update(copy.deepcopy(PRESETS[name]))
        for k, v in spec.items():
            if k == "name":
                continue
            if k not in DEFAULTS:
                raise ValueError(f"unknown field {k!r}")
            s[k] = v
        if s["manifest"] is None:
            s["manifest"] = s["pulled"]
        with self.cond:
            self.release.set()
            self.release = threading.Event()
            self.generation = getattr(self, "generation", 0) + 1
            self.s = s
            self.name = name
            self.loading = False
            self.expires = None if not s["loaded"] else time.time() + 300
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return dict(self.s, name=self.name, loading=self.loading)

    def load(self, keep_alive):
        """Loads the model (waiting for a load in progress); returns seconds spent loading, or
        None when the scenario was switched during the load (the load is abandoned)."""
        started = time.monotonic()
        with self.cond:
            generation = self.generation
            while self.loading and generation == self.generation:
                self.cond.wait()
            if generation != self.generation:
                return None
            if not self.s["loaded"]:
                self.loading = True
                seconds = float(self.s["load_seconds"])
                release = self.release
                self.cond.release()
                try:
                    release.wait(seconds)
                finally:
                    self.cond.acquire()
                if generation != self.generation:
                    return None
                self.loading = False
                self.s["loaded"] = True
                self.cond.notify_all()
            ka = keep_alive_seconds(keep_alive)
            self.expires = None if ka < 0 else time.time() + ka
        return time.monotonic() - started

    def unload_if_expired(self):
        with self.cond:
            if self.s["loaded"] and self.expires is not None and time.time() >= self.expires:
                self.s["loaded"] = False

    def wait_while_loading(self):
        with self.cond:
            while self.loading and self.s["ps_blocks_during_load"]:
                self.cond.wait()


STATE = State()


def rfc3339(ts):
    if ts is None:  # keep_alive < 0: math.MaxInt64 ns from now, ~292 years
        ts = time.time() + 292 * 365.25 * 86400
    try:
        d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        d = datetime.datetime(2318, 1, 1, tzinfo=datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-ollama"
    sys_version = ""

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    # -- plumbing -----------------------------------------------------------------------------

    def send(self, status, body=b"", ctype="application/json; charset=utf-8", declared=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        if body or ctype.startswith("text/plain"):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj, allow_nan=False):
        self.send(status, json.dumps(obj, separators=(",", ":"), allow_nan=allow_nan))

    def error(self, status, message):
        self.send_json(status, {"error": message})

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def host_allowed(self):
        host = self.headers.get("Host", "")
        name = host
        if host.startswith("["):
            name = host[1:host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            name = host.split(":", 1)[0]
        name = name.lower()
        allowed = STATE.snapshot()["allowed_hosts"]
        if allowed is not None:
            return name in [a.lower() for a in allowed]
        try:
            ip = ipaddress.ip_address(name)
            if ip.is_loopback or ip.is_private or ip.is_unspecified:
                return True
        except ValueError:
            pass
        if name in ("", "localhost") or name == socket.gethostname().lower():
            return True
        return any(name.endswith("." + tld) for tld in ("localhost", "local", "internal"))

    # -- dispatch -------------------------------------------------------------------------------

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_OPTIONS(self):
        self.dispatch()

    def dispatch(self):
        path = self.path.split("?", 1)[0]
        body = self.read_body()
        if path.startswith("/_fake/"):
            return self.control(path, body)
        try:
            logged_body = json.loads(body) if body else None
        except ValueError:
            logged_body = body.decode("utf-8", "replace")
        with STATE.cond:
            STATE.log.append({"method": self.command, "path": path,
                              "host": self.headers.get("Host"), "body": logged_body,
                              "during_load": STATE.loading, "time": time.time()})
        if not self.host_allowed():
            return self.send(403, b"", ctype="")
        if self.command == "OPTIONS":
            return self.send(204, b"", ctype="")
        s = STATE.snapshot()
        if path not in ROUTES or (path == "/api/ps" and not s["ps_endpoint"]) or (
                path == "/api/embed" and not s["embed_endpoint"]):
            return self.send(404, "404 page not found", "text/plain")
        if self.command not in ROUTES[path]:
            return self.send(405, "405 method not allowed", "text/plain")
        if path in s["hang"]:
            STATE.release.wait(float(s["hang_seconds"]))
            self.close_connection = True
            return
        if str(s["status"].get(path, "")).isdigit():
            return self.error(int(s["status"][path]), "something went wrong (fake)")
        if path in s["garbage"]:
            return self.send(200, "<html><body>502 Bad Gateway</body></html>", "text/html")
        handler = {"/": self.root, "/api/version": self.version, "/api/tags": self.tags,
                   "/api/ps": self.ps, "/api/embed": self.embed,
                   "/api/embeddings": self.embeddings, "/api/generate": self.generate}[path]
        handler(s, body, path in s["truncate"])

    def control(self, path, body):
        if path == "/_fake/scenario" and self.command == "POST":
            try:
                STATE.apply(json.loads(body or b"{}"))
            except ValueError as e:
                return self.error(400, str(e))
            return self.send_json(200, STATE.snapshot())
        if path == "/_fake/state" and self.command == "GET":
            return self.send_json(200, STATE.snapshot())
        if path == "/_fake/requests" and self.command == "GET":
            with STATE.cond:
                return self.send_json(200, list(STATE.log))
        if path == "/_fake/requests" and self.command == "DELETE":
            with STATE.cond:
                STATE.log.clear()
            return self.send_json(200, [])
        return self.send(404, "404 page not found", "text/plain")

    # -- endpoints ------------------------------------------------------------------------------

    def answer(self, obj, truncate):
        text = json.dumps(obj, separators=(",", ":")).encode()
        if truncate:  # the connection drops mid-body: Content-Length promises more than arrives
            self.close_connection = True
            return self.send(200, text[: len(text) // 3], declared=len(text))
        self.send(200, text)

    def root(self, s, body, truncate):
        self.send(200, "Ollama is running", "text/plain; charset=utf-8")

    def version(self, s, body, truncate):
        self.answer({"version": s["version"]}, truncate)

    def tags(self, s, body, truncate):
        self.answer(fixture(s["tags"]) if s["pulled"] else fixture("tags-empty.json"), truncate)

    def ps(self, s, body, truncate):
        STATE.wait_while_loading()
        STATE.unload_if_expired()
        s = STATE.snapshot()
        if not s["loaded"]:
            return self.answer(fixture("ps-empty.json"), truncate)
        doc = fixture("ps-loaded.json")
        with STATE.cond:
            expires = STATE.expires
        doc["models"][0]["expires_at"] = rfc3339(expires)
        self.answer(doc, truncate)

    def parse_json_body(self, body):
        """Returns the request object, or None after answering an error like Ollama does."""
        if not body:
            self.error(400, "missing request body")
            return None
        try:
            req = json.loads(body)
        except ValueError as e:
            self.error(400, f"invalid character in request body: {e}")
            return None
        if not isinstance(req, dict):
            self.error(400, "json: cannot unmarshal into Go value of type api.EmbedRequest")
            return None
        if not req.get("model"):
            self.error(400, "model is required")
            return None
        try:
            keep_alive_seconds(req.get("keep_alive"))
        except ValueError as e:
            self.error(400, str(e))
            return None
        return req

    def vector(self, s):
        return fixture("embed-ok.json")["embeddings"][0]

    def model_known(self, s, model):
        if not s["manifest"] or normalize(model) != MODEL:
            self.error(404, f'model "{model}" not found, try pulling it first')
            return False
        return True

    def after(self, req):
        """keep_alive 0 unloads the model after the request."""
        if keep_alive_seconds(req.get("keep_alive")) == 0:
            with STATE.cond:
                STATE.s["loaded"] = False

    def embed(self, s, body, truncate):
        req = self.parse_json_body(body)
        if req is None or not self.model_known(s, req["model"]):
            return
        inp = req.get("input")
        if inp is None or inp == "" or inp == []:
            if STATE.load(req.get("keep_alive")) is None:  # load only
                return self.error(500, "model load aborted (fake scenario changed)")
            self.after(req)
            return self.answer({"model": req["model"], "embeddings": []}, truncate)
        if isinstance(inp, str):
            inputs = [inp]
        elif isinstance(inp, list) and all(isinstance(x, str) for x in inp):
            inputs = inp
        else:
            return self.error(400, "invalid input type")
        load = STATE.load(req.get("keep_alive"))
        if load is None:
            return self.error(500, "model load aborted (fake scenario changed)")
        self.after(req)
        mode = s["embed"]
        vec = self.vector(s)
        if mode == "nan":  # what Ollama's normalize() rejects
            return self.error(400, "embedding contains NaN or Inf values")
        if mode == "short":
            vec = vec[:384]
        if mode == "nan-literal":  # not something Go can encode, but a broken proxy could
            vec = list(vec)
            vec[3] = float("nan")
        out = {"model": req["model"], "embeddings": [vec for _ in inputs],
               "total_duration": 14143917 + int(load * 1e9), "prompt_eval_count": 8 * len(inputs)}
        if load > 0.001:
            out["load_duration"] = int(load * 1e9)
        text = json.dumps(out, separators=(",", ":"), allow_nan=True)
        self.send(200, text)

    def embeddings(self, s, body, truncate):
        req = self.parse_json_body(body)
        if req is None or not self.model_known(s, req["model"]):
            return
        prompt = req.get("prompt", "")
        if STATE.load(req.get("keep_alive")) is None:
            return self.error(500, "model load aborted (fake scenario changed)")
        self.after(req)
        if prompt == "":
            return self.answer({"embedding": []}, truncate)
        if s["embed"] == "nan":
            return self.error(500, "failed to generate embedding")
        vec = [v * 22.6 for v in self.vector(s)]  # legacy: raw, not normalised for nomic-bert
        if s["embed"] == "short":
            vec = vec[:384]
        self.send(200, json.dumps({"embedding": vec}, separators=(",", ":"), allow_nan=True))

    def generate(self, s, body, truncate):
        req = self.parse_json_body(body)
        if req is None:
            return
        if not s["manifest"] or normalize(req["model"]) != MODEL:
            return self.error(404, f"model '{req['model']}' not found")
        self.error(400, f'"{req["model"]}" does not support generate')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", default="pulled", choices=sorted(PRESETS))
    args = ap.parse_args()
    STATE.apply({"name": args.scenario})
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"fake ollama listening on 127.0.0.1:{args.port} ({args.scenario})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
