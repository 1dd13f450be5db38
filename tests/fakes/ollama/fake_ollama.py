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
  POST /api/generate      empty prompt + keep_alive 0 -> unload, 200 {..."done_reason":"unload"}
                          (what `ollama stop` sends); otherwise, for an embedding model,
                          400 "does not support generate"
  POST /api/pull          nomic-embed-text (any spelling): NDJSON progress ending in
                          {"status":"success"} (one object with "stream": false); any other model:
                          {"error":"pull model manifest: file does not exist"}
  unknown path            404 text "404 page not found"; known path, wrong method: 405 text
  Host check              a loopback-bound Ollama answers 403 with an empty body unless Host is a
                          loopback/private/unspecified IP, localhost, the machine's hostname or ends
                          in .localhost/.local/.internal

Control endpoints (never Host-checked, never logged):
  POST   /_fake/scenario   {"name": PRESET, ...field overrides}: reset the state to PRESET
  GET    /_fake/state      the current state
  GET    /_fake/requests   every request received: [{"method","path","host","body","during_load"}]
  DELETE /_fake/requests   clear the request log

Disk-backed mode (--models DIR, what `ollama serve` of tests/container/ollama runs): the model is
pulled exactly when its manifest exists in Ollama's on-disk layout,
DIR/manifests/registry.ollama.ai/library/nomic-embed-text/latest, with blobs in
DIR/blobs/sha256-<hex>; /api/tags lists the manifests on disk. POST /api/pull writes a small but
well-formed manifest and blobs (a metadata-only GGUF, license, params, config), each blob named by
the sha256 of its content. Without --models, /api/pull only marks the model pulled in memory.

Log lines on stderr use Ollama's slog format, stamped when the event happens (UTC, milliseconds):
  time=... level=INFO source=routes.go:1564 msg="Listening on 127.0.0.1:11434 (version 0.12.6)"
  time=... level=INFO source=server.go:1272 msg="waiting for llama runner to start responding"
  time=... level=INFO source=server.go:1310 msg="llama runner started in 1.00 seconds"
(source line numbers of Ollama v0.12.6, the version the Dockerfile pins.)

Usage: fake_ollama.py --port PORT [--scenario PRESET] [--host ADDR] [--models DIR]
                      [--load-seconds S]
  --host          address to bind (default 127.0.0.1); 0.0.0.0 and :: listen dual-stack on [::]
                  as Go's net.Listen does, and a server not bound to loopback skips the Host check
  --load-seconds  how long a model load takes (default: $FAKE_OLLAMA_LOAD_SECONDS, else what the
                  scenario says); kept when POST /_fake/scenario switches the scenario
SIGTERM and SIGINT end the server with exit status 0, as they end `ollama serve`.
"""
import argparse
import copy
import datetime
import hashlib
import ipaddress
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
MODEL = "nomic-embed-text:latest"  # the only model this fake can load and embed with
MODELS = None  # --models DIR: the model store in Ollama's on-disk layout; None: state in memory
LOG_LOCK = threading.Lock()


def log(source, msg):
    """One line in Ollama's log format (Go slog TextHandler), stamped now, UTC."""
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    quoted = json.dumps(msg) if (not msg or any(c in msg for c in ' "=') or not msg.isprintable()) \
        else msg
    with LOG_LOCK:
        sys.stderr.write(f"time={stamp} level=INFO source={source} msg={quoted}\n")
        sys.stderr.flush()


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
    "/api/pull": ("POST",),
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


# -- the model store on disk (--models) ----------------------------------------------------------

NOMIC = ("registry.ollama.ai", "library", "nomic-embed-text", "latest")


def parse_name(s):
    """types/model/name.go ParseName: [host/][namespace/]model[:tag] with the default host,
    namespace and tag; returns (host, namespace, model, tag), or None for an invalid name."""
    def cut(s, sep):  # cutPromised: an empty side becomes an invalid part
        i = s.rfind(sep)
        return None if i < 0 else (s[:i] or "!", s[i + len(sep):] or "!")
    host = namespace = tag = ""
    if s.rfind(":") > s.rfind("/"):
        s, tag = cut(s, ":")
    if (c := cut(s, "/")) is None:
        model = s
    else:
        s, model = c
        if (c := cut(s, "/")) is None:
            namespace = s
        else:
            s, namespace = c
            host = s.split("://", 1)[-1]
    parts = (host or NOMIC[0], namespace or NOMIC[1], model, tag or NOMIC[3])
    extra = ("_-.:", "_-", "_-.", "_-.")  # isValidPart: what host, namespace, model, tag allow
    for i, part in enumerate(parts):
        if not 1 <= len(part) <= (350 if i == 0 else 80) or part[0] in "-.:" \
                or not all(c.isascii() and (c.isalnum() or c in extra[i]) for c in part):
            return None
    return parts


