//! Putting content into a destination (docs/agent.md, Writing): only on tmpfs or ramfs unless
//! allowed, owner and mode set before the content is visible, atomically by default, never
//! when nothing would change.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nix::sys::statfs::{TMPFS_MAGIC, statfs};
use zeroize::Zeroizing;

use super::config::{Common, WriteMode};

/// Where and how to write.
#[derive(Debug, Clone)]
pub struct Target {
    /// The destination.
    pub path: PathBuf,
    /// Its mode.
    pub mode: u32,
    /// Its owner.
    pub uid: u32,
    /// Its group.
    pub gid: u32,
    /// Atomic or in place.
    pub write: WriteMode,
    /// Whether persistent storage is accepted.
    pub allow_persistent: bool,
}

impl Target {
    /// A sink's target, with the agent's own uid and gid where the sink names none.
    pub fn of(c: &Common) -> Self {
        Self {
            path: c.destination.clone(),
            mode: c.mode,
            uid: c.uid.unwrap_or_else(|| nix::unistd::geteuid().as_raw()),
            gid: c.gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
            write: c.write,
            allow_persistent: c.allow_persistent,
        }
    }

    /// A file of the agent's own (status, metrics): atomic, 0644, anywhere.
    pub fn own(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            mode: 0o644,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            write: WriteMode::Atomic,
            allow_persistent: true,
        }
    }

    fn dir(&self) -> &Path {
        // A destination is an absolute path naming a file (config.rs checks), so it has a
        // parent; "/" is only a fallback.
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file already held this content with this owner, group and mode.
    Unchanged,
    /// The file was written.
    Written,
}

/// Checks a sink's destination at startup: its directory exists (made when `create_dirs`),
/// is on tmpfs or ramfs unless allowed, and the destination is neither a symlink nor a
/// directory.
pub fn prepare(c: &Common) -> anyhow::Result<()> {
    let target = Target::of(c);
    let dir = target.dir();
    if !dir.exists() {
        if !c.create_dirs {
            bail!(
                "the directory {} does not exist (create it, or set create_dirs = true)",
                dir.display()
            );
        }
        // A directory that does not exist yet cannot be a mount point: the filesystem it
        // will be on is its nearest existing ancestor's.
        let ancestor = dir
            .ancestors()
            .find(|a| a.exists())
            .unwrap_or(Path::new("/"));
        if !target.allow_persistent {
            check_volatile(ancestor, &target.path)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    }
    if !target.allow_persistent {
        check_volatile(dir, &target.path)?;
    }
    check_dir(dir)?;
    check_not_special(&target.path)?;
    remove_leftovers(&target.path);
    Ok(())
}

/// The temporary file's name for `destination`, without its random part: `.NAME.coffer-`.
fn temp_prefix(destination: &Path) -> String {
    let name = destination
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.coffer-")
}

/// Removes temporary files an agent killed in the middle of a write left beside the
/// destination (they may hold a value).
fn remove_leftovers(destination: &Path) {
    let prefix = temp_prefix(destination);
    let Some(dir) = destination.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(".tmp")
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a temporary file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a temporary file left by an interrupted write")
                }
            }
        }
    }
}

/// Refuses a directory on anything but tmpfs or ramfs.
fn check_volatile(dir: &Path, destination: &Path) -> anyhow::Result<()> {
    let fs = statfs(dir)
        .with_context(|| format!("cannot tell which filesystem {} is on", dir.display()))?;
    let kind = fs.filesystem_type();
    // ramfs's magic (linux/magic.h), which nix does not name; `f_type` is a signed word
    // whose width varies, so compare its low 32 bits.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ramfs = kind.0 as u32 == 0x8584_58f6;
    if kind == TMPFS_MAGIC || ramfs {
        return Ok(());
    }
    bail!(
        "{} is on a persistent filesystem (type 0x{:x}, not tmpfs or ramfs): a secret written \
         there outlives a reboot and may reach backups. Put it under /run or /dev/shm, or set \
         allow_persistent = true for this sink",
        destination.display(),
        kind.0
    )
}

