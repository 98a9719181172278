//! The plaintext inside a backup's age layer: a stream of frames, each a little-endian `u32`
//! length and a postcard-encoded [`Frame`].
//!
//! Order: [`Frame::Magic`], the snapshot's rows (header, namespaces, secrets, versions, event
//! head), [`Frame::Audit`] when the data directory had an audit anchor, [`Frame::Manifest`]
//! (counts, and a BLAKE3 hash over every frame before it, lengths included), and last
//! [`Frame::Mac`]: HMAC-SHA256 of the manifest frame's bytes under the key derived from the
//! master key ([`coffer_crypto::MasterKey::backup_key`]). Nothing may follow the MAC.

use std::io::{self, Read, Write};

use coffer_store::{Counts, RowRecord};

use crate::CoreError;

/// What a backup's plaintext starts with.
pub const MAGIC: [u8; 8] = *b"COFFERBK";
/// The format this build writes and reads.
pub const FORMAT: u32 = 1;
/// The largest frame a reader accepts (a value and its envelope are far smaller).
const MAX_FRAME: usize = 64 << 20;

/// One frame of a backup's plaintext.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Frame {
    /// The first frame: [`MAGIC`] and [`FORMAT`].
    Magic {
        /// [`MAGIC`].
        magic: [u8; 8],
        /// [`FORMAT`].
        format: u32,
    },
    /// A row of the store's snapshot, sealed as at rest.
    Row(RowRecord),
    /// The data directory's audit anchor (`audit-anchor`) as it was: where the audit chain
    /// stood when the backup was made.
    Audit(Vec<u8>),
    /// The manifest.
    Manifest(Manifest),
    /// HMAC-SHA256 of the manifest frame's bytes under the backup key.
    Mac([u8; 32]),
}

/// What a backup holds, authenticated by the MAC that follows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The store's id (from its header).
    pub store_id: String,
    /// When the backup was made, milliseconds since the epoch.
    pub created_ms: i64,
    /// The coffer version that made it.
    pub coffer_version: String,
    /// Rows of each kind.
    pub counts: Counts,
    /// Audit anchors (0 or 1).
    pub audit: u64,
    /// BLAKE3 over every frame before the manifest, each with its length.
    pub hash: [u8; 32],
}

fn damaged(what: impl std::fmt::Display) -> CoreError {
    CoreError::Integrity(format!("the backup is damaged or incomplete: {what}"))
}

/// Writes frames, hashing them.
pub struct FrameWriter<W: Write> {
    out: W,
    hash: blake3::Hasher,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    /// Frames onto `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            hash: blake3::Hasher::new(),
            buf: Vec::new(),
        }
    }

    /// Writes one frame; answers its encoded bytes' length.
    pub fn write(&mut self, frame: &Frame) -> Result<&[u8], CoreError> {
        self.buf.clear();
        let buf = std::mem::take(&mut self.buf);
        self.buf = postcard::to_extend(frame, buf)
            .map_err(|e| CoreError::Integrity(format!("encoding a backup frame: {e}")))?;
        let len = u32::try_from(self.buf.len())
            .ok()
            .filter(|l| (*l as usize) <= MAX_FRAME)
            .ok_or_else(|| CoreError::Integrity("a backup frame is too large".to_owned()))?;
        let len = len.to_le_bytes();
        self.out.write_all(&len).map_err(write_err)?;
        self.out.write_all(&self.buf).map_err(write_err)?;
        self.hash.update(&len);
        self.hash.update(&self.buf);
        Ok(&self.buf)
    }

    /// The hash of every frame written so far.
    pub fn hash(&self) -> [u8; 32] {
        *self.hash.finalize().as_bytes()
    }

    /// The output.
    pub fn into_inner(self) -> W {
        self.out
    }
}

pub(super) fn write_err(e: io::Error) -> CoreError {
    CoreError::Unavailable(format!("writing the backup: {e}"))
}

/// Reads frames, hashing them.
pub struct FrameReader<R: Read> {
    input: R,
    hash: blake3::Hasher,
    /// The bytes of the last frame read.
    pub last: Vec<u8>,
}

impl<R: Read> FrameReader<R> {
    /// Frames from `input`.
    pub fn new(input: R) -> Self {
        Self {
            input,
            hash: blake3::Hasher::new(),
            last: Vec::new(),
        }
    }

    /// The hash of every frame read before the last one.
    pub fn hash_before_last(&self) -> [u8; 32] {
        *self.hash.finalize().as_bytes()
    }

    /// The next frame; `None` at the end of the stream (between frames).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CoreError> {
        let mut len = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match self.input.read(&mut len[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(damaged("it ends inside a frame")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_err(e)),
            }
        }
        // The previous frame joins the hash once the next one starts: the manifest's hash
        // covers every frame before the manifest.
        if !self.last.is_empty() {
            let prev_len = u32::try_from(self.last.len()).unwrap_or(u32::MAX);
            self.hash.update(&prev_len.to_le_bytes());
            self.hash.update(&self.last);
        }
        let n = u32::from_le_bytes(len) as usize;
        if n == 0 || n > MAX_FRAME {
            return Err(damaged("a frame has an impossible length"));
        }
        self.last.clear();
        self.last.resize(n, 0);
        self.input.read_exact(&mut self.last).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                damaged("it ends inside a frame")
            } else {
                read_err(e)
            }
        })?;
        postcard::from_bytes(&self.last)
            .map(Some)
            .map_err(|_| damaged("a frame does not parse"))
    }
}

/// A failure reading the age layer: its STREAM authentication failed (a flipped byte, a
/// truncated file) or the file could not be read.
pub(super) fn read_err(e: io::Error) -> CoreError {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            damaged(format!("the age layer does not authenticate ({e})"))
        }
        _ => CoreError::Unavailable(format!("reading the backup: {e}")),
    }
}
