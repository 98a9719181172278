//! The checkpoint anchored in a monotonic counter (issue 12, item 2, last sentence), at the
//! library's level with an in-memory counter: the audit directory rolled back together with
//! its anchor copy, or both deleted, is found at the next unseal and refused until
//! acknowledged; clean restarts and every crash point of the counter protocol are not
//! flagged. (Against a real daemon and a real swtpm: crates/coffer-cli/tests/tpm.rs.)
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_audit::{AuditConfig, AuditCounter, AuditError, AuditLog, CounterState};
use common::{config, keys, record};

#[derive(Debug, Default)]
struct Fake {
    state: Mutex<Option<Option<u64>>>,
    /// Fail every increment (a TPM gone mid-flight).
    broken: Mutex<bool>,
}

impl AuditCounter for Fake {
    fn state(&self) -> Result<CounterState, String> {
        Ok(match *self.state.lock().unwrap() {
            None => CounterState::Missing,
            Some(None) => CounterState::Unset,
            Some(Some(v)) => CounterState::At(v),
        })
    }
    fn define(&self) -> Result<(), String> {
        let mut s = self.state.lock().unwrap();
        if s.is_none() {
            *s = Some(None);
        }
        Ok(())
    }
    fn increment(&self) -> Result<u64, String> {
        if *self.broken.lock().unwrap() {
            return Err("broken".into());
        }
        let mut s = self.state.lock().unwrap();
        let next = match *s {
            None => return Err("not defined".into()),
            Some(None) => 1000,
            Some(Some(v)) => v + 1,
        };
        *s = Some(Some(next));
        Ok(next)
    }
    fn describe(&self) -> String {
        "test counter".into()
    }
}

fn value(c: &Fake) -> u64 {
    c.state.lock().unwrap().flatten().expect("a value")
}

fn cfg(dir: &Path, anchor: &Path, counter: &Arc<Fake>) -> AuditConfig {
    AuditConfig {
        anchor: Some(anchor.to_path_buf()),
        counter: Some(counter.clone() as Arc<dyn AuditCounter>),
        counter_interval: Duration::from_secs(3600),
        sync_interval: Duration::from_millis(20),
        ..config(dir)
    }
}

/// Opens with keys, checks there is no gap, writes `n` records, shuts down.
fn run(cfg: &AuditConfig, n: u64) {
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none(), "{:?}", log.gap());
    for i in 0..n {
        log.append_blocking(&record(i)).unwrap();
    }
    drop(log);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn restore(saved: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(saved, dir);
}

/// The rollback is found at unseal, refused, acknowledged, and served again.
fn found_and_acknowledged(cfg: &AuditConfig, expect: &str) {
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    let missing = log.gap().expect("the rollback is found at unseal");
    assert!(missing.contains(expect), "{missing}");
    let err = log.append_blocking(&record(1)).unwrap_err();
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    let (consistent, report) = log.counter_report().unwrap();
    assert!(!consistent && report.contains(expect), "{report}");
    log.acknowledge("uid:0").unwrap().expect("a gap record");
    log.append_blocking(&record(2)).unwrap();
    drop(log);
    // Acknowledged: the next start is clean.
    run(cfg, 1);
}

#[test]
fn a_directory_rolled_back_with_its_anchor_is_found_and_refused_until_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, anchor) = (tmp.path().join("audit"), tmp.path().join("audit-anchor"));
    let counter = Arc::new(Fake::default());
    let cfg = cfg(&dir, &anchor, &counter);
    run(&cfg, 5);
    let first = value(&counter);
    // The copy an attacker keeps.
    copy_dir(&dir, &tmp.path().join("saved"));
    std::fs::copy(&anchor, tmp.path().join("saved-anchor")).unwrap();
    run(&cfg, 5);
    run(&cfg, 0); // a restart without records does not advance the counter
    assert_eq!(
        value(&counter),
        first + 1,
        "one advance per shutdown with records"
    );
    restore(&tmp.path().join("saved"), &dir);
    std::fs::copy(tmp.path().join("saved-anchor"), &anchor).unwrap();
    found_and_acknowledged(
        &cfg,
        &format!("rolled back: TPM counter {}, checkpoint {first}", first + 1),
    );
}

#[test]
fn a_directory_deleted_with_its_anchor_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, anchor) = (tmp.path().join("audit"), tmp.path().join("audit-anchor"));
    let counter = Arc::new(Fake::default());
    let cfg = cfg(&dir, &anchor, &counter);
    run(&cfg, 3);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_file(&anchor).unwrap();
    found_and_acknowledged(&cfg, "deleted: TPM counter");
}

#[test]
fn clean_restarts_and_every_crash_point_are_not_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, anchor) = (tmp.path().join("audit"), tmp.path().join("audit-anchor"));
    let counter = Arc::new(Fake::default());
    let cfg = cfg(&dir, &anchor, &counter);
    // A log from before the counter (no counter configured), then the counter's first use.
    run(
        &AuditConfig {
            counter: None,
            ..cfg.clone()
        },
        2,
    );
    run(&cfg, 2);
    run(&cfg, 2);
    // Killed between an advance's checkpoint and its increment: the counter is one behind.
    let v = value(&counter);
    *counter.state.lock().unwrap() = Some(Some(v - 1));
    run(&cfg, 2);
    // Killed between the define and the first increment (a fresh counter).
    let fresh = Arc::new(Fake::default());
    *fresh.state.lock().unwrap() = Some(None);
    let other = tempfile::tempdir().unwrap();
    let cfg2 = cfg_fresh(other.path(), &fresh);
    run(&cfg2, 2);
    run(&cfg2, 2);
    // An increment failing leaves the log refusing until it works, never a false alarm.
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none(), "{:?}", log.gap());
    log.append_blocking(&record(1)).unwrap();
    *counter.broken.lock().unwrap() = true;
    drop(log);
    *counter.broken.lock().unwrap() = false;
    run(&cfg, 1);
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    let (consistent, report) = log.counter_report().unwrap();
    assert!(consistent && report.ends_with("consistent"), "{report}");
}

fn cfg_fresh(root: &Path, counter: &Arc<Fake>) -> AuditConfig {
    cfg(&root.join("audit"), &root.join("audit-anchor"), counter)
}
