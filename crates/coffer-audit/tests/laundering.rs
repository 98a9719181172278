//! Audit laundering (issue 12, item 2) at the library's level: a log cut short, emptied or
//! removed while no daemon ran is found at the next unseal and refused until acknowledged;
//! an edited record re-chained with a bare hash fails its MAC; retention keeps the chain
//! verifiable while files removed by hand are detected; the free-space reserve refuses
//! records before the disk is full. (The same attacks against the real daemon are in
//! crates/coffer-cli/tests/audit_laundering.rs.)
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use coffer_audit::{AuditConfig, AuditError, AuditLog, verify, verify_anchored};
use coffer_types::ErrorCode;
use common::{audit_files, config, keys, lines, record};

fn anchored(dir: &Path, anchor: &Path) -> AuditConfig {
    AuditConfig {
        anchor: Some(anchor.to_path_buf()),
        ..config(dir)
    }
}

/// Opens with keys, writes `n` records, shuts down.
fn log_of(cfg: &AuditConfig, n: u64) {
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none(), "{:?}", log.gap());
    for i in 0..n {
        log.append_blocking(&record(i)).unwrap();
    }
    log.shutdown();
}

/// Reopens after tampering: the gap is found, records are refused, the acknowledgement
/// writes the gap record and the log serves again; verify reports the acknowledged gap.
fn found_refused_acknowledged(cfg: &AuditConfig, expect: &str) -> String {
    let log = AuditLog::open(cfg.clone()).unwrap();
    assert!(log.gap().is_none(), "no gap can be known before the keys");
    log.set_keys(Some(keys()));
    let missing = log.gap().expect("the gap is found at unseal");
    assert!(missing.contains(expect), "{missing}");
    let err = log.append_blocking(&record(99)).unwrap_err();
    assert!(matches!(err, AuditError::Tampered { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::AuditTampered);
    // The report while unacknowledged is a problem, not "intact".
    let before = verify_anchored(&cfg.dir, cfg.anchor.as_deref(), Some(&keys())).unwrap();
    assert!(!before.ok(), "{before:?}");

    let seq = log.acknowledge("uid:0").unwrap().expect("a gap record");
    assert!(log.gap().is_none());
    assert_eq!(log.acknowledge("uid:0").unwrap(), None);
    let next = log.append_blocking(&record(100)).unwrap();
    assert_eq!(next, seq + 1);
    drop(log);
    let report = verify_anchored(&cfg.dir, cfg.anchor.as_deref(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.gaps.len(), 1, "{report:?}");
    assert!(
        report.gaps[0].starts_with(&format!("gap acknowledged at seq {seq} by uid:0: ")),
        "{report:?}"
    );
    assert_eq!(report.checkpoint, Some(seq + 1));

    // Reopened, the acknowledged log is not a gap again.
    let log = AuditLog::open(cfg.clone()).unwrap();
    log.set_keys(Some(keys()));
    assert!(log.gap().is_none(), "{:?}", log.gap());
    drop(log);
    report.gaps[0].clone()
}

#[test]
fn truncating_the_newest_file_is_found_at_unseal_and_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = anchored(&tmp.path().join("audit"), &tmp.path().join("anchor"));
    log_of(&cfg, 20);
    let path = &audit_files(&cfg.dir)[0];
    let kept = lines(path)[..12].join("\n") + "\n";
    std::fs::write(path, kept).unwrap();
    let gap = found_refused_acknowledged(&cfg, "records 13..20 are missing");
    assert!(gap.contains("the log was cut short"), "{gap}");
}

#[test]
fn deleting_every_file_or_the_directory_is_found_at_unseal() {
    for whole_dir in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = anchored(&tmp.path().join("audit"), &tmp.path().join("anchor"));
        log_of(&cfg, 10);
        if whole_dir {
            std::fs::remove_dir_all(&cfg.dir).unwrap();
        } else {
            for f in audit_files(&cfg.dir) {
                std::fs::remove_file(f).unwrap();
            }
        }
        let why = if whole_dir {
            "the audit directory was missing"
        } else {
            "every audit file was missing"
        };
        let gap = found_refused_acknowledged(&cfg, why);
        assert!(gap.contains("records 1..10 are missing"), "{gap}");
    }
}

/// A format-3 line's tag (the last field: 22 characters of unpadded base64url).
fn tag_of(line: &str) -> Vec<u8> {
    let text = &line[line.len() - 24..line.len() - 2];
    data_encoding::BASE64URL_NOPAD
        .decode(text.as_bytes())
        .unwrap()
}

/// `line` with its tag replaced by the unkeyed one after a record whose tag is `prev`.
fn retag_unkeyed(prev: &[u8], line: &str) -> (String, Vec<u8>) {
    let covered = &line[..line.rfind(",\"").unwrap()];
    let mut h = blake3::Hasher::new();
    h.update(b"coffer audit record v3 unkeyed\n");
    h.update(&[u8::try_from(prev.len()).unwrap()]);
    h.update(prev);
    h.update(covered.as_bytes());
    let tag = h.finalize().as_bytes()[..16].to_vec();
    let text = data_encoding::BASE64URL_NOPAD.encode(&tag);
    (format!("{covered},\"h\":\"{text}\"}}"), tag)
}

#[test]
fn an_edited_record_rechained_with_a_bare_hash_fails_its_mac() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    log_of(&cfg, 10);
    let path = &audit_files(tmp.path())[0];
    let text = lines(path);
    // What an attacker without the key can do: edit record 5 and keep its MAC, or re-tag it
    // and every later record with the unkeyed tag (BLAKE3, what a record written while
    // sealed carries), which needs no key.
    for strip in [false, true] {
        let mut edited = text.clone();
        edited[4] = edited[4].replace("\"o\":\"ok\"", "\"o\":\"denied\"");
        edited[4] = edited[4].replace("\"o\":\"denied\",\"c\"", "\"o\":\"ok\",\"c\"");
        assert_ne!(edited[4], text[4]);
        if strip {
            let mut prev = tag_of(&edited[3]);
            for line in &mut edited[4..] {
                let (retagged, tag) = retag_unkeyed(&prev, line);
                *line = retagged;
                prev = tag;
            }
        }
        std::fs::write(path, edited.join("\n") + "\n").unwrap();
        let report = verify(tmp.path(), Some(&keys())).unwrap();
        let problem = report.problem.expect("the re-chained edit is detected");
        if strip {
            // MACs stripped from the edit to the end: the MAC'd checkpoint tells.
            assert_eq!(problem.seq, Some(10), "{problem}");
            assert!(
                problem.reason.contains("differs from the checkpoint"),
                "{problem}"
            );
        } else {
            assert_eq!(problem.seq, Some(5), "{problem}");
            assert!(problem.reason.contains("MAC does not verify"), "{problem}");
        }
        // And at the next unseal, when the re-tagging reached the checkpointed record, it no
        // longer matches. (An edit that leaves the later records alone is not looked for at
        // unseal, which checks from the checkpoint on; verify finds it, as above.)
        let log = AuditLog::open(cfg.clone()).unwrap();
        log.set_keys(Some(keys()));
        assert_eq!(log.gap().is_some(), strip);
        drop(log);
        std::fs::write(path, text.join("\n") + "\n").unwrap();
    }
}

