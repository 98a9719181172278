//! `coffer namespaces rotate-key` with the real daemon: a new key generation for new writes
//! at once, every older version re-encrypted in the background, the older key forgotten,
//! and a daemon killed with SIGKILL mid-way resuming at its next start.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use coffer_crypto::SecretBytes;
use common::{BIN, Daemon, eventually, stderr};

fn fill(data: &Path, keys: usize) {
    let out = Command::new(BIN)
        .args(["bench", "fill", "--data-dir"])
        .arg(data)
        .args(["--keys", &keys.to_string(), "--threads", "16"])
        .env("COFFER_LOG", "warn")
        .env("COFFER_TPM_TCTI", "none")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Versions with a ciphertext per key generation in the store (every namespace), and the
/// older generations kept, read from the database file.
fn generations(data: &Path) -> (Vec<(u32, u64)>, u64) {
    let db = rusqlite::Connection::open_with_flags(
        data.join("coffer.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = db
        .prepare(
            "SELECT key_version, count(*) FROM versions WHERE ciphertext IS NOT NULL
             GROUP BY key_version ORDER BY key_version",
        )
        .unwrap();
    let counts = st
        .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let older: i64 = db
        .query_row("SELECT count(*) FROM namespace_keys", [], |r| r.get(0))
        .unwrap();
    (counts, older as u64)
}

/// The rotation of `default` in the status, if one is in progress.
fn progress(daemon: &Daemon) -> Option<coffer_types::reply::KeyRotationStatus> {
    daemon
        .client()
        .status()
        .unwrap()
        .key_rotations
        .into_iter()
        .find(|r| r.namespace == "default")
}

/// Writes `distinct-0..n` with two versions each through the socket.
fn write_distinct(daemon: &Daemon, n: usize) {
    let client = daemon.client();
    for i in 0..n {
        for round in ["first", "second"] {
            let value = SecretBytes::copy_from(format!("distinct-{i}-{round}").as_bytes());
            client
                .set(None, &format!("distinct-{i}"), &value, None)
                .unwrap();
        }
    }
}

/// Every value reads back: the bench secrets and both versions of the distinct ones.
fn check_values(daemon: &Daemon, bench: usize, distinct: usize) {
    let client = daemon.client();
    let filled = "v".repeat(32);
    for i in 0..bench {
        let value = client.get(None, &format!("bench-{i}"), None).unwrap();
        assert_eq!(value.expose_secret(), filled.as_bytes(), "bench-{i}");
    }
    for i in 0..distinct {
        let name = format!("distinct-{i}");
        let newest = client.get(None, &name, None).unwrap();
        assert_eq!(
            newest.expose_secret(),
            format!("distinct-{i}-second").as_bytes()
        );
        let first = client
            .get(None, &name, Some(coffer_types::Version::FIRST))
            .unwrap();
        assert_eq!(
            first.expose_secret(),
            format!("distinct-{i}-first").as_bytes()
        );
    }
}

#[test]
fn rotate_key_reencrypts_every_version_and_forgets_the_older_key() {
    let mut daemon = Daemon::new(&[]);
    fill(&daemon.data, 5000);
    daemon.spawn();
    write_distinct(&daemon, 100);
    let out = daemon.cli(&["namespaces", "rotate-key", "default"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("rotated the key of namespace default"),
        "{}",
        stderr(&out)
    );
    // The CLI returned once the daemon no longer lists the rotation.
    assert!(progress(&daemon).is_none());
    // New writes use the new generation at once.
    let value = SecretBytes::copy_from(b"after-rotation");
    daemon.client().set(None, "after", &value, None).unwrap();
    let (counts, older) = generations(&daemon.data);
    assert_eq!(older, 0, "the older generation is forgotten");
    let second: u64 = counts
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, n)| *n)
        .sum();
    assert!(second > 5000 + 200, "{counts:?}");
    // The store's own namespace was not rotated: its versions stay at generation 1.
    assert!(counts.iter().all(|(k, _)| *k == 1 || *k == 2), "{counts:?}");
    check_values(&daemon, 5000, 100);
    assert_eq!(
        daemon
            .client()
            .get(None, "after", None)
            .unwrap()
            .expose_secret(),
        b"after-rotation"
    );
    // A second rotation makes generation 3 and completes too.
    let out = daemon.cli(&["namespaces", "rotate-key", "default"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let (counts, older) = generations(&daemon.data);
    assert_eq!(older, 0);
    assert!(!counts.iter().any(|(k, _)| *k == 2), "{counts:?}");
    check_values(&daemon, 5000, 100);
    // Audited, and a namespace that does not exist is refused.
    assert!(
        daemon
            .audit()
            .iter()
            .any(|r| r["action"] == "namespace_rotate_key"),
        "no audit record"
    );
    let out = daemon.cli(&["namespaces", "rotate-key", "nope"], b"");
    assert!(!out.status.success());
    // Restarted, the store opens with the newest generation alone.
    daemon.stop();
    daemon.spawn();
    check_values(&daemon, 5000, 100);
    let log = daemon.log();
    for i in 0..100 {
        assert!(!log.contains(&format!("distinct-{i}-first")));
    }
}

#[test]
fn a_rotation_killed_midway_resumes_at_the_next_start() {
    const KEYS: usize = 20_000;
    let mut daemon = Daemon::new(&[]);
    fill(&daemon.data, KEYS);
    daemon.spawn();
    write_distinct(&daemon, 50);
    let out = daemon.cli(&["namespaces", "rotate-key", "default", "--no-wait"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    // A second rotation while this one runs is a conflict.
    let again = daemon.cli(&["namespaces", "rotate-key", "default"], b"");
    if progress(&daemon).is_some() {
        assert!(!again.status.success(), "a second rotation was accepted");
        assert!(stderr(&again).contains("in progress"), "{}", stderr(&again));
    }
    // Killed once the re-encryption has begun.
    assert!(
        eventually(Duration::from_secs(60), || progress(&daemon)
            .is_none_or(|p| p.done > 0)),
        "the rotation made no progress"
    );
    daemon.kill9();
    let (counts, older) = generations(&daemon.data);
    assert_eq!(older, 1, "the older generation is kept mid-way: {counts:?}");
    let old: u64 = counts
        .iter()
        .filter(|(k, _)| *k == 1)
        .map(|(_, n)| *n)
        .sum();
    let new: u64 = counts
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, n)| *n)
        .sum();
    assert!(
        new > 0 && old > KEYS as u64 / 10,
        "not mid-way when killed: {counts:?}"
    );
    // Restarted: it resumes by itself and completes; reads work meanwhile.
    daemon.spawn();
    let value = daemon
        .client()
        .get(None, "distinct-7", Some(coffer_types::Version::FIRST))
        .unwrap();
    assert_eq!(value.expose_secret(), b"distinct-7-first");
    // The progress in the status: the versions under the new generation out of all the
    // namespace's versions, resumed from what the rows say, rising to the total.
    let mut seen = Vec::new();
    assert!(
        eventually(Duration::from_secs(300), || match progress(&daemon) {
            Some(p) => {
                seen.push((p.done, p.total));
                false
            }
            None => true,
        }),
        "the resumed rotation did not complete"
    );
    for (done, total) in &seen {
        assert!(done <= total, "{seen:?}");
        assert!(*total == 0 || *total == KEYS as u64 + 100, "{seen:?}");
    }
    assert!(
        seen.windows(2).all(|w| w[0].0 <= w[1].0 || w[1].1 == 0),
        "the progress went back: {seen:?}"
    );
    let (counts, older) = generations(&daemon.data);
    assert_eq!(older, 0, "{counts:?}");
    let old: u64 = counts
        .iter()
        .filter(|(k, _)| *k == 1)
        .map(|(_, n)| *n)
        .sum();
    let new: u64 = counts
        .iter()
        .filter(|(k, _)| *k == 2)
        .map(|(_, n)| *n)
        .sum();
    assert!(new >= KEYS as u64 + 100, "{counts:?}");
    // What is left at generation 1 is the store's own namespace (tokens, policies).
    assert!(old < 100, "{counts:?}");
    check_values(&daemon, KEYS, 50);
}

/// `curl` against `base` with a token; the last argument is the path.
fn curl(base: &str, token: &str, args: &[&str]) -> (u16, String) {
    let (path, rest) = args.split_last().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .args(["-H", &format!("X-Vault-Token: {token}")])
        .args(rest)
        .arg(format!("{base}{path}"))
        .output()
        .expect("curl runs (apt-get install curl; scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn rotate_key_over_http_with_progress_in_status_and_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = Daemon::new(&["--http", &addr]);
    fill(&daemon.data, 2000);
    daemon.spawn();
    let url = format!("http://{addr}");
    let made = common::raw(
        &daemon.socket,
        br#"{"action":"token_create","policies":["root"],"ttl":"1h"}
"#,
    );
    let token = made["token"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(20), || curl(
            &url,
            &token,
            &["/v1/sys/coffer/status"]
        )
        .0 == 200),
        "the HTTP API did not answer"
    );
    let (status, body) = curl(
        &url,
        &token,
        &[
            "-X",
            "POST",
            "-d",
            r#"{"namespace":"default"}"#,
            "/v1/sys/coffer/namespaces/rotate-key",
        ],
    );
    assert_eq!(status, 204, "{body}");
    let (_, metrics) = curl(&url, &token, &["/v1/sys/metrics?format=prometheus"]);
    assert!(metrics.contains("key_rotation_done_versions"), "{metrics}");
    assert!(
        eventually(Duration::from_secs(120), || {
            let (_, body) = curl(&url, &token, &["/v1/sys/coffer/status"]);
            !body.contains("key_rotations")
        }),
        "the rotation did not complete"
    );
    let (counts, older) = generations(&daemon.data);
    assert_eq!(older, 0);
    assert!(
        counts.iter().any(|(k, n)| *k == 2 && *n >= 2000),
        "{counts:?}"
    );
    // Without a token the operation is refused.
    let (status, _) = curl(
        &url,
        "nope",
        &[
            "-X",
            "POST",
            "-d",
            r#"{"namespace":"default"}"#,
            "/v1/sys/coffer/namespaces/rotate-key",
        ],
    );
    assert!(status == 401 || status == 403, "{status}");
    check_values(&daemon, 2000, 0);
    // rotate-master over HTTP (this store has a key file slot only: no recovery key).
    let (status, body) = curl(
        &url,
        &token,
        &["-X", "POST", "-d", "{}", "/v1/sys/coffer/rotate-master"],
    );
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["data"]["dropped_slots"],
        serde_json::json!([]),
        "{body}"
    );
    check_values(&daemon, 2000, 0);
    daemon.stop();
    daemon.spawn();
    check_values(&daemon, 2000, 0);
}
