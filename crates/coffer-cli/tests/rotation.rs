//! Scheduled rotation through the real daemon: rotations on schedule and once per period
//! across a restart, a failing hook that leaves the current version in place and says why,
//! a hook that gets the value on its standard input and nowhere else, `previous` during the
//! grace period, and the rotation metrics.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use coffer_types::VersionInfo;
use common::{Daemon, assert_absent, code, eventually, raw, stderr, stdout};
use serde_json::Value;

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn versions(daemon: &Daemon, name: &str) -> Vec<VersionInfo> {
    daemon.client().versions(None, name).unwrap()
}

fn get(daemon: &Daemon, name: &str) -> String {
    let out = daemon.cli(&["get", name], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn rotation_json(daemon: &Daemon, name: &str) -> Value {
    let out = daemon.cli(&["secrets", "rotation", name, "--json"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Each rotation belongs to a period: the last period boundary at or before its version's
/// creation (boundaries are the first version's time plus whole periods). A rotation is never
/// made before its boundary, and one period is rotated at most once, also across restarts
/// and after a catch-up: so the periods of the versions after the first are all at least 1
/// and strictly increasing.
fn assert_once_per_period(all: &[VersionInfo], period_ms: i64) {
    let start = all[0].created.as_millis();
    let periods: Vec<i64> = all[1..]
        .iter()
        .map(|v| (v.created.as_millis() - start).div_euclid(period_ms))
        .collect();
    assert!(
        periods.iter().all(|p| *p >= 1),
        "a rotation before its first period ended: {periods:?}"
    );
    assert!(
        periods.windows(2).all(|w| w[0] < w[1]),
        "a period rotated twice: {periods:?}"
    );
}

#[test]
fn rotations_happen_on_schedule_and_once_per_period_across_a_restart() {
    let mut daemon = Daemon::start(&[]);
    let out = daemon.cli(
        &["secrets", "generate", "tick", "--rotate-every", "2s"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stdout(&out);
    // Rotations happen.
    assert!(
        eventually(Duration::from_secs(30), || versions(&daemon, "tick").len()
            >= 3),
        "no rotations within 30 s:\n{}",
        daemon.log()
    );
    let before = versions(&daemon, "tick");
    assert_once_per_period(&before, 2000);
    assert!(before.iter().skip(1).all(|v| v.actor == "coffer"));
    assert_ne!(get(&daemon, "tick"), first, "the value changed");
    // Down for several periods.
    daemon.stop();
    let down = before.len();
    std::thread::sleep(Duration::from_secs(5));
    daemon.spawn();
    assert!(
        eventually(Duration::from_secs(30), || versions(&daemon, "tick").len()
            >= down + 2),
        "no rotations after the restart:\n{}",
        daemon.log()
    );
    let after = versions(&daemon, "tick");
    assert_once_per_period(&after, 2000);
    // The catch-up is one rotation: the versions made after the restart are in distinct
    // periods (checked above), and the one made first after the restart is the only one
    // for the periods missed while down.
    let missed = &after[down..];
    assert!(missed[0].created < missed[1].created);
    // The audit log has a record per rotation, by the daemon itself.
    let rotations = daemon
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "rotate" && r["outcome"] == "ok")
        .count();
    assert!(
        rotations >= after.len() - 1,
        "{rotations} records for {} rotations",
        after.len() - 1
    );
}

#[test]
fn a_failing_hook_leaves_the_current_version_and_says_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&["--http", &addr]);
    let hook = script(daemon.root.path(), "fail.sh", "cat > /dev/null\nexit 1\n");
    let out = daemon.cli(
        &[
            "secrets",
            "generate",
            "db-password",
            "--rotate-every",
            "1s",
            "--rotate-command",
            hook.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let value = stdout(&out);
    assert!(
        eventually(Duration::from_secs(30), || {
            rotation_json(&daemon, "db-password")["rotation"]["last"]["outcome"] == "failed"
        }),
        "no failed rotation within 30 s:\n{}",
        daemon.log()
    );
    let r = rotation_json(&daemon, "db-password");
    assert_eq!(
        r["rotation"]["last"]["reason"], "the hook exited with status 1",
        "{r}"
    );
    // The current version stays, and is what a read serves.
    assert_eq!(get(&daemon, "db-password"), value);
    // The dropped version is destroyed.
    let dropped = r["rotation"]["last"]["version"].as_u64().unwrap();
    let all = versions(&daemon, "db-password");
    let v = all
        .iter()
        .find(|v| u64::from(v.version.get()) == dropped)
        .unwrap();
    assert!(v.destroyed, "{all:?}");
    // `coffer secrets rotation` says why.
    let out = daemon.cli(&["secrets", "rotation", "db-password"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("failed"), "{text}");
    assert!(text.contains("exited with status 1"), "{text}");
    assert!(text.contains("every:     1s"), "{text}");
    // The audit record names the exit status.
    let audit = daemon.audit();
    assert!(
        audit.iter().any(|r| r["action"] == "rotate"
            && r["outcome"] == "error"
            && r["gate"] == "hook_exit_1"),
        "no audit record of the failure: {audit:?}"
    );
    // The metrics count it.
    let token = {
        let out = daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_owned()
    };
    let metrics = Command::new("curl")
        .args(["-sS", "-H", &format!("X-Vault-Token: {token}")])
        .arg(format!("http://{addr}/v1/sys/metrics?format=prometheus"))
        .output()
        .expect("curl is missing: apt-get install curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&metrics.stdout);
    let failed = text
        .lines()
        .find(|l| l.starts_with("coffer_rotations_total{outcome=\"failed\"}"))
        .unwrap_or_else(|| panic!("no failed-rotation counter:\n{text}"));
    assert_ne!(failed.rsplit(' ').next(), Some("0"), "{failed}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("coffer_rotation_next_due_seconds ")),
        "{text}"
    );
    assert_absent("the metrics", text.as_bytes(), &[&value]);
    // The same policy over HTTP, checked by the same rules.
    let post = |path: &str, body: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("X-Vault-Token: {token}"), "-d", body])
            .arg(format!("http://{addr}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        post(
            "/v1/secret/generate/via-http",
            r#"{"rotate_every":"1h","rotate_grace":"30m"}"#
        ),
        "200"
    );
    let r = rotation_json(&daemon, "via-http");
    assert_eq!(r["rotation"]["policy"]["every"], 3600, "{r}");
    assert_eq!(r["rotation"]["policy"]["grace"], 1800, "{r}");
    assert_eq!(
        post(
            "/v1/secret/generate/via-http-2",
            r#"{"rotate_every":"1h","rotate_command":"relative/hook"}"#
        ),
        "400"
    );
}

#[test]
fn the_hook_gets_the_value_on_standard_input_only() {
    let daemon = Daemon::start(&[]);
    let dir = daemon.root.path().join("hook-out");
    std::fs::create_dir(&dir).unwrap();
    let hook = script(
        daemon.root.path(),
        "apply.sh",
        &format!(
            "cat > {d}/stdin-$COFFER_VERSION\n\
             cat /proc/$$/cmdline > {d}/cmdline-$COFFER_VERSION\n\
             cat /proc/$$/environ > {d}/environ-$COFFER_VERSION\n\
             exit 0\n",
            d = dir.display()
        ),
    );
    let out = daemon.cli(
        &[
            "secrets",
            "generate",
            "api-key",
            "--rotate-every",
            "6s",
            "--rotate-grace",
            "6s",
            "--rotate-command",
            hook.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let first = stdout(&out);
    assert!(
        eventually(Duration::from_secs(40), || {
            rotation_json(&daemon, "api-key")["rotation"]["last"]["outcome"] == "rotated"
        }),
        "no rotation within 40 s:\n{}",
        daemon.log()
    );
    let current = get(&daemon, "api-key");
    assert_ne!(current, first);
    // `previous` is the version before, during the grace period.
    let out = daemon.cli(&["get", "api-key", "--version", "previous"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), first);
    let version = versions(&daemon, "api-key")
        .iter()
        .rev()
        .find(|v| !v.destroyed)
        .unwrap()
        .version;
    let read = |what: &str| std::fs::read(dir.join(format!("{what}-{version}"))).unwrap();
    assert_eq!(read("stdin"), current.as_bytes(), "the hook read the value");
    let environ = read("environ");
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    assert!(vars.contains(&&b"COFFER_SECRET_NAME=api-key"[..]));
    assert!(vars.contains(&&b"COFFER_NAMESPACE=default"[..]));
    assert!(vars.contains(&format!("COFFER_VERSION={version}").as_bytes()));
    let secrets = [current.as_str(), first.as_str()];
    assert_absent("the hook's argv", &read("cmdline"), &secrets);
    assert_absent("the hook's environment", &environ, &secrets);
    assert_absent("the daemon's log", daemon.log().as_bytes(), &secrets);
    for file in std::fs::read_dir(daemon.data.join("audit")).unwrap() {
        let path = file.unwrap().path();
        assert_absent("the audit log", &std::fs::read(&path).unwrap(), &secrets);
    }
    let audit = daemon.audit();
    assert!(
        audit
            .iter()
            .any(|r| r["action"] == "rotate" && r["outcome"] == "ok"),
        "{audit:?}"
    );
    // The event feed from the start: the rotation is there, by the daemon, with no value.
    let out = std::process::Command::new(common::BIN)
        .args(["--socket", daemon.socket.to_str().unwrap()])
        .args(["watch", "--json", "--since", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = out;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut feed = String::new();
    let rotated = loop {
        let line = lines.next().expect("the watch ended").unwrap();
        feed.push_str(&line);
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["action"] == "secret.rotated" {
            break event;
        }
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(rotated["actor"], "coffer", "{rotated}");
    assert_eq!(rotated["name"], "api-key");
    assert_absent("the event feed", feed.as_bytes(), &secrets);
}

#[test]
fn previous_is_refused_outside_the_grace_period_and_input_is_checked() {
    let daemon = Daemon::start(&[]);
    let out = daemon.cli(&["secrets", "generate", "k", "--rotate-every", "1s"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    // Before any rotation, and with no grace period at all: refused, saying why.
    let reply = raw(
        &daemon.socket,
        br#"{"action":"get","name":"k","version":"previous"}"#,
    );
    assert_eq!(code(&reply), "not_found", "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap_or("")
            .contains("grace period"),
        "{reply}"
    );
    assert!(
        eventually(Duration::from_secs(30), || versions(&daemon, "k").len()
            >= 2),
        "no rotation:\n{}",
        daemon.log()
    );
    let reply = raw(
        &daemon.socket,
        br#"{"action":"get","name":"k","version":"previous"}"#,
    );
    assert_eq!(code(&reply), "not_found", "grace 0: {reply}");
    // A secret without a policy has no previous version.
    let out = daemon.cli(&["secrets", "generate", "plain"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(&["get", "plain", "--version", "previous"], b"");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no rotation policy"),
        "{}",
        stderr(&out)
    );
    // Input is checked at the edge.
    let refused = |request: &[u8], says: &str| {
        let reply = raw(&daemon.socket, request);
        assert_eq!(code(&reply), "invalid_request", "{reply}");
        assert!(reply.to_string().contains(says), "{reply}");
    };
    refused(
        br#"{"action":"generate","name":"a","rotate_every":0}"#,
        "at least 1 second",
    );
    refused(
        br#"{"action":"generate","name":"a","rotate_every":"1h","rotate_grace":"2h"}"#,
        "rotate_grace",
    );
    refused(
        br#"{"action":"generate","name":"a","rotate_every":"1h","rotate_command":"relative/hook"}"#,
        "absolute path",
    );
    refused(
        br#"{"action":"generate","name":"a","rotate_every":"1h","rotate_command":"/nonexistent/hook"}"#,
        "absolute path",
    );
    let not_exec = daemon.root.path().join("plain.txt");
    std::fs::write(&not_exec, "x").unwrap();
    refused(
        format!(
            r#"{{"action":"generate","name":"a","rotate_every":"1h","rotate_command":"{}"}}"#,
            not_exec.display()
        )
        .as_bytes(),
        "absolute path",
    );
    refused(
        br#"{"action":"generate","name":"a","rotate_grace":"1h"}"#,
        "rotate_every",
    );
    // Nothing was made by the refused requests.
    assert!(daemon.client().versions(None, "a").is_err());
    // The CLI parses durations as the daemon does.
    let out = daemon.cli(&["secrets", "generate", "b", "--rotate-every", "soon"], b"");
    assert!(!out.status.success());
}

#[test]
fn naming_a_hook_needs_sudo_and_a_file_only_root_may_change() {
    let daemon = Daemon::start(&[]);
    let hook = script(daemon.root.path(), "ok.sh", "exit 0\n");
    let rules = daemon.root.path().join("gen.toml");
    std::fs::write(
        &rules,
        "rules = [{ path = \"default/*\", capabilities = [\"generate\", \"rotate\"] }]\n",
    )
    .unwrap();
    let out = daemon.cli(&["policy", "put", "gen", rules.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(&["token", "create", "--policy", "gen", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    let with_token = |request: Value| {
        let mut request = request;
        request["token"] = Value::String(token.clone());
        raw(&daemon.socket, request.to_string().as_bytes())
    };
    // A policy without a hook is the token's to set; a hook runs as the daemon: sudo only.
    let r =
        with_token(serde_json::json!({"action": "generate", "name": "t1", "rotate_every": "1h"}));
    assert_eq!(r["ok"], true, "{r}");
    let r = with_token(serde_json::json!({
        "action": "generate", "name": "t2", "rotate_every": "1h",
        "rotate_command": hook.to_str().unwrap()
    }));
    assert_eq!(code(&r), "denied", "{r}");
    // A hook in a directory anyone may change is refused, with the one message.
    let open_dir = daemon.root.path().join("open");
    std::fs::create_dir(&open_dir).unwrap();
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let loose = script(&open_dir, "loose.sh", "exit 0\n");
    let r = raw(
        &daemon.socket,
        serde_json::json!({
            "action": "generate", "name": "t3", "rotate_every": "1h",
            "rotate_command": loose.to_str().unwrap()
        })
        .to_string()
        .as_bytes(),
    );
    assert_eq!(code(&r), "invalid_request", "{r}");
    assert!(r["error"].as_str().unwrap().contains("only root"), "{r}");
}
