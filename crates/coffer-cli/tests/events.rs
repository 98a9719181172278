//! The change event feed end to end: socket watchers (the Rust client and `coffer watch`)
//! see changes other clients make, only those their policy lets them see, never a value;
//! a watcher resumes after a restart with `since`, missing nothing and seeing nothing twice;
//! a revision the feed no longer holds is answered `resync`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use coffer_client::{Client, WatchFrom};
use coffer_types::{ChangeEvent, EventAction, WatchLine};
use common::{Daemon, assert_absent, code, raw, stderr, stdout};
use serde_json::{Value, json};

fn set(daemon: &Daemon, ns: &str, name: &str, value: &str) -> Value {
    common::set_in(daemon, ns, name, value)
}

/// Starts a watch and answers the stream after its first line, with the revision it starts
/// after.
fn watch(client: &Client, from: WatchFrom<'_>) -> (coffer_client::Replies<WatchLine>, u64) {
    let mut lines = client.watch(&from).unwrap();
    lines
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match lines.next() {
        Some(Ok(WatchLine::Started { revision, .. })) => (lines, revision),
        other => panic!("the watch did not start: {other:?}"),
    }
}

/// The next `n` events (heartbeats skipped).
fn events(lines: &mut coffer_client::Replies<WatchLine>, n: usize) -> Vec<ChangeEvent> {
    let mut got = Vec::new();
    while got.len() < n {
        match lines.next() {
            Some(Ok(WatchLine::Event { event, .. })) => got.push(event),
            Some(Ok(_)) => {}
            other => panic!("after {} events: {other:?}", got.len()),
        }
    }
    got
}

#[test]
fn a_socket_watcher_sees_what_another_client_changes_and_never_a_value() {
    let daemon = Daemon::start(&[]);
    let client = daemon.client();
    let (mut lines, start) = watch(
        &client,
        WatchFrom {
            prefix: Some("app/"),
            ..WatchFrom::default()
        },
    );
    // Another client, over another connection: outside the prefix first, then inside.
    set(&daemon, "default", "other/x", "outside-prefix-value");
    set(&daemon, "default", "app/db", "hunter2-first-value");
    set(&daemon, "default", "app/db", "hunter2-second-value");
    let r = raw(
        &daemon.socket,
        br#"{"action":"revoke","namespace":"default","name":"app/db"}"#,
    );
    assert_eq!(r["ok"], true, "{r}");
    let got = events(&mut lines, 3);
    let seen: Vec<(EventAction, Option<u32>)> = got.iter().map(|e| (e.action, e.version)).collect();
    assert_eq!(
        seen,
        vec![
            (EventAction::Written, Some(1)),
            (EventAction::Written, Some(2)),
            (EventAction::Revoked, Some(2)),
        ]
    );
    // Revisions increase by one per change in the store (the other/x write took one).
    assert_eq!(got[0].revision, start + 2);
    assert_eq!(got[1].revision, start + 3);
    assert!(got.iter().all(|e| e.name.as_deref() == Some("app/db")));
    assert!(
        got.iter()
            .all(|e| e.actor == "uid:0" && e.namespace == "default")
    );
    drop(lines);

    // `coffer watch --json` prints the same feed from a revision on.
    let mut child = Command::new(common::BIN)
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "watch",
            "--json",
            "--since",
            &start.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut line = String::new();
    while printed.len() < 5 {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "watch ended early");
        printed.push(line.clone());
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let first: Value = serde_json::from_str(&printed[0]).unwrap();
    assert_eq!(first, json!({"ok": true, "revision": start}));
    let names: Vec<Value> = printed[1..]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["name"].clone())
        .collect();
    assert_eq!(names, vec!["other/x", "app/db", "app/db", "app/db"]);
    let all = printed.concat();
    assert_absent(
        "the watch stream",
        all.as_bytes(),
        &["hunter2", "outside-prefix-value"],
    );
    assert_absent(
        "the daemon log",
        daemon.log().as_bytes(),
        &["hunter2", "outside-prefix-value"],
    );
}

