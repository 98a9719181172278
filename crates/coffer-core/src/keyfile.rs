//! Key files: the secret of a `file` slot (reference 004, section 1).
//!
//! A key file is exactly 32 bytes, a regular file, owned by the daemon's user and readable by
//! it alone (no group or other permission bits). Anything else is refused with a message
//! naming the path and what to fix; the daemon then starts with the store unavailable and
//! retries until it is fixed. A minted key file is created 0600 (parents 0700), written,
//! synced, and its directory synced, before anything depends on it.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use coffer_crypto::SecretBytes;
use coffer_crypto::slot::KEY_FILE_LEN;

/// What is wrong with a key file. Every message names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Nothing at the path.
    #[error("key file {} does not exist", .0.display())]
    Missing(PathBuf),
    /// A directory (or other non-file) at the path.
    #[error("key file {} is not a regular file; point at a file such as {}", .0.display(), .0.join("coffer.key").display())]
    NotAFile(PathBuf),
    /// Group or other may access it.
    #[error("key file {} has mode {mode:04o}; it must be readable by its owner only (chmod 600 {})", .path.display(), .path.display())]
    Permissions {
        /// The path.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// Owned by someone else.
    #[error("key file {} is owned by uid {owner}, not by uid {expected} that runs coffer", .path.display())]
    Owner {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The daemon's uid.
        expected: u32,
    },
    /// Not 32 bytes.
    #[error("key file {} is {len} bytes; a coffer key file is exactly {KEY_FILE_LEN} bytes", .path.display())]
    Size {
        /// The path.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
    /// Already exists where one was to be minted.
    #[error("key file {} already exists; refusing to overwrite it", .0.display())]
    Exists(PathBuf),
    /// An I/O failure.
    #[error("key file {}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Reads a key file, checking it first.
pub fn read(path: &Path) -> Result<SecretBytes, KeyFileError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(KeyFileError::Missing(path.to_owned()));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    // Check the opened file, not the path, so nothing can swap it in between.
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile(path.to_owned()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid && euid != 0 {
        return Err(KeyFileError::Owner {
            path: path.to_owned(),
            owner: meta.uid(),
            expected: euid,
        });
    }
    if meta.len() != KEY_FILE_LEN as u64 {
        return Err(KeyFileError::Size {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut key = SecretBytes::zeroed(KEY_FILE_LEN);
    file.read_exact(key.expose_secret_mut())
        .map_err(io_err(path))?;
    Ok(key)
}

/// Creates a new key file of 32 random bytes; refuses to replace one.
pub fn mint(path: &Path) -> Result<SecretBytes, KeyFileError> {
    if path.is_dir() {
        return Err(KeyFileError::NotAFile(path.to_owned()));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_err(parent))?;
    }
    let key = SecretBytes::random(KEY_FILE_LEN).map_err(|_| KeyFileError::Io {
        path: path.to_owned(),
        source: io::Error::other("the random source failed"),
    })?;
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(KeyFileError::Exists(path.to_owned()));
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let written = file
        .write_all(key.expose_secret())
        .and_then(|()| file.sync_all());
    if let Err(e) = written {
        // Never leave a short key file behind to be mistaken for a real one.
        let _ = fs::remove_file(path);
        return Err(io_err(path)(e));
    }
    if let Some(parent) = parent {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(io_err(parent))?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn minted_files_are_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/coffer.key");
        let key = mint(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        for d in [dir.path().join("a"), dir.path().join("a/b")] {
            assert_eq!(fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert!(read(&path).unwrap().ct_eq(&key));
        assert!(matches!(mint(&path), Err(KeyFileError::Exists(_))));
    }

    #[test]
    fn each_failure_names_the_path_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coffer.key");
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("does not exist") && err.contains("coffer.key"),
            "{err}"
        );

        fs::write(&path, [0u8; 31]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(
            err.contains("31 bytes") && err.contains("exactly 32"),
            "{err}"
        );

        fs::write(&path, [0u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("0644") && err.contains("chmod 600"), "{err}");

        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        assert!(matches!(mint(dir.path()), Err(KeyFileError::NotAFile(_))));
    }
}
