//! The [`Backend`] trait: what a storage engine must do, in terms of sealed rows only.
//!
//! A backend never sees a name, a namespace path, a value or a key. It stores rows found by
//! keyed hashes ([`RowHash`]) and opaque ciphertexts, allocates NV-style indices, and makes
//! each write atomic and durable before it returns. The encryption layer
//! ([`crate::EncryptedStore`]) is written once above it, so every backend gets the same
//! cryptography and the same conformance suite.
//!
//! Writes are planned inside the backend's transaction: [`Backend::write`] hands the plan the
//! live row (or none) as of that transaction, and on request its newest version ([`Live`]),
//! and the plan returns the encrypted version to insert. Version numbers and the row's
//! identity are therefore decided exactly once, under the backend's own serialization,
//! however many writers race. [`Backend::modify`] does the
//! same for changes that write no version (metadata, revocation, destroying versions).

use coffer_crypto::RowHash;
use coffer_types::{Kind, NvIndex, Timestamp, Version};

use crate::StoreError;
use crate::events::{EventPlan, EventRows, Feed, Retention};

/// A namespace row's id: the keyed hash of its path.
pub type NamespaceId = RowHash;
/// A secret row's lookup key: the keyed hash of (namespace, name).
pub type NameHash = RowHash;

/// A secret's identity: random, fixed at creation, bound into every ciphertext of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretId(pub [u8; 16]);

impl SecretId {
    /// A fresh random id.
    pub fn generate() -> Result<Self, StoreError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id)
            .map_err(|_| StoreError::Crypto(coffer_crypto::CryptoError::Random))?;
        Ok(Self(id))
    }
}

/// A stored namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRow {
    /// Keyed hash of the path.
    pub id: NamespaceId,
    /// The path, encrypted under the master key.
    pub name_ct: Vec<u8>,
    /// Generation of the namespace key.
    pub key_version: u32,
    /// The namespace key, wrapped by the master key. Empty while the namespace is locked:
    /// then only `lock_wrap` holds its key.
    pub wrapped_key: Vec<u8>,
    /// When it was created.
    pub created: Timestamp,
    /// The namespace key wrapped under its passphrase and the master key (serialized
    /// `coffer_crypto::nslock::PassphraseWrap`), for a namespace that can be locked.
    pub lock_wrap: Option<Vec<u8>>,
}

impl NamespaceRow {
    /// Whether the namespace is locked: its row holds no master-only wrap of its key.
    pub fn locked(&self) -> bool {
        self.wrapped_key.is_empty()
    }
}

/// A namespace key's wraps, as its row keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWraps {
    /// The key under the master key; empty while the namespace is locked.
    pub wrapped_key: Vec<u8>,
    /// The key under its passphrase and the master key, when it has a passphrase.
    pub lock_wrap: Option<Vec<u8>>,
}

/// Why a change of a namespace's key wraps was refused: they changed since they were read.
pub const WRAPS_CHANGED: &str =
    "the namespace's lock changed meanwhile (on another hub sharing the store); try again";

impl KeyWraps {
    /// The wraps `row` holds.
    pub fn of(row: &NamespaceRow) -> Self {
        Self {
            wrapped_key: row.wrapped_key.clone(),
            lock_wrap: row.lock_wrap.clone(),
        }
    }
}

/// An older generation of a namespace key, kept while a key rotation still has versions
/// (or names and metadata) sealed under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceKeyRow {
    /// The namespace.
    pub namespace: NamespaceId,
    /// The generation.
    pub key_version: u32,
    /// The key, wrapped by the master key (associated data: namespace and generation).
    pub wrapped_key: Vec<u8>,
}

