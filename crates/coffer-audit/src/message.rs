//! What the [`crate::AuditLog`] handle and the writer share: the health state.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

/// State shared with [`crate::AuditLog`] for its health check.
pub(crate) struct Shared {
    /// False after a failed write, until a write or a probe succeeds.
    pub(crate) healthy: AtomicBool,
    /// Set once the log is shut down.
    pub(crate) closed: AtomicBool,
    /// The file the next record is appended to.
    pub(crate) current: Mutex<PathBuf>,
}
