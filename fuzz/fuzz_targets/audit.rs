//! The audit log's reader: `coffer audit verify` over files whose content the fuzzer writes.
//! Input: up to three parts separated by a line `#--`: the oldest audit file, a newer one
//! (numbered after the lines of the first) and the checkpoint file. Verified without keys and
//! with fixed keys; asserts no panic and that `Err` comes only from unreadable files.
#![no_main]

use std::sync::OnceLock;

use coffer_audit::{CHECKPOINT_FILE, verify};
use coffer_crypto::{AuditKeys, SecretBytes};
use libfuzzer_sys::fuzz_target;

static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();

fn file_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

fuzz_target!(|data: &[u8]| {
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"));
    let path = dir.path();
    for entry in std::fs::read_dir(path).expect("the directory lists") {
        let entry = entry.expect("an entry");
        std::fs::remove_file(entry.path()).expect("the file is removed");
    }
    let mut parts = Vec::new();
    let mut rest = data;
    while parts.len() < 2 {
        match rest.windows(4).position(|w| w == b"\n#--") {
            Some(i) => {
                parts.push(&rest[..=i]);
                rest = rest[i + 4..].strip_prefix(b"\n").unwrap_or(&rest[i + 4..]);
            }
            None => break,
        }
    }
    parts.push(rest);
    let first = parts[0];
    std::fs::write(path.join(file_name(1)), first).expect("an audit file is written");
    if let Some(second) = parts.get(1) {
        let lines = first.iter().filter(|&&b| b == b'\n').count() as u64;
        std::fs::write(path.join(file_name(1 + lines)), second).expect("an audit file is written");
    }
    if let Some(checkpoint) = parts.get(2) {
        std::fs::write(path.join(CHECKPOINT_FILE), checkpoint).expect("a checkpoint is written");
    }
    for part in &parts[..parts.len().min(2)] {
        let mut out = Vec::new();
        for line in part.split(|&b| b == b'\n') {
            out.clear();
            coffer_audit::tail::expand(line, &mut out);
            assert!(
                out.last() == Some(&b'\n') && out.iter().filter(|&&b| b == b'\n').count() == 1,
                "an expanded line is one line"
            );
            if line.starts_with(b"{\"v\":3,") && out[..out.len() - 1] != *line {
                let _: serde_json::Value =
                    serde_json::from_slice(&out).expect("an expanded line is JSON");
            }
        }
    }
    let keys = AuditKeys::from_bytes(
        SecretBytes::from_vec(vec![7; 32]),
        SecretBytes::from_vec(vec![9; 32]),
    )
    .expect("keys of the right length");
    for k in [None, Some(&keys)] {
        let report = verify(path, k).expect("readable files verify to a report");
        let _ = (report.ok(), report.to_reply());
        if let Some(problem) = &report.problem {
            let _ = problem.to_string();
        }
    }
});
