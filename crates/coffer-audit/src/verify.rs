//! [`verify`]: walks the chain from record 1 to the end and checks the newest checkpoint,
//! for `coffer audit verify`.
//!
//! The chain catches an edited, inserted, deleted or reordered record anywhere before the
//! last one; every record written with keys carries a MAC (format 3: the tag `m`, HMAC-SHA256
//! under the audit key over the previous record's link and its own bytes; format 2: `mac`
//! over its bytes, `prev` included) and so over every record before it: an edited record
//! re-tagged or re-chained with a bare hash by someone without the key fails the next MAC.
//! The checkpoint (MAC'd too) catches an edit of the last records and their removal from the
//! end. Records written after the newest checkpoint cannot be told apart from a log cut short
//! there: they are reported as `unanchored`, not as a problem.
//!
//! Records written while the store was sealed carry no MAC (no key yet: format 3 tags them
//! with BLAKE3 instead, which is checked); the next MAC'd record covers them. A MAC'd `gap`
//! record (an operator's acknowledgement) explains the seqs missing before it; a MAC'd
//! `retention` record explains a log that no longer starts at record 1. Formats only go up:
//! lines of the first format (no `"v"`, no MACs) are accepted before the first line of the
//! second, and those before the first of the third (docs/audit.md).
//!
//! It streams: one file at a time, one line at a time through a fixed buffer, keeping only
//! the last record's seq and link, so its memory does not grow with the log.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use coffer_crypto::AuditKeys;

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::checkpoint::{self, CHECKPOINT_FILE};
use crate::line::{Auth, AuthError, FORMAT, Head};

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
    /// Gaps an operator acknowledged (`coffer audit acknowledge`), each as "gap acknowledged
    /// at seq N by WHO: what is missing". Not a problem, but never silent.
    pub gaps: Vec<String>,
    /// Records without a MAC: written while the store was sealed (covered by the next
    /// MAC'd record's `prev`) or in the first format (before `"v":2`).
    pub unauthenticated: u64,
    /// The seq the log starts with when retention removed older files (its newest
    /// `retention` record names it).
    pub retained_from: Option<u64>,
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
            gaps: self.gaps.clone(),
            unauthenticated: self.unauthenticated,
            retained_from: self.retained_from,
            counter: None,
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

/// Where the walk is.
struct Walk<'a> {
    report: VerifyReport,
    /// The last good record: seq and hash.
    last: Option<(u64, Hash)>,
    /// The record the checkpoint names, as found: seq, hash, file, line.
    anchor_seq: Option<u64>,
    anchored: Option<(Hash, &'a chain::AuditFile, u64)>,
    keys: Option<&'a AuditKeys>,
    /// The newest format seen (a line of an older one after it is a problem).
    format: u64,
    /// The newest retention record's `oldest`.
    retention: Option<u64>,
    /// The log did not start at record 1 nor with a gap record: it must be retention's.
    started_late: Option<(u64, PathBuf)>,
}

/// Verifies the log in `dir`: the chain always, the checkpoint when `keys` are given.
///
/// Returns `Err` only when the files cannot be read; what is wrong with their content is
/// [`VerifyReport::problem`].
pub fn verify(dir: &Path, keys: Option<&AuditKeys>) -> Result<VerifyReport, AuditError> {
    verify_anchored(dir, None, keys)
}

