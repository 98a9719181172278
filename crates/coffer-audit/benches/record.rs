//! One audit record, end to end through the public API: [`AuditLog::append`] encodes the
//! record (names hashed under the audit key), numbers and chains it, and resolves once its
//! line is written (`write(2)` returned), measured per record:
//!
//! - `single/*`: one task appending and awaiting each record in turn (a `write(2)` per
//!   record), with the audit keys (as shipped: names as HMACs, a MAC per record), with names
//!   in the clear (`plain_names`), and without keys (as while sealed: names withheld, no MAC).
//!   The differences isolate the name hashing and the MAC from the encoding and the write.
//! - `concurrent_32`: 32 tasks on a two-worker runtime appending at once, so appends share
//!   writes (group commit): the cost per record when the log is busy.
//!
//! Files rotate at 64 MiB and at most four are kept, so a run stays within 256 MiB of disk.
//! The daemon-like load with and without the log is `benches/append.rs`.
//!
//! `cargo bench -p coffer-audit --bench record -- --warm-up-time 1 --measurement-time 2`
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use coffer_audit::{AuditConfig, AuditLog};
use coffer_crypto::{AuditKeys, SecretBytes};

use criterion::{Criterion, criterion_group, criterion_main};

fn open(dir: &std::path::Path, plain_names: bool, keyed: bool) -> Arc<AuditLog> {
    let log = AuditLog::open(AuditConfig {
        dir: dir.to_path_buf(),
        sync_interval: Duration::from_secs(1),
        plain_names,
        max_file_bytes: 64 << 20,
        keep_files: 4,
        ..AuditConfig::default()
    })
    .unwrap();
    if keyed {
        let keys = AuditKeys::from_bytes(
            SecretBytes::copy_from(&[1; 32]),
            SecretBytes::copy_from(&[2; 32]),
        )
        .unwrap();
        log.set_keys(Some(keys));
    }
    Arc::new(log)
}

fn single(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("audit_append/single");
    for (label, plain, keyed) in [
        ("hashed_names", false, true),
        ("plain_names", true, true),
        ("sealed", false, false),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let log = open(tmp.path(), plain, keyed);
        let records: Vec<_> = (0..1024).map(common::record).collect();
        let mut i = 0usize;
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % records.len();
                log.append(&records[i])
            })
        });
        log.shutdown();
    }
    group.finish();
}

fn concurrent(c: &mut Criterion) {
    const TASKS: u64 = 32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = open(tmp.path(), false, true);
    c.bench_function("audit_append/concurrent_32", |b| {
        b.iter_custom(|iters| {
            let per_task = iters.div_ceil(TASKS);
            let start = Instant::now();
            rt.block_on(async {
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let log = log.clone();
                        tokio::spawn(async move {
                            for i in 0..per_task {
                                let r = common::record(t * per_task + i);
                                log.append(&r).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            // Scaled to the iterations asked for (the tasks may have done a few more).
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_task * TASKS) as f64)
        })
    });
    log.shutdown();
}

criterion_group!(benches, single, concurrent);
criterion_main!(benches);
