"""Verifies every delivery a receiver recorded (DIR/received.jsonl) with the Standard
Webhooks library, under the signing secret read from standard input. Prints one JSON
object per delivery: its webhook-id, type, the status the receiver answered, and whether
the signature verified."""

import base64
import json
import sys

from standardwebhooks.webhooks import Webhook

secret = sys.stdin.read().strip()
hook = Webhook(secret)
out = []
with open(sys.argv[1] + "/received.jsonl") as f:
    for line in f:
        record = json.loads(line)
        body = base64.b64decode(record["body"])
        try:
            payload = hook.verify(body, record["headers"])
            ok = True
        except Exception:
            payload = json.loads(body)
            ok = False
        out.append(
            {
                "id": record["headers"].get("webhook-id"),
                "type": payload.get("type"),
                "status": record["status"],
                "verified": ok,
                "data": payload.get("data"),
            }
        )
print(json.dumps(out))
