//! `verify` against tampering: an untouched log passes; a flipped byte, a deleted line and a
//! truncated file are each detected when the log was shut down cleanly and keys are given.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use coffer_audit::verify;
use common::{audit_files, clean_log, keys, lines, other_keys};
use proptest::prelude::*;

fn reason(dir: &Path) -> String {
    let report = verify(dir, Some(&keys())).unwrap();
    assert!(!report.ok(), "tampering not detected: {report:?}");
    report.problem.unwrap().reason
}

fn rewrite(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn an_untouched_log_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 20, 64 << 20);
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 20);
    assert_eq!((report.first_seq, report.last_seq), (Some(1), Some(20)));
    assert_eq!(
        (report.checkpoint, report.unanchored, report.files),
        (Some(20), 0, 1)
    );

    // Without keys the chain is checked and the checkpoint is not.
    let report = verify(tmp.path(), None).unwrap();
    assert!(report.ok());
    assert_eq!((report.checkpoint, report.unanchored), (None, 20));
}

#[test]
fn a_flipped_byte_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 10, 64 << 20);
    let path = &audit_files(tmp.path())[0];
    let mut text = lines(path);
    // In the middle: the next record's prev no longer matches.
    text[4] = text[4].replace("req-5", "req-6");
    rewrite(path, &text);
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!((problem.seq, problem.line), (Some(5), 5));
    assert_eq!(
        problem.reason,
        "record 5's MAC does not verify (edited, reordered, records removed before it and re-chained, or written under another key)"
    );

    // In the last record: only the checkpoint can tell.
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 10, 64 << 20);
    let path = &audit_files(tmp.path())[0];
    let mut text = lines(path);
    text[9] = text[9].replace("req-10", "req-11");
    rewrite(path, &text);
    assert_eq!(
        reason(tmp.path()),
        "record 10's MAC does not verify (edited, reordered, records removed before it and re-chained, or written under another key)"
    );
}

#[test]
fn a_deleted_line_is_detected() {
    for (deleted, expected) in [
        (
            0,
            "the file is named for record 1 but starts with record 2 (renamed?)",
        ),
        (4, "record 5 is missing (seq jumps from 4 to 6)"),
        (
            9,
            "the log ends at record 9 but the checkpoint covers record 10: records were removed",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        clean_log(tmp.path(), 10, 64 << 20);
        let path = &audit_files(tmp.path())[0];
        let mut text = lines(path);
        text.remove(deleted);
        rewrite(path, &text);
        assert_eq!(reason(tmp.path()), expected);
    }
}

#[test]
fn a_truncated_file_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 10, 64 << 20);
    let path = &audit_files(tmp.path())[0];
    let bytes = std::fs::read(path).unwrap();
    let boundaries: Vec<usize> = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();

    // At a line boundary (after record 7), and to nothing at all.
    std::fs::write(path, &bytes[..boundaries[6]]).unwrap();
    assert_eq!(
        reason(tmp.path()),
        "the log ends at record 7 but the checkpoint covers record 10: records were removed"
    );
    std::fs::write(path, b"").unwrap();
    assert!(reason(tmp.path()).contains("records were removed"));

    // Mid-line: the partial last line could be a batch still being written, so it is the
    // checkpoint that tells.
    std::fs::write(path, &bytes[..boundaries[6] + 30]).unwrap();
    assert_eq!(
        reason(tmp.path()),
        "the log ends at record 7 but the checkpoint covers record 10: records were removed"
    );

    // A line cut short anywhere else is not a record.
    let mut cut = bytes[..boundaries[3] + 30].to_vec();
    cut.extend_from_slice(&bytes[boundaries[4]..]);
    std::fs::write(path, cut).unwrap();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!((problem.seq, problem.line), (None, 5));
    assert_eq!(problem.reason, "line 5 is not a complete JSON record");
}

#[test]
fn a_missing_or_foreign_checkpoint_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 3, 64 << 20);
    // Under another key the first record's MAC already fails.
    let report = verify(tmp.path(), Some(&other_keys())).unwrap();
    assert_eq!(
        report.problem.unwrap().reason,
        "record 1's MAC does not verify (edited, reordered, records removed before it and re-chained, or written under another key)"
    );
    std::fs::remove_file(tmp.path().join(coffer_audit::CHECKPOINT_FILE)).unwrap();
    assert_eq!(
        reason(tmp.path()),
        "no valid checkpoint: cannot rule out truncation (the checkpoint file is missing)"
    );
}

#[test]
fn one_damaged_checkpoint_slot_leaves_the_log_anchored() {
    // Shutdown writes the final checkpoint to both slots.
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 5, 64 << 20);
    let path = tmp.path().join(coffer_audit::CHECKPOINT_FILE);
    let clean = std::fs::read(&path).unwrap();
    assert_eq!(clean.len(), 512);
    for i in [0, 40, 255, 256, 300, 511] {
        let mut bytes = clean.clone();
        bytes[i] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let report = verify(tmp.path(), Some(&keys())).unwrap();
        assert!(report.ok(), "byte {i}: {report:?}");
        assert_eq!((report.checkpoint, report.unanchored), (Some(5), 0));
    }
}

/// Each file of a log: its name and bytes.
type Files = Vec<(String, Vec<u8>)>;

/// A clean log over several files, built once; each case flips one byte of a copy.
fn template() -> &'static Files {
    static TEMPLATE: std::sync::OnceLock<Files> = std::sync::OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        clean_log(tmp.path(), 12, 700);
        let mut files: Files = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "lock")
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        assert!(files.len() >= 4, "expected rotation: {files:?}");
        files
    })
}

/// The number of record bytes in the template, over all its audit files.
fn record_bytes() -> usize {
    template()
        .iter()
        .filter(|(name, _)| name.ends_with(".jsonl"))
        .map(|(_, b)| b.len())
        .sum()
}

/// Verifies a copy of the template with the record byte at `at` (counted over all audit
/// files in order) XORed with `mask`.
fn verify_flipped(mut at: usize, mask: u8) -> coffer_audit::VerifyReport {
    let tmp = tempfile::tempdir().unwrap();
    for (name, bytes) in template() {
        let mut bytes = bytes.clone();
        if name.ends_with(".jsonl") {
            if at < bytes.len() {
                bytes[at] ^= mask;
                at = usize::MAX;
            } else if at != usize::MAX {
                at -= bytes.len();
            }
        }
        std::fs::write(tmp.path().join(name), bytes).unwrap();
    }
    verify(tmp.path(), Some(&keys())).unwrap()
}

#[test]
fn a_flip_at_every_position_is_detected() {
    for at in 0..record_bytes() {
        let report = verify_flipped(at, 0x01);
        assert!(!report.ok(), "undetected flip at {at}: {report:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_single_byte_flip_in_the_records_is_detected(
        pick in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let report = verify_flipped(pick.index(record_bytes()), mask);
        prop_assert!(!report.ok(), "undetected flip: {:?}", report);
    }
}
