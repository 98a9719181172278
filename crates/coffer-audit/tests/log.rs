//! The writer as the daemon uses it: chain continuity across reopen and rotation, name
//! handling with and without keys, checkpoints, and failing closed when a write fails.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::{AuditConfig, AuditError, AuditLog, verify};
use common::{audit_files, clean_log, config, eventually, keys, lines, record};

#[test]
fn reopening_continues_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 3, 64 << 20);
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    assert_eq!(log.append_blocking(&record(4)).unwrap(), 4);
    assert_eq!(log.append_blocking(&record(5)).unwrap(), 5);
    drop(log); // Drop shuts down like shutdown() does.
    assert_eq!(audit_files(tmp.path()).len(), 1);
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.checkpoint), (5, Some(5)));
}

#[test]
fn a_partial_line_from_a_crash_is_cut_off_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 3, 64 << 20);
    let path = &audit_files(tmp.path())[0];
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":4,\"time\":\"20").unwrap();
    // Until reopened, the partial line reads as a batch still being written.
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok() && report.records == 3, "{report:?}");
    clean_log(tmp.path(), 0, 64 << 20);
    assert!(std::fs::read(path).unwrap().ends_with(b"}\n"));
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.set_keys(Some(keys()));
    assert_eq!(log.append_blocking(&record(4)).unwrap(), 4);
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.records, 4);
}

#[test]
fn rotation_spreads_one_chain_over_several_files() {
    let tmp = tempfile::tempdir().unwrap();
    clean_log(tmp.path(), 30, 2000);
    let files = audit_files(tmp.path());
    assert!(files.len() >= 3, "{files:?}");
    let name = files[1].file_name().unwrap().to_str().unwrap().to_owned();
    let first: u64 = name["audit-".len()..name.len() - ".jsonl".len()]
        .parse()
        .unwrap();
    assert!(lines(&files[1])[0].starts_with(&format!("{{\"v\":3,\"s\":{first},")));
    // A file's first line names the link before it (the previous file's last tag).
    let last_of_first = lines(&files[0]).pop().unwrap();
    let tag = &last_of_first[last_of_first.len() - 24..last_of_first.len() - 2];
    let tag = data_encoding::BASE64URL_NOPAD
        .decode(tag.as_bytes())
        .unwrap();
    let tag = data_encoding::HEXLOWER.encode(&tag);
    assert!(lines(&files[1])[0].contains(&format!(r#""prev":"{tag}","m":""#)));
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() < 2000 + 1000);
    }
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        (report.records, report.files, report.checkpoint),
        (30, files.len(), Some(30))
    );

    // Deleting the oldest file is reported as such.
    std::fs::remove_file(&files[0]).unwrap();
    let problem = verify(tmp.path(), Some(&keys())).unwrap().problem.unwrap();
    assert_eq!(
        problem.reason,
        format!(
            "records before {} are missing and no retention record removed them (older \
             audit files deleted by hand?)",
            first
        )
    );
}

#[test]
fn names_are_withheld_without_keys_hashed_with_them_or_plain_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(config(tmp.path())).unwrap();
    log.append_blocking(&record(1)).unwrap();
    log.set_keys(Some(keys()));
    log.append_blocking(&record(2)).unwrap();
    log.set_keys(None);
    log.append_blocking(&record(3)).unwrap();
    log.shutdown();
    let text = lines(&audit_files(tmp.path())[0]);
    assert!(text[0].contains(r#""op":"get","w":true,"o":"ok","prev":"#));
    let (ns, name) = (
        keys().name_hash("default"),
        keys().name_hash("app/secret-2"),
    );
    let (ns, name) = (&ns[12..12 + 32], &name[12..12 + 32]);
    assert!(text[1].contains(&format!(r#""ns":"{ns}","n":"{name}","o""#)));
    assert!(text[2].contains(r#""w":true"#));
    assert!(text.iter().all(|l| !l.contains("app/secret")));
    // Sealing anchored everything written under the keys.
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.checkpoint, report.unanchored), (Some(2), 1));

    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        plain_names: true,
        ..config(tmp.path())
    })
    .unwrap();
    log.append_blocking(&record(1)).unwrap();
    log.shutdown();
    let text = lines(&audit_files(tmp.path())[0]);
    assert!(text[0].contains(r#""namespace":"default","name":"app/secret-1","o""#));
}

#[test]
fn setting_keys_and_the_sync_interval_write_checkpoints_while_running() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        sync_interval: Duration::from_millis(20),
        ..config(tmp.path())
    })
    .unwrap();
    log.append_blocking(&record(1)).unwrap();
    log.set_keys(Some(keys()));
    let anchored = |seq| {
        let r = verify(tmp.path(), Some(&keys())).unwrap();
        r.ok() && r.checkpoint == Some(seq)
    };
    eventually(|| anchored(1));
    for i in 2..=5 {
        log.append_blocking(&record(i)).unwrap();
    }
    eventually(|| anchored(5));
    log.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_get_distinct_consecutive_seqs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(AuditLog::open(config(tmp.path())).unwrap());
    log.set_keys(Some(keys()));
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..100 {
                    seqs.push(log.append(&record(t * 100 + i)).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1600).collect::<Vec<u64>>());
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.checkpoint, Some(1600));
}

