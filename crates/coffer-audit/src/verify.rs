//! [`verify`]: walks the chain from record 1 to the end and checks the newest checkpoint,
//! for `coffer audit verify`.
//!
//! The chain catches an edited, inserted, deleted or reordered record anywhere before the
//! last one; every record written with keys carries a MAC (HMAC-SHA256 under the audit key)
//! over its bytes and so, through `prev`, over every record before it: an edited record
//! re-chained with a bare hash by someone without the key fails the next MAC. The checkpoint
//! (MAC'd too) catches an edit of the last records and their removal from the end. Records
//! written after the newest checkpoint cannot be told apart from a log cut short there: they
//! are reported as `unanchored`, not as a problem.
//!
//! Records written while the store was sealed carry no MAC (no key yet); the next MAC'd
//! record covers them through its `prev`. A MAC'd `gap` record (an operator's
//! acknowledgement) explains the seqs missing before it; a MAC'd `retention` record explains
//! a log that no longer starts at record 1. Lines of the first format (no `"v"`, no MACs)
//! are accepted before the first line of the second.

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

/// The fields the chain check needs; the hash and the MAC cover the rest.
#[derive(Deserialize)]
struct Head<'a> {
    /// The format (absent in the first one).
    v: Option<u64>,
    seq: u64,
    #[serde(borrow)]
    prev: Cow<'a, str>,
    /// `gap` or `retention` for the records the log writes about itself.
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    /// A gap record: the last record before the gap.
    after: Option<u64>,
    /// A gap record: what is missing; and who acknowledged it.
    #[serde(borrow, default)]
    missing: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    acknowledged_by: Option<Cow<'a, str>>,
    /// A retention record: the seq the log starts with after it.
    oldest: Option<u64>,
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
    /// A v2 line was seen (a first-format line after it is a problem).
    v2: bool,
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
        v2: false,
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
        let prev = Hash::from_hex(&head.prev)
            .ok_or_else(|| bad(format!("record {seq} has a malformed prev hash")))?;
        let macd = self.mac(body, &head)?;
        let gap = head.event.as_deref() == Some("gap");
        if gap && self.keys.is_some() && !macd {
            return Err(bad(format!("gap record {seq} carries no MAC")));
        }
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
        if head.event.as_deref() == Some("retention") && (macd || self.keys.is_none()) {
            self.retention = head.oldest;
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

    /// Checks the line's format and MAC; answers whether it carries a valid one. A MAC that
    /// does not verify and a first-format line after a v2 one are problems. (A MAC stripped
    /// off changes the line's hash, so the next MAC'd line no longer follows it.)
    fn mac(&mut self, body: &[u8], head: &Head<'_>) -> Result<bool, (Option<u64>, String)> {
        let seq = head.seq;
        match head.v {
            None if self.v2 => {
                return Err((
                    Some(seq),
                    format!("record {seq} is in the first format, after records of the second"),
                ));
            }
            None => {
                self.report.unauthenticated += 1;
                return Ok(false);
            }
            Some(crate::record::FORMAT) => self.v2 = true,
            Some(v) => return Err((Some(seq), format!("record {seq} has unknown format {v}"))),
        }
        let Some((covered, mac)) = chain::split_mac(body) else {
            self.report.unauthenticated += 1;
            return Ok(false);
        };
        let Some(keys) = self.keys else {
            return Ok(false);
        };
        let ok = data_encoding::HEXLOWER
            .decode(mac)
            .is_ok_and(|m| keys.record_mac_ok(covered, &m));
        if !ok {
            return Err((
                Some(seq),
                format!(
                    "record {seq}'s MAC does not verify (edited and re-chained, or written \
                     under another key)"
                ),
            ));
        }
        Ok(true)
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
