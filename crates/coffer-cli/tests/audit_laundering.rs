//! Issue 12, item 2 (audit laundering) and the audit-file parts of item 4, repeated against
//! the real `coffer` daemon: its real socket, SQLite store and audit directory.
//!
//! The attack: with the daemon stopped, truncate the newest audit file, delete every audit
//! file, or delete the whole audit directory; start it again and make a request. Before,
//! `coffer audit verify` said "intact" again and nothing was logged. Now the daemon says so
//! at start and refuses every request (`audit_tampered`) until an operator runs
//! `coffer audit acknowledge`, after which verify reports the acknowledged gap.
#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, code, raw, run_cli, stderr, stdout};

fn set(daemon: &Daemon, name: &str) {
    let out = daemon.cli(&["set", name], b"value-of-a-secret");
    assert!(out.status.success(), "set {name}: {}", stderr(&out));
}

fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "jsonl"));
    files.sort();
    files
}

/// `coffer audit verify --data-dir` (the files, without the daemon).
fn verify_offline(daemon: &Daemon) -> std::process::Output {
    run_cli(
        &[
            "audit",
            "verify",
            "--data-dir",
            daemon.data.to_str().unwrap(),
        ],
        b"",
    )
}

/// A daemon with 20 records and more, stopped cleanly.
fn stopped_with_records(args: &[&str]) -> Daemon {
    let mut daemon = Daemon::start(args);
    for i in 0..20 {
        set(&daemon, &format!("k{i}"));
    }
    daemon.stop();
    let out = verify_offline(&daemon);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    daemon
}

