//! The [`SecretStore`] trait: the data model of DESIGN.md in plaintext terms.
//!
//! Implemented once, by [`crate::EncryptedStore`], over any [`crate::Backend`]; the core and
//! the conformance suite speak only this trait.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_types::custom::CustomMetadataChange;
use coffer_types::{
    ChangeEvent, EventAction, GeneratorSpec, Kind, Namespace, NvIndex, SecretMeta, SecretName,
    SecretSummary, Timestamp, Version, VersionInfo,
};

use crate::{StoreError, Written};

/// A decrypted secret version. Its `Debug` shows no value.
#[derive(Debug)]
pub struct Secret {
    /// The value, in locked memory.
    pub value: SecretBytes,
    /// Which version it is.
    pub version: Version,
    /// Its kind.
    pub kind: Kind,
    /// The secret's index.
    pub index: NvIndex,
    /// When the version was written.
    pub created: Timestamp,
    /// When the version is to be soft-deleted (`delete_version_after`), in the future.
    pub deletion: Option<Timestamp>,
    /// The secret's custom metadata (KV v2), never secret.
    pub custom_metadata: BTreeMap<String, String>,
}

/// Whether a write may create, update, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Create the secret or add a version (`set`).
    #[default]
    Upsert,
    /// Only create: [`StoreError::Conflict`] when the name is taken (`generate`).
    Create,
    /// Only add a version: [`StoreError::NotFound`] when there is no such secret (`rotate`).
    Update,
}

/// Computes a new value from the newest version's plaintext and kind, inside the backend's
/// transaction (a KV merge patch). It may refuse with any [`StoreError`], such as
/// [`StoreError::TooLarge`] or [`StoreError::Invalid`]; the write is then not made. It may
/// run on the backend's writer thread, while the backend holds its write lock: it should do
/// its work and return, never call the store. A panic in it is a bug; the SQLite and TPM NV
/// backends turn it into an error (nothing is written), the memory backend lets it reach the
/// caller.
pub type DeriveValue =
    Box<dyn FnOnce(&SecretBytes, Kind) -> Result<SecretBytes, StoreError> + Send>;

/// The value a [`Write`] writes.
pub enum WriteValue<'a> {
    /// This value.
    Given(&'a SecretBytes),
    /// A value computed from the newest version inside the write's transaction, so that the
    /// read and the write are one atomic step. The secret must exist
    /// ([`StoreError::NotFound`] otherwise) and its newest version must be readable: a
    /// destroyed or soft-deleted newest version answers [`StoreError::Gone`], as
    /// [`SecretStore::get`] does. Check-and-set applies as to any write.
    Derived(DeriveValue),
}

impl fmt::Debug for WriteValue<'_> {
    /// Never shows a value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Given(_) => "Given(..)",
            Self::Derived(_) => "Derived(..)",
        })
    }
}

/// What to write.
#[derive(Debug)]
pub struct Write<'a> {
    /// The value, given or derived from the newest version.
    pub value: WriteValue<'a>,
    /// The kind; `None` keeps the secret's current kind.
    pub kind: Option<Kind>,
    /// The kind of a new secret written without one.
    pub new_kind: Kind,
    /// Who writes it, recorded with the version (`uid:0`), and how the event feed calls it
    /// (`secret.written` unless said otherwise).
    pub change: Change<'a>,
    /// Create, update or either.
    pub mode: WriteMode,
    /// A new description; `None` keeps the current one.
    pub description: Option<String>,
    /// A new version limit (0: unlimited); `None` keeps the current one.
    pub max_versions: Option<u32>,
    /// The version limit of a new secret written without one (`None`: unlimited).
    pub new_max_versions: Option<u32>,
    /// How the value was minted, when the daemon minted it.
    pub generated: Option<GeneratorSpec>,
    /// Check-and-set: write only when the newest version is this one (0: only when the
    /// secret does not exist). A mismatch is [`StoreError::Conflict`](crate::StoreError).
    pub cas: Option<u32>,
    /// Refuse a write without `cas` even when the secret does not ask for one (the KV
    /// engine's `cas_required`).
    pub cas_required: bool,
    /// A rotation policy to set, or the scheduled rotation this write is (checked against
    /// the stored due time inside the transaction).
    pub rotation: Option<RotationStep>,
}

