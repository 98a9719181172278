//! Access control and audit end to end, over the real socket, with clients running as other
//! uids (setpriv): the capability matrix, tokens, the rate limit, and the audit log (one
//! record per request, hashed names, tamper evidence, failing closed).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Daemon, assert_absent, code, raw, run_cli, stderr, stdout};
use serde_json::{Value, json};

const NOBODY: u32 = 65534;
const OPERATOR: u32 = 65533;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn set(daemon: &Daemon, ns: &str, name: &str, value: &str) {
    common::set_in(daemon, ns, name, value);
}

/// The audit records `uid` caused.
fn records_of(daemon: &Daemon, uid: u32) -> Vec<Value> {
    daemon
        .audit()
        .into_iter()
        .filter(|r| r["actor"]["uid"] == uid && r["actor"]["token"].is_null())
        .collect()
}

const MATRIX: &str = r#"
[policies.matrix]
rules = [
  { path = "default/read/*", capabilities = ["read"] },
  { path = "default/list/*", capabilities = ["list"] },
  { path = "default/meta/*", capabilities = ["meta"] },
  { path = "default/create/*", capabilities = ["create"] },
  { path = "default/update/*", capabilities = ["update"] },
  { path = "default/generate/*", capabilities = ["generate"] },
  { path = "default/rotate/*", capabilities = ["rotate"] },
  { path = "default/revoke/*", capabilities = ["revoke"] },
  { path = "default/destroy/*", capabilities = ["destroy"] },
  { path = "default/denied/*", capabilities = ["read", "deny"] },
]

[subjects]
"uid:65534" = ["matrix"]
"#;

/// One request per capability, on a name under `prefix/`.
fn request(capability: &str, prefix: &str) -> Value {
    let name = format!("{prefix}/x");
    match capability {
        "read" => json!({"action": "get", "name": name}),
        "list" => json!({"action": "list", "prefix": format!("{prefix}/")}),
        "meta" => json!({"action": "meta", "name": name}),
        "create" => {
            json!({"action": "set", "name": format!("{prefix}/new"), "value": "created-value"})
        }
        "update" => json!({"action": "set", "name": name, "value": "updated-value"}),
        "generate" => json!({"action": "generate", "name": format!("{prefix}/minted")}),
        "rotate" => json!({"action": "rotate", "name": name, "generate": true}),
        "revoke" => json!({"action": "revoke", "name": name}),
        "destroy" => json!({"action": "destroy", "name": name, "versions": [1]}),
        other => panic!("{other}"),
    }
}

const CAPABILITIES: [&str; 9] = [
    "read", "list", "meta", "create", "update", "generate", "rotate", "revoke", "destroy",
];