/// One re-encryption made by a key rotation, applied only while the row still holds what
/// the rotation read (so a concurrent write, destroy, prune or delete is never undone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rekey {
    /// A version's ciphertext and generation.
    Version {
        /// The secret.
        secret: SecretId,
        /// The version.
        version: Version,
        /// The generation the row holds now.
        from: u32,
        /// The ciphertext the row holds now.
        old: Vec<u8>,
        /// The new generation.
        to: u32,
        /// The new ciphertext (same plaintext, same associated data).
        new: Vec<u8>,
    },
    /// A secret row's sealed name.
    Name {
        /// The secret.
        secret: SecretId,
        /// The sealed name the row holds now.
        old: Vec<u8>,
        /// The name sealed under the new generation.
        new: Vec<u8>,
    },
    /// A secret row's sealed metadata.
    Meta {
        /// The secret.
        secret: SecretId,
        /// The sealed metadata the row holds now.
        old: Vec<u8>,
        /// The metadata sealed under the new generation.
        new: Vec<u8>,
    },
}

/// A namespace key rotation's start: the namespace's current generation becomes an older
/// one ([`NamespaceKeyRow`]) and `next` becomes current, in one transaction.
#[derive(Debug, Clone)]
pub struct KeyRotation {
    /// The namespace.
    pub namespace: NamespaceId,
    /// The generation the namespace row must hold now (else [`StoreError::Conflict`]).
    pub from: u32,
    /// The new generation.
    pub to: u32,
    /// The new key, wrapped by the master key.
    pub wrapped_key: Vec<u8>,
}

/// A namespace's wrapped keys under a new master key (`coffer rotate-master`).
#[derive(Debug, Clone)]
pub struct Rewrapped {
    /// The namespace.
    pub namespace: NamespaceId,
    /// Its path, sealed under the new master key.
    pub name_ct: Vec<u8>,
    /// Its current key, wrapped under the new master key.
    pub wrapped_key: Vec<u8>,
    /// Its older generations, wrapped under the new master key: (generation, wrapped key).
    pub older: Vec<(u32, Vec<u8>)>,
}

/// A stored secret (its identity, not its versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRow {
    /// Identity.
    pub id: SecretId,
    /// Namespace.
    pub namespace: NamespaceId,
    /// Lookup key.
    pub name_hash: NameHash,
    /// The name, encrypted under the namespace key.
    pub name_ct: Vec<u8>,
    /// Metadata (description and the like), encrypted under the namespace key.
    pub meta_ct: Vec<u8>,
    /// The NV-style index, stable for the secret's life (freed when it is revoked).
    pub index: NvIndex,
    /// The newest version.
    pub current: Version,
    /// The kind of the newest version.
    pub kind: Kind,
    /// When the secret was created.
    pub created: Timestamp,
    /// When the newest version was written.
    pub updated: Timestamp,
    /// When the secret was revoked; `None` while it is live.
    pub revoked: Option<Timestamp>,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    /// The version number.
    pub version: Version,
    /// The kind, bound into the ciphertext.
    pub kind: Kind,
    /// When it was written.
    pub created: Timestamp,
    /// Who wrote it (`uid:0`, later `token:<accessor>`).
    pub actor: String,
    /// Which namespace key generation encrypted it.
    pub key_version: u32,
    /// The value's envelope; `None` once the version was destroyed.
    pub ciphertext: Option<Vec<u8>>,
}

/// A new secret's identity, planned inside a write.
#[derive(Debug, Clone)]
pub struct NewSecret {
    /// Identity.
    pub id: SecretId,
    /// Encrypted name.
    pub name_ct: Vec<u8>,
    /// Encrypted metadata.
    pub meta_ct: Vec<u8>,
    /// Creation time.
    pub created: Timestamp,
}

impl NewSecret {
    /// The live row of the new secret, at `index`, whose first version is `first`.
    pub fn into_row(
        self,
        namespace: NamespaceId,
        name_hash: NameHash,
        index: NvIndex,
        first: &VersionRow,
    ) -> SecretRow {
        SecretRow {
            id: self.id,
            namespace,
            name_hash,
            name_ct: self.name_ct,
            meta_ct: self.meta_ct,
            index,
            current: first.version,
            kind: first.kind,
            created: self.created,
            updated: first.created,
            revoked: None,
        }
    }
}

