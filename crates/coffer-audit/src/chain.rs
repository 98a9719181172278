//! The chain's building blocks, shared by the writer, the verifier and the tail reader: the
//! hash that links a line to the one before it, the audit file names, and reading complete
//! lines backwards from the end of a file (so opening a 64 MiB file reads only its tail).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::AuditError;

/// Bytes of a format-3 tag (128 bits).
pub(crate) const TAG_LEN: usize = 16;

/// A record's link in the chain: what the next record is chained to and what a checkpoint
/// anchors. For a line of format 1 or 2 it is the BLAKE3 hash of its exact bytes (without the
/// `\n`), which the next line names as `prev`; for a line of format 3 it is the line's own
/// tag (see the `line` module), which the next line's tag covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hash {
    /// The BLAKE3 hash of a format-1 or format-2 line.
    Line([u8; 32]),
    /// A format-3 line's tag.
    Tag([u8; TAG_LEN]),
}

impl Hash {
    /// The link before record 1.
    pub(crate) const ZERO: Self = Self::Line([0; 32]);

    /// The hash of one line, given without its `\n`.
    pub(crate) fn of_line(line: &[u8]) -> Self {
        Self::Line(*blake3::hash(line).as_bytes())
    }

    /// Its bytes (32 or 16).
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Self::Line(b) => b,
            Self::Tag(b) => b,
        }
    }

    /// Lowercase hex: 64 digits for a line hash, 32 for a tag.
    pub(crate) fn to_hex(self) -> String {
        data_encoding::HEXLOWER.encode(self.bytes())
    }

    /// Parses 64 hex digits (a line hash) or 32 (a tag), either case.
    pub(crate) fn from_hex(text: &str) -> Option<Self> {
        let bytes = data_encoding::HEXLOWER_PERMISSIVE
            .decode(text.as_bytes())
            .ok()?;
        match bytes.len() {
            32 => bytes.try_into().ok().map(Self::Line),
            TAG_LEN => bytes.try_into().ok().map(Self::Tag),
            _ => None,
        }
    }
}

/// What precedes a format-2 line's MAC: `,"mac":"`; the MAC is the line's last field.
pub(crate) const MAC_FIELD: &[u8] = b",\"mac\":\"";

/// A format-2 MAC'd line split into the part the MAC covers and the MAC's hex digits; `None`
/// when the line does not end in a MAC field.
pub(crate) fn split_mac(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = line.strip_suffix(b"\"}")?;
    let at = rest.len().checked_sub(64)?;
    let (head, mac) = rest.split_at(at);
    let covered = head.strip_suffix(MAC_FIELD)?;
    Some((covered, mac))
}

const PREFIX: &str = "audit-";
const SUFFIX: &str = ".jsonl";
const SEQ_DIGITS: usize = 20;

/// `audit-<first seq, 20 digits>.jsonl`.
pub(crate) fn file_name(first_seq: u64) -> String {
    format!("{PREFIX}{first_seq:0SEQ_DIGITS$}{SUFFIX}")
}

/// The first seq an audit file's name announces, or `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// One audit file in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditFile {
    /// The first seq its name announces.
    pub(crate) first_seq: u64,
    /// Its full path.
    pub(crate) path: PathBuf,
}

/// The audit files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<AuditFile>, AuditError> {
    let dir_err = |source| AuditError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_err)? {
        let entry = entry.map_err(dir_err)?;
        let name = entry.file_name();
        if let Some(first_seq) = name.to_str().and_then(parse_file_name) {
            files.push(AuditFile {
                first_seq,
                path: entry.path(),
            });
        }
    }
    files.sort_by_key(|f| f.first_seq);
    Ok(files)
}

/// How much is read per step when scanning backwards.
const CHUNK: u64 = 16 * 1024;

/// The last complete lines of a file, found by reading backwards.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Where the first returned line starts.
    pub(crate) start: u64,
    /// Just past the last `\n`; bytes after it (a partial line) are not returned.
    pub(crate) end: u64,
    /// The bytes `start..end`: whole lines, each ending in `\n`.
    pub(crate) bytes: Vec<u8>,
}

