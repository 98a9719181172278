//! The check at open, once the audit keys are known (after unseal): does the log still hold
//! what its newest checkpoint anchors?
//!
//! The newest valid checkpoint of the directory's `checkpoint` file and of the anchor copy
//! outside the directory (`DATA_DIR/audit-anchor`) names a record by seq, hash and file. The
//! log must still hold that record, unchanged, in that file, and every record after it must
//! follow it (seq by seq, `prev` by `prev`, MACs valid). Otherwise records, files or the
//! whole directory went missing while the daemon was stopped (or were edited): a [`Gap`].
//! The daemon then refuses every request but `audit_acknowledge`, which writes a MAC'd
//! `gap` record naming what is missing (see [`crate::AuditLog::acknowledge`]).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use coffer_crypto::AuditKeys;

use crate::AuditError;
use crate::chain::{self, Hash};
use crate::checkpoint::{self, Checkpoint};
use crate::counter::{self, AuditCounter, Count, Verdict};

/// What the check at open found missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    /// The last record present before the gap (0: none).
    pub(crate) after: u64,
    /// The seq the newest checkpoint anchors (0: none verified).
    pub(crate) checkpoint: u64,
    /// The checkpoint's file.
    pub(crate) checkpoint_file: String,
    /// What is missing or broken, for a person.
    pub(crate) missing: String,
}

/// Where the writer stands when the check runs.
pub(crate) struct Head {
    /// The last record written (0: none).
    pub(crate) last: u64,
    /// Whether the audit directory had to be created at open.
    pub(crate) dir_created: bool,
}

/// The newest valid checkpoint of the directory and the anchor, and whether either file
/// exists at all.
pub(crate) fn newest(
    dir: &Path,
    anchor: Option<&Path>,
    keys: &AuditKeys,
) -> Result<(Option<Checkpoint>, bool), AuditError> {
    let own = checkpoint::read(dir, keys)?;
    let other = match anchor {
        Some(path) => checkpoint::read_file(path, keys)?,
        None => checkpoint::Slots::default(),
    };
    let cp = [own.newest(), other.newest()]
        .into_iter()
        .flatten()
        .max_by_key(|c| c.seq)
        .cloned();
    Ok((cp, own.exists || other.exists))
}

/// The newest checkpoint's count (`None`: no valid checkpoint; `Some(None)`: a checkpoint
/// without one): of the checkpoints with the highest seq in the directory and the anchor,
/// the highest count (the copies of one seq differ when a crash came between their writes).
fn newest_count(
    dir: &Path,
    anchor: Option<&Path>,
    keys: &AuditKeys,
) -> Result<Option<(u64, Option<Count>)>, AuditError> {
    let own = checkpoint::read(dir, keys)?;
    let other = match anchor {
        Some(path) => checkpoint::read_file(path, keys)?,
        None => checkpoint::Slots::default(),
    };
    let rank = |c: &Checkpoint| {
        let count = match c.counter {
            None => 0,
            Some(Count::Pending) => 1,
            Some(Count::At(v)) => u128::from(v) + 2,
        };
        (c.seq, count)
    };
    Ok(own
        .all()
        .chain(other.all())
        .max_by_key(|c| rank(c))
        .map(|c| (c.seq, c.counter)))
}

fn counter_error(reason: String) -> AuditError {
    AuditError::Counter { reason }
}

/// The check at open against the counter (see [`crate::counter`]): answers the counter's
/// value (`None`: first use to be done) and, when the directory and its anchor were rolled
/// back or deleted, what to tell the operator; and the seq the newest checkpoint anchors.
/// A checkpoint written under the next value
/// whose increment a crash cut off has that increment done now.
pub(crate) fn check_counter(
    dir: &Path,
    anchor: Option<&Path>,
    keys: &AuditKeys,
    counter: &dyn AuditCounter,
) -> Result<CounterCheck, AuditError> {
    let newest = newest_count(dir, anchor, keys)?;
    let seq = newest.map(|(seq, _)| seq);
    let state = counter.state().map_err(counter_error)?;
    let (value, rolled) = match counter::judge(state, newest.map(|(_, c)| c)) {
        Verdict::Fine {
            value,
            finish: false,
        } => (value, None),
        Verdict::Fine {
            value: _,
            finish: true,
        } => (Some(counter.increment().map_err(counter_error)?), None),
        Verdict::Rolled { missing, value } => (value, Some(missing)),
    };
    Ok(CounterCheck { value, rolled, seq })
}

/// What [`check_counter`] found.
pub(crate) struct CounterCheck {
    /// The counter's value (`None`: first use to be done).
    pub(crate) value: Option<u64>,
    /// Rolled back or deleted: what to tell the operator.
    pub(crate) rolled: Option<String>,
    /// The seq the newest checkpoint anchors.
    pub(crate) seq: Option<u64>,
}

/// The counter comparison in words, and whether it is consistent, for `coffer audit verify`.
pub(crate) fn counter_report(
    dir: &Path,
    anchor: Option<&Path>,
    keys: &AuditKeys,
    counter: &dyn AuditCounter,
) -> Result<(bool, String), AuditError> {
    let count = newest_count(dir, anchor, keys)?.map(|(_, c)| c);
    let state = counter.state().map_err(counter_error)?;
    let what = counter.describe();
    let at = match state {
        counter::CounterState::Missing => "not defined".to_owned(),
        counter::CounterState::Unset => "defined, never incremented".to_owned(),
        counter::CounterState::At(v) => format!("at {v}"),
    };
    let cp = match count {
        None => "no checkpoint".to_owned(),
        Some(None) => "a checkpoint without a counter".to_owned(),
        Some(Some(c)) => format!("checkpoint at {}", c.text()),
    };
    Ok(match counter::judge(state, count) {
        Verdict::Fine { .. } => (true, format!("{what} {at}, {cp}: consistent")),
        Verdict::Rolled { missing, .. } => (false, format!("{what} {at}, {cp}: {missing}")),
    })
}