/// What a [`WritePlan`] decided.
#[derive(Debug, Clone)]
pub struct Planned {
    /// `Some` when no live secret had the name: create it.
    pub create: Option<NewSecret>,
    /// The version to insert: 1 for a new secret, `current + 1` otherwise.
    pub version: VersionRow,
    /// New metadata for an existing secret.
    pub meta_ct: Option<Vec<u8>>,
    /// Versions older than this are removed (`max_versions`).
    pub prune_before: Option<Version>,
}

/// Reads the newest version of a live row inside the backend's transaction.
pub type ReadNewest<'a> = &'a dyn Fn(&SecretRow) -> Result<VersionRow, StoreError>;

/// What a [`WritePlan`] sees inside the backend's transaction: the live row, if any, and a
/// way to read that row's newest version. The version is read only when the plan asks
/// ([`Live::newest`]), so an ordinary write pays no extra read; a derived write (a merge
/// patch) asks, and so reads and writes in one transaction.
#[derive(Clone, Copy)]
pub struct Live<'a> {
    row: Option<&'a SecretRow>,
    newest: ReadNewest<'a>,
}

impl<'a> Live<'a> {
    /// The view a backend hands a plan: `row` as of the transaction, and `newest`, which
    /// reads the newest version of a row in the same transaction.
    pub fn new(row: Option<&'a SecretRow>, newest: ReadNewest<'a>) -> Self {
        Self { row, newest }
    }

    /// The live row; `None` when no live secret has the name.
    pub fn row(&self) -> Option<&'a SecretRow> {
        self.row
    }

    /// The newest version of the live row, read now, inside the transaction; `Ok(None)` when
    /// there is no live row.
    pub fn newest(&self) -> Result<Option<VersionRow>, StoreError> {
        self.row.map(self.newest).transpose()
    }
}

impl std::fmt::Debug for Live<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("row", &self.row)
            .finish_non_exhaustive()
    }
}

/// Plans a write given the live secret, inside the backend's transaction.
pub type WritePlan = Box<dyn FnOnce(Live<'_>) -> Result<Planned, StoreError> + Send>;

/// A change to a live secret that writes no version, planned inside the transaction.
#[derive(Debug, Clone, Default)]
pub struct Modification {
    /// New metadata.
    pub meta_ct: Option<Vec<u8>>,
    /// Revoke the secret at this time: it stays for audit, its name and index are freed.
    pub revoke: Option<Timestamp>,
    /// Erase these versions' ciphertexts (each must exist).
    pub destroy: Vec<Version>,
    /// Versions older than this are removed (`max_versions` lowered).
    pub prune_before: Option<Version>,
}

/// Plans a [`Modification`] given the live row, inside the backend's transaction.
pub type ModifyPlan = Box<dyn FnOnce(&SecretRow) -> Result<Modification, StoreError> + Send>;

/// What a modification did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Modified {
    /// The row afterwards.
    pub row: SecretRow,
    /// The versions whose ciphertexts are now gone (already destroyed ones included).
    pub destroyed: Vec<Version>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The secret's identity (new when `created`).
    pub id: SecretId,
    /// The version written.
    pub version: Version,
    /// The secret's index.
    pub index: NvIndex,
    /// Whether the write created the secret.
    pub created: bool,
}

/// One row of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRow {
    /// The store header (slots and store facts), first.
    Header(Vec<u8>),
    /// A namespace, with every column.
    Namespace(NamespaceRow),
    /// A secret, live or revoked.
    Secret(SecretRow),
    /// One version of a secret given before it.
    Version(SecretId, VersionRow),
    /// The event feed's newest revision, last.
    EventHead(u64),
}

/// Receives a snapshot's rows, one at a time; an error stops the snapshot.
pub type Visit<'a> = &'a mut dyn FnMut(SnapshotRow) -> Result<(), StoreError>;

/// A snapshot's rows, as an import reads them; an error stops (and undoes) the import.
pub type Rows<'a> = &'a mut dyn Iterator<Item = Result<SnapshotRow, StoreError>>;

/// How many rows of each kind a snapshot holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Header rows (1).
    pub headers: u64,
    /// Namespaces.
    pub namespaces: u64,
    /// Secrets, live and revoked.
    pub secrets: u64,
    /// Versions.
    pub versions: u64,
    /// Event heads (1).
    pub event_heads: u64,
}

