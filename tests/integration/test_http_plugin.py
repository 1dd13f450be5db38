"""The `http` plugin against real local HTTP and HTTPS servers (Python's http.server, a
self-signed certificate made with openssl)."""
import http.server
import os
import shutil
import ssl
import subprocess
import threading
import unittest

from vitals_testlib import Trickle, VitalsTestCase, once, wait_for


class Handler(http.server.BaseHTTPRequestHandler):
    seen_headers = []

    def do_GET(self):
        Handler.seen_headers.append(dict(self.headers))
        status = int(self.path.strip("/").split("/")[0] or 200)
        body = b'{"status":"ok","db":"up"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class HttpPlugin(VitalsTestCase):
    def serve(self, tls_context=None):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls_context:
            server.socket = tls_context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return server.server_address[1]

    def config(self, probes):
        return self.tmp.file("v.yaml", "probes:\n" + probes)

    def test_status_body_and_headers(self):
        port = self.serve()
        base = f"http://127.0.0.1:{port}"
        cfg = self.config(f"""
  ok: {{plugin: http, options: {{url: "{base}/200", body_contains: '"db":"up"', headers: {{Authorization: "Bearer tok-123456"}}}}}}
  teapot: {{plugin: http, options: {{url: "{base}/418"}}}}
  teapot_ok: {{plugin: http, options: {{url: "{base}/418", expect_status: "200,418"}}}}
  range: {{plugin: http, options: {{url: "{base}/503", expect_status: "200-299"}}}}
  body: {{plugin: http, options: {{url: "{base}/200", body_contains: "nope"}}}}
  down: {{plugin: http, options: {{url: "http://127.0.0.1:1/"}}}}
""")
        code, doc, _ = once(cfg, "ok")
        self.assertEqual((code, doc["status"], doc["stage"]), (0, "pass", "body"))
        self.assertEqual(Handler.seen_headers[-1]["Authorization"], "Bearer tok-123456")
        code, doc, _ = once(cfg, "teapot")
        self.assertEqual((code, doc["stage"], doc["message"]), (1, "status", "got HTTP 418 I'm a Teapot, expected 2xx"))
        self.assertEqual(once(cfg, "teapot_ok")[0], 0)
        code, doc, _ = once(cfg, "range")
        self.assertEqual((code, doc["stage"]), (1, "status"))
        code, doc, _ = once(cfg, "body")
        self.assertEqual((code, doc["stage"]), (1, "body"))
        code, doc, _ = once(cfg, "down")
        self.assertEqual((code, doc["stage"], doc["message"]), (1, "connect", "unable to connect to 127.0.0.1:1: connection refused"))
        bad = self.config('  x: {plugin: http, options: {url: "ftp://x/"}}\n')
        self.assertEqual(once(bad, "x")[0], 100)
        bad = self.config('  x: {plugin: http, options: {url: "http://x/", expect_status: "2xy"}}\n')
        p = once(bad, "x")[2]
        self.assertEqual(p.returncode, 100)
        self.assertIn("expect_status: invalid status '2xy'", p.stderr)

    @unittest.skipUnless(shutil.which("openssl"), "needs openssl to make a certificate")
    def test_https(self):
        cert, key = os.path.join(self.tmp.path, "cert.pem"), os.path.join(self.tmp.path, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        port = self.serve(ctx)
        # The probe connects to the address it resolved; the certificate (names only, no IP) must
        # still be checked against the URL's host name.
        url = f"https://localhost:{port}/200"
        cfg = self.config(f"""
  trusted: {{plugin: http, options: {{url: "{url}", ca_file: "{cert}"}}}}
  untrusted: {{plugin: http, options: {{url: "{url}"}}}}
  unverified: {{plugin: http, options: {{url: "{url}", tls_verify: false}}}}
""")
        code, doc, _ = once(cfg, "trusted")
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)
        code, doc, _ = once(cfg, "untrusted")
        self.assertEqual((code, doc["status"], doc["stage"]), (1, "fail", "tls"), doc)
        self.assertIn("unable to establish TLS with localhost:", doc["message"])
        code, doc, _ = once(cfg, "unverified")
        self.assertEqual((code, doc["status"]), (0, "pass"), doc)


class Deadline(VitalsTestCase):
    """The probe's timeout bounds the whole run, not each read: a server that trickles its answer
    cannot keep a run going."""

    def trickle(self, **kw):
        server = Trickle(**kw)
        self.addCleanup(server.close)
        return server

    def test_trickled_body_and_head_end_at_the_deadline(self):
        body, head = self.trickle(), self.trickle(slow_head=True)
        cfg = self.tmp.file("v.yaml", f"""
probes:
  body: {{plugin: http, timeout: 1s, options: {{url: "http://127.0.0.1:{body.port}/", body_contains: ok}}}}
  head: {{plugin: http, timeout: 1s, options: {{url: "http://127.0.0.1:{head.port}/"}}}}
""")
        for name, server, stage in (("body", body, "body"), ("head", head, "status")):
            code, doc, p = once(cfg, name)
            # The plugin's own result (not the host's "did not finish within 1s").
            self.assertEqual((code, doc["stage"], doc["message"]),
                             (1, stage, f"no answer from 127.0.0.1:{server.port} before the deadline"),
                             p.stdout)
            wait_for(lambda: server.ended, what="the connection to be dropped")
            self.assertLess(server.ended[0], 10)

    def test_agent_runs_again_after_a_trickled_answer(self):
        server = self.trickle()
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
probes:
  web: {{plugin: http, interval: 1s, timeout: 500ms, options: {{url: "http://127.0.0.1:{server.port}/", body_contains: ok}}}}
""")
        # A run stuck reading would hold the probe (it is not started again until the run
        # returns): each run must end at its deadline, so the next ones come.
        wait_for(lambda: server.accepted >= 3, timeout=20, what="three runs")
        self.assertIn("before the deadline", agent.probe("web")["message"])


if __name__ == "__main__":
    unittest.main()
