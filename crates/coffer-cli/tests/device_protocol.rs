//! The device daemon's protocol (reference 000) against the real daemon: its own Node.js
//! client unchanged, one request per connection answered without a half-close, and the
//! keep-alive extension.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{Daemon, assert_absent, check_device_workflows, code, node_device_client, raw};
use serde_json::{Value, json};

#[test]
fn the_reference_nodejs_client_works_unchanged_on_the_compat_socket() {
    let run = tempfile::tempdir().unwrap();
    let compat = run.path().join("tpmd.sock");
    let daemon = Daemon::start(&["--compat-socket", compat.to_str().unwrap()]);
    let results = node_device_client(run.path(), &daemon);
    check_device_workflows(&results);

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
