//! What `status` reports: seal state and store facts, never a value or a secret's name.

use coffer_types::Timestamp;
pub use coffer_types::reply::{
    CacheStatus, MemoryStatus, SealState, SlotSummary, StatusReport, TpmStatus,
};

pub(crate) fn show_time(t: Timestamp) -> String {
    t.to_string()
}
