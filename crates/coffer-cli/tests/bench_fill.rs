//! `coffer bench fill`: the offline fill of a bench store. It writes straight into a data
//! directory no daemon serves (it takes the directory's lock), the daemon started afterwards
//! serves what it wrote (and records every request it answers), and bad input is refused.
#![allow(clippy::unwrap_used)]

mod common;

use common::{BIN, Daemon, run_cli, stderr};
use std::process::Command;

fn fill(data: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["bench", "fill", "--data-dir"])
        .arg(data)
        .args(extra)
        .env("COFFER_LOG", "warn")
        .env("COFFER_TPM_TCTI", "none")
        .output()
        .unwrap()
}

#[test]
fn a_filled_store_is_served_by_the_daemon_that_opens_it() {
    let mut daemon = Daemon::new(&[]);
    let out = fill(&daemon.data, &["--keys", "300", "--threads", "16"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("filled 300 secrets"),
        "{}",
        stderr(&out)
    );
    daemon.spawn();
    let client = daemon.client();
    for i in [0, 150, 299] {
        let value = client.get(None, &format!("bench-{i}"), None).unwrap();
        assert_eq!(value.expose_secret(), "v".repeat(32).as_bytes());
    }
    assert!(client.get(None, "bench-300", None).is_err());
    let options = coffer_client::ListOptions {
        prefix: Some("bench-".into()),
        after: None,
        limit: Some(1000),
    };
    let page = client.list(None, &options).unwrap();
    assert_eq!(page.items.len(), 300);
    assert!(page.next.is_none());
    // The fill served no request, so it left no record; the daemon records what it answers.
    let records = daemon.audit();
    assert!(
        records.iter().all(|r| r["action"] != "set"),
        "a set was recorded"
    );
    assert!(
        records.iter().any(|r| r["action"] == "get"),
        "no get recorded"
    );
    daemon.stop();
    // A store that exists (a daemon has served it) is never written without records.
    let out = fill(&daemon.data, &["--keys", "10", "--threads", "2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already holds a store"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_existing_store_is_refused_and_left_as_it_was() {
    let mut daemon = Daemon::start(&[]);
    let value = coffer_crypto::SecretBytes::copy_from(b"value");
    daemon.client().set(None, "kept", &value, None).unwrap();
    daemon.stop();
    let before = std::fs::read(daemon.data.join("coffer.db")).unwrap();
    let out = fill(&daemon.data, &["--keys", "5"]);
    assert!(!out.status.success(), "an existing store was filled");
    assert_eq!(
        std::fs::read(daemon.data.join("coffer.db")).unwrap(),
        before
    );
    daemon.spawn();
    assert!(daemon.client().get(None, "bench-0", None).is_err());
}

#[test]
fn a_directory_a_daemon_serves_is_refused() {
    let daemon = Daemon::start(&[]);
    let out = fill(&daemon.data, &["--keys", "10"]);
    assert!(!out.status.success());
    let client = daemon.client();
    assert!(
        client.get(None, "bench-0", None).is_err(),
        "nothing was written"
    );
}

#[test]
fn bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in [
        &["--threads", "0"][..],
        &["--threads", "100000"],
        &["--keys", "-1"],
        &["--keys", "many"],
        &["--value-size", "x"],
    ] {
        let out = fill(&data, args);
        assert!(!out.status.success(), "{args:?} was accepted");
    }
    // Without --data-dir there is nothing to fill.
    let out = run_cli(&["bench", "fill", "--keys", "1"], b"");
    assert!(!out.status.success());
}
