//! Append throughput as the daemon sees it: 32 tasks on a 2-worker tokio runtime, each doing
//! a little CPU work per request and then awaiting its audit record, against the same loop
//! without the audit. `cargo bench -p coffer-audit --bench append`.
//!
//! The end-to-end number comes from the load generator (`coffer bench`, with and without
//! `--danger-no-audit`); this isolates the audit log from the socket and the store.
#![allow(clippy::unwrap_used, missing_docs)] // A benchmark: a failed unwrap is a failed run.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use coffer_audit::{AuditConfig, AuditLog};
use coffer_crypto::{AuditKeys, SecretBytes};

const CLIENTS: u64 = 32;
const PER_CLIENT: u64 = 20_000;

/// Stands in for the daemon's own work on a request (a few microseconds of hashing).
fn work(i: u64, rounds: usize) -> u8 {
    let mut h = blake3::Hasher::new();
    for _ in 0..rounds {
        h.update(&i.to_le_bytes());
        h.update(h.finalize().as_bytes());
    }
    h.finalize().as_bytes()[0]
}

fn run(log: Option<&Arc<AuditLog>>, rounds: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let log = log.cloned();
                tokio::spawn(async move {
                    let mut acc = 0u8;
                    for i in 0..PER_CLIENT {
                        acc ^= work(i, rounds);
                        let r = common::record(c * PER_CLIENT + i);
                        match &log {
                            Some(log) => drop(log.append(&r).await.unwrap()),
                            None => {
                                drop(r);
                                tokio::task::yield_now().await;
                            }
                        }
                    }
                    acc
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    (CLIENTS * PER_CLIENT) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(AuditConfig {
            dir: tmp.path().to_path_buf(),
            sync_interval: Duration::from_secs(1),
            ..AuditConfig::default()
        })
        .unwrap(),
    );
    let keys = AuditKeys::from_bytes(
        SecretBytes::copy_from(&[1; 32]),
        SecretBytes::copy_from(&[2; 32]),
    )
    .unwrap();
    log.set_keys(Some(keys));
    println!("appends alone:       {:>9.0} req/s", run(Some(&log), 0));
    // About 8 µs of work per request on each of the two workers: ~250k req/s without audit,
    // the daemon's own rate.
    let without = run(None, 60);
    let with = run(Some(&log), 60);
    println!(
        "with daemon-like work: {without:>9.0} req/s without audit, {with:>9.0} with ({:.0}% less)",
        100.0 * (1.0 - with / without)
    );
    log.shutdown();
}
