//! Reading a backup: the age layer, the frames, and every check (order, counts, hash, the
//! manifest's MAC under the backup key of a master key one of the backup's own slots opens),
//! as an iterator of rows an import consumes.

use std::io::Read;
use std::path::PathBuf;

use coffer_crypto::{MasterKey, SecretBytes};
use coffer_store::{ImportCheck, SnapshotRow, StoreError, StoreHeader};
use coffer_types::wire::UnsealWith;

use super::crypt::{self, Identity};
use super::format::{FORMAT, Frame, FrameReader, MAGIC, Manifest};
use crate::{CoreError, Vault};

/// How the backup's store is opened to check the manifest's MAC: one of its slots, as
/// `coffer unseal` opens one (the recovery key, a key file, a passphrase).
pub struct Unlock {
    /// The slot kind.
    pub with: UnsealWith,
    /// The recovery key's text or the passphrase.
    pub key: Option<SecretBytes>,
    /// The key file, for a key file slot.
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlock")
            .field("with", &self.with)
            .finish_non_exhaustive()
    }
}

/// What a verified backup holds.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Its manifest (authenticated).
    pub manifest: Manifest,
    /// The store header it carries (the slots).
    pub header: StoreHeader,
    /// The audit anchor it carries, if any.
    pub audit_anchor: Option<Vec<u8>>,
}

fn damaged(what: &str) -> CoreError {
    CoreError::Integrity(format!("the backup is damaged or incomplete: {what}"))
}

/// A backup's rows, checked as they are read; the whole file is checked when the iterator
/// ends (after the event head: the manifest, its MAC, nothing after). A failure ends the
/// iteration with an error; [`Rows::failure`] says what it was.
pub struct Rows<'a, R: Read> {
    frames: FrameReader<age::stream::StreamReader<R>>,
    unlock: &'a Unlock,
    started: bool,
    check: ImportCheck,
    master: Option<MasterKey>,
    header: Option<StoreHeader>,
    audit: Option<Vec<u8>>,
    verified: Option<Verified>,
    failure: Option<CoreError>,
    progress: &'a mut dyn FnMut(u64),
}

impl<'a, R: Read> Rows<'a, R> {
    /// Opens `input`'s age layer with `identity`; the rows follow.
    pub fn open(
        input: R,
        identity: &Identity,
        unlock: &'a Unlock,
        progress: &'a mut dyn FnMut(u64),
    ) -> Result<Self, CoreError> {
        Ok(Self {
            frames: FrameReader::new(crypt::open(input, identity)?),
            unlock,
            started: false,
            check: ImportCheck::default(),
            master: None,
            header: None,
            audit: None,
            verified: None,
            failure: None,
            progress,
        })
    }

    /// Reads every row and checks the whole backup.
    pub fn verify(mut self) -> Result<Verified, CoreError> {
        for row in self.by_ref() {
            if row.is_err() {
                break;
            }
        }
        self.finish()
    }