/// What a write does to a secret's rotation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// Set (or replace) the policy; the first rotation is due one period from now.
    Policy(coffer_types::RotationPolicy),
    /// The scheduled rotation of the period due at `due`. Refused with
    /// [`StoreError::Conflict`] unless the stored due time is `due` and no version is
    /// pending, so a period is rotated once, whatever daemons or restarts race for it. The
    /// next due time is written with the new version. `pending`: the new version waits for
    /// its hook ([`Resolve`]) and is not served meanwhile.
    Scheduled {
        /// The due time the scheduler saw.
        due: Timestamp,
        /// Whether the new version waits for a hook.
        pending: bool,
    },
}

/// How a pending rotated version ends (a [`Describe`] change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolve {
    /// The hook succeeded: the pending `version` becomes current (refused with
    /// [`StoreError::Conflict`] when it is no longer pending or a write came after it).
    Promote {
        /// The pending version.
        version: Version,
    },
    /// The hook failed: the pending `version` is destroyed and `reason` recorded.
    Drop {
        /// The pending version.
        version: Version,
        /// Why (an exit status; never a value).
        reason: String,
    },
}

impl<'a> Write<'a> {
    /// A plain write of `value` by `actor`: create or update, kind kept (text when new).
    pub fn new(value: &'a SecretBytes, actor: &'a str) -> Self {
        Self::with_value(WriteValue::Given(value), actor)
    }

    /// A new version of an existing secret computed by `derive` from its newest version, in
    /// the write's transaction (see [`WriteValue::Derived`]); kind kept.
    pub fn derived(derive: DeriveValue, actor: &'a str) -> Self {
        Self {
            mode: WriteMode::Update,
            ..Self::with_value(WriteValue::Derived(derive), actor)
        }
    }

    fn with_value(value: WriteValue<'a>, actor: &'a str) -> Self {
        Self {
            value,
            kind: None,
            new_kind: Kind::Text,
            change: Change::by(actor),
            mode: WriteMode::Upsert,
            description: None,
            max_versions: None,
            new_max_versions: None,
            generated: None,
            cas: None,
            cas_required: false,
            rotation: None,
        }
    }
}

/// Who makes a change, and what the event feed records of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    /// Who: `uid:N`, `token:<accessor>`, or `coffer` for the daemon's own work.
    pub actor: &'a str,
    /// The event's action; `None`: the method's own (`set`: `secret.written`; `describe`:
    /// `secret.described`, or `secret.deleted`/`secret.undeleted` for a soft deletion;
    /// `revoke`, `destroy`, `delete` (`secret.removed`), `create_namespace`).
    pub action: Option<EventAction>,
    /// The name the event shows when it is not the secret's own (a token's accessor for a
    /// record kept in the store's own namespace).
    pub subject: Option<&'a str>,
    /// Keep no event: the daemon's bookkeeping (a token's renewal, its use count).
    pub quiet: bool,
}

impl<'a> Change<'a> {
    /// A change by `actor`, recorded under the method's own action.
    pub const fn by(actor: &'a str) -> Self {
        Self {
            actor,
            action: None,
            subject: None,
            quiet: false,
        }
    }

    /// The same change, recorded as `action`.
    pub const fn named(mut self, action: EventAction) -> Self {
        self.action = Some(action);
        self
    }

    /// The same change, its event showing `subject` as the name.
    pub const fn about(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// The same change, with no event.
    pub const fn quiet(mut self) -> Self {
        self.quiet = true;
        self
    }
}

/// What a page of other daemons' changes touched, for the caches above the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followed {
    /// Anything may have changed (changes were lost, or the store as a whole changed):
    /// drop every cache.
    pub everything: bool,
    /// Namespaces changed as a whole (created, locked, unlocked, a new key generation).
    pub namespaces: Vec<Namespace>,
    /// Secrets changed (written, described, revoked, destroyed, deleted).
    pub secrets: Vec<(Namespace, SecretName)>,
    /// A namespace changed by another daemon does not open with this store's master key:
    /// the master key was replaced (`coffer rotate-master` on another hub). This store must
    /// be opened again.
    pub master_replaced: bool,
}

