//! Bad input and abusive clients get a clear error with a stable code, and the daemon keeps
//! serving everyone else: each case runs while 200 idle connections are held open and a
//! well-behaved client is served between every case.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use coffer_crypto::SecretBytes;
use common::{Daemon, assert_absent, code, raw};
use serde_json::{Value, json};

fn read_reply(s: &mut UnixStream) -> Value {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    serde_json::from_slice(&reply)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&reply)))
}

fn good_client_is_served(daemon: &Daemon) {
    let v = daemon.client().get(None, "canary", None).unwrap();
    assert_eq!(v.expose_secret(), b"still here");
}

#[test]
fn each_bad_input_gets_its_code_while_idle_connections_pile_up() {
    let daemon = Daemon::start(&["--request-timeout", "3s"]);
    daemon
        .client()
        .set(None, "canary", &SecretBytes::copy_from(b"still here"), None)
        .unwrap();
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    good_client_is_served(&daemon);

    let too_big = format!(
        r#"{{"action":"set","name":"big","value":"{}"}}"#,
        "x".repeat((1 << 20) + 1)
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a value over 1 MiB", too_big.into_bytes(), "too_large"),
        (
            "a name with ..",
            br#"{"action":"get","name":"a/../b"}"#.to_vec(),
            "invalid_name",
        ),
        (
            "a name with a space",
            br#"{"action":"set","name":"a b","value":"v"}"#.to_vec(),
            "invalid_name",
        ),
        (
            "an empty name",
            br#"{"action":"del","name":""}"#.to_vec(),
            "invalid_name",
        ),
        (
            "a bad namespace",
            br#"{"action":"get","name":"a","namespace":"/x"}"#.to_vec(),
            "invalid_name",
        ),
        (
            "malformed JSON",
            br#"{"action":"get","name":}"#.to_vec(),
            "invalid_request",
        ),
        ("not an object", b"[\"get\"]".to_vec(), "invalid_request"),
        (
            "not JSON at all",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            "invalid_request",
        ),
        (
            "an unknown action",
            br#"{"action":"list_everything"}"#.to_vec(),
            "invalid_request",
        ),
        (
            "a missing field",
            br#"{"action":"set","name":"k"}"#.to_vec(),
            "invalid_request",
        ),
        (
            "a mistyped field",
            br#"{"action":"get","name":["k"]}"#.to_vec(),
            "invalid_request",
        ),
        (
            "an unknown field",
            br#"{"action":"get","name":"k","nmae":"j"}"#.to_vec(),
            "invalid_request",
        ),
        (
            "a zero version",
            br#"{"action":"get","name":"k","version":0}"#.to_vec(),
            "invalid_request",
        ),
    ];
    for (what, request, expected) in cases {
        let reply = raw(&daemon.socket, &request);
        assert_eq!(code(&reply), expected, "{what}: {reply}");
        assert!(
            reply["error"].as_str().is_some_and(|m| m.len() > 10),
            "{what}: {reply}"
        );
        good_client_is_served(&daemon);
    }

    // A request larger than any value could need is cut off, not buffered to the end.
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = s.write_all(br#"{"action":"set","name":"huge","value":""#);
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..16 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        })
    };
    assert_eq!(code(&read_reply(&mut s)), "too_large");
    writer.join().unwrap();
    good_client_is_served(&daemon);

    // A client that half-closes in the middle of a request.
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.write_all(br#"{"action":"get","na"#).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(code(&read_reply(&mut s)), "invalid_request");

    // A client that stalls mid-request is answered and dropped after the timeout, while
    // others are served meanwhile.
    let started = Instant::now();
    let mut stalled = UnixStream::connect(&daemon.socket).unwrap();
    stalled
        .write_all(br#"{"action":"get","name":"canary""#)
        .unwrap();
    for _ in 0..5 {
        good_client_is_served(&daemon);
    }
    let reply = read_reply(&mut stalled);
    assert_eq!(code(&reply), "invalid_request");
    assert!(
        reply["error"].as_str().unwrap().contains("timed out"),
        "{reply}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "dropped too early"
    );

    // The idle connections were dropped by the same timeout; none of them stopped service.
    for mut s in idle {
        let reply = read_reply(&mut s);
        assert_eq!(code(&reply), "invalid_request");
    }
    good_client_is_served(&daemon);
    assert_absent("the daemon log", daemon.log().as_bytes(), &["still here"]);
}

#[test]
fn connections_past_the_limit_are_told_to_retry_and_others_continue() {
    let daemon = Daemon::start(&["--max-connections", "4", "--request-timeout", "30s"]);
    daemon
        .client()
        .set(None, "canary", &SecretBytes::copy_from(b"still here"), None)
        .unwrap();
    // The canary's connection counts until the daemon has seen it close; let it finish, then
    // take every slot and let the daemon accept all four.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&daemon.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = UnixStream::connect(&daemon.socket).unwrap();
    let reply = read_reply(&mut extra);
    assert_eq!(code(&reply), "rate_limited");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("too many connections")
    );
    drop(held);
    assert!(common::eventually(Duration::from_secs(5), || {
        daemon.client().get(None, "canary", None).is_ok()
    }));
}

#[test]
fn values_at_the_limit_are_accepted_and_the_limit_is_configurable() {
    let daemon = Daemon::start(&["--max-value-bytes", "1024"]);
    let at = SecretBytes::copy_from(&[b'a'; 1024]);
    daemon.client().set(None, "at", &at, None).unwrap();
    let over = SecretBytes::copy_from(&[b'a'; 1025]);
    let err = daemon.client().set(None, "over", &over, None).unwrap_err();
    assert_eq!(err.code().as_str(), "too_large");
    assert!(err.to_string().contains("1024"), "{err}");
    assert_eq!(
        raw(&daemon.socket, br#"{"action":"get","name":"at"}"#)["value"],
        json!("a".repeat(1024))
    );
}
