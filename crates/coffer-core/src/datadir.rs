//! The data directory: where the database and (by default) the key file live, and the lock
//! that keeps two coffer processes off one store.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Database file name.
pub const DATABASE: &str = "coffer.db";
/// Default key file name.
pub const KEY_FILE: &str = "coffer.key";
const LOCK_FILE: &str = "coffer.lock";
/// coffer's TPM authorization (docs/key-hierarchy.md, "TPM authorization"): the secret the
/// authValues of its NV indices and sealed node keys are derived from. Back it up with the
/// store: without it, NV indices stay unreadable and TPM slots do not unseal.
pub const TPM_AUTH: &str = "tpm-auth.key";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Another process holds the lock.
    #[error("another coffer process is using {}; stop it first", .0.display())]
    Busy(PathBuf),
    /// I/O.
    #[error("data directory {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// A locked data directory. The lock is released on drop (and by the kernel on a crash).
pub struct DataDir {
    root: PathBuf,
    _lock: Flock<File>,
}

impl DataDir {
    /// Creates the directory (0700, parents too) when missing and takes its lock.
    pub fn lock(root: &Path) -> Result<Self, DataDirError> {
        let io_err = |source| DataDirError::Io {
            path: root.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io_err)?;
        let mode = std::fs::metadata(root).map_err(io_err)?.mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %root.display(),
                mode = format!("{mode:04o}"),
                "the data directory is accessible to other users; chmod 700 it"
            );
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(root.join(LOCK_FILE))
            .map_err(io_err)?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                DataDirError::Busy(root.to_owned())
            } else {
                io_err(io::Error::from(errno))
            }
        })?;
        Ok(Self {
            root: root.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database file.
    pub fn database(&self) -> PathBuf {
        self.root.join(DATABASE)
    }

    /// The default key file.
    pub fn default_key_file(&self) -> PathBuf {
        self.root.join(KEY_FILE)
    }

    /// Removes the database and its journal files (for a forced re-initialization).
    pub fn remove_database(&self) -> Result<(), DataDirError> {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let path = self.root.join(format!("{DATABASE}{suffix}"));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(DataDirError::Io { path, source }),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let held = DataDir::lock(&root).unwrap();
        assert!(matches!(DataDir::lock(&root), Err(DataDirError::Busy(_))));
        drop(held);
        DataDir::lock(&root).unwrap();
    }
}
