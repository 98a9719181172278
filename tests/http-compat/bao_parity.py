#!/usr/bin/env python3
"""The bao CLI's daily commands, run step by step against coffer and against a real OpenBao,
with the outcomes compared.

Usage: bao_parity.py --coffer URL TOKEN --openbao URL TOKEN --work DIR

Each step runs the real `bao` binary against both servers (BAO_ADDR, BAO_TOKEN) and compares
what matters to a script that uses it: the exit status always; for a step that names them, the
text printed, or chosen fields of the JSON printed (`-format=json`), or the set of keys of a
JSON object (so a field OpenBao answers and coffer does not shows up). Tokens, accessors,
role-ids, secret-ids, times and request ids differ by nature and are never compared; a step
can capture them into a variable for later steps (each server has its own).

Policies (HCL: write, read back as written, list, a bad one refused, delete), tokens (create
with a policy, lookup by token and accessor, capabilities, renew, what the token may and may not
do, revoke, revoke by accessor), the audit device list, AppRole (role, role-id, secret-id,
login, a used-up secret-id refused) and response wrapping (a wrapped KV read and a wrapped
secret-id, unwrapped once, a second unwrap refused).

Prints one line per step; exits 1 when any step differs, naming it and both outcomes.

The suite runs it (crates/coffer-cli/tests/bao_parity.rs) against a daemon with --http and an
OpenBao dev server; by hand, start those (`bao server -dev -dev-root-token-id=root`) and pass
their addresses and root tokens.
"""

import argparse
import json
import os
import subprocess
import sys

APP_HCL = """# readers of app/
path "secret/data/app/*" {
  capabilities = ["read", "list"]
}

path "secret/metadata/app/*" { capabilities = ["list", "read"] }
"""

BAD_HCL = """path "secret/data/*" {
  capabilities = ["raed"]
}
"""


class Step:
    """One bao command and what to compare."""

    def __init__(self, name, args, as_var=None, text=False, fields=(), keys=(), capture=None,
                 setup=False):
        self.name = name
        self.args = args  # list; "{VAR}" is replaced by the server's captured value
        self.as_var = as_var  # run with BAO_TOKEN set to this captured variable
        self.text = text  # compare stdout exactly
        self.fields = fields  # JSON paths ("auth.policies") compared for equality
        self.keys = keys  # JSON paths of objects whose key sets are compared
        self.capture = capture or {}  # VAR -> JSON path (or "@text" for stdout)
        self.setup = setup  # run on both, never compared (a difference in setup only)


