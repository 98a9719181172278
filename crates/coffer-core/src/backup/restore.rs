//! Restoring a backup into a new data directory: the whole file is checked first, then read
//! again and imported in one transaction; on any failure everything restore made is removed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer_store::{Backend, SqliteBackend};

use super::crypt::Identity;
use super::read::{Rows, Unlock, Verified};
use crate::CoreError;
use crate::datadir::{DATABASE, DataDir};

/// The name under which a restored data directory keeps the backup's audit anchor: where
/// the old audit chain stood when the backup was made (the daemon does not read it; the new
/// data directory starts a new audit log).
pub const RESTORED_ANCHOR: &str = "audit-anchor.at-backup";

/// Opens the backup file anew for each pass.
pub type OpenInput<'a> = &'a dyn Fn() -> Result<Box<dyn Read>, CoreError>;

/// Restores the backup `open` reads into `dir`, which must be missing or empty. Checks the
/// whole backup (age layer, frames, counts, hash, MAC) before writing anything; on any
/// failure removes what it made, leaving `dir` empty (or missing, as it was).
pub fn restore(
    open: OpenInput<'_>,
    identity: &Identity,
    unlock: &Unlock,
    dir: &Path,
    progress: &mut dyn FnMut(&'static str, u64),
) -> Result<Verified, CoreError> {
    let existed = match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CoreError::AlreadyInitialized(format!(
                    "{} is not empty: a backup is restored only into a missing or empty \
                     directory",
                    dir.display()
                )));
            }
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(CoreError::Unavailable(format!("{}: {e}", dir.display())));
        }
    };
    let checked =
        Rows::open(open()?, identity, unlock, &mut |n| progress("checked", n))?.verify()?;
    let result = write(open, identity, unlock, dir, &checked, progress);
    if result.is_err() {
        clean(dir, existed);
    }
    result.map(|()| checked)
}

fn write(
    open: OpenInput<'_>,
    identity: &Identity,
    unlock: &Unlock,
    dir: &Path,
    checked: &Verified,
    progress: &mut dyn FnMut(&'static str, u64),
) -> Result<(), CoreError> {
    let data_dir = DataDir::lock(dir)?;
    let backend = Arc::new(SqliteBackend::open(&data_dir.root().join(DATABASE))?);
    let mut report = |n| progress("restored", n);
    let mut rows = Rows::open(open()?, identity, unlock, &mut report)?;
    let imported = backend.import(&mut rows);
    if let Some(e) = rows.failure() {
        return Err(CoreError::Integrity(e.to_string()));
    }
    imported?;
    let again = rows.finish()?;
    if again.manifest != checked.manifest {
        return Err(CoreError::Integrity(
            "the backup file changed while it was being restored".to_owned(),
        ));
    }
    drop(backend);
    if let Some(anchor) = &checked.audit_anchor {
        write_private(&data_dir.root().join(RESTORED_ANCHOR), anchor)?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CoreError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()).map(|()| f))
        .map_err(|e| CoreError::Unavailable(format!("{}: {e}", path.display())))?;
    let _ = f.flush();
    Ok(())
}

/// Removes what a failed restore made: the directory itself when it did not exist, else
/// everything in it.
fn clean(dir: &Path, existed: bool) {
    if !existed {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(path = %dir.display(), error = %e, "could not remove a failed restore");
        }
        return;
    }
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    for path in entries {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a failed restore");
        }
    }
}