/// A batch that fails takes the lines queued behind it down too (they chain onto it); every
/// append answered `Ok` is in the chain under the seq it was given, and nothing else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_across_a_failing_batch_leave_an_exact_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(
        AuditLog::open(AuditConfig {
            max_file_bytes: 1, // every batch starts a new file, named by its first seq
            ..config(tmp.path())
        })
        .unwrap(),
    );
    log.set_keys(Some(keys()));
    for i in 1..=40 {
        assert_eq!(log.append(&record(i)).await.unwrap(), i);
    }
    let blocker = tmp.path().join("audit-00000000000000000041.jsonl");
    std::fs::create_dir(&blocker).unwrap();
    let run = |base: u64| {
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for i in 0..20 {
                        answers.push(log.append(&record(base + t * 100 + i)).await);
                    }
                    answers
                })
            })
            .collect::<Vec<_>>();
        async move {
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        }
    };
    let blocked = run(10_000).await;
    assert!(
        blocked
            .iter()
            .all(|a| matches!(a, Err(AuditError::Unavailable { .. }))),
        "every batch starts at seq 41, whose file name is taken"
    );
    std::fs::remove_dir(&blocker).unwrap();
    let mut seqs: Vec<u64> = run(20_000).await.into_iter().map(Result::unwrap).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (41..=360).collect::<Vec<u64>>());
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.checkpoint), (360, Some(360)));
}

/// The descriptor kept open on the current file would write into a removed file's inode,
/// where nobody sees the records: the syncer notices, and the next batch goes to the path.
#[test]
fn a_removed_file_is_noticed_and_records_go_to_the_path_again() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        check_interval: Duration::from_millis(10),
        ..config(tmp.path())
    })
    .unwrap();
    log.set_keys(Some(keys()));
    assert_eq!(log.append_blocking(&record(1)).unwrap(), 1);
    let path = audit_files(tmp.path()).remove(0);
    std::fs::remove_file(&path).unwrap();
    eventually(|| log.ready().is_ok() && path.exists());
    assert_eq!(log.append_blocking(&record(2)).unwrap(), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("{\"v\":3,\"s\":2,"), "{text}");
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(
        !report.ok(),
        "record 1 is gone, and verify says so: {report:?}"
    );
}

/// Fails for root too: the next file's name is taken by a directory, so open(2) gives EISDIR.
#[test]
fn a_failed_write_is_refused_and_recovers_once_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 1, // every batch starts a new file
        ..config(tmp.path())
    })
    .unwrap();
    log.set_keys(Some(keys()));
    assert_eq!(log.append_blocking(&record(1)).unwrap(), 1);
    let blocker = tmp.path().join("audit-00000000000000000002.jsonl");
    std::fs::create_dir(&blocker).unwrap();

    let err = log.append_blocking(&record(2)).unwrap_err();
    let expected = format!(
        "cannot write the audit log {}: Is a directory (os error 21)",
        blocker.display()
    );
    assert!(matches!(err, AuditError::Unavailable { .. }));
    assert_eq!(err.to_string(), expected);
    assert_eq!(log.ready().unwrap_err().to_string(), expected);
    assert_eq!(
        log.append_blocking(&record(2)).unwrap_err().to_string(),
        expected
    );

    std::fs::remove_dir(&blocker).unwrap();
    log.ready().unwrap();
    assert_eq!(log.append_blocking(&record(2)).unwrap(), 2);
    assert_eq!(log.append_blocking(&record(3)).unwrap(), 3);
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        (report.records, report.files, report.checkpoint),
        (3, 3, Some(3))
    );
}
