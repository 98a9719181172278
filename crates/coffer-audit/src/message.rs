//! What the [`crate::AuditLog`] handle and the writer share: the health state.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// State shared with [`crate::AuditLog`] for its health check.
pub(crate) struct Shared {
    /// False after a failed write, until a write or a probe succeeds.
    pub(crate) healthy: AtomicBool,
    /// Set once the log is shut down.
    pub(crate) closed: AtomicBool,
    /// The file the next record is appended to.
    pub(crate) current: Mutex<PathBuf>,
    /// Set while a gap found at open is not acknowledged.
    pub(crate) tampered: AtomicBool,
    /// Bytes free in the audit directory's file system at the last look (`u64::MAX`: not
    /// looked yet).
    pub(crate) free: AtomicU64,
    /// The free-space reserve: below it, records are refused.
    pub(crate) reserve: u64,
    /// Set while free space is below the reserve (so the warning is logged once).
    pub(crate) full: AtomicBool,
}

impl Shared {
    /// A healthy, open log appending to `current`, free space not looked at yet.
    pub(crate) fn new(current: PathBuf, reserve: u64) -> Self {
        Self {
            healthy: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            current: Mutex::new(current),
            tampered: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            reserve,
            full: AtomicBool::new(false),
        }
    }
}