#[test]
fn each_capability_is_denied_without_its_grant_and_allowed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "policy.toml", MATRIX);
    let daemon = Daemon::start(&["--policy-file", &policy]);
    for c in CAPABILITIES.iter().chain(["denied", "other"].iter()) {
        set(&daemon, "default", &format!("{c}/x"), "matrix-secret-value");
    }
    let before = daemon.audit().len();

    // Without the grant: `other/` is granted nothing, and each capability's request is also
    // tried under the prefix of a different capability.
    let mut denied = Vec::new();
    for (i, c) in CAPABILITIES.iter().enumerate() {
        let elsewhere = CAPABILITIES[(i + 1) % CAPABILITIES.len()];
        denied.push(request(c, "other"));
        denied.push(request(c, elsewhere));
    }
    let replies = common::requests_as(NOBODY, &daemon.socket, &denied);
    for (req, reply) in denied.iter().zip(&replies) {
        assert_eq!(code(reply), "denied", "{req} -> {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("uid 65534"),
            "{reply}"
        );
    }
    // With the grant, each succeeds.
    let allowed: Vec<Value> = CAPABILITIES.iter().map(|c| request(c, c)).collect();
    let replies = common::requests_as(NOBODY, &daemon.socket, &allowed);
    for (req, reply) in allowed.iter().zip(&replies) {
        assert_eq!(reply["ok"], true, "{req} -> {reply}");
    }
    assert_eq!(replies[0]["value"], "matrix-secret-value");
    assert_eq!(replies[1]["names"], json!(["list/x"]));
    // create cannot overwrite, update cannot create; deny wins over a grant.
    let edge = [
        json!({"action": "set", "name": "create/x", "value": "v"}),
        json!({"action": "set", "name": "update/brand-new", "value": "v"}),
        json!({"action": "get", "name": "denied/x"}),
    ];
    let replies = common::requests_as(NOBODY, &daemon.socket, &edge);
    for (req, reply) in edge.iter().zip(&replies) {
        assert_eq!(code(reply), "denied", "{req} -> {reply}");
    }
    assert!(replies[0]["error"].as_str().unwrap().contains("not update"));
    assert!(replies[1]["error"].as_str().unwrap().contains("not create"));
    assert!(replies[2]["error"].as_str().unwrap().contains("denies"));

    // sudo: nobody has it; an operator bound at run time does.
    let sudo_req = [json!({"action": "namespace_create", "namespace": "made-by-operator"})];
    assert_eq!(
        code(&common::requests_as(OPERATOR, &daemon.socket, &sudo_req)[0]),
        "denied"
    );
    let admin = write(
        dir.path(),
        "admin.toml",
        "rules = [{ path = \"sys/*\", capabilities = [\"sudo\"] }]\n",
    );
    assert!(
        daemon
            .cli(&["policy", "put", "admin", &admin], b"")
            .status
            .success()
    );
    assert!(
        daemon
            .cli(&["policy", "bind", "uid:65533", "--policy", "admin"], b"")
            .status
            .success()
    );
    let r = &common::requests_as(OPERATOR, &daemon.socket, &sudo_req)[0];
    assert_eq!(r["ok"], true, "{r}");
    // sudo on sys/* is not a grant on secrets.
    let r = &common::requests_as(OPERATOR, &daemon.socket, &[request("read", "read")])[0];
    assert_eq!(code(r), "denied");

    // Exactly one record per request, the refusals with their gate; names hashed.
    let records = daemon.audit();
    let sent = denied.len() + allowed.len() + edge.len() + 2 /* cli */ + 3 /* operator */;
    assert_eq!(records.len() - before, sent, "one record per request");
    let mine = records_of(&daemon, NOBODY);
    assert_eq!(mine.len(), denied.len() + allowed.len() + edge.len());
    let refused: Vec<&Value> = mine.iter().filter(|r| r["outcome"] == "denied").collect();
    assert_eq!(refused.len(), denied.len() + edge.len());
    assert!(
        refused
            .iter()
            .all(|r| r["code"] == "denied" && r["gate"] == "policy")
    );
    assert!(mine.iter().all(|r| r["actor"]["pid"].is_number()));
    let hash = stdout(&daemon.cli(&["audit", "hash", "read/x"], b""));
    let hash = hash.trim();
    assert!(
        hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{hash}"
    );
    assert!(
        mine.iter()
            .any(|r| r["name"] == format!("hmac-sha256:{hash}") && r["action"] == "get")
    );
    let audit_bytes: Vec<u8> = records
        .iter()
        .flat_map(|r| r.to_string().into_bytes())
        .collect();
    assert_absent(
        "the audit log",
        &audit_bytes,
        &[
            "matrix-secret-value",
            "created-value",
            "updated-value",
            "read/x",
            "made-by-operator",
        ],
    );
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["matrix-secret-value", "created-value", "updated-value"],
    );
    // Operator actions log at info, reads of values at debug, each with its event token.
    let log = daemon.log();
    let lines = |event: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(event))
            .map(str::to_owned)
            .collect()
    };
    let actions = lines("secret_action");
    assert!(
        !actions.is_empty() && actions.iter().all(|l| l.contains("INFO")),
        "{log}"
    );
    let reads = lines("secret_materialize");
    assert!(
        !reads.is_empty() && reads.iter().all(|l| l.contains("DEBUG")),
        "{log}"
    );
}

