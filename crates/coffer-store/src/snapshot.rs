//! Logical snapshots of a backend, and importing one into an empty store: what backups are
//! made of (docs/operations.md, "Backup and disaster recovery").
//!
//! [`Backend::snapshot`](crate::Backend::snapshot) visits every row of one consistent state,
//! in this order: the header, the namespaces, the secrets (live and revoked), their versions,
//! and last the event head. [`Backend::import`](crate::Backend::import) writes such rows into
//! an empty store, all or nothing, and continues the event feed from the snapshot's head.
//!
//! Rows stay sealed: a snapshot holds the same ciphertexts the backend does. Each row type has
//! one wire form here ([`NamespaceRecord`], [`SecretRecord`], [`VersionRecord`]); a column
//! added to a row is added to its record and its two conversions, and nowhere else in the
//! backup format.

use std::collections::HashSet;

use coffer_types::{Kind, NvIndex, Timestamp, Version};

use crate::StoreError;
pub use crate::backend::{Counts, Rows, SnapshotRow, Visit};
use crate::backend::{NamespaceId, NamespaceRow, SecretId, SecretRow, VersionRow};

/// Checks that imported rows come in snapshot order and refer only to rows given before:
/// every backend's import runs its rows through one, so a malformed snapshot is refused the
/// same way everywhere (and never reaches a backend's own invariants).
#[derive(Debug, Default)]
pub struct ImportCheck {
    phase: u8,
    namespaces: HashSet<NamespaceId>,
    secrets: HashSet<SecretId>,
    live_names: HashSet<(NamespaceId, [u8; 32])>,
    live_slots: HashSet<u32>,
    versions: HashSet<(SecretId, Version)>,
    head: Option<u64>,
    /// What was checked so far.
    pub counts: Counts,
}

const ORDER: &str = "a snapshot's rows are out of order";

/// Why a snapshot is not taken while a namespace key rotation runs: its older generations
/// would have to travel too, and the rotation completes in seconds to minutes.
pub const ROTATING: &str = "a namespace key rotation is in progress; take the backup once it \
                            completes (`coffer status` shows its progress)";

impl ImportCheck {
    /// Checks the next row.
    pub fn check(&mut self, row: &SnapshotRow) -> Result<(), StoreError> {
        let phase = match row {
            SnapshotRow::Header(_) => 0,
            SnapshotRow::Namespace(_) => 1,
            SnapshotRow::Secret(_) => 2,
            SnapshotRow::Version(..) => 3,
            SnapshotRow::EventHead(_) => 4,
        };
        if phase < self.phase
            || (phase == 0 && self.counts.headers > 0)
            || (phase == 4 && self.head.is_some())
            || (phase > 0 && self.counts.headers == 0)
        {
            return Err(StoreError::Malformed(ORDER));
        }
        self.phase = phase;
        match row {
            SnapshotRow::Header(_) => {}
            SnapshotRow::Namespace(ns) => {
                if !self.namespaces.insert(ns.id) {
                    return Err(StoreError::Malformed("a snapshot repeats a namespace"));
                }
            }
            SnapshotRow::Secret(s) => {
                if !self.namespaces.contains(&s.namespace) {
                    return Err(StoreError::Malformed(
                        "a snapshot's secret is in no namespace",
                    ));
                }
                if !self.secrets.insert(s.id) {
                    return Err(StoreError::Malformed("a snapshot repeats a secret"));
                }
                if s.revoked.is_none()
                    && (!self.live_names.insert((s.namespace, s.name_hash))
                        || !self.live_slots.insert(s.index.slot()))
                {
                    return Err(StoreError::Malformed(
                        "a snapshot has two live secrets with one name or index",
                    ));
                }
            }
            SnapshotRow::Version(id, v) => {
                if !self.secrets.contains(id) || !self.versions.insert((*id, v.version)) {
                    return Err(StoreError::Malformed(
                        "a snapshot's version belongs to no secret or is repeated",
                    ));
                }
            }
            SnapshotRow::EventHead(h) => self.head = Some(*h),
        }
        self.counts.add(row);
        Ok(())
    }

    /// After the last row: the snapshot was complete. Answers the event head.
    pub fn finish(&self) -> Result<u64, StoreError> {
        self.head.ok_or(StoreError::Malformed(
            "a snapshot ends before its event head",
        ))
    }

    /// The live secrets' index slots: an import's allocator starts after the highest and
    /// hands out the gaps below it first.
    pub fn live_slots(&self) -> &HashSet<u32> {
        &self.live_slots
    }
}

/// A namespace row's wire form in a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NamespaceRecord {
    id: [u8; 32],
    name_ct: Vec<u8>,
    key_version: u32,
    wrapped_key: Vec<u8>,
    created: i64,
    /// The passphrase wrap of a namespace that locks (an empty `wrapped_key`: locked).
    lock_wrap: Option<Vec<u8>>,
}

