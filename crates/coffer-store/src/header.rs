//! The store header: format, identity and key slots, kept by the backend as one record.
//!
//! The header is public data. Its slots hold the master key only in wrapped form; replacing or
//! removing them can deny service but cannot reveal or substitute a key, because every slot
//! is an authenticated encryption of the same master key.

use coffer_crypto::{SlotKind, SlotRecord};
use coffer_types::Timestamp;

use crate::{Backend, StoreError};

/// The header format this build writes.
pub const FORMAT: u32 = 1;

/// Format, identity and key slots of a store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreHeader {
    /// Header format.
    pub format: u32,
    /// Random id of the store, hex.
    pub store_id: String,
    /// When the store was initialized.
    pub created: Timestamp,
    /// The key slots.
    pub slots: Vec<SlotRecord>,
}

impl StoreHeader {
    /// A header for a new store, without slots.
    pub fn new() -> Result<Self, StoreError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|_| StoreError::Crypto(coffer_crypto::CryptoError::Random))?;
        Ok(Self {
            format: FORMAT,
            store_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            created: Timestamp::now(),
            slots: Vec::new(),
        })
    }

    /// Reads the header; `Ok(None)` for a store never initialized.
    pub fn load(backend: &dyn Backend) -> Result<Option<Self>, StoreError> {
        let Some(body) = backend.header()? else {
            return Ok(None);
        };
        let header: Self =
            serde_json::from_slice(&body).map_err(|_| StoreError::Malformed("the store header"))?;
        if header.format != FORMAT {
            return Err(StoreError::unavailable(
                "reading the store header",
                format!(
                    "header format {} is not one this coffer reads ({FORMAT})",
                    header.format
                ),
            ));
        }
        Ok(Some(header))
    }

    /// Writes the header.
    pub fn save(&self, backend: &dyn Backend) -> Result<(), StoreError> {
        let body =
            serde_json::to_vec(self).map_err(|_| StoreError::Malformed("the store header"))?;
        backend.put_header(&body)
    }

    /// The next free slot id.
    pub fn next_slot_id(&self) -> u32 {
        self.slots.iter().map(|s| s.id + 1).max().unwrap_or(1)
    }

    /// Slots of one kind.
    pub fn slots_of(&self, kind: SlotKind) -> impl Iterator<Item = &SlotRecord> {
        self.slots.iter().filter(move |s| s.kind() == kind)
    }
}
