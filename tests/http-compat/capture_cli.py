#!/usr/bin/env python3
"""Run `bao kv ...` commands through log_proxy.py and print, as Markdown,
the HTTP requests each command makes (method, path, query, body, status).

Usage:
    python3 capture_cli.py --upstream http://127.0.0.1:18200 --token root [--listen 127.0.0.1:18290]

Note: the dev server's cluster port is its API port + 1 (18201), so the
proxy listens on 18290 by default. Starts log_proxy.py itself (and stops it, by its pid, at the end). Plain HTTP.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

COMMANDS = [
    "bao kv metadata delete -mount=secret cli/demo",
    "bao kv put -mount=secret cli/demo a=1 b=2",
    "bao kv get -mount=secret cli/demo",
    "bao kv get -format=json -mount=secret cli/demo",
    "bao kv get -mount=secret -version=1 cli/demo",
    "bao kv list -mount=secret cli",
    "bao kv metadata get -mount=secret cli/demo",
    "bao kv delete -mount=secret cli/demo",
    "bao kv get -field=a -mount=secret cli/demo",
    "bao kv undelete -mount=secret -versions=1 cli/demo",
    "bao kv destroy -mount=secret -versions=1 cli/demo",
    "bao kv put -mount=secret -cas=1 cli/demo a=2",
    "bao kv patch -mount=secret cli/demo c=3",
    "bao kv patch -mount=secret -method=rw cli/demo d=4",
    "bao kv metadata put -mount=secret -max-versions=5 -custom-metadata=owner=ops cli/demo",
    "bao kv delete -mount=secret -versions=2 cli/demo",
    "bao kv get secret/cli/demo",
    "bao kv metadata delete -mount=secret cli/demo",
    "bao kv get -mount=secret cli/demo",
    "bao token lookup",
    "bao status",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", default="http://127.0.0.1:18200")
    ap.add_argument("--listen", default="127.0.0.1:18290")
    ap.add_argument("--token", required=True)
    args = ap.parse_args()

    log = tempfile.NamedTemporaryFile(prefix="bao-cli-", suffix=".jsonl", delete=False).name
    proxy = subprocess.Popen([sys.executable, os.path.join(HERE, "log_proxy.py"),
                              "--listen", args.listen, "--upstream", args.upstream, "--log", log])
    try:
        for _ in range(50):
            if proxy.poll() is not None:
                sys.exit("capture_cli: log_proxy.py exited (port in use?)")
            try:
                urllib.request.urlopen(f"http://{args.listen}/v1/sys/seal-status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("capture_cli: log_proxy.py did not come up")
        open(log, "w").close()  # drop the readiness probe
        env = dict(os.environ, BAO_ADDR=f"http://{args.listen}", BAO_TOKEN=args.token)
        env.pop("BAO_CACERT", None)
        out = []
        pos = 0
        sample = None
        for cmd in COMMANDS:
            r = subprocess.run(cmd.split(), env=env, capture_output=True, text=True)
            time.sleep(0.05)
            with open(log) as f:
                f.seek(pos)
                lines = f.read()
                pos = f.tell()
            out.append(f"#### `{cmd}` (exit {r.returncode})\n")
            out.append("```")
            for line in lines.splitlines():
                e = json.loads(line)
                if sample is None:
                    sample = e
                q = f"?{e['query']}" if e["query"] else ""
                body = "" if e["body"] is None else "  body=" + json.dumps(e["body"], sort_keys=True)
                hdr = ""
                if "content-type" in e["headers"] and e["method"] == "PATCH":
                    hdr = f"  [Content-Type: {e['headers']['content-type']}]"
                out.append(f"{e['method']} {e['path']}{q}{body}{hdr} -> {e['status']}")
            out.append("```")
            if r.returncode != 0:
                msg = (r.stderr or r.stdout).strip().splitlines()
                out.append("stderr: `" + " / ".join(m for m in msg if m.strip()) + "`")
            out.append("")
        if sample:
            out.append("Request headers the CLI sends (sample from the first request; token sent in "
                       f"X-Vault-Token: {'yes' if sample['token'] else 'no'}):")
            out.append("```")
            out.extend(f"{k}: {v}" for k, v in sample["headers"].items())
            out.append("```")
        print("\n".join(out))
    finally:
        proxy.terminate()
        proxy.wait(timeout=5)
        os.unlink(log)


if __name__ == "__main__":
    main()
