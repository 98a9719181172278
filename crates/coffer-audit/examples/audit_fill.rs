//! Makes a large audit log through the real writer, and verifies one, for measuring
//! `verify` (docs/benchmarks.md):
//!
//! ```text
//! cargo run --release -p coffer-audit --example audit_fill -- fill DIR 10000000
//! /usr/bin/time -v target/release/examples/audit_fill verify DIR
//! ```
//!
//! `fill` appends typical socket `get` records (the records the daemon writes for a local
//! client, names hashed under fixed test keys) from 64 tasks, so they are batched as under
//! load, and prints the bytes per record. `verify` checks the chain, every MAC and the
//! checkpoint under the same keys and prints the rate.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // A tool: a failed unwrap is a failed run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_audit::{Actor, AuditConfig, AuditLog, Outcome, Record};
use coffer_crypto::{AuditKeys, SecretBytes};
use coffer_types::Timestamp;

const TASKS: u64 = 64;

fn keys() -> AuditKeys {
    AuditKeys::from_bytes(
        SecretBytes::copy_from(&[1; 32]),
        SecretBytes::copy_from(&[2; 32]),
    )
    .unwrap()
}

fn record(i: u64) -> Record<'static> {
    Record {
        time: Timestamp::now(),
        request_id: format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).into(),
        actor: Actor {
            uid: Some(1000),
            gid: Some(1000),
            pid: Some(4242 + (i % 32) as i32),
            exe: Some(Path::new("/usr/local/bin/app-server").into()),
            addr: None,
            token: None,
            unit: None,
        },
        action: coffer_types::Action::Get,
        namespace: Some("default".into()),
        name: Some(format!("app/secret-{}", i % 1000).into()),
        outcome: Outcome::Ok,
        code: None,
        gate: None,
        repeated: None,
        namespace_invalid: None,
        name_invalid: None,
    }
}

fn files_bytes(dir: &Path) -> (usize, u64) {
    let mut n = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_name().to_string_lossy().ends_with(".jsonl") {
            n += 1;
            bytes += e.metadata().unwrap().len();
        }
    }
    (n, bytes)
}

fn fill(dir: PathBuf, count: u64) {
    let log = Arc::new(
        AuditLog::open(AuditConfig {
            dir: dir.clone(),
            sync_interval: Duration::from_secs(1),
            ..AuditConfig::default()
        })
        .unwrap(),
    );
    log.set_keys(Some(keys()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut i = t;
                    while i < count {
                        log.append(&record(i)).await.unwrap();
                        i += TASKS;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let secs = start.elapsed().as_secs_f64();
    log.shutdown();
    let (files, bytes) = files_bytes(&dir);
    println!(
        "wrote {count} records in {files} files, {bytes} bytes ({:.1} bytes/record), {secs:.1} s \
         ({:.0} records/s)",
        bytes as f64 / count as f64,
        count as f64 / secs
    );
}

fn verify(dir: PathBuf) {
    let (files, bytes) = files_bytes(&dir);
    let start = Instant::now();
    let report = coffer_audit::verify(&dir, Some(&keys())).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "verified {} records in {files} files ({bytes} bytes) in {secs:.2} s: {:.0} records/s, \
         {:.0} MB/s; checkpoint {:?}, problem {:?}",
        report.records,
        report.records as f64 / secs,
        bytes as f64 / secs / 1e6,
        report.checkpoint,
        report.problem.as_ref().map(ToString::to_string)
    );
    if !report.ok() {
        std::process::exit(1);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [verb, dir, count] if verb == "fill" => fill(dir.into(), count.parse().unwrap()),
        [verb, dir] if verb == "verify" => verify(dir.into()),
        _ => {
            eprintln!("usage: audit_fill fill DIR COUNT | audit_fill verify DIR");
            std::process::exit(2);
        }
    }
}
