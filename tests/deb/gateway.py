#!/usr/bin/python3
"""A slow SMS gateway for the package test: each POST takes DELAY seconds, then is logged.

    gateway.py PORT DELAY LOG [HOLD]

Every request is appended to LOG as one JSON line {"to", "text", "start", "end"} once its
answer is sent, so a text sent twice shows up twice. A request whose text is HOLD is
held: the gateway creates LOG.held and answers only once LOG.release exists, so the
test can stop the daemon while that send is in flight. Only the standard library: it
runs with the container's /usr/bin/python3.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, delay, log_path = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
hold = sys.argv[4] if len(sys.argv) > 4 else None
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        start = time.time()
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        time.sleep(delay)
        if hold is not None and body.get("text") == hold:
            open(log_path + ".held", "w").close()
            deadline = time.time() + 25  # under the unit's TimeoutStopSec=30s
            while not os.path.exists(log_path + ".release") and time.time() < deadline:
                time.sleep(0.1)
        with lock:
            count += 1
            answer = json.dumps({"id": f"gw-{count}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        with lock, open(log_path, "a") as f:
            f.write(json.dumps({"to": body.get("to"), "text": body.get("text"), "start": start, "end": time.time()}) + "\n")

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