/// Refuses a directory another user could change: whoever can rename or replace files in it
/// could swap the file the application reads for one of their own. It must belong to root or
/// to the agent's user, and be writable by no one else, unless it is sticky (as /dev/shm and
/// /tmp are: there others cannot rename or remove the agent's files).
fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot inspect the directory {}", dir.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        bail!(
            "the directory {} belongs to uid {}, neither root nor the agent (uid {me}): its \
             owner could replace the files the agent writes there",
            dir.display(),
            meta.uid()
        );
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        bail!(
            "the directory {} is writable by its group or by others (mode {:o}): they could \
             replace the files the agent writes there; make it 0755 or 0750",
            dir.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Refuses a destination that is a symlink, a directory or anything but a regular file.
fn check_not_special(path: &Path) -> anyhow::Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            bail!(
                "{} is a symbolic link: refusing to write through it",
                path.display()
            )
        }
        Ok(m) if m.is_dir() => bail!("{} is a directory", path.display()),
        Ok(m) if !m.is_file() => bail!("{} is not a regular file", path.display()),
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    }
}

/// Opens an existing destination for reading, not following a symlink.
fn open_nofollow(path: &Path, write: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Whether `path` already holds exactly `content` with the target's owner, group and mode.
fn same(target: &Target, meta: &std::fs::Metadata, content: &[u8]) -> anyhow::Result<bool> {
    if meta.mode() & 0o7777 != target.mode
        || meta.uid() != target.uid
        || meta.gid() != target.gid
        || meta.len() != content.len() as u64
    {
        return Ok(false);
    }
    let mut file = open_nofollow(&target.path, false)
        .with_context(|| format!("cannot read {}", target.path.display()))?;
    let mut old = Zeroizing::new(Vec::with_capacity(content.len()));
    file.read_to_end(&mut old)
        .with_context(|| format!("cannot read {}", target.path.display()))?;
    Ok(old.as_slice() == content)
}

/// Reads what the destination holds now (to recompute a hash with its salt), if anything.
pub fn current(path: &Path) -> Option<Zeroizing<Vec<u8>>> {
    let mut file = open_nofollow(path, false).ok()?;
    let mut out = Zeroizing::new(Vec::new());
    file.read_to_end(&mut out).ok()?;
    Some(out)
}

/// Writes `content` to the target unless it already holds it with the right owner, group
/// and mode.
pub fn write(target: &Target, content: &[u8]) -> anyhow::Result<Outcome> {
    if !target.allow_persistent {
        check_volatile(target.dir(), &target.path)?;
    }
    check_dir(target.dir())?;
    let existing = check_not_special(&target.path)?;
    if let Some(meta) = &existing
        && same(target, meta, content)?
    {
        return Ok(Outcome::Unchanged);
    }
    match target.write {
        WriteMode::Atomic => atomic(target, content)?,
        WriteMode::InPlace => in_place(target, content, existing.is_some())?,
    }
    Ok(Outcome::Written)
}

/// Sets owner then mode (a chown may clear set-id bits) on an open file.
fn own(file: &File, target: &Target) -> anyhow::Result<()> {
    std::os::unix::fs::fchown(file, Some(target.uid), Some(target.gid)).with_context(|| {
        format!(
            "cannot give {} to uid {} gid {}",
            target.path.display(),
            target.uid,
            target.gid
        )
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(target.mode))
        .with_context(|| format!("cannot set the mode of {}", target.path.display()))
}

/// A temporary file beside the destination, owned and moded, filled, synced, renamed over
/// it; the directory synced. The temporary file is removed on any failure.
fn atomic(target: &Target, content: &[u8]) -> anyhow::Result<()> {
    let dir = target.dir();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!("{}{hex}.tmp", temp_prefix(&target.path)));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(&tmp)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let result = (|| {
        own(&file, target)?;
        let mut file = file;
        file.write_all(content)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &target.path).with_context(|| {
            format!(
                "cannot rename a temporary file over {}",
                target.path.display()
            )
        })
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(())
}

/// Rewrites the destination in place (a reader may see a partial file meanwhile).
fn in_place(target: &Target, content: &[u8], exists: bool) -> anyhow::Result<()> {
    let mut file = if exists {
        open_nofollow(&target.path, true)
    } else {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&target.path)
    }
    .with_context(|| format!("cannot open {}", target.path.display()))?;
    if !file.metadata()?.is_file() {
        bail!("{} is not a regular file", target.path.display());
    }
    own(&file, target)?;
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(content))
        .and_then(|()| file.set_len(content.len() as u64))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", target.path.display()))?;
    if !exists {
        sync_dir(target.dir());
    }
    Ok(())
}

