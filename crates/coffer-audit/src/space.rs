//! Free space in the audit directory's file system (`statvfs`): below the configured reserve
//! the log refuses records (`audit_unavailable`) before the disk is actually full, so a
//! flood of requests cannot leave the daemon unable to record anything at all; below twice
//! the reserve it warns.

use std::path::Path;

/// Bytes available to unprivileged users in the file system holding `dir`.
pub(crate) fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (avail, frsize) = (
        u64::from(st.blocks_available()),
        u64::from(st.fragment_size()),
    );
    Ok(avail.saturating_mul(frsize))
}
