//! Where the chain continues when the log is opened: the newest file's last complete record
//! gives the next seq and the link the next record is chained to (its tag, or for a line of
//! an older format its hash); a partial line after it (a crash mid-write) is cut off.
//!
//! Only the tail of the newest file is read, backwards, so opening costs the same for a
//! 64 MiB file as for an empty one.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::AuditError;
use crate::chain::{self, AuditFile, Hash};

/// The state the writer starts from.
#[derive(Debug)]
pub(crate) struct Start {
    /// The seq the next record gets.
    pub(crate) next_seq: u64,
    /// The link of the last record (zeros before record 1).
    pub(crate) prev: Hash,
    /// The file the next batch is appended to.
    pub(crate) current: PathBuf,
    /// Its length.
    pub(crate) len: u64,
    /// The file holding record `next_seq - 1`, if there is one.
    pub(crate) last_file: Option<PathBuf>,
}

/// Just the fields the writer needs from a line.
#[derive(Deserialize)]
struct Seq {
    v: Option<u64>,
    #[serde(alias = "s")]
    seq: u64,
}

/// Finds where the chain in `dir` continues, repairing a partial last line.
pub(crate) fn start(dir: &Path) -> Result<Start, AuditError> {
    let files = chain::list(dir)?;
    let Some((newest, older)) = files.split_last() else {
        return Ok(Start {
            next_seq: 1,
            prev: Hash::ZERO,
            current: dir.join(chain::file_name(1)),
            len: 0,
            last_file: None,
        });
    };
    let len = repair_tail(&newest.path)?;
    if let Some((seq, prev)) = last_record(&newest.path, len)? {
        return Ok(Start {
            next_seq: next(seq, &newest.path)?,
            prev,
            current: newest.path.clone(),
            len,
            last_file: Some(newest.path.clone()),
        });
    }
    // The newest file is empty: a rotation whose first write failed, or a crash before it.
    let (next_seq, prev, last_file) = match last_of(older)? {
        Some((seq, prev, path)) => (next(seq, &path)?, prev, Some(path)),
        None => (1, Hash::ZERO, None),
    };
    if newest.first_seq != next_seq {
        return Err(AuditError::Damaged {
            path: newest.path.clone(),
            reason: format!(
                "this empty file is named for record {} but the log continues at record \
                 {next_seq}",
                newest.first_seq
            ),
        });
    }
    Ok(Start {
        next_seq,
        prev,
        current: newest.path.clone(),
        len: 0,
        last_file,
    })
}

fn next(seq: u64, path: &Path) -> Result<u64, AuditError> {
    seq.checked_add(1).ok_or_else(|| AuditError::Damaged {
        path: path.to_path_buf(),
        reason: "its last record has the highest possible seq".into(),
    })
}

/// The last record of the newest non-empty file among `files`, with that file's path.
fn last_of(files: &[AuditFile]) -> Result<Option<(u64, Hash, PathBuf)>, AuditError> {
    for f in files.iter().rev() {
        let len = std::fs::metadata(&f.path)
            .map_err(|source| AuditError::Read {
                path: f.path.clone(),
                source,
            })?
            .len();
        if let Some((seq, hash)) = last_record(&f.path, len)? {
            return Ok(Some((seq, hash, f.path.clone())));
        }
    }
    Ok(None)
}

/// Cuts off bytes after the last `\n` of `path`; returns the length that remains.
fn repair_tail(path: &Path) -> Result<u64, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    let end = chain::last_lines(&file, len, 0).map_err(read_err)?.end;
    if end == len {
        return Ok(len);
    }
    tracing::warn!(
        path = %path.display(),
        removed_bytes = len - end,
        "the audit file ended with a partial record (a crash mid-write?); removing it"
    );
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(read_err)?;
    file.set_len(end).map_err(read_err)?;
    file.sync_data().map_err(read_err)?;
    Ok(end)
}

/// The seq and hash of the last complete line of the first `len` bytes of `path`.
fn last_record(path: &Path, len: u64) -> Result<Option<(u64, Hash)>, AuditError> {
    let read_err = |source| AuditError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let tail = chain::last_lines(&file, len, 1).map_err(read_err)?;
    let Some(line) = tail.lines().next() else {
        return Ok(None);
    };
    let damaged = |reason: String| AuditError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let parsed: Seq = serde_json::from_slice(line)
        .map_err(|e| damaged(format!("its last line is not an audit record ({e})")))?;
    let link = crate::line::link_of(line, parsed.v)
        .ok_or_else(|| damaged("its last line carries no tag".into()))?;
    Ok(Some((parsed.seq, link)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, seq: u64, content: &str) -> PathBuf {
        let path = dir.join(chain::file_name(seq));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn an_empty_directory_starts_at_record_one() {
        let dir = tempfile::tempdir().unwrap();
        let s = start(dir.path()).unwrap();
        assert_eq!((s.next_seq, s.prev, s.len), (1, Hash::ZERO, 0));
        assert_eq!(s.current, dir.path().join(chain::file_name(1)));
    }

    #[test]
    fn a_partial_last_line_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 1, "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3,\"ti");
        let s = start(dir.path()).unwrap();
        assert_eq!(s.next_seq, 3);
        assert_eq!(s.prev, Hash::of_line(b"{\"seq\":2}"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"seq\":1}\n{\"seq\":2}\n"
        );
        assert_eq!(s.len, 20);
    }

    #[test]
    fn an_empty_newest_file_continues_the_older_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, "{\"seq\":1}\n{\"seq\":2}\n");
        let empty = write(dir.path(), 3, "");
        let s = start(dir.path()).unwrap();
        assert_eq!((s.next_seq, &s.current, s.len), (3, &empty, 0));
        assert_eq!(s.prev, Hash::of_line(b"{\"seq\":2}"));

        std::fs::remove_file(&empty).unwrap();
        write(dir.path(), 5, "");
        assert!(matches!(start(dir.path()), Err(AuditError::Damaged { .. })));
    }

    #[test]
    fn a_last_line_that_is_not_a_record_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1, "{\"seq\":1}\nnot json\n");
        let err = start(dir.path()).unwrap_err();
        assert!(err.to_string().contains("coffer audit verify"), "{err}");
    }
}