STEPS = [
    Step("enable approle (setup)", ["auth", "enable", "approle"], setup=True),
    Step("put a secret (setup)", ["kv", "put", "secret/app/x", "a=parity-secret-7c41"], setup=True),
    # Policies.
    Step("policy write (HCL)", ["policy", "write", "app", "{WORK}/app.hcl"], text=True),
    Step("policy read: as written", ["policy", "read", "app"], text=True),
    Step("policy list", ["policy", "list", "-format=json"], fields=("@sorted",)),
    Step("policy write: unknown capability", ["policy", "write", "bad", "{WORK}/bad.hcl"]),
    Step("policy read: missing", ["policy", "read", "nope"]),
    # Tokens.
    Step("token create -policy", ["token", "create", "-policy=app", "-format=json"],
         fields=("auth.policies", "auth.token_policies", "auth.orphan", "auth.renewable",
                 "auth.metadata"),
         keys=("", "auth"), capture={"T": "auth.client_token", "A": "auth.accessor"}),
    Step("token lookup TOKEN", ["token", "lookup", "-format=json", "{T}"],
         fields=("data.policies", "data.orphan", "data.renewable", "data.type", "data.path",
                 "data.num_uses", "data.explicit_max_ttl", "data.meta"),
         keys=("data",)),
    Step("token lookup (self)", ["token", "lookup", "-format=json"], as_var="T",
         fields=("data.policies", "data.type")),
    Step("token lookup -accessor", ["token", "lookup", "-format=json", "-accessor", "{A}"],
         fields=("data.policies", "data.orphan")),
    Step("token capabilities (granted)", ["token", "capabilities", "{T}", "secret/data/app/x"],
         text=True),
    Step("token capabilities (metadata)",
         ["token", "capabilities", "{T}", "secret/metadata/app/x"], text=True),
    Step("token capabilities (not granted)",
         ["token", "capabilities", "{T}", "secret/data/other"], text=True),
    Step("token capabilities (self)", ["token", "capabilities", "secret/data/app/y"],
         as_var="T", text=True),
    Step("token renew TOKEN", ["token", "renew", "-format=json", "{T}"],
         fields=("auth.policies", "auth.renewable"), keys=("auth",)),
    Step("the token reads", ["kv", "get", "-field=a", "secret/app/x"], as_var="T", text=True),
    Step("the token may not write", ["kv", "put", "secret/app/x", "a=2"], as_var="T"),
    Step("the token may not read elsewhere", ["kv", "get", "secret/other"], as_var="T"),
    Step("token revoke TOKEN", ["token", "revoke", "{T}"], text=True),
    Step("revoked token: lookup refused", ["token", "lookup", "{T}"]),
    Step("revoked token: read refused", ["kv", "get", "secret/app/x"], as_var="T"),
    Step("another token", ["token", "create", "-policy=app", "-format=json"],
         capture={"T2": "auth.client_token", "A2": "auth.accessor"}),
    Step("token revoke -accessor", ["token", "revoke", "-accessor", "{A2}"], text=True),
    Step("revoked by accessor: lookup refused", ["token", "lookup", "{T2}"]),
    # Audit devices.
    Step("audit list", ["audit", "list", "-format=json"],
         fields=("file/.type", "file/.path", "file/.local"), keys=("", "file/")),
    # AppRole.
    Step("approle role write",
         ["write", "auth/approle/role/x", "token_policies=app", "secret_id_ttl=10m",
          "secret_id_num_uses=1", "token_ttl=1h"], text=True),
    Step("approle role read", ["read", "-format=json", "auth/approle/role/x"],
         fields=("data.token_policies", "data.secret_id_ttl", "data.secret_id_num_uses",
                 "data.token_ttl", "data.token_max_ttl", "data.bind_secret_id"),
         keys=("data",)),
    Step("approle role list", ["list", "auth/approle/role"], text=True),
    Step("approle role-id", ["read", "-format=json", "auth/approle/role/x/role-id"],
         keys=("data",), capture={"R": "data.role_id"}),
    Step("approle secret-id", ["write", "-format=json", "-f", "auth/approle/role/x/secret-id"],
         fields=("data.secret_id_num_uses", "data.secret_id_ttl"), keys=("data",),
         capture={"S": "data.secret_id"}),
    Step("approle login",
         ["write", "-format=json", "auth/approle/login", "role_id={R}", "secret_id={S}"],
         fields=("auth.policies", "auth.token_policies", "auth.metadata", "auth.orphan",
                 "auth.lease_duration", "auth.renewable"),
         keys=("auth",), capture={"L": "auth.client_token"}),
    Step("approle login: used-up secret-id refused",
         ["write", "auth/approle/login", "role_id={R}", "secret_id={S}"]),
    Step("approle login: wrong secret-id refused",
         ["write", "auth/approle/login", "role_id={R}", "secret_id=not-a-secret-id"]),
    Step("the login's token reads", ["kv", "get", "-field=a", "secret/app/x"], as_var="L",
         text=True),
    # Response wrapping.
    Step("wrapped read", ["kv", "get", "-wrap-ttl=60s", "-format=json", "secret/app/x"],
         fields=("wrap_info.ttl", "wrap_info.creation_path", "data"),
         keys=("wrap_info",), capture={"W": "wrap_info.token"}),
    Step("unwrap", ["unwrap", "-format=json", "{W}"], fields=("data.data",),
         keys=("data", "data.metadata")),
    Step("unwrap again: refused", ["unwrap", "{W}"]),
    Step("wrapped secret-id",
         ["write", "-wrap-ttl=120s", "-format=json", "-f", "auth/approle/role/x/secret-id"],
         fields=("wrap_info.ttl", "wrap_info.creation_path"), capture={"W2": "wrap_info.token"}),
    Step("unwrap the secret-id", ["unwrap", "-format=json", "{W2}"],
         fields=("data.secret_id_num_uses",), keys=("data",), capture={"S2": "data.secret_id"}),
    Step("login with the unwrapped secret-id",
         ["write", "-format=json", "auth/approle/login", "role_id={R}", "secret_id={S2}"],
         fields=("auth.policies",)),
    # Cleanup.
    Step("policy delete", ["policy", "delete", "app"], text=True),
    Step("policy read: deleted", ["policy", "read", "app"]),
]