#[test]
fn a_token_watches_only_what_its_policy_lists_and_ends_when_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&[]);
    let rules = dir.path().join("app.toml");
    std::fs::write(
        &rules,
        "rules = [\n  { path = \"default/app/*\", capabilities = [\"list\"] },\n  \
         { path = \"default/app/hidden*\", capabilities = [\"deny\"] },\n]\n",
    )
    .unwrap();
    let out = daemon.cli(&["policy", "put", "app-list", rules.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(
        &["token", "create", "--policy", "app-list", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    let with_token = Client::new(&daemon.socket)
        .with_token(coffer_crypto::SecretBytes::copy_from(token.as_bytes()));

    // Watching what the policy does not cover is refused at once.
    for prefix in [None, Some("other/")] {
        let mut lines = with_token
            .watch(&WatchFrom {
                prefix,
                ..WatchFrom::default()
            })
            .unwrap();
        match lines.next() {
            Some(Err(coffer_client::ClientError::Refused { code, .. })) => {
                assert_eq!(code, coffer_types::ErrorCode::Denied)
            }
            other => panic!("prefix {prefix:?}: {other:?}"),
        }
    }
    let (mut lines, _) = watch(
        &with_token,
        WatchFrom {
            prefix: Some("app/"),
            ..WatchFrom::default()
        },
    );
    set(&daemon, "default", "app/hidden-key", "v");
    set(&daemon, "default", "app/visible", "v");
    let got = events(&mut lines, 1);
    assert_eq!(got[0].name.as_deref(), Some("app/visible"), "{got:?}");

    // Revoking the token ends the stream with `unauthenticated`.
    let lookup = Command::new(common::BIN)
        .args([
            "--socket",
            daemon.socket.to_str().unwrap(),
            "token",
            "lookup",
        ])
        .env("COFFER_TOKEN", &token)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&lookup.stdout).unwrap();
    let accessor = info["accessor"].as_str().unwrap();
    let out = daemon.cli(&["token", "revoke", accessor], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    // The revocation is an event too (for callers who see the store's own namespace).
    set(&daemon, "default", "app/after", "v");
    match lines.find(|l| !matches!(l, Ok(WatchLine::Heartbeat { .. }))) {
        Some(Err(coffer_client::ClientError::Refused { code, .. })) => {
            assert_eq!(code, coffer_types::ErrorCode::Unauthenticated)
        }
        other => panic!("the stream went on after the token was revoked: {other:?}"),
    }
    // Root, watching every namespace, sees the policy change and the token's creation and
    // revocation, by accessor, never the token.
    let all = root_events_until(&daemon, "app/after");
    assert!(
        all.iter()
            .any(|e| e.action == EventAction::TokenRevoked && e.name.as_deref() == Some(accessor))
    );
    assert!(all.iter().any(|e| e.action == EventAction::PolicyChanged));
    let text = serde_json::to_string(&all).unwrap();
    assert_absent("events", text.as_bytes(), &[&token]);
}

/// Every event up to the write of `last`, in every namespace, read as root from the start.
fn root_events_until(daemon: &Daemon, last: &str) -> Vec<ChangeEvent> {
    let mut got = Vec::new();
    let (mut lines, _) = watch(
        &daemon.client(),
        WatchFrom {
            namespace: Some("*"),
            since: Some(0),
            ..WatchFrom::default()
        },
    );
    loop {
        let e = events(&mut lines, 1).remove(0);
        let done = e.name.as_deref() == Some(last);
        got.push(e);
        if done {
            return got;
        }
    }
}

#[test]
fn a_watcher_resumes_after_a_restart_missing_nothing_and_seeing_nothing_twice() {
    let mut daemon = Daemon::start(&[]);
    let (mut lines, _) = watch(&daemon.client(), WatchFrom::default());
    for i in 0..5 {
        set(&daemon, "default", &format!("k{i}"), "v");
    }
    let first = events(&mut lines, 5);
    let last = first.last().unwrap().revision;
    drop(lines);
    // Changes while the watcher is away, across a restart (the ring in memory is gone).
    set(&daemon, "default", "k5", "v");
    daemon.stop();
    daemon.spawn();
    set(&daemon, "default", "k6", "v");
    let (mut lines, at) = watch(
        &daemon.client(),
        WatchFrom {
            since: Some(last),
            ..WatchFrom::default()
        },
    );
    assert_eq!(at, last);
    set(&daemon, "default", "k7", "v");
    let rest = events(&mut lines, 3);
    let mut all: Vec<u64> = first.iter().chain(&rest).map(|e| e.revision).collect();
    let names: Vec<String> = first
        .iter()
        .chain(&rest)
        .map(|e| e.name.clone().unwrap())
        .collect();
    assert_eq!(names, (0..8).map(|i| format!("k{i}")).collect::<Vec<_>>());
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "an event came twice");
    assert!(
        all.windows(2).all(|w| w[1] == w[0] + 1),
        "revisions are consecutive: {all:?}"
    );
}

#[test]
fn a_revision_the_feed_no_longer_holds_is_answered_resync() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coffer.toml");
    std::fs::write(&config, "[events]\nmax_events = 3\n").unwrap();
    let mut daemon = Daemon::start(&["--config", config.to_str().unwrap()]);
    for i in 0..10 {
        set(&daemon, "default", &format!("k{i}"), "v");
    }
    // Pruning runs at start (and every minute).
    daemon.stop();
    daemon.spawn();
    let head = events_head(&daemon);
    for since in [1, head + 5] {
        let reply = raw(
            &daemon.socket,
            json!({"action": "watch", "since": since})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(code(&reply), "resync", "since {since}: {reply}");
        assert!(
            reply["error"].as_str().unwrap().contains("watch from now"),
            "{reply}"
        );
    }
    // The last three are still there.
    let (mut lines, _) = watch(
        &daemon.client(),
        WatchFrom {
            since: Some(head - 3),
            ..WatchFrom::default()
        },
    );
    let kept = events(&mut lines, 3);
    assert_eq!(kept.last().unwrap().revision, head);
}

/// The store's newest revision, as a watch from now reports it.
fn events_head(daemon: &Daemon) -> u64 {
    let (_, head) = watch(&daemon.client(), WatchFrom::default());
    head
}

#[test]
fn one_caller_cannot_take_every_watcher_place() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&[]);
    let rules = dir.path().join("list.toml");
    std::fs::write(
        &rules,
        "rules = [{ path = \"default/*\", capabilities = [\"list\"] }]\n",
    )
    .unwrap();
    let out = daemon.cli(&["policy", "put", "lister", rules.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = daemon.cli(
        &["token", "create", "--policy", "lister", "--ttl", "1h"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    let with_token = Client::new(&daemon.socket)
        .with_token(coffer_crypto::SecretBytes::copy_from(token.as_bytes()));
    let limit = coffer_core::watch::MAX_WATCHERS_PER_CALLER as usize;
    let mut held: Vec<_> = (0..limit)
        .map(|_| watch(&with_token, WatchFrom::default()).0)
        .collect();
    let refused = with_token.watch(&WatchFrom::default()).unwrap().next();
    match refused {
        Some(Err(coffer_client::ClientError::Refused { code, .. })) => {
            assert_eq!(code, coffer_types::ErrorCode::RateLimited)
        }
        other => panic!("watch {} was not refused: {other:?}", limit + 1),
    }
    // Root is not held to the caller's share, and a place given back is taken again.
    let _root = watch(&daemon.client(), WatchFrom::default());
    held.pop();
    assert!(common::eventually(Duration::from_secs(10), || {
        matches!(
            with_token.watch(&WatchFrom::default()).unwrap().next(),
            Some(Ok(WatchLine::Started { .. }))
        )
    }));
}

#[test]
fn a_client_that_half_closes_after_its_request_still_gets_the_stream() {
    use std::io::Write;
    let daemon = Daemon::start(&[]);
    let mut stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(br#"{"action":"watch"}"#).unwrap();
    // As a one-shot client may: no more writing, still reading.
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut lines = BufReader::new(stream).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["ok"], true, "{first}");
    set(&daemon, "default", "half/closed", "v");
    let event = loop {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line.get("heartbeat").is_none() {
            break line;
        }
    };
    assert_eq!(event["name"], "half/closed", "{event}");
}
