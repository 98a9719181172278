//! coffer's storage.
//!
//! Two layers (docs/architecture.md):
//! - [`Backend`]: a storage engine for sealed rows (keyed hashes and ciphertexts). Backends:
//!   [`MemoryBackend`], [`SqliteBackend`] (the embedded default); the TPM NV and PostgreSQL
//!   backends live in their own crates.
//! - [`SecretStore`]: the data model in plaintext terms (get, set, delete, list, versions,
//!   metadata), implemented once by [`EncryptedStore`] over any backend.
//!
//! The `conformance` suite (feature `conformance`) is the contract every backend passes.
#![forbid(unsafe_code)]

mod backend;
pub mod batch;
mod encrypted;
mod error;
pub mod events;
mod header;
mod memory;
pub mod snapshot;
mod sqlite;
mod store;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use backend::{
    Backend, ChangedSecret, KeyRotation, KeyWraps, Live, Modification, Modified, ModifyPlan,
    NameHash, NamespaceId, NamespaceKeyRow, NamespaceRow, NewSecret, Planned, ReadNewest, Rekey,
    RemoteChange, RemoteChanges, Rewrapped, SecretId, SecretRow, Shared, VersionRow, WRAPS_CHANGED,
    WritePlan, Written, check_modification, check_plan,
};
pub use coffer_types::{SecretMeta, SecretSummary, VersionInfo};
pub use encrypted::EncryptedStore;
pub use error::{CAS_MISMATCH, Gone, StoreError};
pub use events::{EventPlan, EventRows, Feed, MemoryEvents, Retention, SealedEvent};
pub use header::StoreHeader;
pub use memory::MemoryBackend;
pub use snapshot::{Counts, ImportCheck, RowRecord, SnapshotRow};
pub use sqlite::SqliteBackend;
pub use store::{
    Change, DeriveValue, Describe, Followed, ListQuery, MAX_TAGS, Mark, NameFilter, NamespaceState,
    Page, RekeyProgress, Resolve, RotationStep, Secret, SecretStore, TagChange, Write, WriteMode,
    WriteValue,
};

#[cfg(test)]
mod memory_conformance {
    use super::*;
    use std::sync::Arc;

    fn make() -> conformance::Made<MemoryBackend> {
        (Arc::new(MemoryBackend::new()), Box::new(()))
    }
    crate::conformance_suite!(make);
}

#[cfg(test)]
mod sqlite_conformance {
    use super::*;
    use std::sync::Arc;

    fn make() -> conformance::Made<SqliteBackend> {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = SqliteBackend::open(&dir.path().join("coffer.db")).expect("open");
        (Arc::new(backend), Box::new(dir))
    }
    crate::conformance_suite!(make);
}
