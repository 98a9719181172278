//! [`verify`]: walks the chain from record 1 to the end and checks the newest checkpoint,
//! for `coffer audit verify`.
//!
//! The chain catches an edited, inserted, deleted or reordered record anywhere before the
//! last one; the checkpoint (MAC'd, so only a holder of the master key can write one) catches
//! an edit of the last records and their removal from the end. Records written after the
//! newest checkpoint cannot be told apart from a log cut short there: they are reported as
//! `unanchored`, not as a problem.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use coffer_crypto::AuditKeys;
use serde::Deserialize;

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::checkpoint::{self, CHECKPOINT_FILE};

/// What [`verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked (up to the first problem).
    pub records: u64,
    /// Audit files in the directory.
    pub files: usize,
    /// The first record's seq.
    pub first_seq: Option<u64>,
    /// The last good record's seq.
    pub last_seq: Option<u64>,
    /// The seq the newest valid checkpoint anchors; `None` when it was not checked (no keys,
    /// or a problem came first).
    pub checkpoint: Option<u64>,
    /// Records not covered by a verified checkpoint (all of them when it was not checked).
    pub unanchored: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// Whether the log verified without a problem.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }

    /// The report as the daemon answers it and the CLI prints it.
    pub fn to_reply(&self) -> coffer_types::reply::AuditReport {
        coffer_types::reply::AuditReport {
            ok: self.ok(),
            records: self.records,
            files: self.files,
            last_seq: self.last_seq,
            checkpoint: self.checkpoint,
            unanchored: self.unanchored,
            problem: self
                .problem
                .as_ref()
                .map(|p| format!("{}, line {}: {}", p.file.display(), p.line, p.reason)),
        }
    }
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The seq of the first bad record, when known.
    pub seq: Option<u64>,
    /// The file it is in (the checkpoint file for a missing or invalid checkpoint).
    pub file: PathBuf,
    /// Its 1-based line in that file; 0 when the problem is not at a line.
    pub line: u64,
    /// What is wrong, for a person.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.reason)
        } else {
            write!(f, "{}: {}", self.file.display(), self.reason)
        }
    }
}

/// The fields the chain check needs; the hash covers the rest.
#[derive(Deserialize)]
struct Head<'a> {
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
}

/// Where the walk is.
struct Walk<'a> {
    report: VerifyReport,
    /// The last good record: seq and hash.
    last: Option<(u64, Hash)>,
    /// The record the checkpoint names, as found: seq, hash, file, line.
    anchor_seq: Option<u64>,
    anchored: Option<(Hash, &'a chain::AuditFile, u64)>,
}

/// Verifies the log in `dir`: the chain always, the checkpoint when `keys` are given.
///
/// Returns `Err` only when the files cannot be read; what is wrong with their content is
/// [`VerifyReport::problem`].
pub fn verify(dir: &Path, keys: Option<&AuditKeys>) -> Result<VerifyReport, AuditError> {
    // The checkpoint first: on a live log it then never covers a record the listing missed.
    let slots = keys.map(|k| checkpoint::read(dir, k)).transpose()?;
    let files = chain::list(dir)?;
    let anchor = slots.as_ref().and_then(|s| s.newest().cloned());
    let mut walk = Walk {
        report: VerifyReport {
            files: files.len(),
            ..VerifyReport::default()
        },
        last: None,
        anchor_seq: anchor.as_ref().map(|c| c.seq),
        anchored: None,
    };
    let mut end = (dir.to_path_buf(), 0);
    for (i, file) in files.iter().enumerate() {
        let lines = walk.file(file, i + 1 == files.len())?;
        if walk.report.problem.is_some() {
            return Ok(walk.report);
        }
        if lines > 0 {
            end = (file.path.clone(), lines);
        }
    }
    let mut report = walk.report;
    let Some(slots) = slots else {
        report.unanchored = report.records;
        return Ok(report);
    };
    let last = report.last_seq.unwrap_or(0);
    let problem = |seq, file, line, reason| {
        Some(Problem {
            seq,
            file,
            line,
            reason,
        })
    };
    report.problem = match (anchor, walk.anchored) {
        (None, _) if report.records == 0 => None,
        (None, _) => problem(
            None,
            dir.join(CHECKPOINT_FILE),
            0,
            format!(
                "no valid checkpoint: cannot rule out truncation (the checkpoint file is {})",
                if slots.exists {
                    "damaged or was written under other keys"
                } else {
                    "missing"
                }
            ),
        ),
        (Some(cp), _) if cp.seq > last => problem(
            Some(last + 1),
            end.0,
            end.1 + 1,
            format!(
                "the log ends at record {last} but the checkpoint covers record {}: records \
                 were removed",
                cp.seq
            ),
        ),
        (Some(cp), Some((hash, file, line))) if hash != cp.hash => problem(
            Some(cp.seq),
            file.path.clone(),
            line,
            format!("record {} differs from the checkpoint (edited)", cp.seq),
        ),
        (Some(cp), Some((_, file, line))) if chain::file_name(file.first_seq) != cp.file => {
            problem(
                Some(cp.seq),
                file.path.clone(),
                line,
                format!(
                    "record {} is in this file but the checkpoint places it in {} (files renamed?)",
                    cp.seq, cp.file
                ),
            )
        }
        (Some(cp), _) => {
            report.checkpoint = Some(cp.seq);
            report.unanchored = last - cp.seq;
            None
        }
    };
    Ok(report)
}

