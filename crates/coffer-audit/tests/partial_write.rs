//! A batch that reaches the file only in part (here: cut short by the file size limit,
//! which binds root too) is removed again, so no record is ever half in the chain.
//!
//! Alone in its own test binary because the size limit is per process.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

mod common;

use coffer_audit::{AuditConfig, AuditError, AuditLog, verify};
use common::{audit_files, config, keys, record};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::signal::{SigSet, Signal};

#[test]
fn a_partly_written_batch_is_cut_off_and_the_chain_continues() {
    // Over the limit, write(2) returns EFBIG; SIGXFSZ, which would end the process, stays
    // pending because it is blocked (threads started from here inherit the mask).
    let mut xfsz = SigSet::empty();
    xfsz.add(Signal::SIGXFSZ);
    xfsz.thread_block().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open(AuditConfig {
        max_file_bytes: 1 << 20,
        ..config(tmp.path())
    })
    .unwrap();
    log.set_keys(Some(keys()));
    assert_eq!(log.append_blocking(&record(1)).unwrap(), 1);
    let path = audit_files(tmp.path()).remove(0);
    let one = std::fs::metadata(&path).unwrap().len();

    let (soft, hard) = getrlimit(Resource::RLIMIT_FSIZE).unwrap();
    setrlimit(Resource::RLIMIT_FSIZE, one + one / 2, hard).unwrap();
    let err = log.append_blocking(&record(2)).unwrap_err();
    assert!(matches!(err, AuditError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("File too large"), "{err}");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        one,
        "partial bytes left behind"
    );
    assert!(
        log.ready().is_ok(),
        "the probe opens the file, which the size limit allows"
    );

    setrlimit(Resource::RLIMIT_FSIZE, soft, hard).unwrap();
    assert_eq!(log.append_blocking(&record(2)).unwrap(), 2);
    assert_eq!(log.append_blocking(&record(3)).unwrap(), 3);
    log.shutdown();
    let report = verify(tmp.path(), Some(&keys())).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.records, report.checkpoint), (3, Some(3)));
}
