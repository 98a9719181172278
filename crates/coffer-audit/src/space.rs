//! Free space in the audit directory's file system (`statvfs`): below the configured reserve
//! the log refuses records (`audit_unavailable`) before the disk is actually full, so a
//! flood of requests cannot leave the daemon unable to record anything at all; below twice
//! the reserve it warns.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::message::Shared;

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

/// Looks at the free space of `dir`'s file system: below the reserve the log is marked
/// unhealthy (records are refused, `audit_unavailable`) with an error logged once; below
/// twice the reserve a warning is logged once.
pub(crate) fn watch(dir: &Path, shared: &Shared) {
    let Ok(free) = free_bytes(dir) else {
        return;
    };
    let before = shared.free.swap(free, Ordering::Relaxed);
    let reserve = shared.reserve;
    if reserve == 0 {
        return;
    }
    let low = reserve.saturating_mul(2);
    if free < low && (before >= low || before == u64::MAX) && free >= reserve {
        tracing::warn!(
            dir = %dir.display(),
            free_bytes = free,
            reserve_bytes = reserve,
            "the audit directory is running out of space"
        );
    }
    if free < reserve {
        if !shared.full.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                dir = %dir.display(),
                free_bytes = free,
                reserve_bytes = reserve,
                "the audit directory has less free space than its reserve: requests are \
                 refused (audit_unavailable) until space is freed"
            );
        }
        shared.healthy.store(false, Ordering::Release);
    } else if shared.full.swap(false, Ordering::AcqRel) {
        tracing::info!(dir = %dir.display(), free_bytes = free, "the audit directory has space again");
    }
}
