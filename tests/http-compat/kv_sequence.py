#!/usr/bin/env python3
"""Run a fixed KV v2 + sys + token sequence against a Vault-compatible server
using hvac, and print ONE JSON document: a list of normalized step outcomes.

Usage:
    python3 kv_sequence.py --addr http://127.0.0.1:18200 --token root \
        [--mount secret] [--path compat/app] [--cacert FILE]

Each step is {"step": name, "ok": bool, "status": int|null, "result": ...}.
"ok" means "hvac did not raise"; expected failures (cas conflict, 404 after
delete, 403 with a bad token, ...) are recorded with ok=false and the hvac
exception class, so the output of two servers can be diffed with compare.py.

"status" is the HTTP status of the last response hvac received during the step
(captured with a requests response hook), so 200 vs 204 differences show up.

Normalization keeps only what is stable across servers and runs: version
numbers, data dicts, destroyed flags, whether deletion_time is empty, custom
metadata, key lists, sealed/initialized, token policies, error class/status and
error messages. Times, request ids, uuids, accessors, server versions and
cluster names are dropped. For response shapes, we record which of the keys
that Vault documents (and clients read) are *missing*, so servers may add
extra fields (OpenBao adds e.g. metadata_cas_required) without a difference.

The script exits 0 whenever the sequence ran to the end, whatever the steps'
outcomes; it exits 2 on usage errors or if the server cannot be reached at all.
"""

import argparse
import json
import posixpath
import sys
import warnings

import hvac
import hvac.exceptions
import requests

warnings.simplefilter("ignore", DeprecationWarning)

# Keys of the standard Vault response envelope (every JSON 200 response that
# carries data). OpenBao/Vault may add more (e.g. "mount_type"); only missing
# ones are reported.
ENVELOPE_KEYS = [
    "request_id", "lease_id", "renewable", "lease_duration",
    "data", "wrap_info", "warnings", "auth",
]
# KV v2 per-version metadata, as returned by write and in data reads.
VERSION_META_KEYS = ["created_time", "custom_metadata", "deletion_time", "destroyed", "version"]
# KV v2 metadata endpoint (GET {mount}/metadata/{path}).
METADATA_KEYS = [
    "cas_required", "created_time", "current_version", "custom_metadata",
    "delete_version_after", "max_versions", "oldest_version", "updated_time", "versions",
]
METADATA_VERSION_KEYS = ["created_time", "deletion_time", "destroyed"]
# auth/token/lookup-self data, as documented by Vault and read by clients.
LOOKUP_SELF_KEYS = [
    "accessor", "creation_time", "creation_ttl", "display_name", "entity_id",
    "expire_time", "explicit_max_ttl", "id", "meta", "num_uses", "orphan",
    "path", "policies", "renewable", "ttl", "type",
]
HEALTH_KEYS = ["initialized", "sealed", "standby", "server_time_utc", "version"]
SEAL_STATUS_KEYS = ["type", "initialized", "sealed", "t", "n", "progress", "nonce", "version"]


def missing(obj, keys):
    if not isinstance(obj, dict):
        return "not-an-object"
    return [k for k in keys if k not in obj]


def envelope(resp):
    return {"envelope_missing": missing(resp, ENVELOPE_KEYS)}


def norm_version_meta(meta):
    """Per-version metadata (write response data, or data.metadata of a read)."""
    if not isinstance(meta, dict):
        return meta
    return {
        "version": meta.get("version"),
        "destroyed": meta.get("destroyed"),
        "deletion_time_empty": meta.get("deletion_time") in ("", None),
        "created_time_set": bool(meta.get("created_time")),
        "custom_metadata": meta.get("custom_metadata"),
        "missing_keys": missing(meta, VERSION_META_KEYS),
    }


def norm_write(resp):
    out = envelope(resp)
    out["data"] = norm_version_meta(resp.get("data"))
    return out


def norm_read(resp):
    out = envelope(resp)
    data = resp.get("data") or {}
    out["data"] = data.get("data")
    out["metadata"] = norm_version_meta(data.get("metadata"))
    return out


def norm_list(resp):
    out = envelope(resp)
    out["keys"] = (resp.get("data") or {}).get("keys")
    return out


