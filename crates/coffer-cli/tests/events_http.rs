//! Change events over HTTP: a WebSocket subscriber written with Python's `websockets` (the
//! OpenBao endpoint, CloudEvents) and an SSE reader (`curl -N`) each see a change another
//! client makes over the socket; a token without the grant is refused before any stream.
//!
//! `scripts/test` installs what these need: `pip install websockets`, curl.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::http::{curl, http_daemon, need};
use common::{Daemon, assert_absent, raw, stderr, stdout};
use serde_json::{Value, json};

fn set(daemon: &Daemon, name: &str, value: &str) {
    let r = raw(
        &daemon.socket,
        json!({"action": "set", "name": name, "value": value})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(r["ok"], true, "{r}");
}

fn python_has(module: &str) {
    let ok = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 cannot import {module}: pip install {module} (scripts/test installs it)"
    );
}

#[test]
fn a_websocket_subscriber_gets_cloudevents_for_another_clients_change() {
    python_has("websockets");
    let (daemon, url, token) = http_daemon(&["--no-tls"]);
    let ws = format!(
        "{}/v1/sys/events/subscribe/kv-v2/data-*?json=true",
        url.replace("http://", "ws://")
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/events/ws_subscribe.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([&ws, &token, "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the subscriber did not connect");
    // A change of another kind first (not a data event), then two writes.
    let r = raw(
        &daemon.socket,
        br#"{"action":"set","name":"ws/other","value":"v"}"#,
    );
    assert_eq!(r["ok"], true);
    let r = raw(
        &daemon.socket,
        br#"{"action":"describe","name":"ws/other","description":"d"}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    set(&daemon, "ws/db", "websocket-secret-value");
    let mut lines = vec![line];
    for l in out.lines() {
        lines.push(l.unwrap());
    }
    let done = child.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let events: Vec<Value> = lines[1..]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{lines:?}");
    for e in &events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["data"]["event_type"], "kv-v2/data-write");
        assert_eq!(e["data"]["plugin_info"]["mount_path"], "default/");
    }
    // The describe (kv-v2/metadata-write) is not a data-* event: the second is ws/db.
    assert_eq!(
        events[0]["data"]["event"]["metadata"]["path"],
        "default/data/ws/other"
    );
    assert_eq!(
        events[1]["data"]["event"]["metadata"]["path"],
        "default/data/ws/db"
    );
    assert_eq!(
        events[1]["data"]["event"]["metadata"]["current_version"],
        "1"
    );
    assert_absent(
        "the WebSocket events",
        lines.concat().as_bytes(),
        &["websocket-secret-value"],
    );

    // Without `read` on sys/events/subscribe, the upgrade is refused with Vault's 403.
    let out = daemon.cli(
        &["token", "create", "--policy", "default", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let weak = stdout(&out).trim().to_owned();
    let (status, body) = curl(
        &url,
        Some(&weak),
        &[
            "-H",
            "Connection: Upgrade",
            "-H",
            "Upgrade: websocket",
            "-H",
            "Sec-WebSocket-Version: 13",
            "-H",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "/v1/sys/events/subscribe/*?json=true",
        ],
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn an_sse_reader_sees_changes_and_resumes_from_last_event_id() {
    need("curl", "apt-get install -y curl");
    let (daemon, url, token) = http_daemon(&["--no-tls"]);
    set(&daemon, "sse/first", "sse-secret-one");
    // From the start of the store: the namespace's creation is revision 1.
    let mut child = Command::new("curl")
        .args(["-sS", "-N", "-H", &format!("X-Vault-Token: {token}")])
        .arg(format!("{url}/v1/sys/coffer/events?since=0&prefix=sse/"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read_event = || {
        let mut fields = std::collections::BTreeMap::new();
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "the stream ended");
            let line = line.trim_end();
            if line.is_empty() {
                if !fields.is_empty() {
                    return fields;
                }
                continue;
            }
            if let Some((k, v)) = line.split_once(':')
                && !k.is_empty()
            {
                fields.insert(k.to_owned(), v.trim_start().to_owned());
            }
        }
    };
    let first = read_event();
    assert_eq!(first["event"], "secret.written");
    let data: Value = serde_json::from_str(&first["data"]).unwrap();
    assert_eq!(data["name"], "sse/first");
    assert_eq!(first["id"], data["revision"].to_string());
    set(&daemon, "other/skipped", "v");
    set(&daemon, "sse/second", "sse-secret-two");
    let second = read_event();
    let data: Value = serde_json::from_str(&second["data"]).unwrap();
    assert_eq!(data["name"], "sse/second", "the prefix filters");
    child.kill().unwrap();
    child.wait().unwrap();

    // A reader that resumes with Last-Event-ID gets what came after, once.
    set(&daemon, "sse/third", "sse-secret-three");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "3",
            "-H",
            &format!("X-Vault-Token: {token}"),
        ])
        .args(["-H", &format!("Last-Event-ID: {}", second["id"])])
        .arg(format!("{url}/v1/sys/coffer/events?prefix=sse/"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("event: secret.written").count(), 1, "{text}");
    assert!(text.contains("sse/third"), "{text}");
    assert_absent("the SSE stream", text.as_bytes(), &["sse-secret"]);

    // A revision the feed does not hold is refused before the stream (410 Gone).
    let (status, body) = curl(&url, Some(&token), &["/v1/sys/coffer/events?since=999999"]);
    assert_eq!(status, 410, "{body}");
    assert!(body.contains("watch from now"), "{body}");
}
