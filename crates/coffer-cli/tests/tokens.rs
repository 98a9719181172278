//! Issue 12, item 1: no token escalation. The real daemon, its real socket and a real HTTP
//! port, a real SQLite file: a token holding only `sudo` on `sys/token` (the `ops` role of
//! docs/access.md) cannot mint a root token on either protocol; a child carries only its
//! creator's policies within its creator's namespace; revoking a token revokes its
//! descendants, also after a restart; orphans need `sudo` and an explicit ask; duplicate
//! policies are refused; renewal stops at the max TTL.
//!
//! Needs curl (`apt-get install curl`; scripts/test installs it).
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Daemon, eventually, raw, stderr, stdout};
use serde_json::{Value, json};

/// The `ops` role of docs/access.md, and two more for the subset and orphan rules.
const POLICIES: &str = r#"
[policies.ops]
rules = [
  { path = "default/*", capabilities = ["secret:*:read", "secret:*:write"] },
  { path = "default/prod/*", capabilities = ["deny"] },
  { path = "sys/token", capabilities = ["sudo"] },
]

[policies.app-read]
rules = [{ path = "default/app/*", capabilities = ["read"] }]

[policies.team]
rules = [
  { path = "acme/*", capabilities = ["read"] },
  { path = "sys/token", capabilities = ["create"] },
]

[subjects]
"uid:65533" = ["ops"]
"#;

/// A local account bound to the `ops` role (as `user:deploy` is in docs/access.md).
const DEPLOY: u32 = 65533;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn need_curl() {
    let found = Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "curl is missing: apt-get install curl (scripts/test installs it)"
    );
}