#[test]
fn a_scoped_token_reads_its_path_only_until_revoked_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(&[]);
    let socket = daemon.socket.clone();
    for ns in ["app", "other"] {
        assert!(
            daemon
                .cli(&["namespaces", "create", ns], b"")
                .status
                .success()
        );
        set(&daemon, ns, "x", &format!("{ns}-token-secret"));
    }
    let rules = write(
        dir.path(),
        "app.toml",
        "rules = [{ path = \"app/*\", capabilities = [\"read\"] }]\n",
    );
    assert!(
        daemon
            .cli(&["policy", "put", "app-read", &rules], b"")
            .status
            .success()
    );
    let out = daemon.cli(
        &["token", "create", "--policy", "app-read", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    assert!(
        token.starts_with("cft_") && !token.contains('\n'),
        "stdout holds the token alone"
    );
    let with = |req: Value, token: &str| {
        let mut req = req;
        req["token"] = json!(token);
        raw(&socket, req.to_string().as_bytes())
    };
    // The peer is root, but the request runs as the token.
    let r = with(
        json!({"action": "get", "namespace": "app", "name": "x"}),
        &token,
    );
    assert_eq!(r["value"], "app-token-secret", "{r}");
    for req in [
        json!({"action": "get", "namespace": "other", "name": "x"}),
        json!({"action": "list", "namespace": "app"}),
        json!({"action": "meta", "namespace": "app", "name": "x"}),
        json!({"action": "set", "namespace": "app", "name": "x", "value": "no"}),
        json!({"action": "token_list"}),
    ] {
        assert_eq!(code(&with(req.clone(), &token)), "denied", "{req}");
    }
    // The CLI carries a token from COFFER_TOKEN; lookup shows its own record.
    let out = std::process::Command::new(common::BIN)
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "token",
            "lookup",
        ])
        .env("COFFER_TOKEN", &token)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["policies"], json!(["app-read"]));
    let accessor = info["accessor"].as_str().unwrap().to_owned();
    // The audit records the token's accessor beside the peer.
    let records = daemon.audit();
    assert!(
        records
            .iter()
            .any(|r| r["actor"]["token"] == accessor.as_str() && r["actor"]["uid"] == 0)
    );
    // Revoked: unauthenticated.
    assert!(
        daemon
            .cli(&["token", "revoke", &accessor], b"")
            .status
            .success()
    );
    let r = with(
        json!({"action": "get", "namespace": "app", "name": "x"}),
        &token,
    );
    assert_eq!(code(&r), "unauthenticated", "{r}");
    assert_eq!(
        code(&with(
            json!({"action": "get", "namespace": "app", "name": "x"}),
            "cft_forged"
        )),
        "unauthenticated"
    );
    // Expired: unauthenticated.
    let out = daemon.cli(
        &["token", "create", "--policy", "app-read", "--ttl", "1s"],
        b"",
    );
    let short = stdout(&out).trim().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = with(
        json!({"action": "get", "namespace": "app", "name": "x"}),
        &short,
    );
    assert_eq!(
        (code(&r), r["error"].as_str()),
        ("unauthenticated", Some("the token has expired"))
    );
    // A token confined to a namespace does not leave it, whatever its policies.
    let all = write(
        dir.path(),
        "all.toml",
        "rules = [{ path = \"*\", capabilities = [\"read\"] }]\n",
    );
    assert!(
        daemon
            .cli(&["policy", "put", "read-all", &all], b"")
            .status
            .success()
    );
    let out = daemon.cli(
        &[
            "token",
            "create",
            "--policy",
            "read-all",
            "--namespace",
            "app",
        ],
        b"",
    );
    let confined = stdout(&out).trim().to_owned();
    assert_eq!(
        with(
            json!({"action": "get", "namespace": "app", "name": "x"}),
            &confined
        )["value"],
        "app-token-secret"
    );
    assert_eq!(
        code(&with(
            json!({"action": "get", "namespace": "other", "name": "x"}),
            &confined
        )),
        "denied"
    );
    // Tokens survive a restart (they live in the store) and never reach a file or log.
    daemon.stop();
    daemon.spawn();
    assert_eq!(
        with(
            json!({"action": "get", "namespace": "app", "name": "x"}),
            &confined
        )["value"],
        "app-token-secret"
    );
    daemon.stop();
    let body = &confined[4..];
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &[body, &token[4..], "app-token-secret"],
    );
    for entry in walk(&daemon.data) {
        assert_absent(
            &entry.display().to_string(),
            &std::fs::read(&entry).unwrap(),
            &[body, &token[4..]],
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn one_noisy_identity_is_rate_limited_while_another_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "policy.toml",
        "[policies.r]\nrules = [{ path = \"default/*\", capabilities = [\"read\"] }]\n[subjects]\n\"uid:65534\" = [\"r\"]\n\"uid:65533\" = [\"r\"]\n",
    );
    let config = write(
        dir.path(),
        "coffer.toml",
        &format!("policy_file = \"{policy}\"\n[rate_limit]\nper_second = 5\nburst = 30\n"),
    );
    let mut daemon = Daemon::start(&["--config", &config]);
    set(&daemon, "default", "k", "v");
    let get = json!({"action": "get", "name": "k"});
    let noisy = common::requests_as(NOBODY, &daemon.socket, &vec![get.clone(); 100]);
    let ok = noisy.iter().filter(|r| r["ok"] == true).count();
    let limited = noisy.iter().filter(|r| r["code"] == "rate_limited").count();
    assert_eq!(ok + limited, 100, "{noisy:?}");
    assert!(limited >= 50 && ok >= 30, "ok {ok}, limited {limited}");
    let quiet = common::requests_as(OPERATOR, &daemon.socket, &vec![get.clone(); 20]);
    assert!(quiet.iter().all(|r| r["value"] == "v"), "{quiet:?}");
    // Root is exempt by default.
    for _ in 0..50 {
        assert_eq!(
            raw(&daemon.socket, get.to_string().as_bytes())["value"],
            "v"
        );
    }
    // Past the first 20, refusals are counted in a summary record (written at shutdown).
    daemon.stop();
    let records = records_of(&daemon, NOBODY);
    assert_eq!(
        records
            .iter()
            .filter(|r| r["gate"] == "rate_limit")
            .map(|r| r["repeated"].as_u64().unwrap_or(1))
            .sum::<u64>(),
        limited as u64
    );
}