/// A key rotation in progress: versions under the current generation out of every version
/// with a ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyProgress {
    /// The namespace.
    pub namespace: Namespace,
    /// The generation new writes use.
    pub key_version: u32,
    /// Versions already under it.
    pub done: u64,
    /// Versions with a ciphertext.
    pub total: u64,
}

/// A change of metadata that writes no version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Describe {
    /// A new description (empty clears it); `None` keeps the current one.
    pub description: Option<String>,
    /// A new version limit (0: unlimited); `None` keeps the current one. Lowering it removes
    /// the oldest versions at once.
    pub max_versions: Option<u32>,
    /// A change of custom metadata (a replacement or a merge), applied to the stored map in
    /// the transaction and checked against the limits there ([`StoreError::Invalid`] when
    /// the result is outside them); `None` keeps it.
    pub custom_metadata: Option<CustomMetadataChange>,
    /// Whether writes must carry `cas`; `None` keeps the setting.
    pub cas_required: Option<bool>,
    /// Soft-delete new versions this many seconds after they are written (0: never);
    /// `None` keeps the setting.
    pub delete_version_after: Option<u64>,
    /// Soft-delete or undelete versions.
    pub mark: Option<Mark>,
    /// End a pending rotated version.
    pub rotation: Option<Resolve>,
    /// Add or remove fleet tags; `None` keeps them.
    pub tags: Option<TagChange>,
}

/// The most fleet tags one secret carries.
pub const MAX_TAGS: usize = 32;

/// Fleet tags added to and removed from a secret (removals first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
}

impl Describe {
    /// Whether the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.mark.is_none() && self.rotation.is_none() && !self.changes_metadata()
    }

    /// Whether it changes a setting or custom metadata (as opposed to soft deletion only).
    pub fn changes_metadata(&self) -> bool {
        self.description.is_some()
            || self.max_versions.is_some()
            || self.custom_metadata.is_some()
            || self.tags.is_some()
            || self.cas_required.is_some()
            || self.delete_version_after.is_some()
    }
}

/// A soft deletion or its undoing (KV v2's `delete` and `undelete`). Versions that do not
/// exist are passed over, as KV v2 does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// Soft-delete the newest version.
    DeleteLatest,
    /// Soft-delete these versions.
    Delete(Vec<Version>),
    /// Make these versions readable again.
    Undelete(Vec<Version>),
}

/// Decides whether a name may be shown (a caller's policy). It is called outside the store's
/// locks, but should be quick: a list may call it for many names.
pub type NameFilter = Arc<dyn Fn(&SecretName) -> bool + Send + Sync>;

/// Which names a list returns: sorted, after a cursor, with a prefix, accepted by a filter,
/// at most `limit`.
#[derive(Clone)]
pub struct ListQuery {
    /// Only names starting with this.
    pub prefix: Option<String>,
    /// Only names after this one (the previous page's `next`).
    pub after: Option<SecretName>,
    /// Most names in the page (0 is read as 1).
    pub limit: usize,
    /// Only names this accepts. A refused name is skipped while the page is filled: it is
    /// never returned and never counts toward `limit`.
    pub filter: Option<NameFilter>,
}

impl ListQuery {
    /// Whether `name` passes the prefix, the cursor and the filter.
    pub fn accepts(&self, name: &SecretName) -> bool {
        self.prefix
            .as_deref()
            .is_none_or(|p| name.as_str().starts_with(p))
            && self.after.as_ref().is_none_or(|a| name > a)
            && self.filter.as_ref().is_none_or(|f| f(name))
    }
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            prefix: None,
            after: None,
            limit: 1000,
            filter: None,
        }
    }
}

