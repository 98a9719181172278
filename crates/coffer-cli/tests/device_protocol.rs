//! The device daemon's protocol (reference 000) against the real daemon: its own Node.js
//! client unchanged, one request per connection answered without a half-close, and the
//! keep-alive extension.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, assert_absent, code, raw};
use serde_json::{Value, json};

/// Runs Node.js with `/run` replaced, in a private mount namespace, by `run_dir`, so the
/// reference client's hard-coded `/run/tpmd.sock` reaches the daemon's compat socket.
fn node_in_namespace(run_dir: &Path, script: &Path) -> std::process::Output {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node.js is missing: install it with `apt-get install -y nodejs` (the test script does)"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test binds /run/tpmd.sock in a private mount namespace and must run as root \
         (CI does; run the suite with sudo)"
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$1" /run && exec node "$2""#)
        .arg("sh")
        .arg(run_dir)
        .arg(script)
        .output()
        .unwrap()
}

#[test]
fn the_reference_nodejs_client_works_unchanged_on_the_compat_socket() {
    let run = tempfile::tempdir().unwrap();
    let compat = run.path().join("tpmd.sock");
    let daemon = Daemon::start(&["--compat-socket", compat.to_str().unwrap()]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/device_client.js");
    let out = node_in_namespace(run.path(), &script);
    assert!(
        out.status.success(),
        "node failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Workflow 1: {"ok":true,"index":"0x0152XXXX"}, nothing else.
    let set = results["set"].as_object().unwrap();
    assert_eq!(set.len(), 2, "{set:?}");
    assert_eq!(set["ok"], json!(true));
    let index = set["index"].as_str().unwrap();
    assert!(
        index.len() == 10
            && index.starts_with("0x0152")
            && index[6..].chars().all(|c| c.is_ascii_hexdigit()),
        "{index}"
    );
    // Workflow 2: the value.
    assert_eq!(results["get"], json!("sk_live_abc123xyz"));
    // Workflow 3: rotation keeps the index.
    assert_eq!(results["rotate"], json!({"ok": true, "index": index}));
    assert_eq!(results["getRotated"], json!("sk_live_new_key_456"));
    // Workflow 4: {"ok":true}.
    assert_eq!(results["del"], json!({"ok": true}));
    // After deletion: no value, and an error shaped as the device daemon's.
    assert!(results.get("getDeleted").is_none(), "{results}");
    let gone = &results["delDeleted"];
    assert_eq!(gone["code"], json!("not_found"));
    assert_eq!(gone["rc"], json!("0x18b"));
    assert!(gone["error"].as_str().is_some_and(|e| !e.is_empty()));

    // The compat socket and the main socket are the same store.
    daemon
        .client()
        .set(
            None,
            "shared",
            &coffer_crypto::SecretBytes::copy_from(b"v"),
            None,
        )
        .unwrap();
    let via_compat = raw(&compat, br#"{"action":"get","name":"shared"}"#);
    assert_eq!(via_compat, json!({"ok": true, "value": "v"}));
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["sk_live_abc123xyz", "sk_live_new_key_456"],
    );
}

#[test]
fn one_request_per_connection_is_answered_before_the_client_half_closes() {
    let daemon = Daemon::start(&[]);
    // Written in pieces, never shut down for writing: the reply must still come.
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for piece in [
        &br#"{"action":"set","#[..],
        br#""name":"k","value":"#,
        br#""a}{\"b"}"#,
    ] {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut reply = String::new();
    BufReader::new(&s).read_line(&mut reply).unwrap();
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["ok"], json!(true));
    // The server closes its end after one reply.
    let mut rest = String::new();
    assert_eq!(BufReader::new(&s).read_line(&mut rest).unwrap(), 0);
    assert_eq!(
        raw(&daemon.socket, br#"{"action":"get","name":"k"}"#),
        json!({"ok": true, "value": "a}{\"b"})
    );
}

#[test]
fn keep_alive_answers_in_order_and_echoes_ids() {
    let daemon = Daemon::start(&[]);
    let s = UnixStream::connect(&daemon.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut ask = |line: &str| -> Value {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        let mut reply = String::new();
        r.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    };
    assert_eq!(
        ask(r#"{"action":"set","name":"a","value":"1","keep_alive":true,"id":1}"#),
        json!({"ok": true, "index": "0x01520000", "id": 1})
    );
    assert_eq!(
        ask(r#"{"action":"get","name":"a","id":"two"}"#),
        json!({"ok": true, "value": "1", "id": "two"})
    );
    // A bad line is answered and the connection goes on.
    let bad = ask(r#"{"action":"get","#);
    assert_eq!(code(&bad), "invalid_request");
    let missing = ask(r#"{"action":"get","name":"nope","id":3}"#);
    assert_eq!(
        missing,
        json!({"error": "no such secret", "code": "not_found", "rc": "0x18b", "id": 3})
    );
    assert_eq!(
        ask(r#"{"action":"del","name":"a","id":4}"#),
        json!({"ok": true, "id": 4})
    );
    // Several requests in one write are answered in order.
    w.write_all(b"{\"action\":\"set\",\"name\":\"b\",\"value\":\"x\",\"id\":5}\n\n{\"action\":\"get\",\"name\":\"b\",\"id\":6}\n")
        .unwrap();
    let mut first = String::new();
    let mut second = String::new();
    r.read_line(&mut first).unwrap();
    r.read_line(&mut second).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["id"],
        json!(5)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&second).unwrap(),
        json!({"ok": true, "value": "x", "id": 6})
    );
}

#[test]
fn binary_values_travel_as_base64() {
    let daemon = Daemon::start(&[]);
    let reply = raw(
        &daemon.socket,
        br#"{"action":"set","name":"blob","value_b64":"AAH/gA=="}"#,
    );
    assert_eq!(reply["ok"], json!(true));
    assert_eq!(
        raw(&daemon.socket, br#"{"action":"get","name":"blob"}"#),
        json!({"ok": true, "value_b64": "AAH/gA=="})
    );
    let value = daemon.client().get(None, "blob", None).unwrap();
    assert_eq!(value.expose_secret(), &[0, 1, 255, 128]);
}