#[test]
fn a_bad_policy_file_is_refused_at_start_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(
        dir.path(),
        "bad.toml",
        "[policies.a]\nrules = [\n  { path = \"x/*\", capabilities = [\"read\"] },\n  { path = \"y/*\", capabilities = [\"raed\"] },\n]\n",
    );
    let out = run_cli(
        &[
            "serve",
            "--policy-file",
            &policy,
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--socket",
            dir.path().join("s").to_str().unwrap(),
            "--tpm-tcti",
            "none",
        ],
        b"",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("line 4") && err.contains("unknown capability \"raed\""),
        "{err}"
    );
}

fn audit_verify(daemon: &Daemon, audit_dir: &Path) -> std::process::Output {
    run_cli(
        &[
            "audit",
            "verify",
            "--data-dir",
            daemon.data.to_str().unwrap(),
            "--audit-dir",
            audit_dir.to_str().unwrap(),
        ],
        b"",
    )
}

fn copy_audit(daemon: &Daemon, to: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(to).unwrap();
    let mut current = None;
    for e in std::fs::read_dir(daemon.data.join("audit")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        std::fs::copy(&p, to.join(&name)).unwrap();
        if p.extension().is_some_and(|x| x == "jsonl") {
            current = Some(to.join(&name));
        }
    }
    current.unwrap()
}

