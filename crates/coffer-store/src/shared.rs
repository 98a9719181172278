//! A store shared by several daemons (hubs on one PostgreSQL database): how one daemon
//! learns what the others changed, so what it keeps in memory (namespace keys, name indexes,
//! decrypted values, policies and tokens) follows.
//!
//! The backend notes every committed change (quiet ones too) by keyed hashes and the sealed
//! name; [`Shared::changes_after`] hands a daemon the changes the others made, and
//! [`crate::EncryptedStore::follow`] turns them into names its caches drop.

use crate::StoreError;
use crate::backend::{NameHash, NamespaceId, SecretId};

/// A change another daemon committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteChange {
    /// The namespace changed; `None`: the store as a whole (its header, every namespace's
    /// keys).
    pub namespace: Option<NamespaceId>,
    /// The secret changed; `None`: the namespace itself (created, its key wraps or
    /// generation changed).
    pub secret: Option<ChangedSecret>,
}

/// A secret another daemon changed (written, described, revoked, destroyed or deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedSecret {
    /// Its identity.
    pub id: SecretId,
    /// Its lookup hash.
    pub name_hash: NameHash,
    /// Its name, sealed under the namespace key (as in its row).
    pub name_ct: Vec<u8>,
}

/// A page of changes other daemons made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteChanges {
    /// Changes after the one asked for were dropped before they were read: the daemon must
    /// drop everything it keeps.
    pub lost: bool,
    /// The newest change this page covers (ask after it next).
    pub newest: u64,
    /// The changes, oldest first (this daemon's own left out).
    pub changes: Vec<RemoteChange>,
}

/// What a backend shared by several daemons offers ([`crate::Backend::shared`]).
pub trait Shared: Send + Sync {
    /// Wakes when another daemon committed a change; holds the newest change number seen.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Changes other daemons made after change `after`, up to `limit`.
    fn changes_after(&self, after: u64, limit: usize) -> Result<RemoteChanges, StoreError>;

    /// This daemon's name among those sharing the store.
    fn member(&self) -> &str;

    /// The newest change when the backend was opened: a daemon applies every change after
    /// it (what it read at open already includes the ones before).
    fn opened_at(&self) -> u64;
}
