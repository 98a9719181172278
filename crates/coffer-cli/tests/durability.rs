//! What reaches the disk: every acknowledged write survives `kill -9`, the store always opens
//! cleanly afterwards, and no file in the data directory holds a secret's name or value.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_store::SqliteBackend;
use common::{Daemon, assert_absent};

/// Per key: the last value acknowledged, and the one in flight when the daemon died.
type Ledger = HashMap<String, (Option<String>, Option<String>)>;

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut daemon = Daemon::start(&[]);
    let mut generation = 0;
    for round in 0..3 {
        let ledger: Arc<Mutex<Ledger>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let client = daemon.client();
                let ledger = ledger.clone();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("w{t}/k{}", i % 40);
                        let value = format!("r{round}-t{t}-{i}");
                        ledger.lock().unwrap().entry(key.clone()).or_default().1 =
                            Some(value.clone());
                        let secret = SecretBytes::copy_from(value.as_bytes());
                        match client.set(None, &key, &secret, None) {
                            Ok(_) => {
                                let mut l = ledger.lock().unwrap();
                                let e = l.get_mut(&key).unwrap();
                                *e = (Some(value), None);
                            }
                            // The daemon died under us: whatever was in flight is unknown.
                            Err(_) => return,
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        daemon.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        generation += 1;

        // The store opens cleanly with no person present, and holds every acknowledged value
        // (or the write that was in flight, which may have committed before the kill).
        let integrity = SqliteBackend::open(&daemon.data.join("coffer.db")).unwrap();
        integrity.integrity_check().unwrap();
        drop(integrity);
        daemon.spawn();
        let client = daemon.client();
        let ledger = ledger.lock().unwrap();
        assert!(
            ledger.len() > 10,
            "too few writes to mean anything: {}",
            ledger.len()
        );
        let mut checked = 0;
        for (key, (acked, in_flight)) in ledger.iter() {
            let Some(acked) = acked else { continue };
            let got = client.get(None, key, None).unwrap();
            let got = got.expose_str().unwrap();
            assert!(
                got == acked || Some(got) == in_flight.as_deref(),
                "round {round}: {key} reads {got:?}, acknowledged {acked:?}"
            );
            checked += 1;
        }
        assert!(checked > 10);
    }
    assert_eq!(generation, 3);
    daemon.stop();
}

#[test]
fn no_file_in_the_data_directory_holds_a_name_or_value() {
    let mut daemon = Daemon::start(&[]);
    let client = daemon.client();
    let mut needles: Vec<String> = Vec::new();
    for i in 0..40 {
        let name = format!("probe-name-{i:03}");
        let value = format!("PROBE-VALUE-{i:03}-zq");
        client
            .set(None, &name, &SecretBytes::copy_from(value.as_bytes()), None)
            .unwrap();
        client
            .set(
                None,
                &name,
                &SecretBytes::copy_from(format!("{value}-v2").as_bytes()),
                None,
            )
            .unwrap();
        needles.push(name);
        needles.push(value);
    }
    // Binary values too, and one value long enough to span pages.
    let long = "LONGVALUE-".repeat(2000);
    client
        .set(
            None,
            "long/one",
            &SecretBytes::copy_from(long.as_bytes()),
            None,
        )
        .unwrap();
    needles.push("long/one".into());
    needles.push("LONGVALUE".into());
    let refs: Vec<&str> = needles.iter().map(String::as_str).collect();

    let data = daemon.data.clone();
    let scan = |when: &str| {
        let mut files = 0;
        // The audit log is in the data directory too: it holds hashes of names, never names.
        let mut dirs = vec![data.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path).unwrap();
                assert_absent(&format!("{when}: {}", path.display()), &bytes, &refs);
                files += 1;
            }
        }
        assert!(
            files >= 3,
            "expected the database, its WAL and the key file"
        );
    };
    scan("while running");
    daemon.stop();
    scan("after a clean stop");
    // Neither names nor values reach the log, even at trace level.
    assert_absent("the daemon log", daemon.log().as_bytes(), &refs);
}