impl<'a> Walk<'a> {
    /// Checks every line of `file`; returns how many lines it has (up to a problem).
    ///
    /// A partial line at the end of the newest file is a batch still being written (or one a
    /// crash cut short, which the next open removes): it is not checked and not a problem.
    /// Cutting records off the end is caught by the checkpoint instead.
    fn file(&mut self, file: &'a chain::AuditFile, newest: bool) -> Result<u64, AuditError> {
        let read_err = |source| AuditError::Read {
            path: file.path.clone(),
            source,
        };
        let mut reader =
            BufReader::with_capacity(256 * 1024, File::open(&file.path).map_err(read_err)?);
        let mut buf = Vec::with_capacity(1024);
        let mut line = 0;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0
                || (newest && buf.last() != Some(&b'\n'))
            {
                return Ok(line);
            }
            line += 1;
            if let Err((seq, reason)) = self.line(&buf, line, file) {
                self.report.problem = Some(Problem {
                    seq,
                    file: file.path.clone(),
                    line,
                    reason,
                });
                return Ok(line);
            }
        }
    }

    /// Checks one line (with its `\n`) against the one before it.
    fn line(
        &mut self,
        bytes: &[u8],
        line: u64,
        file: &'a chain::AuditFile,
    ) -> Result<(), (Option<u64>, String)> {
        let incomplete = || (None, format!("line {line} is not a complete JSON record"));
        let body = bytes.strip_suffix(b"\n").ok_or_else(incomplete)?;
        let head: Head<'_> = serde_json::from_slice(body).map_err(|_| incomplete())?;
        let seq = head.seq;
        let bad = |reason: String| (Some(seq), reason);
        let prev = Hash::from_hex(&head.prev)
            .ok_or_else(|| bad(format!("record {seq} has a malformed prev hash")))?;
        match self.last {
            None if seq == 0 => return Err(bad("a record has seq 0; records start at 1".into())),
            None if seq > 1 => {
                let missing = if seq == 2 {
                    "record 1 is".into()
                } else {
                    format!("records 1..{} are", seq - 1)
                };
                return Err(bad(format!(
                    "{missing} missing (older audit files deleted?)"
                )));
            }
            None if prev != Hash::ZERO => {
                return Err(bad(
                    "record 1 does not start the chain: its prev hash is not zero".into(),
                ));
            }
            None => {}
            Some((last, last_hash)) => {
                let expected = last + 1;
                if seq == expected + 1 {
                    return Err(bad(format!(
                        "record {expected} is missing (seq jumps from {last} to {seq})"
                    )));
                }
                if seq > expected {
                    return Err(bad(format!(
                        "records {expected}..{} are missing (seq jumps from {last} to {seq})",
                        seq - 1
                    )));
                }
                if seq < expected {
                    return Err(bad(format!(
                        "record {seq} comes after record {last} (repeated or reordered)"
                    )));
                }
                if prev != last_hash {
                    return Err(bad(format!(
                        "record {seq} does not follow record {last}: its prev hash differs \
                         (edited or reordered)"
                    )));
                }
            }
        }
        if line == 1 && seq != file.first_seq {
            return Err(bad(format!(
                "the file is named for record {} but starts with record {seq} (renamed?)",
                file.first_seq
            )));
        }
        let hash = Hash::of_line(body);
        if self.anchor_seq == Some(seq) {
            self.anchored = Some((hash, file, line));
        }
        self.last = Some((seq, hash));
        self.report.records += 1;
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        Ok(())
    }
}