def display_name(parts):
    """Name.DisplayShortest: model:tag on the default registry's library, and so on."""
    host, namespace, model, tag = parts
    if host == NOMIC[0]:
        return f"{model}:{tag}" if namespace == NOMIC[1] else f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def manifest_path(parts):
    return os.path.join(MODELS, "manifests", *parts)


def blob_path(digest):
    return os.path.join(MODELS, "blobs", digest.replace(":", "-"))


def write_file(path, data):
    """Writes through a temporary file and a rename, so no reader sees half a file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".partial-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def gguf(metadata):
    """A GGUF v3 file holding metadata only (no tensors), padded to the default alignment (32)."""
    def string(text):
        b = text.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata))
    for key, value in metadata:
        out += string(key)
        out += struct.pack("<I", 8) + string(value) if isinstance(value, str) \
            else struct.pack("<II", 4, value)  # 8 = string, 4 = uint32
    return out + b"\0" * (-len(out) % 32)


def layer(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data)}


def compact(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def nomic_model():
    """(manifest bytes, [(layer, blob bytes)...]) of a small stand-in for nomic-embed-text:latest,
    with the layer media types of the real one (model, license, params) and its config details."""
    blobs = [
        ("application/vnd.ollama.image.model", gguf([
            ("general.architecture", "nomic-bert"), ("general.name", "nomic-embed-text-v1.5"),
            ("general.file_type", 1), ("nomic-bert.context_length", 2048),
            ("nomic-bert.embedding_length", 768), ("nomic-bert.block_count", 12),
            ("nomic-bert.pooling_type", 1)])),
        ("application/vnd.ollama.image.license",
         b"Apache License, Version 2.0 (stand-in for the model's license text)\n"),
        ("application/vnd.ollama.image.params", b'{"num_ctx":8192}\n'),
    ]
    layers = [(layer(t, data), data) for t, data in blobs]
    config = compact({"model_format": "gguf", "model_family": "nomic-bert",
                      "model_families": ["nomic-bert"], "model_type": "137M", "file_type": "F16",
                      "architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l, _ in layers]}})
    cfg = layer("application/vnd.docker.container.image.v1+json", config)
    manifest = compact({"schemaVersion": 2,
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "config": cfg, "layers": [l for l, _ in layers]})
    return manifest, layers + [(cfg, config)]


def disk_models():
    """/api/tags entries for every manifest on disk (server/routes.go ListHandler), newest first."""
    root = os.path.join(MODELS, "manifests")
    found = []
    for dirpath, _, files in os.walk(root):
        parts = tuple(os.path.relpath(dirpath, root).split(os.sep))
        if len(parts) != 3:
            continue
        for tag in files:
            if tag.startswith("."):
                continue
            try:
                with open(os.path.join(dirpath, tag), "rb") as f:
                    raw = f.read()
                    mtime = os.fstat(f.fileno()).st_mtime
                m = json.loads(raw)
                with open(blob_path(m["config"]["digest"])) as f:
                    cf = json.load(f)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # Ollama logs "bad manifest" and skips it
            name = display_name(parts + (tag,))
            found.append({"name": name, "model": name, "modified_at": rfc3339(mtime),
                          "size": sum(l["size"] for l in m["layers"] + [m["config"]]),
                          "digest": hashlib.sha256(raw).hexdigest(),
                          "details": {"parent_model": "", "format": cf.get("model_format", ""),
                                      "family": cf.get("model_family", ""),
                                      "families": cf.get("model_families"),
                                      "parameter_size": cf.get("model_type", ""),
                                      "quantization_level": cf.get("file_type", "")},
                          "mtime": int(mtime)})
    found.sort(key=lambda e: -e["mtime"])  # stable, whole seconds, as Ollama compares them
    return [{k: v for k, v in e.items() if k != "mtime"} for e in found]


def pull_steps():
    """Yields Ollama's pull progress for nomic-embed-text (server/images.go PullModel,
    server/download.go), writing blobs and then the manifest when --models is set."""
    yield {"status": "pulling manifest"}
    manifest, layers = nomic_model()
    for lay, data in layers:
        step = {"status": f"pulling {lay['digest'][7:19]}", "digest": lay["digest"],
                "total": lay["size"]}
        if MODELS is not None and os.path.exists(blob_path(lay["digest"])):
            yield dict(step, completed=lay["size"])  # cache hit
            continue
        yield step  # announced before the download, "completed" 0 is omitted
        if MODELS is not None:
            write_file(blob_path(lay["digest"]), data)
        yield dict(step, completed=lay["size"])
    yield {"status": "verifying sha256 digest"}
    yield {"status": "writing manifest"}
    if MODELS is not None:
        write_file(manifest_path(NOMIC), manifest)
    else:
        STATE.mark_pulled()
    yield {"status": "success"}


def nomic_digest():
    """Digest of the nomic-embed-text manifest on disk (what /api/tags says), or None."""
    try:
        with open(manifest_path(NOMIC), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


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
        self.overrides = {}  # command-line settings that outlive scenario switches (load_seconds)
        self.apply({"name": "pulled"})

    def apply(self, spec):
        name = spec.get("name", "pulled")
        if name not in PRESETS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(PRESETS))}")
        s = copy.deepcopy(DEFAULTS)
        s.update(copy.deepcopy(PRESETS[name]))
        s.update(self.overrides)
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
            s = dict(self.s, name=self.name, loading=self.loading)
        if MODELS is not None:  # the disk decides what is pulled
            s["pulled"] = s["manifest"] = os.path.exists(manifest_path(NOMIC))
        return s

    def mark_pulled(self):
        with self.cond:
            self.s["pulled"] = self.s["manifest"] = True

    def unload(self):
        with self.cond:
            self.s["loaded"] = False

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
                load_started = time.monotonic()
                log("server.go:1272", "waiting for llama runner to start responding")
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
                log("server.go:1310",
                    f"llama runner started in {time.monotonic() - load_started:0.2f} seconds")
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
        if not self.server.loopback:  # allowedHostsMiddleware: only a loopback listener checks
            return True
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
                   "/api/embeddings": self.embeddings, "/api/generate": self.generate,
                   "/api/pull": self.pull}[path]
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
        if MODELS is not None:
            return self.answer({"models": disk_models()}, truncate)
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
        if MODELS is not None and (digest := nomic_digest()):
            doc["models"][0]["digest"] = digest  # the same digest as /api/tags
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
        if req.get("prompt", "") == "" and req.get("keep_alive") is not None \
                and keep_alive_seconds(req["keep_alive"]) == 0:  # `ollama stop`: unload
            STATE.unload()
            return self.send_json(200, {"model": req["model"], "created_at": rfc3339(time.time()),
                                        "response": "", "done": True, "done_reason": "unload"})
        self.error(400, f'"{req["model"]}" does not support generate')

    def pull(self, s, body, truncate):
        """server/routes.go PullHandler: errors after the stream started come as its last line."""
        if not body:
            return self.error(400, "missing request body")
        try:
            req = json.loads(body)
        except ValueError as e:
            return self.error(400, f"invalid character in request body: {e}")
        if not isinstance(req, dict):
            return self.error(400, "json: cannot unmarshal into Go value of type api.PullRequest")
        parts = parse_name(req.get("model") or req.get("name") or "")
        if parts is None:
            return self.error(400, "invalid model name")
        known = tuple(p.lower() for p in parts) == NOMIC
        if req.get("stream", True) is False:
            if not known:
                return self.error(500, "pull model manifest: file does not exist")
            *_, last = pull_steps()  # waitForStream: only the last progress
            return self.send_json(200, last)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        steps = pull_steps() if known else iter([
            {"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}])
        for step in steps:
            line = compact(step) + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class Server(ThreadingHTTPServer):
    """Binds like Go's net.Listen("tcp", HOST:PORT): a wildcard address (0.0.0.0, ::, empty)
    listens dual-stack on [::] when IPv6 is available, a host name on its first address."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host, port):
        if host in ("", "0.0.0.0", "::"):
            family, host = (socket.AF_INET6, "::") if socket.has_ipv6 else (socket.AF_INET, "")
        else:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            family, _, _, _, addr = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]
            host = addr[0]
        self.address_family = family
        try:
            super().__init__((host, port), Handler)
        except OSError:
            if family != socket.AF_INET6 or host != "::":
                raise
            self.address_family = socket.AF_INET  # no IPv6 on this machine
            super().__init__(("", port), Handler)
        self.loopback = ipaddress.ip_address(self.server_address[0]).is_loopback

    def server_bind(self):
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)  # skips HTTPServer's getfqdn (a DNS lookup)
        self.server_name, self.server_port = self.server_address[:2]

    def addr(self):
        host, port = self.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def stop(signum, frame):
    raise KeyboardInterrupt


def main():
    global MODELS
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--scenario", default="pulled", choices=sorted(PRESETS))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--models", metavar="DIR")
    ap.add_argument("--load-seconds", type=float, metavar="S",
                    default=os.environ.get("FAKE_OLLAMA_LOAD_SECONDS") or None)
    args = ap.parse_args()
    if args.models is not None:
        MODELS = os.path.abspath(args.models)
        for sub in ("blobs", "manifests"):  # as Ollama creates them when it starts
            os.makedirs(os.path.join(MODELS, sub), exist_ok=True)
    if args.load_seconds is not None:
        STATE.overrides["load_seconds"] = float(args.load_seconds)
    STATE.apply({"name": args.scenario})
    try:
        server = Server(args.host, args.port)
    except OSError as e:  # as `ollama serve` reports it
        reason = (e.strerror or str(e)).lower()
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"Error: listen tcp {host}:{args.port}: bind: {reason}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("routes.go:1564", f"Listening on {server.addr()} (version {STATE.snapshot()['version']})")
    if MODELS is None:
        print(f"fake ollama listening on {server.addr()} ({args.scenario})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