impl Tail {
    /// The returned lines, without their `\n`.
    pub(crate) fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes
            .split_inclusive(|&b| b == b'\n')
            .map(|l| &l[..l.len() - 1])
    }
}

/// The last `count` complete lines of the first `len` bytes of `file`.
pub(crate) fn last_lines(file: &File, len: u64, count: usize) -> io::Result<Tail> {
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut end = None;
    let mut start = 0;
    let mut seen = 0;
    let mut pos = len;
    'scan: while pos > 0 {
        let size = CHUNK.min(pos);
        pos -= size;
        // `size` is at most CHUNK, which fits in usize.
        let mut chunk = vec![0u8; usize::try_from(size).unwrap_or(0)];
        file.read_exact_at(&mut chunk, pos)?;
        let newlines: Vec<u64> = chunk
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| pos + i as u64)
            .collect();
        chunks.push((pos, chunk));
        for at in newlines {
            if end.is_none() {
                end = Some(at + 1);
                if count == 0 {
                    start = at + 1;
                    break 'scan;
                }
            } else {
                seen += 1;
                if seen == count {
                    start = at + 1;
                    break 'scan;
                }
            }
        }
    }
    let Some(end) = end else {
        return Ok(Tail::default());
    };
    let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
    for (at, chunk) in chunks.iter().rev() {
        let from = start.saturating_sub(*at).min(chunk.len() as u64);
        let to = end.saturating_sub(*at).min(chunk.len() as u64);
        if from < to {
            // Both bounds are at most chunk.len(), so they fit in usize.
            bytes.extend_from_slice(&chunk[from as usize..to as usize]);
        }
    }
    Ok(Tail { start, end, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(file_name(1), "audit-00000000000000000001.jsonl");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("audit-1.jsonl"), None);
        assert_eq!(parse_file_name("audit-0000000000000000000x.jsonl"), None);
        assert_eq!(parse_file_name("checkpoint"), None);
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let h = Hash::of_line(b"{}");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::ZERO.to_hex(), "0".repeat(64));
        let t = Hash::Tag([0xab; 16]);
        assert_eq!(t.to_hex(), "ab".repeat(16));
        assert_eq!(Hash::from_hex(&t.to_hex()), Some(t));
        assert_eq!(Hash::from_hex(&"ab".repeat(20)), None);
    }

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, u64) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        (f, content.len() as u64)
    }

    #[test]
    fn last_lines_skip_a_partial_tail_and_span_chunks() {
        let (f, len) = file_with(b"a\nbb\nccc");
        let t = last_lines(f.as_file(), len, 1).unwrap();
        assert_eq!((t.start, t.end, &t.bytes[..]), (2, 5, &b"bb\n"[..]));
        let t = last_lines(f.as_file(), len, 5).unwrap();
        assert_eq!(t.lines().collect::<Vec<_>>(), [&b"a"[..], b"bb"]);
        let t = last_lines(f.as_file(), len, 0).unwrap();
        assert_eq!((t.start, t.end, t.bytes.len()), (5, 5, 0));
        assert_eq!(last_lines(f.as_file(), 3, 9).unwrap().end, 2);

        let (f, len) = file_with(b"no newline");
        assert_eq!(last_lines(f.as_file(), len, 1).unwrap(), Tail::default());

        let long: Vec<u8> = std::iter::repeat_n(b'x', 40_000).chain(*b"\n").collect();
        let mut content = b"first\n".to_vec();
        content.extend_from_slice(&long);
        content.extend_from_slice(&long);
        let (f, len) = file_with(&content);
        let t = last_lines(f.as_file(), len, 2).unwrap();
        assert_eq!(t.start, 6);
        assert_eq!(t.bytes.len(), 80_002);
        assert_eq!(t.lines().count(), 2);
    }
}
