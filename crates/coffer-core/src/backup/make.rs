//! Making a backup: the store's snapshot, framed, hashed, authenticated and encrypted with
//! age, onto a writer or into a file that appears only once complete.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use coffer_crypto::MasterKey;
use coffer_store::{Backend, Counts, SnapshotRow, StoreError, StoreHeader};

use super::crypt::Recipients;
use super::format::{FORMAT, Frame, FrameWriter, MAGIC, Manifest, write_err};
use crate::CoreError;

/// Rows between two progress reports.
pub const PROGRESS_EVERY: u64 = 10_000;

/// What a backup is made of.
pub struct Source<'a> {
    /// The store's rows.
    pub backend: &'a dyn Backend,
    /// The master key (the backup key, which authenticates the manifest, derives from it).
    pub master: &'a MasterKey,
    /// The data directory's audit anchor (`audit-anchor`), when it has one.
    pub audit_anchor: Option<Vec<u8>>,
}

impl Source<'_> {
    /// Reads `DIR/audit-anchor` into the source, when the data directory has one.
    pub fn with_anchor_of(mut self, data_dir: Option<&Path>) -> Self {
        self.audit_anchor =
            data_dir.and_then(|d| std::fs::read(d.join(coffer_audit::ANCHOR_FILE)).ok());
        self
    }
}

/// Writes a backup of `source`, encrypted to `to`, onto `out`; `progress` hears the number
/// of rows written every [`PROGRESS_EVERY`] rows. Answers the output and the manifest.
pub fn write<W: Write>(
    source: &Source<'_>,
    to: &Recipients,
    out: W,
    progress: &mut dyn FnMut(u64),
) -> Result<(W, Manifest), CoreError> {
    let mut frames = FrameWriter::new(to.wrap(out)?);
    frames.write(&Frame::Magic {
        magic: MAGIC,
        format: FORMAT,
    })?;
    let mut counts = Counts::default();
    let mut store_id = None;
    let mut failed = None;
    let mut rows = 0u64;
    let snapshot = source.backend.snapshot(&mut |row| {
        if let SnapshotRow::Header(body) = &row {
            let header: StoreHeader = serde_json::from_slice(body)
                .map_err(|_| StoreError::Malformed("the store header"))?;
            store_id = Some(header.store_id);
        }
        counts.add(&row);
        if let Err(e) = frames.write(&Frame::Row(row.into())) {
            failed = Some(e);
            return Err(StoreError::Malformed("the backup could not be written"));
        }
        rows += 1;
        if rows.is_multiple_of(PROGRESS_EVERY) {
            progress(rows);
        }
        Ok(())
    });
    if let Some(e) = failed {
        return Err(e);
    }
    snapshot?;
    let store_id = store_id.ok_or_else(|| {
        CoreError::Unavailable("the store is not initialized: there is nothing to back up".into())
    })?;
    progress(rows);
    let audit = match &source.audit_anchor {
        Some(anchor) => {
            frames.write(&Frame::Audit(anchor.clone()))?;
            1
        }
        None => 0,
    };
    let manifest = Manifest {
        store_id,
        created_ms: coffer_types::Timestamp::now().as_millis(),
        coffer_version: env!("CARGO_PKG_VERSION").to_owned(),
        counts,
        audit,
        hash: frames.hash(),
    };
    let mac = source
        .master
        .backup_key()
        .mac(frames.write(&Frame::Manifest(manifest.clone()))?);
    frames.write(&Frame::Mac(mac))?;
    let out = frames.into_inner().finish().map_err(write_err)?;
    Ok((out, manifest))
}

/// What [`to_file`] made.
#[derive(Debug, Clone)]
pub struct Written {
    /// The backup file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
}

/// Makes a backup of `source` encrypted to `to` at `path`: written to a temporary file
/// beside it (mode 0600), synced, then renamed, so `path` never names a partial backup.
/// This is what scheduled backups call.
pub fn to_file(
    source: &Source<'_>,
    to: &Recipients,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Written, CoreError> {
    let (manifest, bytes) = atomic_file(path, |out| {
        write(source, to, out, progress).map(|(_, manifest)| manifest)
    })?;
    Ok(Written {
        path: path.to_owned(),
        bytes,
        manifest,
    })
}

/// Runs `fill` on a new temporary file beside `path` (mode 0600), then syncs it and renames
/// it to `path`; on any failure the temporary file is removed and `path` is untouched.
/// Answers what `fill` did and the file's size.
pub fn atomic_file<T, E: From<CoreError>>(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<T, E>,
) -> Result<(T, u64), E> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::InvalidRequest(format!("{} is not a file", path.display())))?;
    let mut suffix = [0u8; 6];
    getrandom(&mut suffix)?;
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        name.to_string_lossy(),
        data_encoding::HEXLOWER.encode(&suffix)
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| CoreError::Unavailable(format!("creating {}: {e}", tmp.display())))?;
    let result = (|| {
        let mut out = BufWriter::new(file);
        let made = fill(&mut out)?;
        let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
        file.sync_all().map_err(write_err)?;
        let bytes = file.metadata().map_err(write_err)?.len();
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| {
            CoreError::Unavailable(format!("renaming the backup to {}: {e}", path.display()))
        })?;
        if let Ok(d) = std::fs::File::open(&dir) {
            // The rename is durable once the directory is synced.
            let _ = d.sync_all();
        }
        Ok((made, bytes))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn getrandom(buf: &mut [u8]) -> Result<(), CoreError> {
    let random = coffer_crypto::SecretBytes::random(buf.len())
        .map_err(|e| CoreError::Store(StoreError::Crypto(e)))?;
    buf.copy_from_slice(random.expose_secret());
    Ok(())
}
