//! Issue 12, item 9 (the smaller ones), each against the real daemon: stored policies that
//! do not load fail closed; `coffer policy check` warns about grants that amount to root;
//! `coffer run` keeps the token from the command; `status` and `sys/health` details only for
//! callers allowed to see them.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, code, eventually, raw, requests_as, run_cli, run_cli_env, stderr, stdout};
use serde_json::{Value, json};

const NOBODY: u32 = 65534;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn set(daemon: &Daemon, ns: &str, name: &str, value: &str) {
    common::set_in(daemon, ns, name, value);
}

#[test]
fn stored_policies_that_do_not_load_refuse_everyone_but_root() {
    let dir = tempfile::tempdir().unwrap();
    // The file grants uid 65534 everything in `default`; a stored policy bound to it too
    // denies `default/prod/*`, and the stored binding also names the file's `extra`.
    let with_extra = "[policies.team]\nrules = [{ path = \"default/*\", capabilities = [\"read\"] }]\n\
         [policies.extra]\nrules = [{ path = \"other/*\", capabilities = [\"read\"] }]\n\
         [subjects]\n\"uid:65534\" = [\"team\"]\n";
    let file = write(dir.path(), "policies.toml", with_extra);
    let mut daemon = Daemon::new(&["--policy-file", &file]);
    daemon.spawn();
    set(&daemon, "default", "app/x", "app-value");
    set(&daemon, "default", "prod/db", "prod-value");
    let rules = write(
        dir.path(),
        "no-prod.toml",
        "rules = [{ path = \"default/prod/*\", capabilities = [\"deny\"] }]\n",
    );
    let out = daemon.cli(&["policy", "put", "no-prod", &rules], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(
        &[
            "policy",
            "bind",
            "uid:65534",
            "--policy",
            "no-prod",
            "--policy",
            "extra",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let get = |name: &str| json!({"action": "get", "namespace": "default", "name": name});
    let r = requests_as(NOBODY, &daemon.socket, &[get("app/x"), get("prod/db")]);
    assert_eq!(r[0]["value"], "app-value", "{r:?}");
    assert_eq!(code(&r[1]), "denied", "{r:?}");

    // The operator drops `extra` from the file: the stored binding no longer loads.
    daemon.stop();
    std::fs::write(
        &file,
        "[policies.team]\nrules = [{ path = \"default/*\", capabilities = [\"read\"] }]\n\
         [subjects]\n\"uid:65534\" = [\"team\"]\n",
    )
    .unwrap();
    daemon.spawn();
    // What the intact set allowed, and what the file alone would allow, are both refused.
    let r = requests_as(NOBODY, &daemon.socket, &[get("app/x"), get("prod/db")]);
    for reply in &r {
        assert_eq!(code(reply), "policy_unavailable", "{r:?}");
        assert!(reply.get("value").is_none());
    }
    assert!(
        eventually(std::time::Duration::from_secs(5), || daemon
            .log()
            .contains("the stored policies cannot be loaded")),
        "{}",
        daemon.log()
    );
    let log = daemon.log();
    assert!(
        log.contains("uid:65534") && log.contains("extra"),
        "the log names the binding and the policy: {log}"
    );
    // Root is still served, and fixes it by putting the policies again.
    assert_eq!(
        raw(&daemon.socket, get("prod/db").to_string().as_bytes())["value"],
        "prod-value"
    );
    let out = daemon.cli(&["policy", "put", "no-prod", &rules], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(&["policy", "bind", "uid:65534", "--policy", "no-prod"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let r = requests_as(NOBODY, &daemon.socket, &[get("app/x"), get("prod/db")]);
    assert_eq!(r[0]["value"], "app-value", "{r:?}");
    assert_eq!(code(&r[1]), "denied", "{r:?}");
}

#[test]
fn policy_check_warns_about_grants_that_amount_to_root() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "policies.toml",
        "[policies.ops]\nrules = [{ path = \"sys/*\", capabilities = [\"sudo\"] }]\n\
         [policies.app]\nrules = [{ path = \"app/*\", capabilities = [\"sudo\"] }]\n\
         [subjects]\n\"uid:1000\" = [\"app\"]\n\"uid:1001\" = [\"root\"]\n",
    );
    let out = run_cli(&["policy", "check", &file], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    for area in ["sys/policy", "sys/token", "sys/slots"] {
        assert!(
            err.contains(&format!("policy ops: `sudo` on sys/* reaches {area}")),
            "{err}"
        );
    }
    assert!(
        err.contains("uid:1001 is bound to the built-in `root` policy"),
        "{err}"
    );
    assert!(!err.contains("policy app"), "{err}");
    assert!(stdout(&out).contains("2 policies, 2 bindings; 4 grants amount to root"));

    // One policy, as `policy put` takes it.
    let one = write(
        dir.path(),
        "tokens.toml",
        "rules = [{ path = \"sys/token\", capabilities = [\"sudo\"] }]\n",
    );
    let out = run_cli(&["policy", "check", &one], b"");
    assert!(
        stderr(&out).contains("policy tokens: `sudo` on sys/token"),
        "{}",
        stderr(&out)
    );
    // What the daemon would refuse is refused, with the line.
    let bad = write(
        dir.path(),
        "bad.toml",
        "[policies.a]\nrules = [{ path = \"x/*\", capabilities = [\"raed\"] }]\n",
    );
    let out = run_cli(&["policy", "check", &bad], b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("line 2"), "{}", stderr(&out));
}

#[test]
fn coffer_run_keeps_the_token_from_the_command_unless_asked() {
    let daemon = Daemon::start(&[]);
    set(&daemon, "default", "db/password", "run-value-1");
    let out = daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    let token_file = write(daemon.root.path(), "token", &token);
    let show = "printf '%s|%s|%s' \"$DB\" \"$COFFER_TOKEN\" \"$COFFER_TOKEN_FILE\"";
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let socket = daemon.socket.to_str().unwrap();
        let args = [
            &["--socket", socket, "run"][..],
            extra,
            &["--env", "DB=db/password", "--", "sh", "-c", show],
        ]
        .concat();
        run_cli_env(&args, env, b"")
    };
    let out = run(&[], &[("COFFER_TOKEN", &token)]);
    assert_eq!(stdout(&out), "run-value-1||", "{}", stderr(&out));
    let out = run(&[], &[("COFFER_TOKEN_FILE", &token_file)]);
    assert_eq!(stdout(&out), "run-value-1||", "{}", stderr(&out));
    let out = run(&["--pass-token"], &[("COFFER_TOKEN", &token)]);
    assert_eq!(
        stdout(&out),
        format!("run-value-1|{token}|"),
        "{}",
        stderr(&out)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn curl(url: &str, token: Option<&str>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-sS"]);
    if let Some(t) = token {
        c.args(["-H", &format!("X-Vault-Token: {t}")]);
    }
    let out = c
        .arg(url)
        .output()
        .expect("curl runs (apt-get install -y curl; scripts/test installs it)");
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn status_and_health_details_only_for_callers_allowed_to_see_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "policies.toml",
        "[policies.watch]\nrules = [{ path = \"sys/status\", capabilities = [\"meta\"] }, \
         { path = \"sys/health\", capabilities = [\"read\"] }]\n[subjects]\n\"uid:65533\" = [\"watch\"]\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::new(&["--policy-file", &file, "--http", &addr]);
    daemon.spawn();
    let status = json!({"action": "status"});
    let root = raw(&daemon.socket, status.to_string().as_bytes())["status"].clone();
    let store_id = root["store_id"].as_str().unwrap().to_owned();
    let key_file = daemon.data.join("coffer.key");
    let key_path = key_file.to_str().unwrap();
    assert_eq!(root["slots"][0]["path"], key_path, "{root}");
    // uid 65534 holds nothing: the seal state, no id, no path; uid 65533 holds meta.
    let r: Vec<Value> = requests_as(NOBODY, &daemon.socket, std::slice::from_ref(&status))
        .into_iter()
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(r[0]["state"], "unsealed", "{r:?}");
    assert_eq!(r[0]["detail_withheld"], true, "{r:?}");
    assert!(r[0].get("store_id").is_none() && r[0]["slots"][0].get("path").is_none());
    // The daemon's facts (data directory, listeners, audit, policies, uptime, secrets) are
    // details too: root sees them, uid 65534 does not.
    assert!(r[0].get("daemon").is_none(), "{r:?}");
    let facts = &root["daemon"];
    assert_eq!(
        facts["data_dir"].as_str(),
        Some(daemon.data.to_str().unwrap()),
        "{root}"
    );
    let listening = facts["listeners"].to_string();
    assert!(
        listening.contains(daemon.socket.to_str().unwrap())
            && listening.contains(&format!("http {addr}")),
        "{root}"
    );
    assert!(
        facts["audit"].as_str().unwrap().starts_with("on ("),
        "{root}"
    );
    assert!(
        facts["policies"]
            .as_str()
            .unwrap()
            .starts_with("1 from the policy file, 0 from the store"),
        "{root}"
    );
    assert_eq!(facts["secrets"], 0, "{root}");
    assert!(facts["uptime_seconds"].is_u64(), "{root}");
    assert!(!r[0].to_string().contains(key_path));
    let r = requests_as(65533, &daemon.socket, std::slice::from_ref(&status));
    assert_eq!(r[0]["status"]["store_id"], store_id.as_str(), "{r:?}");

    // sys/health: no store id without a token granted read there.
    let url = format!("http://{addr}/v1/sys/health");
    let mut health = Value::Null;
    assert!(eventually(std::time::Duration::from_secs(10), || {
        health = curl(&url, None);
        health.is_object()
    }));
    assert_eq!(health["cluster_id"], "", "{health}");
    assert!(!health.to_string().contains(&store_id));
    let out = daemon.cli(
        &["token", "create", "--policy", "watch", "--ttl", "1h"],
        b"",
    );
    let watcher = stdout(&out).trim().to_owned();
    let out = daemon.cli(
        &["token", "create", "--policy", "default", "--ttl", "1h"],
        b"",
    );
    let nobody = stdout(&out).trim().to_owned();
    assert_eq!(curl(&url, Some(&watcher))["cluster_id"], store_id.as_str());
    assert_eq!(curl(&url, Some(&nobody))["cluster_id"], "");
    assert_eq!(curl(&url, Some("cft_not-a-token"))["cluster_id"], "");

    // Unavailable (a key file others can read): the reason names the key file, for root only.
    daemon.stop();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    daemon.spawn();
    let root = raw(&daemon.socket, status.to_string().as_bytes())["status"].clone();
    assert_eq!(root["state"], "unavailable", "{root}");
    assert!(
        root["reason"].as_str().unwrap().contains(key_path),
        "{root}"
    );
    let r = requests_as(NOBODY, &daemon.socket, std::slice::from_ref(&status));
    assert_eq!(r[0]["status"]["state"], "unavailable", "{r:?}");
    assert!(!r[0].to_string().contains(key_path), "{r:?}");
    let mut health = Value::Null;
    assert!(eventually(std::time::Duration::from_secs(10), || {
        health = curl(&url, None);
        health.is_object()
    }));
    assert!(!health.to_string().contains(key_path), "{health}");
    assert!(!health.to_string().contains("0644"), "{health}");
    assert_eq!(health["coffer"]["state"], "unavailable", "{health}");
}
