//! The line formats: a log written in format 2 goes on in format 3 after an upgrade (in the
//! middle of a file, the chain continuing across the switch), and `tail` prints every format
//! as JSON lines with full field names.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::atomic::AtomicBool;

use coffer_audit::{AuditLog, verify};
use common::{audit_files, config, keys, lines, record};

/// A format-2 log of `n` records in `dir`, as the previous release wrote it (with keys).
fn v2_log(dir: &std::path::Path, n: u64) {
    let k = keys();
    let mut prev = "0".repeat(64);
    let mut text = String::new();
    for seq in 1..=n {
        let covered = format!(
            "{{\"v\":2,\"seq\":{seq},\"time\":\"2026-01-01T00:00:00.000Z\",\"request_id\":\"r-{seq}\",\
             \"actor\":{{\"uid\":1000}},\"action\":\"get\",\"namespace\":null,\"name\":null,\
             \"outcome\":\"ok\",\"prev\":\"{prev}\""
        );
        let mac = data_encoding::HEXLOWER.encode(&k.record_mac(covered.as_bytes()));
        let line = format!("{covered},\"mac\":\"{mac}\"}}");
        prev = blake3::hash(line.as_bytes()).to_hex().to_string();
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(dir.join("audit-00000000000000000001.jsonl"), text).unwrap();
}

#[test]
fn a_format_2_log_goes_on_in_format_3_and_verifies_across_the_switch() {
    let tmp = tempfile::tempdir().unwrap();
    v2_log(tmp.path(), 3);
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none(), "no checkpoint yet: nothing to miss");
    for i in 4..=6 {
        assert_eq!(log.append_blocking(&record(i)).unwrap(), i);
    }
    drop(log);
    let files = audit_files(tmp.path());
    assert_eq!(files.len(), 1);
    let text = lines(&files[0]);
    assert!(text[2].starts_with("{\"v\":2,\"seq\":3,"));
    // Inside a file, a format-3 line names no prev: its tag covers record 3's hash.
    assert!(text[3].starts_with("{\"v\":3,\"s\":4,") && !text[3].contains("\"prev\""));
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.checkpoint), (6, Some(6)));
    assert_eq!(report.unauthenticated, 0);

    // Reopening (the check at unseal walks from the checkpoint) finds nothing missing.
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none());
    assert_eq!(log.append_blocking(&record(7)).unwrap(), 7);
    drop(log);

    // An edit of the last format-2 record breaks the first format-3 record's tag.
    let mut edited = lines(&files[0]);
    edited[2] = edited[2].replace("\"r-3\"", "\"r-9\"");
    std::fs::write(&files[0], edited.join("\n") + "\n").unwrap();
    let problem = verify(tmp.path(), Some(&keys())).unwrap().problem.unwrap();
    assert_eq!(problem.seq, Some(3), "{problem}");

    // A format-2 line after format-3 ones is refused.
    let mut mixed = text.clone();
    mixed.push(text[0].replace("\"seq\":1,", "\"seq\":7,"));
    std::fs::write(&files[0], mixed.join("\n") + "\n").unwrap();
    let problem = verify(tmp.path(), Some(&keys())).unwrap().problem.unwrap();
    assert!(
        problem
            .reason
            .contains("in format 2, after records of format 3"),
        "{problem}"
    );
}

#[test]
fn tail_prints_json_lines_with_full_names_whatever_the_format() {
    let tmp = tempfile::tempdir().unwrap();
    v2_log(tmp.path(), 2);
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    log.append_blocking(&record(3)).unwrap();
    drop(log);
    let mut out = Vec::new();
    coffer_audit::tail(tmp.path(), 10, false, &mut out, &AtomicBool::new(false)).unwrap();
    let records: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3]);
    let last = &records[2];
    assert_eq!(last["v"], 3);
    assert_eq!(last["request_id"], "req-3");
    assert_eq!(last["actor"]["uid"], 1000);
    assert_eq!(last["actor"]["exe"], "/usr/bin/app");
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
    let short = &keys().name_hash("app/secret-3")[12..12 + 32];
    assert_eq!(last["name"], format!("hmac-sha256:{short}"));
    assert_eq!(last["mac"].as_str().unwrap().len(), 22);
}