/// Removes the destination (an in-place one, which may be a mount point, is emptied
/// instead); answers whether anything was there.
pub fn remove(target: &Target) -> anyhow::Result<bool> {
    let Some(_) = check_not_special(&target.path)? else {
        return Ok(false);
    };
    match target.write {
        WriteMode::Atomic => {
            std::fs::remove_file(&target.path)
                .with_context(|| format!("cannot remove {}", target.path.display()))?;
            sync_dir(target.dir());
        }
        WriteMode::InPlace => {
            let file = open_nofollow(&target.path, true)
                .with_context(|| format!("cannot open {}", target.path.display()))?;
            if file.metadata()?.len() == 0 {
                return Ok(false);
            }
            file.set_len(0)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("cannot empty {}", target.path.display()))?;
        }
    }
    Ok(true)
}

/// Syncs a directory so a rename or unlink in it is durable (best effort: on tmpfs it is a
/// no-op, and the content is already in place).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shm() -> tempfile::TempDir {
        tempfile::tempdir_in("/dev/shm").expect("/dev/shm (tmpfs) is needed for these tests")
    }

    #[test]
    fn leftovers_of_an_interrupted_write_are_removed_and_nothing_else() {
        let dir = shm();
        let dest = dir.path().join("db");
        let leftover = dir.path().join(".db.coffer-0011223344556677.tmp");
        let other = dir.path().join(".other.coffer-0011223344556677.tmp");
        std::fs::write(&leftover, "x").unwrap();
        std::fs::write(&other, "x").unwrap();
        remove_leftovers(&dest);
        assert!(!leftover.exists());
        assert!(other.exists());
    }

    #[test]
    fn writes_once_then_leaves_alone_and_refuses_symlinks() {
        let dir = shm();
        let path = dir.path().join("f");
        let t = Target {
            mode: 0o440,
            ..Target::own(&path)
        };
        let t = Target {
            allow_persistent: false,
            ..t
        };
        assert_eq!(write(&t, b"one").unwrap(), Outcome::Written);
        assert_eq!(write(&t, b"one").unwrap(), Outcome::Unchanged);
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o440);
        assert_eq!(write(&t, b"two").unwrap(), Outcome::Written);
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = write(
            &Target {
                path: link,
                ..t.clone()
            },
            b"x",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("symbolic link"), "{e:#}");
        let e = write(
            &Target {
                path: dir.path().to_owned(),
                ..t
            },
            b"x",
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("directory"), "{e:#}");
    }

    #[test]
    fn a_directory_others_may_change_is_refused_unless_sticky() {
        let dir = shm();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        let target = |d: &Path| Target {
            allow_persistent: false,
            ..Target::own(&d.join("f"))
        };
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write(&target(&open), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("writable by its group"), "{e:#}");
        assert!(!open.join("f").exists());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(write(&target(&open), b"x").unwrap(), Outcome::Written);
        // Another user's directory (the tests run as root, which may give it away).
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let e = write(&target(&theirs), b"x").unwrap_err();
        assert!(format!("{e:#}").contains("belongs to uid 65534"), "{e:#}");
    }
}
