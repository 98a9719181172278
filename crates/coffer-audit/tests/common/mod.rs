//! Shared helpers for the audit integration tests: keys, records, and opening a log.
#![allow(dead_code, missing_docs, clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_audit::{Actor, AuditConfig, AuditLog, Outcome, Record};
use coffer_crypto::{AuditKeys, SecretBytes};
use coffer_types::{ErrorCode, Timestamp};

pub fn keys() -> AuditKeys {
    AuditKeys::from_bytes(
        SecretBytes::copy_from(&[0x0b; 32]),
        SecretBytes::copy_from(&[0x0c; 32]),
    )
    .unwrap()
}

pub fn other_keys() -> AuditKeys {
    AuditKeys::from_bytes(
        SecretBytes::copy_from(&[0x0b; 32]),
        SecretBytes::copy_from(&[0x0d; 32]),
    )
    .unwrap()
}

pub fn record(i: u64) -> Record<'static> {
    Record {
        time: Timestamp::now(),
        request_id: format!("req-{i}").into(),
        actor: Actor {
            uid: Some(1000),
            gid: Some(1000),
            pid: Some(4242),
            exe: Some(std::path::Path::new("/usr/bin/app").into()),
            addr: None,
            token: None,
            unit: None,
        },
        action: if i.is_multiple_of(3) {
            coffer_types::Action::Set
        } else {
            coffer_types::Action::Get
        },
        namespace: Some("default".into()),
        name: Some(format!("app/secret-{}", i % 5).into()),
        outcome: if i.is_multiple_of(4) {
            Outcome::Denied
        } else {
            Outcome::Ok
        },
        code: (i.is_multiple_of(4)).then_some(ErrorCode::Denied),
        gate: (i.is_multiple_of(4)).then_some("policy"),
        repeated: None,
        namespace_invalid: None,
        name_invalid: None,
    }
}

pub fn config(dir: &Path) -> AuditConfig {
    AuditConfig {
        dir: dir.to_path_buf(),
        ..AuditConfig::default()
    }
}

/// Opens a log with keys, writes `n` records and shuts it down cleanly.
pub fn clean_log(dir: &Path, n: u64, max_file_bytes: u64) {
    let log = AuditLog::open(AuditConfig {
        max_file_bytes,
        ..config(dir)
    })
    .unwrap();
    log.set_keys(Some(keys()));
    for i in 1..=n {
        assert_eq!(log.append_blocking(&record(i)).unwrap(), i);
    }
    log.shutdown();
}

/// The audit files in `dir`, oldest first.
pub fn audit_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
}

pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Polls `cond` until it holds (a condition, not a timing assertion).
pub fn eventually(mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("condition not reached within 5 s");
}