def dig(value, path):
    """The value at a dotted path ("" is the whole); `file/.type` keys may contain '/'."""
    if path in ("", "@sorted"):
        return sorted(value) if path == "@sorted" and isinstance(value, list) else value
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return "<absent>"
        value = value[part]
    return value


class Server:
    """One server: its address, root token and captured variables."""

    def __init__(self, label, addr, token, work):
        self.label = label
        self.addr = addr
        self.token = token
        self.vars = {"WORK": work}

    def fill(self, arg):
        for k, v in self.vars.items():
            arg = arg.replace("{" + k + "}", v)
        return arg

    def run(self, step):
        env = dict(os.environ)
        env.update(BAO_ADDR=self.addr, BAO_TOKEN=self.token, BAO_FORMAT="table")
        env.pop("VAULT_TOKEN", None)
        if step.as_var:
            env["BAO_TOKEN"] = self.vars.get(step.as_var, "<missing>")
        args = ["bao"] + [self.fill(a) for a in step.args]
        out = subprocess.run(args, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60)
        parsed = None
        if "-format=json" in step.args and out.returncode == 0:
            try:
                parsed = json.loads(out.stdout)
            except ValueError:
                parsed = "<not JSON>"
        for var, path in step.capture.items():
            got = dig(parsed, path) if parsed is not None else "<none>"
            self.vars[var] = got if isinstance(got, str) else "<none>"
        return out, parsed


def compare(step, a, b):
    """The differences between OpenBao's outcome `a` and coffer's `b`, as lines."""
    (oa, ja), (ob, jb) = a, b
    diffs = []
    if oa.returncode != ob.returncode:
        diffs.append(f"exit status: openbao {oa.returncode}, coffer {ob.returncode}")
    if step.text and oa.stdout.strip() != ob.stdout.strip():
        diffs.append(f"output: openbao {oa.stdout.strip()!r}, coffer {ob.stdout.strip()!r}")
    for path in step.fields:
        va, vb = dig(ja, path), dig(jb, path)
        if va != vb:
            diffs.append(f"{path or 'value'}: openbao {json.dumps(va)}, coffer {json.dumps(vb)}")
    for path in step.keys:
        va, vb = dig(ja, path), dig(jb, path)
        ka = set(va) if isinstance(va, dict) else set()
        kb = set(vb) if isinstance(vb, dict) else set()
        if ka - kb:
            diffs.append(f"{path or 'answer'}: fields coffer lacks: {sorted(ka - kb)}")
    return diffs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--coffer", nargs=2, required=True, metavar=("URL", "TOKEN"))
    p.add_argument("--openbao", nargs=2, required=True, metavar=("URL", "TOKEN"))
    p.add_argument("--work", required=True)
    args = p.parse_args()
    with open(os.path.join(args.work, "app.hcl"), "w") as f:
        f.write(APP_HCL)
    with open(os.path.join(args.work, "bad.hcl"), "w") as f:
        f.write(BAD_HCL)
    bao = Server("openbao", *args.openbao, args.work)
    cof = Server("coffer", *args.coffer, args.work)
    failed = []
    for n, step in enumerate(STEPS, 1):
        a, b = bao.run(step), cof.run(step)
        if step.setup:
            print(f"{n:2} setup  {step.name}")
            continue
        diffs = compare(step, a, b)
        print(f"{n:2} {'same ' if not diffs else 'DIFF '} {step.name}")
        if diffs:
            failed.append(step.name)
            for d in diffs:
                print(f"       {d}")
            for label, (out, _) in (("openbao", a), ("coffer", b)):
                err = out.stderr.strip().replace("\n", " | ")[:400]
                print(f"       {label} stderr: {err}")
    if failed:
        print(f"{len(failed)} of {len(STEPS)} steps differ: {', '.join(failed)}")
        sys.exit(1)
    print(f"all {len(STEPS)} steps gave the same outcomes")


if __name__ == "__main__":
    main()
