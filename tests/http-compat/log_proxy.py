#!/usr/bin/env python3
"""Tiny logging HTTP reverse proxy, to see which requests a client (e.g. the
`bao` CLI) makes. Plain HTTP only.

Usage:
    python3 log_proxy.py --listen 127.0.0.1:18290 --upstream http://127.0.0.1:18200 --log requests.jsonl

Point the client at the listen address (BAO_ADDR=http://127.0.0.1:18290). One
JSON line per request is appended to --log: method, path, query, selected
request headers, request body, response status, response body (truncated).
"""

import argparse
import http.client
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
       "te", "trailers", "transfer-encoding", "upgrade"}
SHOW_REQ_HEADERS = ["content-type", "x-vault-request", "x-vault-namespace", "user-agent"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:18290")
    ap.add_argument("--upstream", default="http://127.0.0.1:18200")
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def handle_any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            rbody = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(rbody)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(rbody)
            conn.close()

            parts = urllib.parse.urlsplit(self.path)
            try:
                jbody = json.loads(body) if body else None
            except ValueError:
                jbody = body.decode("utf-8", "replace")
            entry = {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "token": "X-Vault-Token" in self.headers,
                "headers": {h: self.headers[h] for h in SHOW_REQ_HEADERS if h in self.headers},
                "body": jbody,
                "status": resp.status,
                "response": rbody.decode("utf-8", "replace")[:400],
            }
            with lock, open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_LIST = handle_any

    host, port = args.listen.rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