/// Checks the log in `dir` against its newest checkpoint.
pub(crate) fn check(
    dir: &Path,
    anchor: Option<&Path>,
    keys: &AuditKeys,
    head: &Head,
) -> Result<Option<Gap>, AuditError> {
    let (cp, any_file) = newest(dir, anchor, keys)?;
    let files = chain::list(dir)?;
    let gap = |cp: Option<&Checkpoint>, missing: String| {
        Ok(Some(Gap {
            after: head.last,
            checkpoint: cp.map_or(0, |c| c.seq),
            checkpoint_file: cp.map(|c| c.file.clone()).unwrap_or_default(),
            missing,
        }))
    };
    let Some(cp) = cp else {
        if any_file {
            return gap(
                None,
                "no checkpoint verifies under this store's key (the checkpoint files are \
                 damaged or were replaced)"
                    .into(),
            );
        }
        // No checkpoint file anywhere: a log never checkpointed (a daemon killed within its
        // first second, or never unsealed). `verify` still reports it as not anchored.
        return Ok(None);
    };
    if cp.seq > head.last {
        let range = if head.last + 1 == cp.seq {
            format!("record {}", cp.seq)
        } else {
            format!("records {}..{}", head.last + 1, cp.seq)
        };
        let why = if head.dir_created {
            "the audit directory was missing".to_owned()
        } else if files.is_empty() {
            "every audit file was missing".to_owned()
        } else if !files
            .iter()
            .any(|f| chain::file_name(f.first_seq) == cp.file)
        {
            format!("the file {} is missing", cp.file)
        } else {
            "the log was cut short".to_owned()
        };
        return gap(
            Some(&cp),
            format!(
                "{range} are missing ({why}); the last checkpoint covers record {} in {}",
                cp.seq, cp.file
            ),
        );
    }
    let Some(at) = files
        .iter()
        .position(|f| chain::file_name(f.first_seq) == cp.file)
    else {
        return gap(
            Some(&cp),
            format!(
                "the file {} holding checkpointed record {} is missing",
                cp.file, cp.seq
            ),
        );
    };
    match follow(&files[at..], &cp, keys)? {
        None => Ok(None),
        Some(broken) => gap(Some(&cp), broken),
    }
}

/// Walks from the checkpointed record to the end; answers what breaks, if anything.
fn follow(
    files: &[chain::AuditFile],
    cp: &Checkpoint,
    keys: &AuditKeys,
) -> Result<Option<String>, AuditError> {
    let mut last: Option<(u64, Hash)> = None;
    let mut newest_format = 1;
    // The link of the line before, while looking for the checkpointed one.
    let mut before: Option<Hash> = None;
    let mut buf = Vec::with_capacity(1024);
    for file in files {
        let read_err = |source| AuditError::Read {
            path: file.path.clone(),
            source,
        };
        let mut reader = BufReader::new(File::open(&file.path).map_err(read_err)?);
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0 {
                break;
            }
            let Some(line) = buf.strip_suffix(b"\n") else {
                break; // a batch being written
            };
            let Ok(parsed) = serde_json::from_slice::<crate::line::Head<'_>>(line) else {
                return Ok(Some(format!(
                    "{} holds a line that is not a record",
                    file.path.display()
                )));
            };
            let named = parsed.prev.as_deref().map(Hash::from_hex);
            let format = parsed.v.unwrap_or(1);
            if format < newest_format {
                return Ok(Some(format!(
                    "record {} is in an older format than the records before it (edited)",
                    parsed.seq
                )));
            }
            newest_format = format;
            let hash = match last {
                None if parsed.seq < cp.seq => {
                    before = crate::line::link_of(line, parsed.v);
                    continue;
                }
                None => {
                    // A format-3 link is the tag, not a hash of the line: the checkpointed
                    // line's tag is checked too, so its content cannot change under it.
                    let prev = match named {
                        Some(named) => named,
                        None if parsed.v != Some(crate::line::FORMAT) => None,
                        None if parsed.seq == 1 => Some(Hash::ZERO),
                        None => before,
                    };
                    let checked = prev.and_then(|prev| {
                        crate::line::authenticate(line, parsed.v, &prev, Some(keys)).ok()
                    });
                    match checked {
                        Some((_, hash)) if parsed.seq == cp.seq && hash == cp.hash => hash,
                        _ => {
                            return Ok(Some(format!(
                                "record {} differs from the checkpoint (edited or replaced)",
                                cp.seq
                            )));
                        }
                    }
                }
                Some((seq, prev)) => {
                    let linked = named.is_none_or(|n| n == Some(prev));
                    let v3 = parsed.v == Some(crate::line::FORMAT);
                    if parsed.seq != seq + 1 || !linked || (!v3 && named.is_none()) {
                        return Ok(Some(format!(
                            "the chain breaks after record {seq} (records after the checkpoint \
                             were removed or edited)"
                        )));
                    }
                    // Format 3 has no `prev` inside a file: its tag carries the link.
                    match crate::line::authenticate(line, parsed.v, &prev, Some(keys)) {
                        Ok((_, hash)) => hash,
                        Err(_) => {
                            return Ok(Some(format!(
                                "record {} does not carry a valid MAC (edited)",
                                parsed.seq
                            )));
                        }
                    }
                }
            };
            last = Some((parsed.seq, hash));
        }
    }
    Ok(match last {
        Some(_) => None,
        None => Some(format!(
            "checkpointed record {} is not in {}",
            cp.seq, cp.file
        )),
    })
}