#[test]
fn records_written_while_sealed_carry_no_mac_and_are_covered_by_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.append_blocking(&record(1)).unwrap();
    log.append_blocking(&record(2)).unwrap();
    log.set_keys(Some(keys()));
    log.append_blocking(&record(3)).unwrap();
    log.shutdown();
    let text = lines(&audit_files(tmp.path())[0]);
    assert!(text[0].contains("\"h\":\"") && !text[0].contains("\"m\""));
    assert!(text[2].contains("\"m\":\""));
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.unauthenticated, 2);
}

#[test]
fn retention_keeps_the_chain_verifiable_and_hand_deletion_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        max_file_bytes: 4096,
        keep_files: 3,
        ..config(tmp.path())
    };
    log_of(&cfg, 200);
    let files = audit_files(tmp.path());
    assert!(files.len() <= 3, "{files:?}");
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    let first = report.retained_from.expect("retention removed old files");
    assert!(first > 1);
    assert!(report_events(tmp.path()) > 0);
    assert!(report.last_seq > Some(200), "{report:?}");

    // Deleting the oldest retained file by hand is not retention.
    std::fs::remove_file(&files[0]).unwrap();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    let problem = report.problem.expect("hand deletion detected");
    assert!(problem.reason.contains("removed by hand"), "{problem}");
}

/// How many retention records the log holds (they take seqs too).
fn report_events(dir: &Path) -> u64 {
    audit_files(dir)
        .iter()
        .flat_map(|f| lines(f))
        .filter(|l| l.contains("\"event\":\"retention\""))
        .count() as u64
}

#[test]
fn the_free_space_reserve_refuses_records_before_the_disk_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        reserve_bytes: u64::MAX / 2,
        ..config(tmp.path())
    })
    .unwrap();
    let err = log.ready().unwrap_err();
    assert!(matches!(err, AuditError::Full { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::AuditUnavailable);
    assert!(log.append_blocking(&record(1)).is_err());
    assert!(log.free_bytes().is_some_and(|b| b > 0));
    log.shutdown();
}
