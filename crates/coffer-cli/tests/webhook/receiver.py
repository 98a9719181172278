"""A webhook receiver for the tests: listens on 127.0.0.1 (any free port, written to
DIR/port), answers each POST as DIR/plan says, and appends every request (headers, body in
base64, the status it answered) to DIR/received.jsonl.

The plan: `500*` answers 500 to everything; otherwise a comma-separated list of statuses
for the first attempts of each message (by webhook-id), 200 after them (empty: always 200).
It is read again per request. `hang` records a request (status 0), then answers
nothing for 30 seconds. With DIR/cert.pem and DIR/key.pem it serves HTTPS with them.
"""

import base64
import json
import os
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = sys.argv[1]
counts = {}


def planned(n):
    try:
        with open(os.path.join(DIR, "plan")) as f:
            plan = f.read().strip()
    except FileNotFoundError:
        plan = ""
    if plan == "hang":
        return 0
    if plan.endswith("*"):
        return int(plan[:-1])
    steps = [int(s) for s in plan.split(",") if s.strip()]
    return steps[n] if n < len(steps) else 200


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        message = self.headers.get("webhook-id", "")
        status = planned(counts.get(message, 0))
        counts[message] = counts.get(message, 0) + 1
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": base64.b64encode(body).decode(),
            "status": status,
        }
        with open(os.path.join(DIR, "received.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")
        if status == 0:
            time.sleep(30)
            status = 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if os.path.exists(os.path.join(DIR, "cert.pem")):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(os.path.join(DIR, "cert.pem"), os.path.join(DIR, "key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(os.path.join(DIR, "port.tmp"), "w") as f:
    f.write(str(server.server_address[1]))
os.rename(os.path.join(DIR, "port.tmp"), os.path.join(DIR, "port"))
server.serve_forever()
