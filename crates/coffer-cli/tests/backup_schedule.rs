//! Scheduled backups (`[backup]` in the configuration file): the daemon makes them at each
//! due time into the directory, keeps the newest `keep`, and leaves an audit record, an event
//! and its metrics for each; a failing directory is reported the same way and the daemon
//! keeps serving. Every backup it keeps opens with the identity and the store's key file.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_client::WatchFrom;
use coffer_types::{ChangeEvent, EventAction, WatchLine};
use common::http::{curl, free_port, root_token};
use common::{Daemon, assert_absent, eventually, run_cli, stderr, stdout};

const LIMIT: Duration = Duration::from_secs(60);

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("coffer-backup-") && n.ends_with(".age"))
    });
    found.sort();
    found
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Every event of the store's own namespace until `n` of `action` were seen.
fn backup_events(daemon: &Daemon, action: EventAction, n: usize) -> Vec<ChangeEvent> {
    let mut lines = daemon
        .client()
        .watch(&WatchFrom {
            namespace: Some("*"),
            since: Some(0),
            ..WatchFrom::default()
        })
        .unwrap();
    lines.set_read_timeout(Some(LIMIT)).unwrap();
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|e: &&ChangeEvent| e.action == action)
        .count()
        < n
    {
        match lines.next() {
            Some(Ok(WatchLine::Event { event, .. })) => got.push(event),
            Some(Ok(_)) => {}
            other => panic!("after {} events: {other:?}", got.len()),
        }
    }
    got
}

#[test]
fn backups_are_made_on_schedule_kept_to_keep_and_each_opens() {
    let conf = tempfile::tempdir().unwrap();
    let (identity, public) = common::age_keygen(conf.path(), "backup.key");
    let dir = conf.path().join("backups");
    let file = conf.path().join("coffer.toml");
    std::fs::write(
        &file,
        format!(
            "[backup]\nevery = \"1s\"\ndir = \"{}\"\nrecipients = [\"{public}\"]\nkeep = 2\n",
            dir.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&["--config", file.to_str().unwrap(), "--http", &addr]);
    let value = "scheduled-backup-value-5f1e";
    let out = daemon.cli(&["set", "app/db"], value.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));

    // Four made, so retention has removed at least two; two are kept.
    let events = backup_events(&daemon, EventAction::BackupMade, 4);
    let made: Vec<&ChangeEvent> = events
        .iter()
        .filter(|e| e.action == EventAction::BackupMade)
        .collect();
    assert!(
        made.iter()
            .all(|e| e.namespace == "@coffer" && e.actor == "coffer")
    );
    assert!(eventually(LIMIT, || backups_in(&dir).len() == 2));
    let kept = backups_in(&dir);

    // Each kept backup opens with the identity and the store's key file, and holds the
    // secret written before it.
    for backup in &kept {
        let out = run_cli(
            &[
                "backup",
                "verify",
                backup.to_str().unwrap(),
                "--identity",
                identity.to_str().unwrap(),
                "--key-file",
                daemon.data.join("coffer.key").to_str().unwrap(),
            ],
            b"",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let mode = std::fs::metadata(backup).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let bytes = std::fs::read(backup).unwrap();
        assert_absent("a scheduled backup", &bytes, &[value, "app/db"]);
    }

    // The audit log has the daemon's own record of each; the metrics count them.
    assert!(eventually(LIMIT, || {
        daemon
            .audit()
            .iter()
            .filter(|r| r["action"] == "backup" && r["outcome"] == "ok")
            .count()
            >= 4
    }));
    let token = root_token(&daemon);
    let (status, text) = curl(
        &format!("http://{addr}"),
        Some(&token),
        &["/v1/sys/metrics?format=prometheus"],
    );
    assert_eq!(status, 200, "{text}");
    assert!(metric(&text, "coffer_backups_total{outcome=\"made\"}").unwrap() >= 4.0);
    assert!(metric(&text, "coffer_backup_last_size_bytes").unwrap() > 0.0);
    assert!(metric(&text, "coffer_backup_last_made_timestamp_seconds").unwrap() > 0.0);
    assert_absent("the daemon log", daemon.log().as_bytes(), &[value]);
}

#[test]
fn a_failing_backup_is_reported_and_the_daemon_keeps_serving() {
    let conf = tempfile::tempdir().unwrap();
    let (_, public) = common::age_keygen(conf.path(), "backup.key");
    // A file where the directory should be: every backup fails.
    let dir = conf.path().join("not-a-dir");
    std::fs::write(&dir, b"in the way").unwrap();
    let file = conf.path().join("coffer.toml");
    std::fs::write(
        &file,
        format!(
            "[backup]\nevery = \"1s\"\ndir = \"{}\"\nrecipients = [\"{public}\"]\n",
            dir.display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()]);
    backup_events(&daemon, EventAction::BackupFailed, 2);
    // A failure waits for the next due time: no retry loop (one a second, and some slack).
    let failed = daemon
        .audit()
        .iter()
        .filter(|r| r["action"] == "backup" && r["outcome"] == "error")
        .count() as u64;
    assert!(
        failed <= started.elapsed().as_secs() + 3,
        "{failed} failures"
    );
    assert!(eventually(LIMIT, || {
        daemon
            .audit()
            .iter()
            .any(|r| r["action"] == "backup" && r["outcome"] == "error")
    }));
    let out = daemon.cli(&["set", "app/still"], b"serving");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&daemon.cli(&["get", "app/still"], b"")).trim(),
        "serving"
    );
    assert!(daemon.log().contains("a scheduled backup failed"));
}

#[test]
fn a_bad_backup_section_is_refused_naming_what_is_wrong() {
    let conf = tempfile::tempdir().unwrap();
    let cases = [
        (
            "every = \"1s\"\ndir = \"relative\"\nrecipients = [\"age1x\"]\n",
            "absolute",
        ),
        (
            "every = \"1s\"\ndir = \"/tmp/b\"\nrecipients = [\"age1nothing\"]\n",
            "not an age X25519 recipient",
        ),
        (
            "every = \"1s\"\ndir = \"/tmp/b\"\n",
            "at least one recipient",
        ),
        (
            "every = \"1s\"\ndir = \"/tmp/b\"\nrecipients = [\"x\"]\nkept = 3\n",
            "kept",
        ),
    ];
    for (body, expect) in cases {
        let file = conf.path().join("coffer.toml");
        std::fs::write(&file, format!("[backup]\n{body}")).unwrap();
        let data = conf.path().join("data");
        let mut child = std::process::Command::new(common::BIN)
            .args(["serve", "--config", file.to_str().unwrap(), "--data-dir"])
            .arg(&data)
            .arg("--socket")
            .arg(conf.path().join("coffer.sock"))
            .env("COFFER_TPM_TCTI", "none")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = eventually(Duration::from_secs(20), || {
            child.try_wait().unwrap().is_some()
        });
        if !exited {
            child.kill().unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(exited, "the daemon started with {body:?}");
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expect), "{body:?}: {}", stderr(&out));
    }
}