impl From<NamespaceRow> for NamespaceRecord {
    fn from(r: NamespaceRow) -> Self {
        Self {
            id: r.id,
            name_ct: r.name_ct,
            key_version: r.key_version,
            wrapped_key: r.wrapped_key,
            created: r.created.as_millis(),
            lock_wrap: r.lock_wrap,
        }
    }
}

impl From<NamespaceRecord> for NamespaceRow {
    fn from(r: NamespaceRecord) -> Self {
        Self {
            id: r.id,
            name_ct: r.name_ct,
            key_version: r.key_version,
            wrapped_key: r.wrapped_key,
            created: Timestamp::from_millis(r.created),
            lock_wrap: r.lock_wrap,
        }
    }
}

/// A secret row's wire form in a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretRecord {
    id: [u8; 16],
    namespace: [u8; 32],
    name_hash: [u8; 32],
    name_ct: Vec<u8>,
    meta_ct: Vec<u8>,
    slot: u32,
    current: u32,
    kind: String,
    created: i64,
    updated: i64,
    revoked: Option<i64>,
}

impl From<SecretRow> for SecretRecord {
    fn from(r: SecretRow) -> Self {
        Self {
            id: r.id.0,
            namespace: r.namespace,
            name_hash: r.name_hash,
            name_ct: r.name_ct,
            meta_ct: r.meta_ct,
            slot: r.index.slot(),
            current: r.current.get(),
            kind: r.kind.as_str().to_owned(),
            created: r.created.as_millis(),
            updated: r.updated.as_millis(),
            revoked: r.revoked.map(Timestamp::as_millis),
        }
    }
}

impl TryFrom<SecretRecord> for SecretRow {
    type Error = StoreError;
    fn try_from(r: SecretRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: SecretId(r.id),
            namespace: r.namespace,
            name_hash: r.name_hash,
            name_ct: r.name_ct,
            meta_ct: r.meta_ct,
            index: NvIndex::from_slot(r.slot)
                .ok_or(StoreError::Malformed("an index is out of range"))?,
            current: Version::new(r.current).ok_or(StoreError::Malformed("version 0"))?,
            kind: kind(&r.kind)?,
            created: Timestamp::from_millis(r.created),
            updated: Timestamp::from_millis(r.updated),
            revoked: r.revoked.map(Timestamp::from_millis),
        })
    }
}

fn kind(s: &str) -> Result<Kind, StoreError> {
    s.parse::<Kind>()
        .map_err(|_| StoreError::Malformed("an unknown kind"))
}

/// A version row's wire form in a backup, with its secret's id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionRecord {
    secret: [u8; 16],
    version: u32,
    kind: String,
    created: i64,
    actor: String,
    key_version: u32,
    ciphertext: Option<Vec<u8>>,
}

impl VersionRecord {
    /// The wire form of `v`, a version of `secret`.
    pub fn new(secret: SecretId, v: VersionRow) -> Self {
        Self {
            secret: secret.0,
            version: v.version.get(),
            kind: v.kind.as_str().to_owned(),
            created: v.created.as_millis(),
            actor: v.actor,
            key_version: v.key_version,
            ciphertext: v.ciphertext,
        }
    }

    /// The secret's id and the version row.
    pub fn into_row(self) -> Result<(SecretId, VersionRow), StoreError> {
        Ok((
            SecretId(self.secret),
            VersionRow {
                version: Version::new(self.version).ok_or(StoreError::Malformed("version 0"))?,
                kind: kind(&self.kind)?,
                created: Timestamp::from_millis(self.created),
                actor: self.actor,
                key_version: self.key_version,
                ciphertext: self.ciphertext,
            },
        ))
    }
}

/// A snapshot row's wire form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RowRecord {
    /// [`SnapshotRow::Header`].
    Header(Vec<u8>),
    /// [`SnapshotRow::Namespace`].
    Namespace(NamespaceRecord),
    /// [`SnapshotRow::Secret`].
    Secret(SecretRecord),
    /// [`SnapshotRow::Version`].
    Version(VersionRecord),
    /// [`SnapshotRow::EventHead`].
    EventHead(u64),
}

impl From<SnapshotRow> for RowRecord {
    fn from(row: SnapshotRow) -> Self {
        match row {
            SnapshotRow::Header(h) => Self::Header(h),
            SnapshotRow::Namespace(n) => Self::Namespace(n.into()),
            SnapshotRow::Secret(s) => Self::Secret(s.into()),
            SnapshotRow::Version(id, v) => Self::Version(VersionRecord::new(id, v)),
            SnapshotRow::EventHead(h) => Self::EventHead(h),
        }
    }
}

impl TryFrom<RowRecord> for SnapshotRow {
    type Error = StoreError;
    fn try_from(r: RowRecord) -> Result<Self, StoreError> {
        Ok(match r {
            RowRecord::Header(h) => Self::Header(h),
            RowRecord::Namespace(n) => Self::Namespace(n.into()),
            RowRecord::Secret(s) => Self::Secret(s.try_into()?),
            RowRecord::Version(v) => {
                let (id, v) = v.into_row()?;
                Self::Version(id, v)
            }
            RowRecord::EventHead(h) => Self::EventHead(h),
        })
    }
}