impl fmt::Debug for ListQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListQuery")
            .field("prefix", &self.prefix)
            .field("after", &self.after)
            .field("limit", &self.limit)
            .field("filter", &self.filter.as_ref().map(|_| ".."))
            .finish()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor for the next page, when there is one.
    pub next: Option<SecretName>,
}

/// A namespace and whether it is locked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NamespaceState {
    /// Its path.
    pub namespace: Namespace,
    /// Whether it is locked.
    pub locked: bool,
    /// Whether it has a passphrase (so it can be locked).
    pub passphrase: bool,
}

/// The store as the core sees it. Blocking; call from a blocking thread.
pub trait SecretStore: Send + Sync {
    /// The backend's short name (`sqlite`, `memory`).
    fn backend_kind(&self) -> &'static str;

    /// The namespaces that exist.
    fn namespaces(&self) -> Vec<Namespace>;

    /// How many live secrets the namespaces hold, the store's own system namespace left
    /// out (for `status`; SQLite answers from its index allocator, whatever its size).
    fn secret_count(&self) -> Result<u64, StoreError>;

    /// Whether a namespace exists.
    fn has_namespace(&self, namespace: &Namespace) -> bool;

    /// Creates a namespace with a fresh key; [`StoreError::Conflict`] if it exists.
    fn create_namespace(&self, namespace: &Namespace, by: Change<'_>) -> Result<(), StoreError>;

    /// Creates a namespace; with `passphrase`, its key is also wrapped under it (and the
    /// master key), so the namespace can be locked.
    fn create_namespace_with(
        &self,
        namespace: &Namespace,
        passphrase: Option<&coffer_crypto::SecretBytes>,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// Whether `namespace` exists and is locked.
    fn is_locked(&self, namespace: &Namespace) -> bool;

    /// Every namespace with its lock state.
    fn namespace_states(&self) -> Result<Vec<NamespaceState>, StoreError>;

    /// Sets or replaces the passphrase of an open namespace (what lets it be locked).
    fn set_namespace_passphrase(
        &self,
        namespace: &Namespace,
        passphrase: &coffer_crypto::SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// Locks a namespace: removes the master-only wrap of its key from the store (one
    /// durable transaction), forgets the key and its name index. Needs a passphrase;
    /// refused while more than one key generation is in use (a rotation in progress).
    fn lock_namespace(&self, namespace: &Namespace, by: Change<'_>) -> Result<(), StoreError>;

    /// Unlocks a namespace with its passphrase, writing the master-only wrap back.
    /// [`StoreError::WrongPassphrase`] when the passphrase does not open it.
    fn unlock_namespace(
        &self,
        namespace: &Namespace,
        passphrase: &coffer_crypto::SecretBytes,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// The newest version, or `version`.
    fn get(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        version: Option<Version>,
    ) -> Result<Secret, StoreError>;

    /// Writes a new version (version 1 of a new secret when the name is free), checking the
    /// value against its kind and pruning past `max_versions`.
    fn set(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        write: Write<'_>,
    ) -> Result<Written, StoreError>;

    /// Deletes a secret with every version, for good.
    fn delete(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// Names in a namespace, sorted, paged as `query` asks. Served from an in-memory index
    /// of names: no row is read or decrypted.
    fn list(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretName>, StoreError>;

    /// Like [`SecretStore::list`], with each secret's metadata (only the page's rows are
    /// read).
    fn summaries(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretSummary>, StoreError>;

    /// The entries one level under the folder `prefix` (Vault's LIST), sorted, without
    /// duplicates: a name directly in the folder as its last segment (`a`), a deeper one as
    /// its subfolder with a trailing `/` (`b/`). `prefix` is empty for the top, or a folder
    /// ending in `/` (one without it is read as if it had it). With a filter, a name appears
    /// when the filter accepts it, a subfolder when the filter accepts a name under it.
    fn keys(
        &self,
        namespace: &Namespace,
        prefix: &str,
        filter: Option<&NameFilter>,
    ) -> Result<Vec<String>, StoreError>;

    /// The revoked secrets of a namespace with their history, sorted by name then revocation
    /// time, paged as `query` asks. Several revoked secrets can share a name; a page holds all
    /// of a name's secrets or none, and `limit` counts names, not secrets (so a page can hold
    /// more than `limit` items, and `next`, the last name of the page, stays a name cursor).
    fn revoked(
        &self,
        namespace: &Namespace,
        query: &ListQuery,
    ) -> Result<Page<SecretMeta>, StoreError>;

    /// A secret's versions, oldest first.
    fn versions(
        &self,
        namespace: &Namespace,
        name: &SecretName,
    ) -> Result<Vec<VersionInfo>, StoreError>;

    /// A secret's metadata.
    fn metadata(&self, namespace: &Namespace, name: &SecretName) -> Result<SecretMeta, StoreError>;

    /// Changes the description or version limit without writing a version.
    fn describe(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        change: Describe,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// Soft-deletes a secret: it stays, unreadable, for audit; its name is free at once.
    fn revoke(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        by: Change<'_>,
    ) -> Result<(), StoreError>;

    /// Erases the ciphertexts of these versions for good; answers them.
    fn destroy(
        &self,
        namespace: &Namespace,
        name: &SecretName,
        versions: &[Version],
        by: Change<'_>,
    ) -> Result<Vec<Version>, StoreError>;

    /// Up to `limit` events after revision `after`, oldest first: from memory when the feed
    /// still holds them, else from the kept rows. [`StoreError::Resync`] when `after` is
    /// older than what is kept or newer than the head.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<Arc<ChangeEvent>>, StoreError>;

    /// [`SecretStore::events`] from memory only, without blocking: `None` when the feed's
    /// ring does not hold them (then call `events` on a blocking thread).
    fn recent_events(&self, after: u64, limit: usize) -> Option<Vec<Arc<ChangeEvent>>>;

    /// Keeps an event about `namespace` that goes with no stored change (a backup made or
    /// failed); a quiet `by` keeps none.
    fn note(
        &self,
        namespace: &Namespace,
        by: Change<'_>,
        action: EventAction,
    ) -> Result<(), StoreError>;

    /// The newest revision.
    fn head(&self) -> u64;

    /// A receiver that wakes whenever the head moves (it stays valid across seal and
    /// unseal: the feed belongs to the backend).
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Drops the events `retention` no longer keeps; answers how many (at most a batch:
    /// call again while it answers a full one).
    fn prune_events(&self, retention: crate::Retention) -> Result<u64, StoreError>;

    /// Starts a key rotation of `namespace` (a new key generation for every new write; the
    /// older one's versions are re-encrypted in the background); answers the new generation.
    /// [`StoreError::Conflict`] while one is in progress.
    fn rotate_key(&self, namespace: &Namespace, by: Change<'_>) -> Result<u32, StoreError> {
        let _ = (namespace, by);
        Err(StoreError::Unsupported(
            "this store cannot rotate namespace keys",
        ))
    }

    /// Wraps every namespace key and path under the new master key `next` and writes them
    /// with the new store `header` in one atomic transaction (`coffer rotate-master`); this
    /// store then refuses to make namespace keys (open it again with `next`).
    fn rewrap_master(
        &self,
        next: &coffer_crypto::MasterKey,
        header: &[u8],
        by: Change<'_>,
    ) -> Result<(), StoreError> {
        let _ = (next, header, by);
        Err(StoreError::Unsupported(
            "this store cannot change its master key",
        ))
    }

    /// Applies changes other daemons sharing the backend made ([`crate::Shared`]); answers
    /// what they touched, for the caches above the store. A store no other daemon shares
    /// has none to apply.
    fn follow(&self, page: &crate::RemoteChanges) -> Result<Followed, StoreError> {
        let _ = page;
        Ok(Followed::default())
    }

    /// The key rotations in progress.
    fn key_rotations(&self) -> Vec<RekeyProgress> {
        Vec::new()
    }

    /// How many key generations of `namespace` are in use: more than one while its key
    /// rotation is in progress (a namespace must not be locked then).
    fn key_generations_in_use(&self, namespace: &Namespace) -> Result<usize, StoreError> {
        let _ = namespace;
        Ok(1)
    }
}
