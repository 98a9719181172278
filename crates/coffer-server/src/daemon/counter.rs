//! The audit log's counter: the TPM's NV counter (`coffer_tpm::NvCounter`, index
//! `0x01530000`), used where a TPM is reachable and the store uses it (a `tpm` or
//! `tpm+passphrase` slot, or `--store tpm-nv`). Elsewhere the log has no counter and behaves
//! as before (a rollback of the audit directory together with `audit-anchor` is then not
//! detected; docs/key-hierarchy.md).

use std::sync::Arc;

use coffer_audit::{AuditCounter, CounterState};
use coffer_store::{Backend, StoreHeader};
use coffer_tpm::{NvCounter, Tpm};
use coffer_types::SlotKind;

use super::config::StoreKind;

/// [`NvCounter`] as the audit log's counter.
#[derive(Debug)]
struct TpmCounter(NvCounter);

impl AuditCounter for TpmCounter {
    fn state(&self) -> Result<CounterState, String> {
        Ok(match self.0.state().map_err(|e| e.to_string())? {
            coffer_tpm::CounterState::Missing => CounterState::Missing,
            coffer_tpm::CounterState::Unset => CounterState::Unset,
            coffer_tpm::CounterState::At(v) => CounterState::At(v),
        })
    }

    fn define(&self) -> Result<(), String> {
        self.0.define().map_err(|e| e.to_string())
    }

    fn increment(&self) -> Result<u64, String> {
        self.0.increment().map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        format!("TPM NV counter 0x{:08x}", coffer_tpm::COUNTER_HANDLE)
    }
}

/// The counter for the audit log, when the store uses the TPM.
pub(super) fn audit_counter(
    tpm: Option<&Arc<Tpm>>,
    store: StoreKind,
    backend: &dyn Backend,
) -> Option<Arc<dyn AuditCounter>> {
    let tpm = tpm?;
    let uses_tpm = store == StoreKind::TpmNv
        || match StoreHeader::load(backend) {
            Ok(Some(header)) => {
                header.slots_of(SlotKind::Tpm).next().is_some()
                    || header.slots_of(SlotKind::TpmPassphrase).next().is_some()
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the store header to see whether it uses the TPM");
                false
            }
        };
    uses_tpm.then(|| {
        tracing::info!(
            handle = format_args!("0x{:08x}", coffer_tpm::COUNTER_HANDLE),
            "the audit checkpoint is anchored in the TPM's NV counter"
        );
        Arc::new(TpmCounter(NvCounter::new(tpm.clone()))) as Arc<dyn AuditCounter>
    })
}
