#!/usr/bin/env python3
"""A small HTTP server that can wedge: alive, listening, but never answering (the integration tests
of `vitals notify --liveness`).

    wedge_server.py PORT WEDGE_FILE [ANSWERS]

Answers every GET with 200 "ok" while WEDGE_FILE does not exist; while it does, and after its
first ANSWERS answers if given, it accepts requests and holds them unanswered. Prints
"wedge_server pid PID serving on PORT" at start; SIGTERM ends it (the default action)."""
import http.server
import os
import sys
import threading
import time

PORT, WEDGE = int(sys.argv[1]), sys.argv[2]
ANSWERS = int(sys.argv[3]) if len(sys.argv) > 3 else None
answered = 0
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global answered
        with lock:
            wedged = os.path.exists(WEDGE) or (ANSWERS is not None and answered >= ANSWERS)
            if not wedged:
                answered += 1
        if wedged:
            time.sleep(3600)
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"wedge_server pid {os.getpid()} serving on {PORT}", flush=True)
server.serve_forever()
