//! [`AuditConfig`]: how the audit log is set up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How the audit log is set up.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The directory of audit files; created with mode 0700 if missing (files are 0600).
    pub dir: PathBuf,
    /// A new file is started once the current one reaches this size.
    pub max_file_bytes: u64,
    /// How often written records are `fdatasync`ed and a checkpoint written.
    pub sync_interval: Duration,
    /// How often the syncer checks that the current file is still the one written to and
    /// that it and the directory are writable (a descriptor kept open would not notice).
    pub check_interval: Duration,
    /// Write names and namespaces in the clear instead of as `hmac-sha256:<hex>`.
    pub plain_names: bool,
    /// A second copy of the checkpoint, outside the audit directory (the daemon uses
    /// `DATA_DIR/audit-anchor`), so deleting the whole directory is detected at open.
    pub anchor: Option<PathBuf>,
    /// Retention: at most this many audit files are kept (0: no limit). Older ones are
    /// removed at rotation, after a MAC'd `retention` record names the new oldest record.
    pub keep_files: usize,
    /// Retention: at most this many bytes of audit files are kept (0: no limit).
    pub max_total_bytes: u64,
    /// Free space the audit directory's file system keeps: below it, requests are refused
    /// (`audit_unavailable`) before the disk is full; below twice it, a warning is logged.
    pub reserve_bytes: u64,
    /// A monotonic counter (the TPM's NV counter, where the daemon's store uses a TPM) the
    /// checkpoint records, so a rollback of the directory together with its anchor is
    /// detected at unseal (see [`crate::counter`]). `None`: no counter.
    pub counter: Option<Arc<dyn crate::AuditCounter>>,
    /// The counter advances at most this often (and at shutdown and seal, when records were
    /// checkpointed since): TPM NV wears with every write.
    pub counter_interval: Duration,
    /// The hub writing the log, when several hubs serve one store: every record names it
    /// (`hub`), under the chain's tags like the rest of the line.
    pub hub: Option<String>,
}

/// How often the counter advances at most, by default: once a minute.
pub const DEFAULT_COUNTER_INTERVAL: Duration = Duration::from_secs(60);

/// The default free-space reserve: 64 MiB.
pub const DEFAULT_RESERVE: u64 = 64 << 20;

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("audit"),
            max_file_bytes: 64 << 20,
            sync_interval: Duration::from_secs(1),
            check_interval: Duration::from_millis(250),
            plain_names: false,
            anchor: None,
            keep_files: 0,
            max_total_bytes: 0,
            reserve_bytes: DEFAULT_RESERVE,
            counter: None,
            counter_interval: DEFAULT_COUNTER_INTERVAL,
            hub: None,
        }
    }
}
