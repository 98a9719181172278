"""Subscribes to coffer's OpenBao-style event WebSocket with the `websockets` library and
prints each CloudEvent received as one JSON line, after a first line `ready`.

usage: ws_subscribe.py URL TOKEN COUNT
"""
import json
import sys

from websockets.sync.client import connect

url, token, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with connect(url, additional_headers={"X-Vault-Token": token}, open_timeout=10) as ws:
    print("ready", flush=True)
    for _ in range(count):
        message = ws.recv(timeout=30)
        event = json.loads(message)
        print(json.dumps(event), flush=True)
