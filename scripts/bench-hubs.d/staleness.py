#!/usr/bin/env python3
"""How long another hub serves a value older than an acknowledged write.

For each of N rounds: write a new value through the writer hub (KV v2, acknowledged once
durable), then read the secret through the reader hub until it answers that value. The reader
read the previous round's value just before, so it holds it in its cache: what is measured is
the time from the writer's acknowledgement until the reader drops its cached value. Prints
p50, p99 and max, and how many rounds the reader's first read was already fresh.

Usage: staleness.py --writer URL --reader URL --token TOKEN [--n 10000]
"""
import argparse
import http.client
import json
import sys
import time
import urllib.parse


def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--writer", required=True)
    ap.add_argument("--reader", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    headers = {"X-Vault-Token": args.token, "Content-Type": "application/json"}
    w, r = connect(args.writer), connect(args.reader)
    path = "/v1/secret/data/bench/staleness"

    def write(v):
        w.request("POST", path, json.dumps({"data": {"v": v}}), headers)
        resp = w.getresponse()
        body = resp.read()
        if resp.status != 200:
            sys.exit(f"write answered {resp.status}: {body[:200]!r}")

    def read():
        r.request("GET", path, headers=headers)
        resp = r.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        return json.loads(body)["data"]["data"]["v"]

    write("warm")
    while read() != "warm":
        pass
    lags, fresh, reads = [], 0, 0
    for i in range(args.n):
        v = f"round-{i}"
        write(v)
        acked = time.perf_counter()
        first = True
        while True:
            got = read()
            reads += 1
            if got == v:
                break
            first = False
        lags.append((time.perf_counter() - acked) * 1000)
        fresh += first
    lags.sort()
    pct = lambda p: lags[min(len(lags) - 1, int(len(lags) * p))]
    print(
        f"STALENESS rounds={args.n} p50_ms={pct(0.50):.2f} p99_ms={pct(0.99):.2f} "
        f"max_ms={lags[-1]:.2f} fresh_first_read={fresh} reads={reads}"
    )


if __name__ == "__main__":
    main()