impl Counts {
    /// Counts `row`.
    pub fn add(&mut self, row: &SnapshotRow) {
        match row {
            SnapshotRow::Header(_) => self.headers += 1,
            SnapshotRow::Namespace(_) => self.namespaces += 1,
            SnapshotRow::Secret(_) => self.secrets += 1,
            SnapshotRow::Version(..) => self.versions += 1,
            SnapshotRow::EventHead(_) => self.event_heads += 1,
        }
    }
}

/// A storage engine for sealed rows. Every method is blocking; callers on an async runtime
/// run them on a blocking thread. Every write is durable when it returns `Ok`.
pub trait Backend: Send + Sync + 'static {
    /// A short name for status output: `sqlite`, `memory`, ...
    fn kind(&self) -> &'static str;

    /// What a backend several daemons share offers them to follow each other's changes;
    /// `None` for a backend only one daemon uses.
    fn shared(&self) -> Option<&dyn Shared> {
        None
    }

    /// The store header (key slots and store facts), if the store was initialized.
    fn header(&self) -> Result<Option<Vec<u8>>, StoreError>;

    /// Replaces the header atomically.
    fn put_header(&self, body: &[u8]) -> Result<(), StoreError>;

    /// Replaces the header with `body` only while it still is `expected` (`None`: there is
    /// no header yet); answers whether it did. The default reads, then writes: enough where
    /// one daemon holds the store (its data directory's lock); a backend several daemons
    /// share decides it in one transaction.
    fn swap_header(&self, expected: Option<&[u8]>, body: &[u8]) -> Result<bool, StoreError> {
        if self.header()?.as_deref() != expected {
            return Ok(false);
        }
        self.put_header(body).map(|()| true)
    }

    /// Every namespace.
    fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError>;

    /// Adds a namespace; [`StoreError::Conflict`] when its id exists. With `event`, the
    /// change gets the next revision and its event is kept, in the same transaction.
    fn create_namespace(
        &self,
        row: NamespaceRow,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError>;

    /// Whether [`Backend::set_namespace_wraps`] is offered (namespaces that lock).
    fn supports_locking(&self) -> bool {
        false
    }

    /// Replaces the wraps of namespace `id`'s key (`to`) in one durable transaction, only
    /// while the row still holds `from`, with `event` as for a write.
    /// [`StoreError::Conflict`] when the row holds other wraps (another daemon sharing the
    /// store changed them since they were read); [`StoreError::NotFound`] when there is no
    /// such namespace; a backend that cannot keep them answers [`StoreError::Unsupported`].
    fn set_namespace_wraps(
        &self,
        id: &NamespaceId,
        from: KeyWraps,
        to: KeyWraps,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let _ = (id, from, to, event);
        Err(StoreError::Unsupported(
            "this store cannot keep a namespace's passphrase (namespaces that lock need the \
             sqlite store)",
        ))
    }

    /// The live secret with this name hash and one of its versions (the newest when
    /// `version` is `None`). `Ok(None)` when there is no such secret; a missing version of an
    /// existing secret is [`StoreError::NotFound`]`("version")`.
    fn read(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        version: Option<Version>,
    ) -> Result<Option<(SecretRow, VersionRow)>, StoreError>;

    /// Writes a version planned by `plan`, creating the secret when no live one has the
    /// name. The plan is handed the live row and, when it asks, the row's newest version,
    /// both read in the same transaction as the write. Atomic and durable; with `event`,
    /// its event (given the version written) is numbered and kept in that transaction.
    fn write(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: WritePlan,
        event: Option<EventPlan>,
    ) -> Result<Written, StoreError>;

    /// Changes the live secret with this name hash as `plan` decides; `Ok(None)` when there
    /// is none. Atomic and durable; with `event` (given the row's current version), as
    /// [`Backend::write`]. No event is kept when there was no such secret.
    fn modify(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: ModifyPlan,
        event: Option<EventPlan>,
    ) -> Result<Option<Modified>, StoreError>;

    /// Removes the live secret with this name hash and all its versions; answers the id of
    /// the secret removed, `Ok(None)` when there was none (and then keeps no event).
    fn delete(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        event: Option<EventPlan>,
    ) -> Result<Option<SecretId>, StoreError>;

    /// Keeps an event that goes with no row change (a backup made or failed): it gets the
    /// next revision, durably, and is published like any other.
    fn record_event(&self, event: EventPlan) -> Result<(), StoreError>;

    /// The in-memory end of the event feed: every kept event is published here after its
    /// commit, in revision order.
    fn feed(&self) -> &Feed;

    /// Up to `limit` kept events after revision `after`, oldest first, with the feed's floor
    /// and head.
    fn events(&self, after: u64, limit: usize) -> Result<EventRows, StoreError>;

    /// Drops the events `retention` no longer keeps at `now`; answers how many.
    fn prune_events(&self, retention: Retention, now: Timestamp) -> Result<u64, StoreError>;

    /// The live secrets of a namespace (their names stay encrypted).
    fn secrets(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError>;

    /// The revoked secrets of a namespace, kept for audit.
    fn revoked(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError>;

    /// How many live secrets a namespace holds. The default reads them; SQLite counts an
    /// index (linear in the namespace).
    fn live_count(&self, namespace: &NamespaceId) -> Result<u64, StoreError> {
        Ok(self.secrets(namespace)?.len() as u64)
    }

    /// How many live secrets the store holds in every namespace (for `status`). The default
    /// counts each namespace's; SQLite reads its index allocator (slots handed out less
    /// slots freed), whatever the store's size.
    fn live_total(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for row in self.namespaces()? {
            total += self.live_count(&row.id)?;
        }
        Ok(total)
    }

    /// The ids and sealed names of the live secrets of a namespace whose id sorts after
    /// `after` (all of them when `None`), in id order, about `limit` at a time: what a name
    /// index is built from. An empty answer ends the scan. Each call may see a newer state
    /// than the one before (the name index allows for it). The default reads every row at
    /// the first call and nothing at the next; SQLite reads one page of two columns.
    fn names(
        &self,
        namespace: &NamespaceId,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretId, Vec<u8>)>, StoreError> {
        let _ = limit;
        if after.is_some() {
            return Ok(Vec::new());
        }
        let mut rows: Vec<(SecretId, Vec<u8>)> = self
            .secrets(namespace)?
            .into_iter()
            .map(|row| (row.id, row.name_ct))
            .collect();
        rows.sort_unstable_by_key(|(id, _)| *id);
        Ok(rows)
    }

    /// The versions of a secret, oldest first, without their ciphertexts' plaintext (the
    /// envelopes are returned; callers only read the other fields).
    fn versions(&self, secret: &SecretId) -> Result<Vec<VersionRow>, StoreError>;

    /// Every older namespace key generation still kept (a key rotation in progress).
    fn namespace_keys(&self) -> Result<Vec<NamespaceKeyRow>, StoreError> {
        Ok(Vec::new())
    }

    /// Starts a namespace key rotation (see [`KeyRotation`]), with its event, in one
    /// transaction. [`StoreError::Conflict`] when the namespace row holds another generation.
    fn rotate_namespace_key(
        &self,
        rotation: KeyRotation,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let _ = (rotation, event);
        Err(StoreError::Unsupported(
            "this backend cannot rotate namespace keys",
        ))
    }

    /// The secret rows of a namespace, live and revoked, whose id sorts after `after`, in id
    /// order, about `limit` at a time, each with its versions: what a key rotation walks.
    fn rekey_page(
        &self,
        namespace: &NamespaceId,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretRow, Vec<VersionRow>)>, StoreError> {
        let mut rows = self.secrets(namespace)?;
        rows.extend(self.revoked(namespace)?);
        rows.retain(|r| after.is_none_or(|a| r.id > *a));
        rows.sort_unstable_by_key(|r| r.id);
        rows.truncate(limit.max(1));
        rows.into_iter()
            .map(|r| {
                let versions = self.versions(&r.id)?;
                Ok((r, versions))
            })
            .collect()
    }

    /// How many versions with a ciphertext each key generation of a namespace encrypted.
    fn key_version_counts(&self, namespace: &NamespaceId) -> Result<Vec<(u32, u64)>, StoreError> {
        let mut counts = std::collections::BTreeMap::<u32, u64>::new();
        let mut after = None;
        loop {
            let page = self.rekey_page(namespace, after.as_ref(), 1024)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.id);
            for v in page.iter().flat_map(|(_, v)| v) {
                if v.ciphertext.is_some() {
                    *counts.entry(v.key_version).or_default() += 1;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// Applies re-encryptions in one durable transaction, each only where the row still
    /// holds what it names; answers how many applied.
    fn rekey(&self, changes: Vec<Rekey>) -> Result<u64, StoreError> {
        let _ = changes;
        Err(StoreError::Unsupported(
            "this backend cannot rotate namespace keys",
        ))
    }

    /// Forgets an older key generation of a namespace, durably, with its event;
    /// [`StoreError::Conflict`] while a version with a ciphertext still names it.
    fn drop_namespace_key(
        &self,
        namespace: &NamespaceId,
        key_version: u32,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let _ = (namespace, key_version, event);
        Err(StoreError::Unsupported(
            "this backend cannot rotate namespace keys",
        ))
    }

    /// Replaces the header and every namespace's sealed path and wrapped keys in one
    /// atomic, durable transaction (`coffer rotate-master`): after a crash the store holds
    /// either the old state or the new one. [`StoreError::Conflict`] when the namespaces
    /// are not exactly the ones given.
    fn rewrap(
        &self,
        header: &[u8],
        namespaces: Vec<Rewrapped>,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let _ = (header, namespaces, event);
        Err(StoreError::Unsupported(
            "this backend cannot change the master key",
        ))
    }
    /// Visits every row of one consistent state, in snapshot order (header, namespaces,
    /// secrets live and revoked, their versions, the event head; crate::snapshot), while
    /// writers keep going (SQLite: one read transaction on its own connection; memory and
    /// NV: rows copied under the state lock).
    fn snapshot(&self, visit: Visit<'_>) -> Result<(), StoreError>;

    /// Writes a snapshot's rows into this store, which must be EMPTY (no header, namespace
    /// or secret: [`StoreError::Conflict`] otherwise), all or nothing. The event feed goes on
    /// from the snapshot's head: head = floor = that head, so a consumer resuming from an
    /// older revision is told to resync. Answers what was written.
    fn import(&self, rows: Rows<'_>) -> Result<Counts, StoreError>;
}

/// Checks a modification: every version to destroy exists, and pruning keeps the newest.
/// Every backend calls it on what a [`ModifyPlan`] returned.
pub fn check_modification(
    row: &SecretRow,
    versions: &[Version],
    m: &Modification,
) -> Result<(), StoreError> {
    if m.destroy.iter().any(|v| !versions.contains(v)) {
        return Err(StoreError::NotFound("version"));
    }
    if m.prune_before.is_some_and(|p| p > row.current) {
        return Err(StoreError::Malformed(
            "a plan would prune the newest version",
        ));
    }
    Ok(())
}

/// Checks a plan against the live row: the version it chose must be the next one. Every
/// backend calls it on what a [`WritePlan`] returned.
pub fn check_plan(current: Option<&SecretRow>, planned: &Planned) -> Result<(), StoreError> {
    let expected = match current {
        Some(row) => row.current.next().ok_or(StoreError::Conflict(
            "the secret has reached the last version number",
        ))?,
        None => Version::FIRST,
    };
    if planned.version.version != expected || planned.create.is_some() != current.is_none() {
        return Err(StoreError::Malformed(
            "a write plan disagrees with the live row",
        ));
    }
    Ok(())
}

// --- A store shared by several daemons (hubs on one PostgreSQL database): how one daemon
// learns what the others changed, so what it keeps in memory (namespace keys, name indexes,
// decrypted values, policies and tokens) follows.
//
// The backend notes every committed change (quiet ones too) by keyed hashes and the sealed
// name; [`Shared::changes_after`] hands a daemon the changes the others made, and
// [`crate::EncryptedStore::follow`] turns them into names its caches drop.

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
