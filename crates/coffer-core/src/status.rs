//! What `status` reports: seal state and store facts, never a value or a secret's name; and
//! what of it a caller may see.
//!
//! The details (the store's id, key-file paths, the TPM's TCTI, and the reason the store is
//! sealed or unavailable, which carries key-file paths and TPM error text) go only to
//! callers allowed `meta` on `sys/status` (socket and HTTP `status`) or `read` on
//! `sys/health` (HTTP `sys/health`); everyone else gets [`without_detail`].

use coffer_types::Timestamp;
pub use coffer_types::reply::{
    CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus,
};

/// Where a caller must hold `meta` to see the status's details.
pub const STATUS_PATH: &str = "sys/status";
/// Where a token must hold `read` to see the details in `sys/health`.
pub const HEALTH_PATH: &str = "sys/health";

pub(crate) fn show_time(t: Timestamp) -> String {
    t.to_string()
}

/// The report without its details: the seal state with a fixed reason, the slots' kinds
/// without paths, no store id, no TCTI.
pub fn without_detail(mut report: StatusReport) -> StatusReport {
    report.reason = match report.state {
        SealState::Unsealed => None,
        SealState::Sealed => Some("sealed; an operator opens it with `coffer unseal`".to_owned()),
        SealState::Unavailable => Some(
            "unavailable; the daemon's log and an operator's `coffer status` say why".to_owned(),
        ),
    };
    report.store_id = None;
    report.daemon = None;
    report.tpm.tcti = None;
    for slot in &mut report.slots {
        slot.path = None;
    }
    report.detail_withheld = true;
    report
}
