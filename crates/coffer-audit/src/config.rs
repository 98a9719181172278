//! [`AuditConfig`]: how the audit log is set up.

use std::path::PathBuf;
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
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("audit"),
            max_file_bytes: 64 << 20,
            sync_interval: Duration::from_secs(1),
            check_interval: Duration::from_millis(250),
            plain_names: false,
        }
    }
}
