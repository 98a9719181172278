//! The store header: format, identity and key slots, kept by the backend as one record.
//!
//! The header is public data. Its slots hold the master key only in wrapped form; replacing or
//! removing them can deny service but cannot reveal or substitute a key, because every slot
//! is an authenticated encryption of the same master key.

use coffer_crypto::{MasterKey, SlotKind, SlotRecord};
use coffer_types::Timestamp;

use crate::{Backend, StoreError};

/// The header format this build writes. Format 2 binds each secret row's name hash and
/// state (current version, kind, times, revocation) into its sealed metadata; format 1
/// stores did not, and are refused (docs/key-hierarchy.md, "Rows bound to their names").
pub const FORMAT: u32 = 2;

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
    /// The derivation root (the store's first master key) wrapped under the current master
    /// key ([`coffer_crypto::MasterKey::wrap_root`]), once `coffer rotate-master` replaced
    /// the master key; absent, the root is the master key itself. The keys derived from the
    /// master key (row lookups, token hashes, audit keys, the event feed) come from the
    /// root, so they stay the same across a new master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// The stored body this header was loaded from (`None`: a new header): [`Self::save`]
    /// replaces only that, so two daemons sharing a store never lose each other's slots.
    #[serde(skip)]
    loaded: Loaded,
}

/// The stored body a header was read from: where it came from, not part of its value (two
/// headers with the same fields are equal, however each was read).
#[derive(Clone, Default)]
struct Loaded(Option<Vec<u8>>);

impl PartialEq for Loaded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Loaded {}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(body) => write!(f, "loaded({} bytes)", body.len()),
            None => f.write_str("new"),
        }
    }
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
            root: None,
            loaded: Loaded::default(),
        })
    }

    /// Reads the header; `Ok(None)` for a store never initialized.
    pub fn load(backend: &dyn Backend) -> Result<Option<Self>, StoreError> {
        let Some(body) = backend.header()? else {
            return Ok(None);
        };
        let mut header: Self =
            serde_json::from_slice(&body).map_err(|_| StoreError::Malformed("the store header"))?;
        if header.format == 1 {
            return Err(StoreError::unavailable(
                "reading the store header",
                "this store was made by an earlier coffer (store format 1), whose rows are not \
                 bound to their names; this coffer serves format 2 only. Read the secrets out \
                 with the earlier coffer and write them into a new store \
                 (docs/key-hierarchy.md, \"Rows bound to their names\")",
            ));
        }
        if header.format != FORMAT {
            return Err(StoreError::unavailable(
                "reading the store header",
                format!(
                    "header format {} is not one this coffer reads ({FORMAT})",
                    header.format
                ),
            ));
        }
        header.loaded = Loaded(Some(body));
        Ok(Some(header))
    }

    /// Writes the header over the one it was loaded from (a new header: only where there is
    /// none). [`StoreError::Conflict`] when the stored header changed meanwhile (another
    /// daemon sharing the store added or removed a slot, or initialized it): load it again.
    pub fn save(&self, backend: &dyn Backend) -> Result<(), StoreError> {
        let body =
            serde_json::to_vec(self).map_err(|_| StoreError::Malformed("the store header"))?;
        if backend.swap_header(self.loaded.0.as_deref(), &body)? {
            Ok(())
        } else if self.loaded.0.is_none() {
            Err(StoreError::Conflict(
                "the store was initialized meanwhile (by another hub sharing the database)",
            ))
        } else {
            Err(StoreError::Conflict(
                "the store's slots changed meanwhile (another hub sharing the database); try again",
            ))
        }
    }

    /// The derivation root under `master`: the unwrapped [`StoreHeader::root`], or a copy
    /// of `master` when the store never changed its master key.
    pub fn root(&self, master: &MasterKey) -> Result<MasterKey, StoreError> {
        match &self.root {
            None => Ok(master.duplicate()),
            Some(wrapped) => master
                .unwrap_root(wrapped, &self.store_id)
                .map_err(|source| StoreError::Corrupt {
                    what: "derivation root",
                    source,
                }),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBackend;

    #[test]
    fn a_header_read_back_equals_itself_however_its_bytes_were_laid_out() {
        // The input fuzz/corpus/store_header/regress-loaded-body found: spaced JSON, written
        // back compact, is the same header.
        let backend = MemoryBackend::new();
        let spaced = br#"{"format": 2, "store_id": "c4a3df43982293e84f17ac25cae60f8d", "created": "2026-11-30T19:44:06.1Z", "slots": []}"#;
        backend.put_header(spaced).unwrap();
        let header = StoreHeader::load(&backend).unwrap().unwrap();
        header.save(&backend).unwrap();
        let again = StoreHeader::load(&backend).unwrap().unwrap();
        assert_eq!(again, header);
        // Written over what it read: a second save of the stale copy is refused.
        let err = header.save(&backend).unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    }
}