#[test]
fn tampering_with_the_audit_log_is_detected_and_named() {
    let mut daemon = Daemon::start(&[]);
    for i in 0..20 {
        set(&daemon, "default", &format!("k{i}"), "v");
    }
    daemon.stop();
    let work = tempfile::tempdir().unwrap();
    // Untouched: passes, with the checkpoint checked.
    let out = audit_verify(&daemon, &daemon.data.join("audit"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("checkpoint: verified through record"),
        "{}",
        stdout(&out)
    );
    // The daemon's own verification agrees.
    daemon.spawn();
    let out = daemon.cli(&["audit", "verify"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    daemon.stop();

    type Tamper = fn(&mut Vec<u8>);
    let cases: [(&str, Tamper); 4] = [
        ("flip", |b| {
            let at = b.len() / 2;
            b[at] ^= 0x01;
        }),
        ("delete", |b| {
            let text = String::from_utf8(b.clone()).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            lines.remove(5);
            *b = (lines.join("\n") + "\n").into_bytes();
        }),
        ("truncate-lines", |b| {
            let text = String::from_utf8(b.clone()).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            *b = (lines[..lines.len() - 3].join("\n") + "\n").into_bytes();
        }),
        ("truncate-mid", |b| {
            let n = b.len() - 40;
            b.truncate(n);
        }),
    ];
    for (what, tamper) in cases {
        let copy = work.path().join(what);
        let file = copy_audit(&daemon, &copy);
        let mut bytes = std::fs::read(&file).unwrap();
        tamper(&mut bytes);
        std::fs::write(&file, bytes).unwrap();
        let out = audit_verify(&daemon, &copy);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        let err = stderr(&out);
        assert!(
            err.contains("damaged") && (err.contains("record") || err.contains("line")),
            "{what}: {err}"
        );
    }
}

#[test]
fn an_unwritable_audit_log_fails_requests_closed_and_recovers() {
    let mut daemon = Daemon::new(&[]);
    daemon.as_user(NOBODY);
    daemon.spawn();
    set(&daemon, "default", "k", "audited-value");
    let audit = daemon.data.join("audit");
    let file = std::fs::read_dir(&audit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .unwrap();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&file, 0o400);
    mode(&audit, 0o500);
    // The daemon writes through a descriptor it keeps open; its syncer checks the file and
    // the directory four times a second and fails the log closed when they are unwritable.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while raw(&daemon.socket, br#"{"action":"status"}"#)["code"] != "audit_unavailable" {
        assert!(
            std::time::Instant::now() < deadline,
            "still served after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for req in [
        json!({"action": "get", "name": "k"}),
        json!({"action": "set", "name": "k2", "value": "not-written"}),
        json!({"action": "status"}),
    ] {
        let r = raw(&daemon.socket, req.to_string().as_bytes());
        assert_eq!(code(&r), "audit_unavailable", "{req} -> {r}");
        assert!(r.get("value").is_none());
    }
    // Refused before it was carried out: the set did not happen.
    assert!(daemon.running());
    mode(&audit, 0o700);
    mode(&file, 0o600);
    assert_eq!(
        raw(&daemon.socket, br#"{"action":"get","name":"k"}"#)["value"],
        "audited-value"
    );
    assert_eq!(
        code(&raw(&daemon.socket, br#"{"action":"get","name":"k2"}"#)),
        "not_found"
    );
    // The chain went on where it stopped: nothing half-written, nothing missing.
    let out = daemon.cli(&["audit", "verify"], b"");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    daemon.stop();
    assert!(
        daemon.log().contains("audit log cannot be written"),
        "{}",
        daemon.log()
    );
}