def norm_metadata(resp):
    out = envelope(resp)
    d = resp.get("data") or {}
    versions = d.get("versions") or {}
    out.update({
        "current_version": d.get("current_version"),
        "oldest_version": d.get("oldest_version"),
        "max_versions": d.get("max_versions"),
        "cas_required": d.get("cas_required"),
        "delete_version_after": d.get("delete_version_after"),
        "custom_metadata": d.get("custom_metadata"),
        "versions": {
            k: {
                "destroyed": v.get("destroyed"),
                "deletion_time_empty": v.get("deletion_time") in ("", None),
                "missing_keys": missing(v, METADATA_VERSION_KEYS),
            }
            for k, v in sorted(versions.items(), key=lambda kv: int(kv[0]))
        },
        "missing_keys": missing(d, METADATA_KEYS),
    })
    return out


class Recorder:
    """requests response hook: remembers the status/body of the last response."""

    def __init__(self):
        self.last = None

    def hook(self, response, *args, **kwargs):
        self.last = response
        return response


def make_client(addr, token, verify, recorder):
    session = requests.Session()
    # hvac takes verify from a passed-in session when session.verify is truthy
    # (a fresh Session has verify=True), so the CA bundle must be set here.
    session.verify = verify
    session.hooks["response"].append(recorder.hook)
    return hvac.Client(url=addr, token=token, verify=verify, session=session)


def norm_exception(exc):
    """hvac raises VaultError subclasses; keep class name, messages, and the
    normalized body if the error response carries data (e.g. the 404 returned
    for a soft-deleted/destroyed version still contains data.metadata)."""
    out = {"error_class": type(exc).__name__, "errors": getattr(exc, "errors", None)}
    body = getattr(exc, "json", None)
    if isinstance(body, dict) and body.get("data") is not None:
        out["body"] = norm_read(body)
    elif isinstance(body, dict):
        out["body_keys"] = sorted(body.keys())
    return out