/// After the tampering: the daemon says so at start and refuses; verify reports it; the
/// acknowledgement writes the gap record; then it serves and verify names the gap.
fn refused_until_acknowledged(daemon: &mut Daemon, expect: &str) {
    // verify notices while stopped.
    let out = verify_offline(daemon);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    daemon.spawn();
    let log = daemon.log();
    assert!(
        log.contains("the audit log does not match its checkpoint") && log.contains(expect),
        "the daemon did not say so at start:\n{log}"
    );
    // Every request is refused, with a stable code, and nothing is served.
    for request in [
        &br#"{"action":"get","name":"k1"}"#[..],
        br#"{"action":"set","name":"k1","value":"x"}"#,
        br#"{"action":"status"}"#,
    ] {
        let reply = raw(&daemon.socket, request);
        assert_eq!(code(&reply), "audit_tampered", "{reply}");
    }
    let out = daemon.cli(&["get", "k1"], b"");
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("coffer audit acknowledge"),
        "{}",
        stderr(&out)
    );
    // The daemon's own verify is refused too (it is not "intact").
    let out = daemon.cli(&["audit", "verify"], b"");
    assert!(!out.status.success(), "{}", stdout(&out));

    // Another user cannot acknowledge it (sudo on sys/audit is needed): still refused.
    let reply = common::requests_as(
        65534,
        &daemon.socket,
        &[serde_json::json!({"action": "audit_acknowledge"})],
    );
    assert!(
        ["denied", "audit_unavailable", "audit_tampered"].contains(&code(&reply[0])),
        "{reply:?}"
    );
    let reply = raw(&daemon.socket, br#"{"action":"status"}"#);
    assert_eq!(code(&reply), "audit_tampered", "{reply}");

    let out = daemon.cli(&["audit", "acknowledge"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("gap acknowledged"),
        "{}",
        stderr(&out)
    );
    let out = daemon.cli(&["get", "k1"], b"");
    assert!(out.status.success(), "served again: {}", stderr(&out));
    set(daemon, "after-the-gap");

    for out in [daemon.cli(&["audit", "verify"], b""), {
        daemon.stop();
        verify_offline(daemon)
    }] {
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("gap acknowledged at seq") && text.contains("by uid:0"),
            "{text}"
        );
        assert!(
            stderr(&out).contains("acknowledged gap"),
            "{}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("the audit log is intact\n"));
    }
    // Restarted, it serves without another acknowledgement.
    daemon.spawn();
    set(daemon, "after-the-restart");
    daemon.stop();
}

#[test]
fn truncating_the_newest_audit_file_while_stopped_is_refused_until_acknowledged() {
    let mut daemon = stopped_with_records(&[]);
    let files = audit_files(&daemon.data.join("audit"));
    let newest = files.last().unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(newest, lines[..lines.len() / 2].join("\n") + "\n").unwrap();
    refused_until_acknowledged(&mut daemon, "the log was cut short");
}

#[test]
fn deleting_every_audit_file_while_stopped_is_refused_until_acknowledged() {
    let mut daemon = stopped_with_records(&[]);
    for f in audit_files(&daemon.data.join("audit")) {
        std::fs::remove_file(f).unwrap();
    }
    refused_until_acknowledged(&mut daemon, "every audit file was missing");
}

#[test]
fn deleting_the_audit_directory_while_stopped_is_refused_until_acknowledged() {
    let mut daemon = stopped_with_records(&[]);
    std::fs::remove_dir_all(daemon.data.join("audit")).unwrap();
    refused_until_acknowledged(&mut daemon, "the audit directory was missing");
}

/// A store that starts sealed (a passphrase slot) finds the gap only when it is unsealed,
/// by the first request after the unseal. That request, a `set`, is refused like every
/// other: nothing reaches the store while its record cannot be written.
#[test]
fn a_gap_found_at_unseal_refuses_the_first_write_before_the_store() {
    let mut daemon = Daemon::new(&[]);
    let config = daemon.root.path().join("coffer.toml");
    // Cheap Argon2id so the test is quick; the defaults are m=64 MiB, t=3.
    std::fs::write(
        &config,
        "[argon2]\nmemory_kib = 1024\niterations = 1\nparallelism = 1\n",
    )
    .unwrap();
    let passphrase = b"correct horse battery\n";
    let data = daemon.data.to_str().unwrap().to_owned();
    let out = run_cli(
        &[
            "init",
            "--data-dir",
            &data,
            "--slot",
            "passphrase",
            "--config",
            config.to_str().unwrap(),
        ],
        passphrase,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    daemon.spawn();
    assert!(daemon.cli(&["unseal"], passphrase).status.success());
    for i in 0..20 {
        set(&daemon, &format!("k{i}"));
    }
    daemon.stop();
    let files = audit_files(&daemon.data.join("audit"));
    let newest = files.last().unwrap();
    let text = std::fs::read_to_string(newest).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(newest, lines[..lines.len() / 2].join("\n") + "\n").unwrap();

    daemon.spawn();
    let out = daemon.cli(&["unseal"], passphrase);
    assert!(out.status.success(), "{}", stderr(&out));
    let reply = raw(
        &daemon.socket,
        br#"{"action":"set","name":"written-in-the-gap","value":"x"}"#,
    );
    assert_eq!(code(&reply), "audit_tampered", "{reply}");
    let out = daemon.cli(&["audit", "acknowledge"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let reply = raw(
        &daemon.socket,
        br#"{"action":"get","name":"written-in-the-gap"}"#,
    );
    assert_eq!(
        code(&reply),
        "not_found",
        "the refused set changed nothing: {reply}"
    );
    daemon.stop();
}

#[test]
fn an_edited_record_rechained_with_a_bare_hash_is_detected() {
    let mut daemon = stopped_with_records(&[]);
    let files = audit_files(&daemon.data.join("audit"));
    let path = files.last().unwrap();
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Make a write look denied, then re-tag it and every later record with the unkeyed tag
    // (BLAKE3 over the previous tag and the line, what records written while sealed carry),
    // as someone without the audit key can.
    let at = 5;
    assert!(lines[at].contains("\"o\":\"ok\""), "{}", lines[at]);
    lines[at] = lines[at].replace("\"o\":\"ok\"", "\"o\":\"denied\"");
    // Tags are 16 bytes in unpadded base64url (22 characters), the line's last field.
    let b64 = data_encoding::BASE64URL_NOPAD;
    let tag_of = |line: &str| -> Vec<u8> {
        b64.decode(&line.as_bytes()[line.len() - 24..line.len() - 2])
            .unwrap()
    };
    let mut prev = tag_of(&lines[at - 1]);
    for line in &mut lines[at..] {
        let covered = line[..line.rfind(",\"").unwrap()].to_owned();
        let mut h = blake3::Hasher::new();
        h.update(b"coffer audit record v3 unkeyed\n");
        h.update(&[16]);
        h.update(&prev);
        h.update(covered.as_bytes());
        prev = h.finalize().as_bytes()[..16].to_vec();
        *line = format!("{covered},\"h\":\"{}\"}}", b64.encode(&prev));
    }
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    let out = verify_offline(&daemon);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("differs from the checkpoint"),
        "{}",
        stderr(&out)
    );
    // Keeping the keyed tags instead: the edited record's MAC does not verify.
    let keyed = text.lines().nth(at).unwrap().to_owned();
    let mut kept: Vec<String> = text.lines().map(str::to_owned).collect();
    kept[at] = keyed.replace("\"o\":\"ok\"", "\"o\":\"denied\"");
    std::fs::write(path, kept.join("\n") + "\n").unwrap();
    let out = verify_offline(&daemon);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("MAC does not verify"),
        "{}",
        stderr(&out)
    );
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    // And at start the checkpointed record no longer matches: refused.
    daemon.spawn();
    let reply = raw(&daemon.socket, br#"{"action":"status"}"#);
    assert_eq!(code(&reply), "audit_tampered", "{reply}");
    assert!(daemon.log().contains("differs from the checkpoint"));
}

#[test]
fn rotation_by_size_and_retention_keep_the_chain_verifiable() {
    let mut daemon = Daemon::start(&["--audit-max-file-bytes", "4096", "--audit-keep-files", "3"]);
    for i in 0..60 {
        set(&daemon, &format!("r{i}"));
    }
    let out = daemon.cli(&["audit", "verify"], b"");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    daemon.stop();
    let files = audit_files(&daemon.data.join("audit"));
    assert!(files.len() <= 3, "{files:?}");
    let out = verify_offline(&daemon);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("retention: the log starts at record"),
        "{}",
        stdout(&out)
    );
    // Removing the oldest kept file by hand is not retention.
    std::fs::remove_file(&files[0]).unwrap();
    let out = verify_offline(&daemon);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("removed by hand"), "{}", stderr(&out));
}

#[test]
fn the_free_space_reserve_refuses_with_audit_unavailable_and_warns() {
    // A reserve above the free space of any disk this runs on.
    let daemon = Daemon::start(&["--audit-reserve-bytes", "4611686018427387904"]);
    let reply = raw(&daemon.socket, br#"{"action":"get","name":"k"}"#);
    assert_eq!(code(&reply), "audit_unavailable", "{reply}");
    let out = daemon.cli(&["set", "k"], b"v");
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        daemon
            .log()
            .contains("the audit directory has less free space than its reserve"),
        "{}",
        daemon.log()
    );
    assert!(
        audit_files(&daemon.data.join("audit"))
            .iter()
            .all(|f| { std::fs::metadata(f).unwrap().len() == 0 })
    );
}
