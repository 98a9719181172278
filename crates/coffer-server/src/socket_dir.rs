//! The directory a socket lives in, and the socket file's mode (issue 12, item 6).
//!
//! A client trusts whatever answers at the socket's path, so nobody but the daemon's user
//! (and root) may be able to put anything there. Before anything is opened, the daemon
//! checks the socket's directory: a real directory (not a link), owned by the daemon's
//! user, writable by nobody else; and every directory above it owned by root or that user
//! and writable by nobody else unless it is sticky (as `/tmp` is: others cannot rename or
//! delete what they do not own in it). A missing directory is created: 0700 for a user's
//! daemon (only that user reaches it), 0755 for root's (every user may connect; policies
//! decide what each may do).
//!
//! The socket file itself is opened to every user (0666) through a descriptor that refers
//! to the socket's own inode (`O_PATH | O_NOFOLLOW`), so the mode change can never follow a
//! link someone put in its place.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

/// Group- and other-write bits.
const OTHERS_WRITE: u32 = 0o022;
/// The sticky bit.
const STICKY: u32 = 0o1000;

fn refused(dir: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing the socket directory {}: {why}; another user could put their own socket \
             there. Remove it (a daemon creates it, mode 0700) or choose a directory only you \
             can write with --socket (or XDG_RUNTIME_DIR)",
            dir.display()
        ),
    )
}

/// The directory `socket` is (to be) bound in.
fn directory_of(socket: &Path) -> PathBuf {
    match socket.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Checks the socket's directory (creating it when missing) as the module header says.
pub fn prepare(socket: &Path) -> io::Result<()> {
    let me = nix::unistd::geteuid().as_raw();
    let dir = directory_of(socket);
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mode = if me == 0 { 0o755 } else { 0o700 };
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)?;
            // The umask may have taken bits away; what was asked is what is meant.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))?;
            std::fs::symlink_metadata(&dir)?
        }
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Err(refused(&dir, "it is a symbolic link".to_owned()));
    }
    if !meta.is_dir() {
        return Err(refused(&dir, "it is not a directory".to_owned()));
    }
    if meta.uid() != me {
        return Err(refused(
            &dir,
            format!(
                "it is owned by uid {}, not by the daemon's user (uid {me})",
                meta.uid()
            ),
        ));
    }
    if meta.mode() & OTHERS_WRITE != 0 {
        return Err(refused(
            &dir,
            format!(
                "its mode {:04o} lets others write in it (chmod go-w it)",
                meta.mode() & 0o7777
            ),
        ));
    }
    // The directories above: whoever can rename an entry of one can swap the whole
    // directory under the socket.
    let real = std::fs::canonicalize(&dir)?;
    for above in real.ancestors().skip(1) {
        let meta = std::fs::metadata(above)?;
        let mode = meta.mode();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(refused(
                &dir,
                format!(
                    "{} above it is owned by uid {}, not by root or the daemon's user",
                    above.display(),
                    meta.uid()
                ),
            ));
        }
        if mode & OTHERS_WRITE != 0 && mode & STICKY == 0 {
            return Err(refused(
                &dir,
                format!(
                    "{} above it (mode {:04o}) lets others rename what is in it",
                    above.display(),
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Opens the socket just bound at `path` to every user (0666) without following a link:
/// the mode is set through a descriptor of the file itself, which must be a socket.
pub fn open_to_all(path: &Path) -> io::Result<()> {
    set_access(path, 0o666, None)
}

/// Sets the mode of the socket just bound at `path` (and its group, when `group` is given)
/// without following a link: through a descriptor of the file itself, which must be a
/// socket.
pub fn set_access(path: &Path, mode: u32, group: Option<u32>) -> io::Result<()> {
    let fd = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let stat = nix::sys::stat::fstat(&fd)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is no longer the socket just bound", path.display()),
        ));
    }
    // fchmod refuses an O_PATH descriptor; its /proc link names the same inode (resolving
    // it reaches that inode itself, never a path that could be swapped).
    let by_fd = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let failed = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot {what} {} through {} (is /proc mounted?): {e}",
                path.display(),
                by_fd.display()
            ),
        )
    };
    if let Some(gid) = group {
        std::os::unix::fs::chown(&by_fd, None, Some(gid))
            .map_err(|e| failed(&format!("give group {gid}"), e))?;
    }
    std::fs::set_permissions(&by_fd, std::fs::Permissions::from_mode(mode))
        .map_err(|e| failed(&format!("set mode {mode:04o} on"), e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn a_missing_directory_is_made_and_a_writable_or_linked_one_refused() {
        let root = tempfile::tempdir().unwrap();
        mode(root.path(), 0o755);
        let made = root.path().join("run/coffer.sock");
        prepare(&made).unwrap();
        let m = std::fs::metadata(root.path().join("run")).unwrap().mode() & 0o777;
        let me = nix::unistd::geteuid().as_raw();
        assert_eq!(m, if me == 0 { 0o755 } else { 0o700 });

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        mode(&open, 0o777);
        let e = prepare(&open.join("coffer.sock")).unwrap_err().to_string();
        assert!(e.contains("0777") && e.contains("--socket"), "{e}");
        mode(&open, 0o1777);
        assert!(
            prepare(&open.join("coffer.sock")).is_err(),
            "sticky is not enough here"
        );

        let link = root.path().join("link");
        std::os::unix::fs::symlink(root.path().join("run"), &link).unwrap();
        let e = prepare(&link.join("coffer.sock")).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");

        let file = root.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = prepare(&file.join("coffer.sock")).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");

        // A directory above that others may write (and is not sticky).
        let wide = root.path().join("wide");
        std::fs::create_dir_all(wide.join("run")).unwrap();
        mode(&wide.join("run"), 0o700);
        mode(&wide, 0o777);
        let e = prepare(&wide.join("run/coffer.sock"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("above it"), "{e}");
    }

    #[test]
    fn the_mode_is_set_on_the_socket_and_never_through_a_link() {
        let root = tempfile::tempdir().unwrap();
        let sock = root.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        open_to_all(&sock).unwrap();
        assert_eq!(std::fs::metadata(&sock).unwrap().mode() & 0o777, 0o666);

        let target = root.path().join("target");
        std::fs::write(&target, b"").unwrap();
        mode(&target, 0o600);
        let link = root.path().join("l.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_to_all(&link).is_err());
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_file(&link).unwrap();
        std::fs::hard_link(&target, &link).unwrap();
        assert!(open_to_all(&link).is_err(), "a file that is not a socket");
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o600);
    }
}