def norm_default(resp):
    """Result of a call that is expected to answer 204 (hvac returns the raw
    requests.Response for non-200) or a JSON dict."""
    if isinstance(resp, requests.Response):
        return {"body_empty": len(resp.content.strip()) == 0}
    if isinstance(resp, dict):
        return {"json_keys": sorted(resp.keys())}
    return {"type": type(resp).__name__}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--mount", default="secret")
    ap.add_argument("--path", default="compat/app")
    ap.add_argument("--cacert", default=None, help="CA bundle for https (self-signed)")
    args = ap.parse_args()

    verify = args.cacert if args.cacert else True
    rec = Recorder()
    client = make_client(args.addr, args.token, verify, rec)
    kv = client.secrets.kv.v2
    mount = args.mount
    path = args.path.strip("/")
    parent = posixpath.dirname(path)  # "" lists the mount root
    second = path + "2/x"  # creates the folder "<name>2/" next to <name>

    steps = []

    def step(name, fn, normalize=norm_default):
        rec.last = None
        entry = {"step": name, "ok": False, "status": None, "result": None}
        try:
            resp = fn()
            entry["ok"] = True
            entry["result"] = normalize(resp)
        except hvac.exceptions.VaultError as exc:
            entry["result"] = norm_exception(exc)
        except requests.exceptions.RequestException as exc:
            entry["result"] = {"error_class": type(exc).__name__, "transport_error": True}
        except Exception as exc:  # normalizer or hvac bug: record, keep going
            entry["result"] = {"error_class": type(exc).__name__, "unexpected": str(exc)}
        if rec.last is not None:
            entry["status"] = rec.last.status_code
        steps.append(entry)
        return entry

    # Reachability check: a transport failure here means nothing can be compared.
    try:
        client.sys.read_seal_status()
    except requests.exceptions.RequestException as exc:
        print(f"kv_sequence: cannot reach {args.addr}: {exc}", file=sys.stderr)
        return 2
    except hvac.exceptions.VaultError:
        pass

    # --- setup: start from nothing so versions are deterministic on reruns.
    # Deleting the metadata of a key that does not exist is a 204 in Vault.
    step("setup_delete_metadata", lambda: kv.delete_metadata_and_all_versions(path, mount_point=mount))
    step("setup_delete_metadata_second", lambda: kv.delete_metadata_and_all_versions(second, mount_point=mount))

    # --- writes and check-and-set
    step("write_v1", lambda: kv.create_or_update_secret(
        path, {"user": "a", "pass": "p1"}, mount_point=mount), norm_write)
    step("write_v2_cas1", lambda: kv.create_or_update_secret(
        path, {"user": "a", "pass": "p2"}, cas=1, mount_point=mount), norm_write)
    step("write_cas1_conflict", lambda: kv.create_or_update_secret(
        path, {"user": "a", "pass": "p3"}, cas=1, mount_point=mount), norm_write)
    step("write_cas0_existing", lambda: kv.create_or_update_secret(
        path, {"user": "a", "pass": "p3"}, cas=0, mount_point=mount), norm_write)

    # --- reads
    step("read_latest", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("read_version_1", lambda: kv.read_secret_version(
        path, version=1, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("read_version_99_missing", lambda: kv.read_secret_version(
        path, version=99, mount_point=mount, raise_on_deleted_version=True), norm_read)

    # --- hvac patch: client-side read, merge, then write with cas=<read version>
    step("patch_add_key", lambda: kv.patch(path, {"role": "admin"}, mount_point=mount), norm_write)
    step("read_after_patch", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)

    # --- second key in a subfolder next to <path>, so the parent lists a folder
    step("write_second_key", lambda: kv.create_or_update_secret(
        second, {"k": "v"}, mount_point=mount), norm_write)
    # cas_required on the second key: a write without cas must fail, with the
    # right cas it succeeds (version 2).
    step("second_set_cas_required", lambda: kv.update_metadata(
        second, cas_required=True, mount_point=mount))
    step("second_write_without_cas_when_required", lambda: kv.create_or_update_secret(
        second, {"k": "v2"}, mount_point=mount), norm_write)
    step("second_write_with_cas_when_required", lambda: kv.create_or_update_secret(
        second, {"k": "v2"}, cas=1, mount_point=mount), norm_write)
    # Server-side JSON merge patch (what `bao kv patch` uses by default). hvac has
    # no method for it, so go through the adapter. Done on the second key, last
    # among its writes, so that a server lacking PATCH only fails these two steps
    # and does not shift any other version number. cas is required here (above).
    step("http_merge_patch_second_key", lambda: client.adapter.request(
        "PATCH",
        f"/v1/{mount}/data/{second}",
        json={"options": {"cas": 2}, "data": {"k2": "v3", "k": None}},
        headers={"Content-Type": "application/merge-patch+json"},
    ), norm_write)
    step("read_second_after_merge_patch", lambda: kv.read_secret_version(
        second, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("list_parent", lambda: kv.list_secrets(parent, mount_point=mount), norm_list)
    step("list_subfolder_trailing_slash", lambda: kv.list_secrets(
        path + "2/", mount_point=mount), norm_list)

    # --- metadata
    step("read_metadata", lambda: kv.read_secret_metadata(path, mount_point=mount), norm_metadata)
    step("update_metadata", lambda: kv.update_metadata(
        path, max_versions=5, cas_required=False, custom_metadata={"owner": "ops"},
        mount_point=mount))
    step("read_metadata_after_update", lambda: kv.read_secret_metadata(
        path, mount_point=mount), norm_metadata)
    step("read_latest_has_custom_metadata", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)

    # --- soft delete / undelete / destroy
    step("delete_latest", lambda: kv.delete_latest_version_of_secret(path, mount_point=mount))
    step("read_latest_after_delete", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("read_latest_after_delete_no_raise", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=False), norm_read)
    step("read_metadata_after_delete", lambda: kv.read_secret_metadata(
        path, mount_point=mount), norm_metadata)
    step("undelete_v3", lambda: kv.undelete_secret_versions(path, [3], mount_point=mount))
    step("read_latest_after_undelete", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("destroy_v1", lambda: kv.destroy_secret_versions(path, [1], mount_point=mount))
    step("read_version_1_after_destroy", lambda: kv.read_secret_version(
        path, version=1, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("read_metadata_after_destroy", lambda: kv.read_secret_metadata(
        path, mount_point=mount), norm_metadata)
    step("delete_metadata_all_versions", lambda: kv.delete_metadata_and_all_versions(
        path, mount_point=mount))
    step("read_after_metadata_delete", lambda: kv.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("read_metadata_after_metadata_delete", lambda: kv.read_secret_metadata(
        path, mount_point=mount), norm_metadata)
    step("list_parent_again", lambda: kv.list_secrets(parent, mount_point=mount), norm_list)
    # Remove the second key too, then the parent folder is empty: LIST -> 404.
    step("cleanup_delete_second", lambda: kv.delete_metadata_and_all_versions(
        second, mount_point=mount))
    step("list_empty_folder", lambda: kv.list_secrets(path + "2", mount_point=mount), norm_list)

    # --- sys
    def norm_health(resp):
        if isinstance(resp, requests.Response):  # non-200 health codes
            try:
                resp = resp.json()
            except ValueError:
                return {"body": "not-json"}
        return {
            "initialized": resp.get("initialized"),
            "sealed": resp.get("sealed"),
            "standby": resp.get("standby"),
            "missing_keys": missing(resp, HEALTH_KEYS),
        }

    step("sys_health", lambda: client.sys.read_health_status(method="GET"), norm_health)

    def norm_seal(resp):
        return {
            "initialized": resp.get("initialized"),
            "sealed": resp.get("sealed"),
            "progress": resp.get("progress"),
            "missing_keys": missing(resp, SEAL_STATUS_KEYS),
        }

    step("sys_seal_status", lambda: client.sys.read_seal_status(), norm_seal)

    # --- token
    def norm_lookup(resp):
        out = envelope(resp)
        d = resp.get("data") or {}
        out.update({
            "id_matches_token": d.get("id") == args.token,
            "policies": sorted(d.get("policies") or []),
            "renewable": d.get("renewable"),
            "type": d.get("type"),
            "missing_keys": missing(d, LOOKUP_SELF_KEYS),
        })
        return out

    step("token_lookup_self", lambda: client.auth.token.lookup_self(), norm_lookup)
    step("is_authenticated", lambda: client.is_authenticated(), lambda r: {"value": r})

    # A child token with only the "default" policy: created, looked up, and
    # denied a KV read by policy (not by being invalid).
    child = {}

    def norm_create(resp):
        out = envelope(resp)
        a = resp.get("auth") or {}
        child["token"] = a.get("client_token")
        out.update({
            "data": resp.get("data"),
            "client_token_set": bool(a.get("client_token")),
            "accessor_set": bool(a.get("accessor")),
            "policies": sorted(a.get("policies") or []),
            "token_policies": sorted(a.get("token_policies") or []),
            "lease_duration": a.get("lease_duration"),
            "renewable": a.get("renewable"),
            "orphan": a.get("orphan"),
            "token_type": a.get("token_type"),
        })
        return out

    step("token_create_default_policy", lambda: client.auth.token.create(
        policies=["default"], ttl="1h"), norm_create)

    def norm_child_lookup(resp):
        out = envelope(resp)
        d = resp.get("data") or {}
        out.update({
            "id_matches_token": d.get("id") == child.get("token"),
            "policies": sorted(d.get("policies") or []),
            "renewable": d.get("renewable"),
            "type": d.get("type"),
            "creation_ttl": d.get("creation_ttl"),
            "ttl_in_range": isinstance(d.get("ttl"), int) and 3500 <= d["ttl"] <= 3600,
            "expire_time_set": bool(d.get("expire_time")),
            "missing_keys": missing(d, LOOKUP_SELF_KEYS),
        })
        return out

    limited = make_client(args.addr, child.get("token") or "no-child-token", verify, rec)
    step("child_token_lookup_self", lambda: limited.auth.token.lookup_self(), norm_child_lookup)
    step("child_token_read_denied_by_policy", lambda: limited.secrets.kv.v2.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)

    bad = make_client(args.addr, "not-a-valid-token", verify, rec)
    step("bad_token_read", lambda: bad.secrets.kv.v2.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)
    step("bad_token_is_authenticated", lambda: bad.is_authenticated(), lambda r: {"value": r})
    # token="" (not None: hvac would fall back to VAULT_TOKEN or ~/.vault-token)
    anon = make_client(args.addr, "", verify, rec)
    step("no_token_read", lambda: anon.secrets.kv.v2.read_secret_version(
        path, mount_point=mount, raise_on_deleted_version=True), norm_read)

    json.dump(steps, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
