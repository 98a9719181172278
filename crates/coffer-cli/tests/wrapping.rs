//! Issue 17, response wrapping and `sys/capabilities*` over HTTP, as an attacker would try
//! them: a wrapping token works once (a second unwrap, an expired one, a guessed one are
//! refused, and guesses back the peer off); a bad TTL is refused before the request runs (no
//! secret-id is made); streams are never wrapped; a wrap without a token is refused; rewrap
//! spends the old token; an acknowledged wrap survives `kill -9`; and neither the wrapped
//! value nor a wrapping token reaches the daemon's log, the audit log or a file in the data
//! directory in plaintext. Capabilities: a token's own, another's only with `sudo` on
//! `sys/token`.
//!
//! Needs curl; scripts/test installs it.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::http::{curl, http_daemon, need};
use common::{assert_absent, stderr, stdout};
use serde_json::{Value, json};

const MARKER: &str = "wrapped-value-5e0c";

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// POSTs `body` to `path` with `headers`; answers the status and the body.
fn post(url: &str, token: Option<&str>, headers: &[&str], body: &str, path: &str) -> (u16, String) {
    let mut args: Vec<&str> = vec!["-X", "POST", "-d", body];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(path);
    curl(url, token, &args)
}

fn unwrap(url: &str, wrapping_token: &str) -> (u16, String) {
    post(
        url,
        None,
        &[],
        &json!({ "token": wrapping_token }).to_string(),
        "/v1/sys/wrapping/unwrap",
    )
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

#[test]
fn a_wrapping_token_works_once_and_leaves_no_trace() {
    need("curl", "apt-get install curl");
    let (mut daemon, url, root) = http_daemon(&[]);
    let (code, body) = post(
        &url,
        Some(&root),
        &[],
        &json!({ "data": { "v": MARKER } }).to_string(),
        "/v1/secret/data/app/x",
    );
    assert_eq!(code, 200, "{body}");

    // A wrapped read: the answer carries a wrapping token, not the value.
    let (code, body) = curl(
        &url,
        Some(&root),
        &["-H", "X-Vault-Wrap-TTL: 5m", "/v1/secret/data/app/x"],
    );
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains(MARKER), "the value was answered: {body}");
    let wrapped = json_of(&body);
    let info = &wrapped["wrap_info"];
    assert_eq!(info["ttl"], 300, "{body}");
    assert_eq!(info["creation_path"], "secret/data/app/x", "{body}");
    let token = info["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("cfw_") && token.len() == 47, "{token}");

    // Lookup needs no token and does not spend it; a rewrap spends it for a new one.
    let (code, body) = post(
        &url,
        None,
        &[],
        &json!({ "token": token }).to_string(),
        "/v1/sys/wrapping/lookup",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["data"]["creation_ttl"], 300, "{body}");
    let (code, body) = post(
        &url,
        None,
        &[],
        &json!({ "token": token }).to_string(),
        "/v1/sys/wrapping/rewrap",
    );
    assert_eq!(code, 200, "{body}");
    let token2 = json_of(&body)["wrap_info"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(token, token2);
    assert_eq!(
        unwrap(&url, &token).0,
        400,
        "the rewrapped token still works"
    );

    // An acknowledged wrap survives kill -9.
    daemon.kill9();
    daemon.spawn();
    assert!(common::eventually(Duration::from_secs(10), || {
        curl(&url, None, &["/v1/sys/health"]).0 == 200
    }));

    // Unwrapped once, as the wrapping token itself (no body), the way `bao unwrap` does.
    let (code, body) = curl(
        &url,
        Some(&token2),
        &["-X", "POST", "-d", "null", "/v1/sys/wrapping/unwrap"],
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["data"]["data"]["v"], MARKER, "{body}");
    let (code, body) = unwrap(&url, &token2);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("wrapping token is not valid or does not exist"),
        "{body}"
    );

    // Expired: refused, and removed.
    let (_, body) = curl(
        &url,
        Some(&root),
        &["-H", "X-Vault-Wrap-TTL: 1s", "/v1/secret/data/app/x"],
    );
    let short = json_of(&body)["wrap_info"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(unwrap(&url, &short).0, 400);

    // Arbitrary data wrapped by any token, and answered as `data`.
    let (code, body) = post(
        &url,
        Some(&root),
        &["X-Vault-Wrap-TTL: 60"],
        &json!({ "k": MARKER }).to_string(),
        "/v1/sys/wrapping/wrap",
    );
    assert_eq!(code, 200, "{body}");
    let data_token = json_of(&body)["wrap_info"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = unwrap(&url, &data_token);
    assert_eq!(
        (code, json_of(&body)["data"]["k"].clone()),
        (200, json!(MARKER))
    );

    // Nothing in plaintext: not the value, not a wrapping token.
    let secrets = [MARKER, &token, &token2, &short, &data_token];
    assert_absent("the daemon's log", daemon.log().as_bytes(), &secrets);
    for (path, bytes) in files(&daemon.data) {
        assert_absent(&path, &bytes, &secrets);
    }
    let records = daemon.audit();
    // An unwrap is traced to its wrap: both records name the wrapping token's accessor
    // (hashed, as every name), never the token.
    let named = |action: &str| -> Vec<Value> {
        records
            .iter()
            .filter(|r| r["action"] == action && r["outcome"] == "ok")
            .map(|r| r["name"].clone())
            .collect()
    };
    let rewrapped = named("rewrap");
    assert_eq!(rewrapped.len(), 1, "{records:?}");
    assert!(rewrapped[0].is_string(), "{records:?}");
    assert!(named("unwrap").contains(&rewrapped[0]), "{records:?}");
    let audit: Vec<String> = records.iter().map(Value::to_string).collect();
    let actions: Vec<&str> = ["wrap", "unwrap", "wrap_lookup", "rewrap"].to_vec();
    for a in actions {
        assert!(
            audit.iter().any(|r| r.contains(&format!("\"{a}\""))),
            "no {a} record"
        );
    }
}

#[test]
fn wrapping_refuses_bad_ttls_streams_strangers_and_guessers() {
    need("curl", "apt-get install curl");
    let dir = tempfile::tempdir().unwrap();
    // A refill slow enough that the back-off cannot end while the test runs.
    let config = dir.path().join("coffer.toml");
    std::fs::write(&config, "[peer_limit]\nfailure_period = \"60s\"\n").unwrap();
    let (daemon, url, root) = http_daemon(&["--config", config.to_str().unwrap()]);
    let (code, body) = post(&url, Some(&root), &[], "{}", "/v1/auth/approle/role/ci");
    assert_eq!(code, 204, "{body}");

    // A bad TTL is refused before the request runs: no secret-id is made.
    for ttl in ["0", "abc", "769h", "-5s"] {
        let header = format!("X-Vault-Wrap-TTL: {ttl}");
        let (code, body) = post(
            &url,
            Some(&root),
            &[&header],
            "null",
            "/v1/auth/approle/role/ci/secret-id",
        );
        assert_eq!(code, 400, "{ttl}: {body}");
    }
    let (code, body) = curl(
        &url,
        Some(&root),
        &["-X", "LIST", "/v1/auth/approle/role/ci/secret-id"],
    );
    assert_eq!(code, 404, "a secret-id was made: {body}");

    // A wrapped secret-id: the answer names its accessor.
    let (code, body) = post(
        &url,
        Some(&root),
        &["X-Vault-Wrap-TTL: 2m"],
        "null",
        "/v1/auth/approle/role/ci/secret-id",
    );
    assert_eq!(code, 200, "{body}");
    let info = json_of(&body)["wrap_info"].clone();
    assert!(info["wrapped_accessor"].is_string(), "{body}");
    assert_eq!(info["creation_path"], "auth/approle/role/ci/secret-id");

    // A login asked to be wrapped without a token is refused before it runs: its
    // single-use secret-id is not spent.
    let (code, _) = post(
        &url,
        Some(&root),
        &[],
        "{\"secret_id_num_uses\": 1}",
        "/v1/auth/approle/role/once",
    );
    assert_eq!(code, 204);
    let (_, body) = curl(&url, Some(&root), &["/v1/auth/approle/role/once/role-id"]);
    let role_id = json_of(&body)["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = post(
        &url,
        Some(&root),
        &[],
        "null",
        "/v1/auth/approle/role/once/secret-id",
    );
    let secret_id = json_of(&body)["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let login = json!({ "role_id": role_id, "secret_id": secret_id }).to_string();
    let (code, body) = post(
        &url,
        None,
        &["X-Vault-Wrap-TTL: 60"],
        &login,
        "/v1/auth/approle/login",
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&url, None, &[], &login, "/v1/auth/approle/login");
    assert_eq!(code, 200, "the secret-id was spent: {body}");

    // Streams are never wrapped; a wrap without a token is refused.
    let (code, body) = curl(
        &url,
        Some(&root),
        &[
            "-H",
            "X-Vault-Wrap-TTL: 60",
            "/v1/sys/metrics?format=prometheus",
        ],
    );
    assert_eq!(code, 400, "{body}");
    let (code, _) = post(
        &url,
        None,
        &["X-Vault-Wrap-TTL: 60"],
        "{\"a\":1}",
        "/v1/sys/wrapping/wrap",
    );
    assert_eq!(code, 403);

    // Huge and malformed bodies: a clear refusal, and the daemon serves others.
    let huge = format!("{{\"token\":\"{}\"}}", "x".repeat(4 << 20));
    let file = dir.path().join("huge.json");
    std::fs::write(&file, huge).unwrap();
    let at = format!("@{}", file.display());
    let (code, _) = curl(
        &url,
        Some(&root),
        &[
            "-X",
            "POST",
            "--data-binary",
            &at,
            "/v1/sys/capabilities-self",
        ],
    );
    assert!(code == 413 || code == 400, "{code}");
    let (code, body) = post(
        &url,
        Some(&root),
        &[],
        "{\"paths\":",
        "/v1/sys/capabilities-self",
    );
    assert_eq!(code, 400, "{body}");
    assert_eq!(curl(&url, None, &["/v1/sys/health"]).0, 200);
    // Guessed wrapping tokens: refused alike, and the guesser is backed off.
    let mut statuses = Vec::new();
    for i in 0..40 {
        statuses.push(unwrap(&url, &format!("cfw_guess{i:039}")).0);
    }
    assert_eq!(statuses[0], 400);
    assert!(statuses.contains(&429), "no back-off: {statuses:?}");
    drop(daemon);
}

#[test]
fn capabilities_are_a_tokens_own_or_need_sudo_on_sys_token() {
    need("curl", "apt-get install curl");
    let (daemon, url, root) = http_daemon(&[]);
    let hcl = "path \"secret/data/app/*\" {\n  capabilities = [\"read\", \"list\"]\n}\npath \
               \"secret/data/app/locked\" {\n  capabilities = [\"deny\"]\n}\n";
    let (code, body) = post(
        &url,
        Some(&root),
        &[],
        &json!({ "policy": hcl }).to_string(),
        "/v1/sys/policies/acl/app",
    );
    assert_eq!(code, 204, "{body}");
    let out = daemon.cli(&["token", "create", "--policy", "app", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let app = stdout(&out).trim().to_owned();
    let paths =
        json!({ "paths": ["secret/data/app/x", "secret/data/other", "secret/data/app/locked"] })
            .to_string();
    let (code, body) = post(&url, Some(&app), &[], &paths, "/v1/sys/capabilities-self");
    assert_eq!(code, 200, "{body}");
    let caps = json_of(&body);
    assert_eq!(caps["secret/data/app/x"], json!(["list", "read"]), "{body}");
    assert_eq!(caps["data"]["secret/data/other"], json!(["deny"]), "{body}");
    assert_eq!(caps["secret/data/app/locked"], json!(["deny"]), "{body}");
    assert_eq!(caps["capabilities"], json!(["list", "read"]), "{body}");
    // Root's own: root.
    let (_, body) = post(&url, Some(&root), &[], &paths, "/v1/sys/capabilities-self");
    assert_eq!(
        json_of(&body)["secret/data/other"],
        json!(["root"]),
        "{body}"
    );
    // Another token's: only with `sudo` on sys/token.
    let of_root = json!({ "token": root, "paths": ["secret/data/x"] }).to_string();
    let (code, body) = post(&url, Some(&app), &[], &of_root, "/v1/sys/capabilities");
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains(&root), "the token was echoed: {body}");
    let of_app = json!({ "token": app, "paths": ["secret/data/app/y"] }).to_string();
    let (code, body) = post(&url, Some(&root), &[], &of_app, "/v1/sys/capabilities");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json_of(&body)["capabilities"], json!(["list", "read"]));
    let (code, _) = post(
        &url,
        Some(&root),
        &[],
        &json!({ "accessor": "nope", "paths": ["x"] }).to_string(),
        "/v1/sys/capabilities-accessor",
    );
    assert_eq!(code, 404);
    // A token confined to a namespace holds nothing outside it, root or not.
    assert!(
        daemon
            .cli(&["namespaces", "create", "team"], b"")
            .status
            .success()
    );
    let out = daemon.cli(
        &[
            "token",
            "create",
            "--policy",
            "root",
            "--ttl",
            "1h",
            "--namespace",
            "team",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let confined = stdout(&out).trim().to_owned();
    let (_, body) = post(
        &url,
        Some(&confined),
        &[],
        &json!({ "paths": ["secret/data/x", "team/data/x", "sys/policies/acl/x"] }).to_string(),
        "/v1/sys/capabilities-self",
    );
    let caps = json_of(&body);
    assert_eq!(caps["secret/data/x"], json!(["deny"]), "{body}");
    assert_eq!(caps["sys/policies/acl/x"], json!(["deny"]), "{body}");
    assert_eq!(caps["team/data/x"], json!(["root"]), "{body}");
    // Limits: no paths, too many.
    let (code, _) = post(
        &url,
        Some(&app),
        &[],
        "{\"paths\":[]}",
        "/v1/sys/capabilities-self",
    );
    assert_eq!(code, 400);
    let many: Vec<String> = (0..65).map(|i| format!("p{i}")).collect();
    let (code, _) = post(
        &url,
        Some(&app),
        &[],
        &json!({ "paths": many }).to_string(),
        "/v1/sys/capabilities-self",
    );
    assert_eq!(code, 400);
    assert_absent("the daemon's log", daemon.log().as_bytes(), &[&root, &app]);
}