    /// After the iteration: what the backup holds, or why it was refused.
    pub fn finish(mut self) -> Result<Verified, CoreError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.verified
            .take()
            .ok_or_else(|| damaged("it was not read to its end"))
    }

    /// The error a failed iteration ended with.
    pub fn failure(&self) -> Option<&CoreError> {
        self.failure.as_ref()
    }

    fn frame(&mut self) -> Result<Frame, CoreError> {
        self.frames
            .next_frame()?
            .ok_or_else(|| damaged("it ends before its manifest"))
    }

    fn step(&mut self) -> Result<Option<SnapshotRow>, CoreError> {
        if self.verified.is_some() {
            return Ok(None);
        }
        if !self.started {
            self.started = true;
            match self.frame()? {
                Frame::Magic { magic, format } if magic == MAGIC => {
                    if format != FORMAT {
                        return Err(CoreError::Unsupported(
                            "this backup's format is newer than this coffer reads; restore it \
                             with a newer coffer",
                        ));
                    }
                }
                _ => return Err(damaged("it does not start as a coffer backup")),
            }
        }
        loop {
            match self.frame()? {
                Frame::Row(record) => {
                    if self.audit.is_some() {
                        return Err(damaged("a row follows the audit anchor"));
                    }
                    let row = SnapshotRow::try_from(record)
                        .map_err(|_| damaged("a row does not parse"))?;
                    self.check.check(&row).map_err(|e| match e {
                        StoreError::Malformed(m) => damaged(m),
                        other => CoreError::Store(other),
                    })?;
                    if let SnapshotRow::Header(body) = &row {
                        self.open_header(body)?;
                    }
                    let n = self.check.counts;
                    let rows = n.headers + n.namespaces + n.secrets + n.versions + n.event_heads;
                    if rows.is_multiple_of(super::PROGRESS_EVERY) {
                        (self.progress)(rows);
                    }
                    return Ok(Some(row));
                }
                Frame::Audit(anchor) => {
                    if self.audit.is_some() || self.check.finish().is_err() {
                        return Err(damaged("the audit anchor is out of place"));
                    }
                    self.audit = Some(anchor);
                }
                Frame::Manifest(manifest) => {
                    self.close(manifest)?;
                    return Ok(None);
                }
                Frame::Magic { .. } | Frame::Mac(_) => {
                    return Err(damaged("a frame is out of place"));
                }
            }
        }
    }

    /// The header: the backup's slots. One of them must open with the credential given.
    fn open_header(&mut self, body: &[u8]) -> Result<(), CoreError> {
        let header: StoreHeader =
            serde_json::from_slice(body).map_err(|_| damaged("its store header does not parse"))?;
        let master = Vault::open_detached(
            &header,
            self.unlock.with,
            self.unlock.key.clone(),
            self.unlock.key_file.clone(),
        )
        .map_err(|e| match e {
            CoreError::Denied(why)
            | CoreError::InvalidRequest(why)
            | CoreError::Unavailable(why) => CoreError::Denied(format!(
                "no slot of the store this backup was made from (store {}) opens with the \
                     {} given ({why}); is it a backup of another store?",
                header.store_id,
                self.unlock.with.as_str()
            )),
            other => other,
        })?;
        self.master = Some(master);
        self.header = Some(header);
        Ok(())
    }

    /// The manifest, its MAC, and the end of the stream.
    fn close(&mut self, manifest: Manifest) -> Result<(), CoreError> {
        let hash = self.frames.hash_before_last();
        let manifest_bytes = self.frames.last.clone();
        let head_ok = self.check.finish().is_ok();
        let Frame::Mac(mac) = self.frame()? else {
            return Err(damaged("its manifest is not followed by its MAC"));
        };
        let (Some(master), Some(header)) = (&self.master, self.header.take()) else {
            return Err(damaged("it has no store header"));
        };
        if !master.backup_key().verify(&manifest_bytes, &mac) {
            return Err(CoreError::Integrity(
                "the backup's manifest does not authenticate under its store's backup key: \
                 the file was altered (and encrypted again) by someone without the store's \
                 master key"
                    .to_owned(),
            ));
        }
        if !head_ok
            || manifest.hash != hash
            || manifest.counts != self.check.counts
            || manifest.audit != u64::from(self.audit.is_some())
            || manifest.store_id != header.store_id
        {
            return Err(damaged("its rows do not match its manifest"));
        }
        if self.frames.next_frame()?.is_some() {
            return Err(damaged("something follows its MAC"));
        }
        let n = self.check.counts;
        (self.progress)(n.headers + n.namespaces + n.secrets + n.versions + n.event_heads);
        self.verified = Some(Verified {
            manifest,
            header,
            audit_anchor: self.audit.take(),
        });
        Ok(())
    }
}

impl<R: Read> Iterator for Rows<'_, R> {
    type Item = Result<SnapshotRow, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failure.is_some() {
            return None;
        }
        match self.step() {
            Ok(row) => row.map(Ok),
            Err(e) => {
                self.failure = Some(e);
                Some(Err(StoreError::Integrity("the backup failed its checks")))
            }
        }
    }
}