/// [`verify`], also reading the checkpoint's copy outside the directory (`anchor`, the
/// daemon's `DATA_DIR/audit-anchor`): the newer of the two is checked, so a whole audit
/// directory removed (or rolled back) is reported.
pub fn verify_anchored(
    dir: &Path,
    anchor: Option<&Path>,
    keys: Option<&AuditKeys>,
) -> Result<VerifyReport, AuditError> {
    // The checkpoint first: on a live log it then never covers a record the listing missed.
    let slots = keys.map(|k| checkpoint::read(dir, k)).transpose()?;
    let slots = match (slots, anchor, keys) {
        (Some(own), Some(path), Some(k)) => {
            let other = checkpoint::read_file(path, k)?;
            Some(
                if other.newest().map(|c| c.seq) > own.newest().map(|c| c.seq) {
                    other
                } else {
                    own
                },
            )
        }
        (slots, _, _) => slots,
    };
    if !dir.exists() {
        return Ok(VerifyReport {
            problem: Some(Problem {
                seq: None,
                file: dir.to_path_buf(),
                line: 0,
                reason: "the audit directory is missing".into(),
            }),
            ..VerifyReport::default()
        });
    }
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
        keys,
        format: 1,
        retention: None,
        started_late: None,
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
    report.retained_from = walk.started_late.as_ref().map(|(first, _)| *first);
    if let Some((first, file)) = walk.started_late
        && walk.retention != Some(first)
    {
        report.problem = Some(Problem {
            seq: Some(first),
            file,
            line: 1,
            reason: match walk.retention {
                Some(oldest) => format!(
                    "the log starts at record {first} but its newest retention record says it \
                     starts at record {oldest}: audit files were removed by hand"
                ),
                None => format!(
                    "records before {first} are missing and no retention record removed them \
                     (older audit files deleted by hand?)"
                ),
            },
        });
        return Ok(report);
    }
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
        let format = head.v.unwrap_or(1);
        if !(1..=FORMAT).contains(&format) || head.v == Some(1) {
            return Err(bad(format!("record {seq} has unknown format {format}")));
        }
        if format < self.format {
            return Err(bad(format!(
                "record {seq} is in format {format}, after records of format {}",
                self.format
            )));
        }
        self.format = format;
        if line == 1 && seq != file.first_seq {
            return Err(bad(format!(
                "the file is named for record {} but starts with record {seq} (renamed?)",
                file.first_seq
            )));
        }
        let named = match head.prev.as_deref() {
            Some(text) => Some(
                Hash::from_hex(text)
                    .ok_or_else(|| bad(format!("record {seq} has a malformed prev hash")))?,
            ),
            None if format < FORMAT => {
                return Err(bad(format!("record {seq} has a malformed prev hash")));
            }
            None => None,
        };
        // The link this record is chained to: the one it names, else (format 3, inside a
        // file) the one before it; only record 1 starts from zero.
        let prev = match (named, self.last) {
            (Some(p), _) => p,
            (None, Some((_, last_hash))) => last_hash,
            (None, None) if seq == 1 => Hash::ZERO,
            (None, None) => {
                return Err(bad(format!(
                    "record {seq} is the first checked but does not name the record before it"
                )));
            }
        };
        let gap = head.event.as_deref() == Some("gap");
        match self.last {
            None if seq == 0 => return Err(bad("a record has seq 0; records start at 1".into())),
            None if gap && head.after == Some(0) => {
                if prev != Hash::ZERO {
                    return Err(bad(format!("gap record {seq} does not start the chain")));
                }
                self.gap(&head, seq);
            }
            None if seq > 1 => {
                // Allowed only when the newest retention record names this seq (checked at
                // the end of the walk).
                self.started_late = Some((seq, file.path.clone()));
            }
            None if prev != Hash::ZERO => {
                return Err(bad(
                    "record 1 does not start the chain: its prev hash is not zero".into(),
                ));
            }
            None => {}
            Some((last, last_hash)) => {
                let expected = last + 1;
                if gap && head.after == Some(last) && seq >= expected && prev == last_hash {
                    self.gap(&head, seq);
                } else {
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
        }
        let (auth, hash) =
            crate::line::authenticate(body, head.v, &prev, self.keys).map_err(|e| match e {
                AuthError::NoTag => bad(format!("record {seq} carries no tag")),
                AuthError::BadMac => bad(format!(
                    "record {seq}'s MAC does not verify (edited, reordered, records removed \
                     before it and re-chained, or written under another key)"
                )),
                AuthError::BadHash => bad(format!(
                    "record {seq}'s hash does not match (edited, or it does not follow the \
                     record before it)"
                )),
            })?;
        if auth == Auth::None {
            self.report.unauthenticated += 1;
        }
        let macd = auth == Auth::Keyed;
        if gap && self.keys.is_some() && !macd {
            return Err(bad(format!("gap record {seq} carries no MAC")));
        }
        if head.event.as_deref() == Some("retention") && (macd || self.keys.is_none()) {
            self.retention = head.oldest;
        }
        if self.anchor_seq == Some(seq) {
            self.anchored = Some((hash, file, line));
        }
        self.last = Some((seq, hash));
        self.report.records += 1;
        self.report.first_seq.get_or_insert(seq);
        self.report.last_seq = Some(seq);
        Ok(())
    }

    /// Notes an acknowledged gap.
    fn gap(&mut self, head: &Head<'_>, seq: u64) {
        self.report.gaps.push(format!(
            "gap acknowledged at seq {seq} by {}: {}",
            head.acknowledged_by.as_deref().unwrap_or("?"),
            head.missing.as_deref().unwrap_or("?")
        ));
    }
}
