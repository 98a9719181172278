#!/usr/bin/env python3
"""Capture raw HTTP exchanges (status, body, some headers) from a
Vault-compatible server as Markdown, to document exactly what a compatible
server must answer. Used to produce openbao-captures.md; can be pointed at
coffer to eyeball the same exchanges.

Usage:
    python3 capture_raw.py --addr http://127.0.0.1:18200 --token root \
        [--cacert FILE] [--seal]

--seal ends with POST /v1/sys/seal and the sealed-state requests; the server
then stays sealed (for a dev server: just kill it afterwards).

Uses keys under secret/capture/ (deleted first) and policy "p1".
"""

import argparse
import json
import sys

import requests

SKIP_HEADERS = {"date"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--cacert")
    ap.add_argument("--seal", action="store_true")
    args = ap.parse_args()
    s = requests.Session()
    s.verify = args.cacert or True
    base = args.addr.rstrip("/")
    out = []

    def req(title, method, path, body=None, token=args.token, headers=None,
            show_headers=False, raw_body=None, note=None):
        h = {}
        if token:
            h["X-Vault-Token"] = token
        if headers:
            h.update(headers)
        data = raw_body
        if body is not None:
            data = json.dumps(body)
        r = s.request(method, base + path, data=data, headers=h)
        out.append(f"### {title}\n")
        if note:
            out.append(note + "\n")
        out.append("```")
        line = f"{method} {path}"
        if token:
            line += f"   (X-Vault-Token: {'<valid>' if token == args.token else token})"
        out.append(line)
        if data is not None:
            out.append(data)
        out.append("```")
        nl = "yes" if r.content.endswith(b"\n") else "no"
        out.append(f"-> **{r.status_code} {r.reason}**"
                   + (f"; body ends with newline: {nl}" if r.content else " (empty body)"))
        if show_headers:
            out.append("\n```")
            out.append(f"HTTP/1.1 {r.status_code} {r.reason}")
            for k, v in r.headers.items():
                if k.lower() not in SKIP_HEADERS:
                    out.append(f"{k}: {v}")
            out.append("```")
        if r.content:
            out.append("\n```json")
            out.append(r.text.rstrip("\n"))
            out.append("```")
        out.append("")
        return r

    def section(t):
        out.append(f"## {t}\n")

    k = "/v1/secret/data/capture/x"
    m = "/v1/secret/metadata/capture/x"
    s.delete(base + m, headers={"X-Vault-Token": args.token})
    s.delete(base + "/v1/secret/metadata/capture/sub/y", headers={"X-Vault-Token": args.token})

    section("KV v2 writes (200 with version metadata vs 204 empty)")
    req("write v1 (no cas)", "POST", k, {"data": {"user": "a", "pass": "p1"}}, show_headers=True)
    req("write with cas=1 (current version 1) -> v2", "PUT", k, {"options": {"cas": 1}, "data": {"user": "a", "pass": "p2"}})
    req("write with cas=1 again (mismatch)", "POST", k, {"options": {"cas": 1}, "data": {"x": "y"}})
    req("write with cas=0 on an existing key", "POST", k, {"options": {"cas": 0}, "data": {"x": "y"}})
    req("write without a data object", "POST", k, {"foo": "bar"})
    req("write with data that is not an object", "POST", k, {"data": "str"})
    req("HTTP PATCH (JSON merge patch) -> v3", "PATCH", k, {"data": {"role": "admin"}},
        headers={"Content-Type": "application/merge-patch+json"})
    req("HTTP PATCH with a plain application/json content type (rejected)", "PATCH", k, {"data": {"role": "x"}},
        headers={"Content-Type": "application/json"})
    req("HTTP PATCH on a missing key", "PATCH", "/v1/secret/data/capture/nope", {"data": {"a": "b"}},
        headers={"Content-Type": "application/merge-patch+json"})

    section("KV v2 reads")
    req("read latest (response headers shown)", "GET", k, show_headers=True)
    req("read ?version=1", "GET", k + "?version=1")
    req("read ?version=99 (never existed)", "GET", k + "?version=99")
    req("read a missing key: GET /v1/secret/data/x", "GET", "/v1/secret/data/x")
    req("read metadata", "GET", m)
    req("read metadata of a missing key", "GET", "/v1/secret/metadata/x")
    req("subkeys", "GET", "/v1/secret/subkeys/capture/x")

    section("KV v2 metadata, cas_required")
    req("update metadata", "POST", m, {"max_versions": 5, "cas_required": False, "custom_metadata": {"owner": "ops"}})
    req("read latest shows custom_metadata in data.metadata", "GET", k)
    req("set cas_required=true", "POST", m, {"cas_required": True})
    req("write without cas while cas_required", "POST", k, {"data": {"x": "y"}})
    req("write with wrong cas while cas_required", "POST", k, {"options": {"cas": 1}, "data": {"x": "y"}})
    req("set cas_required=false again", "POST", m, {"cas_required": False})

    section("Soft delete / undelete / destroy")
    req("DELETE latest version", "DELETE", k)
    req("read latest after soft delete (404 WITH data)", "GET", k)
    req("read metadata after soft delete", "GET", m)
    req("undelete versions [3]", "POST", "/v1/secret/undelete/capture/x", {"versions": [3]})
    req("delete specific versions [2] (POST delete/)", "POST", "/v1/secret/delete/capture/x", {"versions": [2]})
    req("read ?version=2 after delete", "GET", k + "?version=2")
    req("destroy versions [1]", "POST", "/v1/secret/destroy/capture/x", {"versions": [1]})
    req("read ?version=1 after destroy", "GET", k + "?version=1")
    req("undelete with no versions", "POST", "/v1/secret/undelete/capture/x", {})

    section("LIST")
    req("write a key in a subfolder", "POST", "/v1/secret/data/capture/sub/y", {"data": {"k": "v"}})
    req("LIST secret/metadata/capture", "LIST", "/v1/secret/metadata/capture")
    req("GET ?list=true (same thing)", "GET", "/v1/secret/metadata/capture?list=true")
    req("LIST with trailing slash", "LIST", "/v1/secret/metadata/capture/")
    req("LIST mount root", "LIST", "/v1/secret/metadata/")
    req("LIST on a folder with nothing in it", "LIST", "/v1/secret/metadata/empty-folder")
    req("LIST on a leaf key (not a folder)", "LIST", "/v1/secret/metadata/capture/x")
    req("DELETE metadata (all versions)", "DELETE", m)
    req("DELETE metadata of a missing key", "DELETE", m)
    req("read after metadata delete", "GET", k)
    req("DELETE metadata of sub/y", "DELETE", "/v1/secret/metadata/capture/sub/y")
    req("LIST the now-empty folder", "LIST", "/v1/secret/metadata/capture")

    section("CLI preflight: sys/internal/ui/mounts")
    req("GET /v1/sys/internal/ui/mounts/secret/x", "GET", "/v1/sys/internal/ui/mounts/secret/x")
    req("GET /v1/sys/internal/ui/mounts/secret (what `bao kv ... -mount=secret` calls)", "GET",
        "/v1/sys/internal/ui/mounts/secret")
    req("GET /v1/sys/internal/ui/mounts/nomount/x", "GET", "/v1/sys/internal/ui/mounts/nomount/x")
    req("preflight with an invalid token", "GET", "/v1/sys/internal/ui/mounts/secret/x", token="bad-token")
    req("preflight without a token", "GET", "/v1/sys/internal/ui/mounts/secret/x", token=None)
    req("GET /v1/secret/config", "GET", "/v1/secret/config")

    section("Tokens")
    req("GET /v1/auth/token/lookup-self", "GET", "/v1/auth/token/lookup-self")
    r = req("POST /v1/auth/token/create", "POST", "/v1/auth/token/create", {"policies": ["default"], "ttl": "1h"})
    child = None
    try:
        child = r.json()["auth"]["client_token"]
    except (ValueError, KeyError, TypeError):
        pass
    if child:
        req("lookup-self with the created token", "GET", "/v1/auth/token/lookup-self", token=child,
            note="(token is the one just created, shown as-is)")
        req("created token (policy default) reads a secret -> denied by policy", "GET",
            "/v1/secret/data/capture/x", token=child)
    req("lookup-self with an invalid token", "GET", "/v1/auth/token/lookup-self", token="bad-token")
    req("KV read with an invalid token", "GET", k, token="bad-token")
    req("KV read without a token", "GET", k, token=None)

    section("ACL policies")
    pol = 'path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n'
    req("PUT /v1/sys/policies/acl/p1", "PUT", "/v1/sys/policies/acl/p1", {"policy": pol})
    req("GET /v1/sys/policies/acl/p1", "GET", "/v1/sys/policies/acl/p1")
    req("LIST /v1/sys/policies/acl", "LIST", "/v1/sys/policies/acl")
    req("GET /v1/sys/policies/acl/missing", "GET", "/v1/sys/policies/acl/missing")
    req("PUT policy with invalid HCL", "PUT", "/v1/sys/policies/acl/bad", {"policy": "path {"})

    section("Unknown routes and bad bodies")
    req("GET an unmounted path", "GET", "/v1/nomount/x")
    req("malformed JSON body", "POST", k, raw_body="{not json")

    section("sys (unsealed)")
    req("GET /v1/sys/health", "GET", "/v1/sys/health")
    req("GET /v1/sys/seal-status", "GET", "/v1/sys/seal-status")
    req("GET /v1/sys/health?standbyok=true", "GET", "/v1/sys/health?standbyok=true")
    req("HEAD /v1/sys/health", "HEAD", "/v1/sys/health")
    req("GET /v1/sys/leader (called by `bao status`)", "GET", "/v1/sys/leader")

    if args.seal:
        section("Sealed")
        req("POST /v1/sys/seal", "POST", "/v1/sys/seal")
        req("GET /v1/secret/data/x while sealed", "GET", "/v1/secret/data/x")
        req("GET /v1/auth/token/lookup-self while sealed", "GET", "/v1/auth/token/lookup-self")
        req("GET /v1/sys/health while sealed", "GET", "/v1/sys/health")
        req("GET /v1/sys/health?sealedcode=200 while sealed", "GET", "/v1/sys/health?sealedcode=200")
        req("GET /v1/sys/seal-status while sealed", "GET", "/v1/sys/seal-status")
        req("GET /v1/sys/leader while sealed", "GET", "/v1/sys/leader")
        req("GET /v1/sys/internal/ui/mounts/secret/x while sealed", "GET", "/v1/sys/internal/ui/mounts/secret/x")

    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