/// A daemon with the policies above, serving HTTP on a free loopback port; `prod/db` and
/// `app/x` in `default`, and the namespaces `acme`, `acme/sub`, `other`.
fn start() -> (Daemon, String, tempfile::TempDir) {
    need_curl();
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, POLICIES).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::new(&["--http", &addr, "--policy-file", policies.to_str().unwrap()]);
    daemon.spawn();
    let url = format!("http://{addr}");
    assert!(
        eventually(Duration::from_secs(20), || curl(
            &url,
            None,
            &["/v1/sys/health"]
        )
        .0 == 200),
        "the HTTP API did not answer:\n{}",
        daemon.log()
    );
    for ns in ["acme", "acme/sub", "other"] {
        let out = daemon.cli(&["namespaces", "create", ns], b"");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    for (name, value) in [("prod/db", "PROD-DB-PASSWORD"), ("app/x", "app-value")] {
        let r = sock(
            &daemon,
            None,
            json!({"action": "set", "name": name, "value": value}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }
    (daemon, url, dir)
}

/// One request on the socket as root, carrying `token` when given.
fn sock(daemon: &Daemon, token: Option<&str>, mut request: Value) -> Value {
    if let Some(t) = token {
        request["token"] = json!(t);
    }
    raw(&daemon.socket, request.to_string().as_bytes())
}

fn code(reply: &Value) -> &str {
    reply["code"].as_str().unwrap_or("")
}

/// `curl` against `base` with a token; the last argument is the path.
fn curl(base: &str, token: Option<&str>, args: &[&str]) -> (u16, String) {
    let (path, rest) = args.split_last().unwrap();
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        c.args(["-H", &format!("X-Vault-Token: {t}")]);
    }
    c.args(rest).arg(format!("{base}{path}"));
    let out = c.output().expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

fn post(base: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, text) = curl(
        base,
        Some(token),
        &["-X", "POST", "-d", &body.to_string(), path],
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn http_get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let (status, text) = curl(base, Some(token), &[path]);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `coffer <args>` with `COFFER_TOKEN`.
fn cli_as(daemon: &Daemon, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .env_remove("COFFER_SOCKET")
        .env("COFFER_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// A token made on the socket (as root, or as `by`): (token, accessor).
fn make(daemon: &Daemon, by: Option<&str>, request: Value) -> (String, String) {
    let mut request = request;
    request["action"] = json!("token_create");
    if request.get("ttl").is_none() {
        request["ttl"] = json!(3600);
    }
    let r = sock(daemon, by, request);
    assert_eq!(r["ok"], true, "{r}");
    (
        r["token"].as_str().unwrap().to_owned(),
        r["token_info"]["accessor"].as_str().unwrap().to_owned(),
    )
}

/// A token made over HTTP by `by`: (token, accessor).
fn make_http(url: &str, by: &str, path: &str, body: Value) -> (String, String) {
    let (status, r) = post(url, by, path, body);
    assert_eq!(status, 200, "{r}");
    (
        r["auth"]["client_token"].as_str().unwrap().to_owned(),
        r["auth"]["accessor"].as_str().unwrap().to_owned(),
    )
}

/// The accessors of every live token.
fn accessors(daemon: &Daemon) -> Vec<String> {
    let list = sock(daemon, None, json!({"action": "token_list"}));
    list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["accessor"].as_str().unwrap().to_owned())
        .collect()
}

fn lookup(daemon: &Daemon, accessor: &str) -> Value {
    sock(
        daemon,
        None,
        json!({"action": "token_lookup", "accessor": accessor}),
    )
}

/// Whether `token` still works, asked on both protocols (its own lookup needs no grant).
fn works(daemon: &Daemon, url: &str, token: &str) -> bool {
    let s = sock(daemon, Some(token), json!({"action": "token_lookup"}));
    let (status, _) = http_get(url, token, "/v1/auth/token/lookup-self");
    assert_eq!(
        s["ok"] == true,
        status == 200,
        "the protocols disagree: {s}, {status}"
    );
    if s["ok"] != true {
        assert_eq!(code(&s), "unauthenticated", "{s}");
        assert_eq!(status, 403);
    }
    s["ok"] == true
}

fn reads_prod_db(daemon: &Daemon, url: &str, token: &str) -> (Value, u16, String) {
    let s = sock(
        daemon,
        Some(token),
        json!({"action": "get", "name": "prod/db"}),
    );
    let (status, body) = curl(url, Some(token), &["/v1/secret/data/prod/db"]);
    (s, status, body)
}

#[test]
fn an_ops_token_cannot_mint_a_root_token_on_the_socket_or_over_http() {
    let (daemon, url, _dir) = start();
    let (ops, ops_acc) = make(&daemon, None, json!({"policies": ["ops"]}));
    // The ops token itself: no prod/db.
    let (s, status, body) = reads_prod_db(&daemon, &url, &ops);
    assert_eq!(code(&s), "denied", "{s}");
    assert_eq!(status, 403, "{body}");

    // The attack on the socket, exactly: `coffer token create --policy root --ttl 87600h`.
    let out = cli_as(
        &daemon,
        &ops,
        &["token", "create", "--policy", "root", "--ttl", "87600h"],
    );
    assert_eq!(
        out.status.code(),
        Some(77),
        "refused (denied): {}",
        stderr(&out)
    );
    assert!(
        stdout(&out).trim().is_empty(),
        "no token printed: {}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("only root makes root tokens"),
        "{}",
        stderr(&out)
    );
    // ... and as raw JSON, alone or hidden among held policies, also as an orphan.
    for policies in [json!(["root"]), json!(["ops", "root"])] {
        for orphan in [false, true] {
            let r = sock(
                &daemon,
                Some(&ops),
                json!({"action": "token_create", "policies": policies, "ttl": 315_360_000u64, "orphan": orphan}),
            );
            assert_eq!(code(&r), "denied", "{r}");
            assert!(r.get("token").is_none(), "{r}");
        }
    }
    // The attack over HTTP: {"policies":["root"]} on create, create-orphan, no_parent.
    for (path, body) in [
        ("/v1/auth/token/create", json!({"policies": ["root"]})),
        (
            "/v1/auth/token/create",
            json!({"policies": ["root"], "ttl": "87600h"}),
        ),
        (
            "/v1/auth/token/create",
            json!({"policies": ["root"], "no_parent": true}),
        ),
        (
            "/v1/auth/token/create-orphan",
            json!({"policies": ["root"]}),
        ),
        (
            "/v1/auth/token/create",
            json!({"policies": ["ops", "root"]}),
        ),
    ] {
        let (status, r) = post(&url, &ops, path, body.clone());
        assert_eq!(status, 403, "{path} {body}: {r}");
        assert!(r["auth"].is_null(), "{r}");
    }
    // No token was made but the ops token itself.
    assert_eq!(accessors(&daemon), vec![ops_acc.clone()]);
    // Every refusal is recorded, at the policy gate, as the ops token.
    let refused = daemon
        .audit()
        .into_iter()
        .filter(|r| {
            r["action"] == "token_create"
                && r["outcome"] == "denied"
                && r["gate"] == "policy"
                && r["actor"]["token"] == ops_acc.as_str()
        })
        .count();
    assert_eq!(refused, 1 + 4 + 5, "one record per refused request");

    // The same role held by a local account (no token) on the socket: no root token either.
    let replies = common::requests_as(
        DEPLOY,
        &daemon.socket,
        &[
            json!({"action": "token_create", "policies": ["root"], "ttl": 315_360_000u64}),
            json!({"action": "token_create", "policies": ["ops"], "ttl": 60}),
            json!({"action": "get", "name": "prod/db"}),
        ],
    );
    assert_eq!(code(&replies[0]), "denied", "{}", replies[0]);
    assert!(replies[0].get("token").is_none());
    assert_eq!(
        replies[1]["ok"], true,
        "its own role it may give: {}",
        replies[1]
    );
    assert_eq!(code(&replies[2]), "denied", "{}", replies[2]);
    let deploy_made = replies[1]["token"].as_str().unwrap();
    let (s, status, _) = reads_prod_db(&daemon, &url, deploy_made);
    assert_eq!(code(&s), "denied", "{s}");
    assert_eq!(status, 403);

    // What the ops role may make: a child with its own policies, still without prod/db.
    let (child, _) = make_http(
        &url,
        &ops,
        "/v1/auth/token/create",
        json!({"policies": ["ops"]}),
    );
    let (s, status, body) = reads_prod_db(&daemon, &url, &child);
    assert_eq!(code(&s), "denied", "{s}");
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("PROD-DB-PASSWORD") && !s.to_string().contains("PROD-DB-PASSWORD"));
    // Root (uid 0 on the socket holds `root`) still makes root tokens, and they read it.
    let (root_token, _) = make(&daemon, None, json!({"policies": ["root"]}));
    let (s, status, _) = reads_prod_db(&daemon, &url, &root_token);
    assert_eq!(s["value"], "PROD-DB-PASSWORD", "{s}");
    assert_eq!(status, 200);
    // ... and so does a root token (a child root token).
    let (root_child, _) = make(&daemon, Some(&root_token), json!({"policies": ["root"]}));
    assert!(works(&daemon, &url, &root_child));
}

#[test]
fn a_child_carries_only_its_creators_policies_within_its_namespace() {
    let (daemon, url, _dir) = start();
    // `team` may make tokens (create, not sudo), confined to acme.
    let (team, team_acc) = make(
        &daemon,
        None,
        json!({"policies": ["team"], "namespace": "acme"}),
    );
    // A policy it does not hold: refused on both protocols.
    let r = sock(
        &daemon,
        Some(&team),
        json!({"action": "token_create", "policies": ["app-read"], "ttl": 60}),
    );
    assert_eq!(code(&r), "denied", "{r}");
    let (status, _) = post(
        &url,
        &team,
        "/v1/auth/token/create",
        json!({"policies": ["app-read"]}),
    );
    assert_eq!(status, 403);
    // Nor `default` (it does not hold it) nor `ops` through a mix.
    let (status, _) = post(
        &url,
        &team,
        "/v1/auth/token/create",
        json!({"policies": ["team", "ops"]}),
    );
    assert_eq!(status, 403);
    let (status, _) = post(&url, &team, "/v1/auth/token/create", json!({}));
    assert_eq!(status, 403);

    // A wider or other namespace: refused on both protocols.
    for ns in ["other", "default", "acme-x"] {
        let r = sock(
            &daemon,
            Some(&team),
            json!({"action": "token_create", "policies": ["team"], "ttl": 60, "namespace": ns}),
        );
        assert_eq!(code(&r), "denied", "{ns}: {r}");
        let (status, r) = post(
            &url,
            &team,
            "/v1/auth/token/create",
            json!({"policies": ["team"], "namespace": ns}),
        );
        assert_eq!(status, 403, "{ns}: {r}");
    }
    // Its own policies: allowed, confined to its namespace when none is asked, its child.
    let (_, child_acc) = make(&daemon, Some(&team), json!({"policies": ["team"]}));
    let info = lookup(&daemon, &child_acc);
    assert_eq!(info["token_info"]["namespace"], "acme", "{info}");
    assert_eq!(info["token_info"]["parent"], team_acc.as_str(), "{info}");
    assert_eq!(
        info["token_info"]["creator"],
        format!("token:{team_acc}"),
        "{info}"
    );
    // A narrower namespace is fine, over HTTP too.
    let (_, sub_acc) = make_http(
        &url,
        &team,
        "/v1/auth/token/create",
        json!({"policies": ["team"], "namespace": "acme/sub"}),
    );
    let info = lookup(&daemon, &sub_acc);
    assert_eq!(info["token_info"]["namespace"], "acme/sub", "{info}");
    assert_eq!(info["token_info"]["parent"], team_acc.as_str(), "{info}");
}

#[test]
fn revoking_a_token_revokes_its_children_and_grandchildren() {
    let (daemon, url, _dir) = start();
    let (parent, parent_acc) = make(&daemon, None, json!({"policies": ["ops"]}));
    let (child, child_acc) = make(&daemon, Some(&parent), json!({"policies": ["ops"]}));
    let (grandchild, grand_acc) = make_http(
        &url,
        &child,
        "/v1/auth/token/create",
        json!({"policies": ["ops"]}),
    );
    // An orphan made by the parent (ops holds sudo on sys/token, and asks) is not its child.
    let (orphan, orphan_acc) = make(
        &daemon,
        Some(&parent),
        json!({"policies": ["ops"], "orphan": true}),
    );
    let (sibling, _) = make(&daemon, None, json!({"policies": ["ops"]}));
    for t in [&parent, &child, &grandchild, &orphan, &sibling] {
        assert!(works(&daemon, &url, t));
    }
    let before = daemon.audit().len();
    // Root revokes the parent, by accessor, with the CLI.
    let out = daemon.cli(&["token", "revoke", &parent_acc], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("with 2 tokens descended from it"),
        "{}",
        stderr(&out)
    );
    for t in [&parent, &child, &grandchild] {
        assert!(
            !works(&daemon, &url, t),
            "a revoked family member still works"
        );
    }
    assert!(
        works(&daemon, &url, &orphan),
        "the orphan is not in the family"
    );
    assert!(works(&daemon, &url, &sibling));
    let listed = accessors(&daemon);
    for acc in [&parent_acc, &child_acc, &grand_acc] {
        assert!(!listed.contains(acc), "{acc} is still listed");
    }
    assert!(listed.contains(&orphan_acc));
    // One record for the request and one for each descendant, each naming its token (by
    // the audit hash of its accessor).
    let records: Vec<Value> = daemon.audit().into_iter().skip(before).collect();
    let revokes: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "token_revoke" && r["outcome"] == "ok")
        .collect();
    assert_eq!(revokes.len(), 3, "{records:?}");
    for acc in [&parent_acc, &child_acc, &grand_acc] {
        let out = daemon.cli(&["audit", "hash", acc], b"");
        assert!(out.status.success(), "{}", stderr(&out));
        let hash = stdout(&out).trim().to_owned();
        assert!(
            revokes
                .iter()
                .any(|r| r["name"] == format!("hmac-sha256:{hash}")),
            "no record names {acc} ({hash}): {revokes:?}"
        );
    }

    // A token revoking itself (over HTTP) takes its own descendants too.
    let (a, _) = make(&daemon, None, json!({"policies": ["ops"]}));
    let (b, _) = make(&daemon, Some(&a), json!({"policies": ["ops"]}));
    let (c, _) = make(&daemon, Some(&b), json!({"policies": ["ops"]}));
    let (status, _) = curl(
        &url,
        Some(&b),
        &["-X", "POST", "/v1/auth/token/revoke-self"],
    );
    assert_eq!(status, 204);
    assert!(works(&daemon, &url, &a));
    assert!(!works(&daemon, &url, &b) && !works(&daemon, &url, &c));
}

#[test]
fn orphans_need_sudo_and_must_be_asked_for() {
    let (daemon, url, _dir) = start();
    // `team` holds `create` on sys/token, not `sudo`.
    let (team, team_acc) = make(&daemon, None, json!({"policies": ["team"]}));
    let r = sock(
        &daemon,
        Some(&team),
        json!({"action": "token_create", "policies": ["team"], "ttl": 60, "orphan": true}),
    );
    assert_eq!(code(&r), "denied", "{r}");
    assert!(r["error"].as_str().unwrap().contains("orphan"), "{r}");
    let out = cli_as(
        &daemon,
        &team,
        &["token", "create", "--policy", "team", "--orphan"],
    );
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    for (path, body) in [
        (
            "/v1/auth/token/create-orphan",
            json!({"policies": ["team"]}),
        ),
        (
            "/v1/auth/token/create",
            json!({"policies": ["team"], "no_parent": true}),
        ),
    ] {
        let (status, r) = post(&url, &team, path, body);
        assert_eq!(status, 403, "{path}: {r}");
    }
    // Not asked for: a child, on either protocol.
    let (_, child_acc) = make(&daemon, Some(&team), json!({"policies": ["team"]}));
    assert_eq!(
        lookup(&daemon, &child_acc)["token_info"]["parent"],
        team_acc.as_str()
    );
    let (child_http, _) = make_http(
        &url,
        &team,
        "/v1/auth/token/create",
        json!({"policies": ["team"]}),
    );
    let (_, me) = http_get(&url, &child_http, "/v1/auth/token/lookup-self");
    assert_eq!(me["data"]["orphan"], false, "{me}");
    assert_eq!(me["data"]["parent"], team_acc.as_str(), "{me}");

    // `ops` holds sudo: without asking, still a child; asking, an orphan (both protocols).
    let (ops, ops_acc) = make(&daemon, None, json!({"policies": ["ops"]}));
    let (kid, kid_acc) = make(&daemon, Some(&ops), json!({"policies": ["ops"]}));
    assert_eq!(
        lookup(&daemon, &kid_acc)["token_info"]["parent"],
        ops_acc.as_str()
    );
    let (orphan_sock, orphan_acc) = make(
        &daemon,
        Some(&ops),
        json!({"policies": ["ops"], "orphan": true}),
    );
    assert!(lookup(&daemon, &orphan_acc)["token_info"]["parent"].is_null());
    let (orphan_http, _) = make_http(
        &url,
        &ops,
        "/v1/auth/token/create-orphan",
        json!({"policies": ["ops"]}),
    );
    let (_, me) = http_get(&url, &orphan_http, "/v1/auth/token/lookup-self");
    assert_eq!(me["data"]["orphan"], true, "{me}");
    let out = daemon.cli(&["token", "revoke", &ops_acc], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!works(&daemon, &url, &kid));
    assert!(works(&daemon, &url, &orphan_sock) && works(&daemon, &url, &orphan_http));
}

#[test]
fn duplicate_policies_are_refused() {
    let (daemon, url, _dir) = start();
    let (ops, _) = make(&daemon, None, json!({"policies": ["ops"]}));
    for by in [None, Some(ops.as_str())] {
        let r = sock(
            &daemon,
            by,
            json!({"action": "token_create", "policies": ["ops", "ops"], "ttl": 60}),
        );
        assert_eq!(code(&r), "invalid_request", "{r}");
        assert!(r["error"].as_str().unwrap().contains("named twice"), "{r}");
    }
    let out = daemon.cli(
        &["token", "create", "--policy", "ops", "--policy", "ops"],
        b"",
    );
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let (status, r) = post(
        &url,
        &ops,
        "/v1/auth/token/create",
        json!({"policies": ["ops", "ops"]}),
    );
    assert_eq!(status, 400, "{r}");
    assert!(
        r["errors"][0].as_str().unwrap().contains("named twice"),
        "{r}"
    );
    let listed = sock(&daemon, None, json!({"action": "token_list"}));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
}

#[test]
fn renewal_stops_at_the_max_ttl() {
    let (daemon, url, _dir) = start();
    // A 2 s token with a 5 s max TTL (socket), and one made over HTTP the same way.
    let made = Instant::now();
    let (sock_token, _) = make(
        &daemon,
        None,
        json!({"policies": ["ops"], "ttl": 2, "max_ttl": 5}),
    );
    let (root, _) = make(&daemon, None, json!({"policies": ["root"]}));
    let (http_token, http_acc) = make_http(
        &url,
        &root,
        "/v1/auth/token/create",
        json!({"policies": ["ops"], "ttl": "2s", "explicit_max_ttl": "5s"}),
    );
    let info = lookup(&daemon, &http_acc)["token_info"].clone();
    let max = info["max_expires"].as_str().unwrap().to_owned();
    let (_, me) = http_get(&url, &http_token, "/v1/auth/token/lookup-self");
    assert_eq!(me["data"]["explicit_max_ttl"], 5, "{me}");
    // A child asking for an hour gets no more than its parent's max.
    let (child, child_acc) = make(
        &daemon,
        Some(&sock_token),
        json!({"policies": ["ops"], "ttl": 3600, "max_ttl": 3600}),
    );
    let child_max = lookup(&daemon, &child_acc)["token_info"]["max_expires"].clone();
    assert!(
        child_max.as_str().unwrap() <= max.as_str(),
        "{child_max} > {max}"
    );

    // Renew every second, on the socket (CLI and JSON) and over HTTP.
    for second in 1..=3u64 {
        std::thread::sleep(
            (made + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        let r = sock(&daemon, Some(&sock_token), json!({"action": "token_renew"}));
        assert_eq!(r["ok"], true, "renewal before the max TTL works: {r}");
        let (status, r) = post(&url, &http_token, "/v1/auth/token/renew-self", json!({}));
        assert_eq!(status, 200, "{r}");
    }
    // Past the first TTL (2 s): alive only because they were renewed.
    assert!(made.elapsed() > Duration::from_secs(3));
    assert!(works(&daemon, &url, &sock_token) && works(&daemon, &url, &http_token));
    let out = cli_as(&daemon, &sock_token, &["token", "renew"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The max TTL passes: refused everywhere, renewals included, though renewed a second ago.
    std::thread::sleep(Duration::from_millis(5_600).saturating_sub(made.elapsed()));
    for t in [&sock_token, &http_token, &child] {
        assert!(!works(&daemon, &url, t), "a token outlived its max TTL");
    }
    let r = sock(&daemon, Some(&sock_token), json!({"action": "token_renew"}));
    assert_eq!(code(&r), "unauthenticated", "{r}");
    let (status, _) = post(&url, &http_token, "/v1/auth/token/renew-self", json!({}));
    assert_eq!(status, 403);
    let (s, status, _) = reads_prod_db(&daemon, &url, &sock_token);
    assert_eq!(code(&s), "unauthenticated");
    assert_eq!(status, 403);
}

#[test]
fn token_lineage_survives_a_restart() {
    let (mut daemon, url, _dir) = start();
    let (parent, parent_acc) = make(&daemon, None, json!({"policies": ["ops"]}));
    let (child, child_acc) = make(&daemon, Some(&parent), json!({"policies": ["ops"]}));
    let (grandchild, _) = make_http(
        &url,
        &child,
        "/v1/auth/token/create",
        json!({"policies": ["ops"]}),
    );
    let (orphan, _) = make(
        &daemon,
        Some(&parent),
        json!({"policies": ["ops"], "orphan": true}),
    );
    // A crash, then a start: the records and their parent links are back.
    daemon.kill9();
    daemon.spawn();
    wait_http(&daemon, &url);
    let info = lookup(&daemon, &child_acc);
    assert_eq!(info["token_info"]["parent"], parent_acc.as_str(), "{info}");
    for t in [&parent, &child, &grandchild, &orphan] {
        assert!(works(&daemon, &url, t));
    }
    // Revoking the parent after the restart still revokes the child and grandchild.
    let out = daemon.cli(&["token", "revoke", &parent_acc], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!works(&daemon, &url, &child) && !works(&daemon, &url, &grandchild));
    assert!(works(&daemon, &url, &orphan));
    // ... durably: after another crash they stay revoked.
    daemon.kill9();
    daemon.spawn();
    wait_http(&daemon, &url);
    for t in [&parent, &child, &grandchild] {
        assert!(
            !works(&daemon, &url, t),
            "a revoked token came back after a restart"
        );
    }
    assert!(works(&daemon, &url, &orphan));
    let listed = sock(&daemon, None, json!({"action": "token_list"}));
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1, "{listed}");
}

fn wait_http(daemon: &Daemon, url: &str) {
    assert!(
        eventually(Duration::from_secs(20), || curl(
            url,
            None,
            &["/v1/sys/health"]
        )
        .0 == 200),
        "the HTTP API did not answer after a restart:\n{}",
        daemon.log()
    );
}
