//! Appends made together share a `write(2)`: the task that finds no write in progress yields
//! once before writing, so the requests ready on the same worker queue their lines behind
//! its own. On one thread, 64 tasks appending at once are written in far fewer calls than
//! records, every record still answered with its own seq and the chain intact.
#![allow(missing_docs, clippy::unwrap_used)] // A failed unwrap is a failed test.

mod common;

use std::sync::Arc;

use coffer_audit::AuditLog;
use common::{config, keys, record};

#[tokio::test(flavor = "current_thread")]
async fn appends_ready_together_share_one_write() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(config(tmp.path())).unwrap());
    log.set_keys(Some(keys()));
    let tasks: Vec<_> = (1..=64)
        .map(|i| {
            let log = Arc::clone(&log);
            tokio::spawn(async move { log.append(&record(i)).await.unwrap() })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=64).collect::<Vec<_>>());
    let (records, writes) = log.written();
    assert_eq!(records, 64);
    // Without the yield, each task on this one thread would find no write in progress and
    // write its line alone: 64 writes.
    assert!(writes <= 4, "{records} records took {writes} writes");
    log.shutdown();
    let report = coffer_audit::verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 64);
}

#[tokio::test(flavor = "current_thread")]
async fn a_leader_dropped_while_yielding_still_writes_its_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    // Polled once (it yields), then dropped: its line is written anyway.
    let mut leading = Box::pin(log.append(&record(1)));
    let waker = futures_noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(leading.as_mut().poll(&mut cx).is_pending());
    drop(leading);
    assert_eq!(log.written(), (1, 1));
    assert_eq!(log.append(&record(2)).await.unwrap(), 2);
    log.shutdown();
    let report = coffer_audit::verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok() && report.records == 2, "{report:?}");
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}
