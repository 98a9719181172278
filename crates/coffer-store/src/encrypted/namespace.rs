//! An open namespace: its key, its name index, the associated data of each record kind, and
//! the write and modify plans that run inside the backend's transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_crypto::aead::Aad;
use coffer_crypto::{CryptoError, NamespaceKey, SecretBytes};
use coffer_types::{GeneratorSpec, Kind, Namespace, SecretName, Timestamp, Version};

use super::index::NameIndex;
use super::meta::MetaBlob;
use crate::backend::{
    Live, Modification, ModifyPlan, NameHash, NamespaceId, NewSecret, Planned, SecretId, SecretRow,
    VersionRow, WritePlan,
};
use crate::store::{DeriveValue, Describe, WriteMode};
use crate::{Gone, StoreError};

/// The value a plan writes, owned so it can cross to the writer thread.
pub(super) enum PlanValue {
    /// A value given by the caller.
    Given(SecretBytes),
    /// A value computed from the newest version, in the transaction.
    Derived(DeriveValue),
}

/// What a plan needs to write a version, owned so it can cross to the writer thread.
pub(super) struct VersionPlan {
    pub name: SecretName,
    /// The keyed hash the backend files the secret under, bound into its metadata.
    pub name_hash: NameHash,
    pub value: PlanValue,
    pub kind: Option<Kind>,
    pub new_kind: Kind,
    pub actor: String,
    pub mode: WriteMode,
    pub description: Option<String>,
    pub max_versions: Option<u32>,
    pub new_max_versions: Option<u32>,
    pub generated: Option<GeneratorSpec>,
    pub cas: Option<u32>,
    pub cas_required: bool,
    pub rotation: Option<crate::store::RotationStep>,
}

/// A namespace as the store holds it: open (its key unwrapped), or locked (no key held).
#[derive(Clone)]
pub(super) enum Held {
    Open(Arc<OpenNamespace>),
    Locked,
}

impl Held {
    pub(super) fn open(&self) -> Option<&Arc<OpenNamespace>> {
        match self {
            Self::Open(ns) => Some(ns),
            Self::Locked => None,
        }
    }
}

/// A namespace with its key unwrapped.
pub(super) struct OpenNamespace {
    pub id: NamespaceId,
    pub path: Namespace,
    /// The current generation: every new seal uses it.
    pub key: NamespaceKey,
    pub key_version: u32,
    /// Older generations a key rotation still needs, by generation (empty otherwise).
    pub older: BTreeMap<u32, NamespaceKey>,
    /// The live names, for lists (shared by the generations of the namespace).
    pub names: Arc<NameIndex>,
}

fn corrupt(what: &'static str) -> impl Fn(CryptoError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

/// The columns of a secret row that decide what it serves: the name it is found by, the
/// newest version and its kind, its times, and whether it was revoked. They are bound into
/// the associated data of the row's metadata (store format 2), so a row whose columns were
/// edited (a `name_hash` swapped with another row's, `revoked` cleared, `current` rolled
/// back) no longer opens: every read and every write opens the metadata first.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowState {
    pub name_hash: NameHash,
    pub current: Version,
    pub kind: Kind,
    pub created: Timestamp,
    pub updated: Timestamp,
    pub revoked: Option<Timestamp>,
}

impl RowState {
    /// The state a row holds now.
    pub fn of(row: &SecretRow) -> Self {
        Self {
            name_hash: row.name_hash,
            current: row.current,
            kind: row.kind,
            created: row.created,
            updated: row.updated,
            revoked: row.revoked,
        }
    }
}

impl OpenNamespace {
    pub fn entry_aad(&self, secret: &SecretId, version: Version, kind: Kind) -> Aad {
        Aad::new("coffer entry v1")
            .with(self.path.as_str())
            .with(secret.0)
            .with_u32(version.get())
            .with(kind.as_str())
    }

    pub fn name_aad(&self, secret: &SecretId) -> Aad {
        Aad::new("coffer secret name v1")
            .with(self.path.as_str())
            .with(secret.0)
    }

    pub fn meta_aad(&self, secret: &SecretId, state: &RowState) -> Aad {
        let revoked = state.revoked.map_or([0u8; 9], |t| {
            let mut b = [1u8; 9];
            b[1..].copy_from_slice(&t.as_millis().to_be_bytes());
            b
        });
        Aad::new("coffer secret meta v2")
            .with(self.path.as_str())
            .with(self.id)
            .with(secret.0)
            .with(state.name_hash)
            .with_u32(state.current.get())
            .with(state.kind.as_str())
            .with(state.created.as_millis().to_be_bytes())
            .with(state.updated.as_millis().to_be_bytes())
            .with(revoked)
    }

    pub fn name_of(&self, row: &SecretRow) -> Result<SecretName, StoreError> {
        self.open_name(&row.id, &row.name_ct)
    }

    /// The name sealed in `name_ct` for secret `id`. Opened into ordinary memory: a name is
    /// not a secret value (the name index keeps every name in ordinary memory), and locking a
    /// page per name cost two system calls each (a million names took 8 s).
    pub fn open_name(&self, id: &SecretId, name_ct: &[u8]) -> Result<SecretName, StoreError> {
        let aad = self.name_aad(id);
        let plain = self
            .key
            .open_unlocked(name_ct, &aad)
            .or_else(|e| {
                // During a key rotation a name may still be sealed under an older generation.
                self.older
                    .values()
                    .rev()
                    .find_map(|k| k.open_unlocked(name_ct, &aad).ok())
                    .ok_or(e)
            })
            .map_err(corrupt("secret name"))?;
        std::str::from_utf8(&plain)
            .ok()
            .and_then(|s| SecretName::parse(s).ok())
            .ok_or(StoreError::Malformed("a stored name"))
    }

    /// The row's metadata, opened only when the row's state columns are the ones it was
    /// sealed with ([`RowState`]): an edited row is [`StoreError::Corrupt`].
    pub fn meta_of(&self, row: &SecretRow) -> Result<MetaBlob, StoreError> {
        if row.namespace != self.id {
            return Err(StoreError::Integrity(
                "a secret row names another namespace",
            ));
        }
        let aad = self.meta_aad(&row.id, &RowState::of(row));
        let plain = self
            .open_any(&row.meta_ct, &aad)
            .map_err(corrupt("secret row"))?;
        serde_json::from_slice(plain.expose_secret())
            .map_err(|_| StoreError::Malformed("stored metadata"))
    }

    /// Opens what was sealed under the current generation or, during a key rotation, an
    /// older one.
    pub fn open_any(&self, envelope: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
        self.key.open(envelope, aad).or_else(|e| {
            self.older
                .values()
                .rev()
                .find_map(|k| k.open(envelope, aad).ok())
                .ok_or(e)
        })
    }

    /// The key of generation `key_version`, current or older.
    pub fn key_of(&self, key_version: u32) -> Option<&NamespaceKey> {
        if key_version == self.key_version {
            Some(&self.key)
        } else {
            self.older.get(&key_version)
        }
    }

    /// Seals metadata for the row `id` as it will stand once the write commits (`state`).
    pub fn seal_meta(
        &self,
        id: &SecretId,
        state: &RowState,
        meta: &MetaBlob,
    ) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(meta).map_err(|_| StoreError::Malformed("metadata"))?;
        self.key
            .seal(&json, &self.meta_aad(id, state))
            .map_err(StoreError::Crypto)
    }

    pub fn open_version(
        &self,
        row: &SecretRow,
        version: &VersionRow,
    ) -> Result<SecretBytes, StoreError> {
        let ciphertext = version.ciphertext.as_ref().ok_or(StoreError::Gone(Gone {
            version: version.version,
            created: version.created,
            deletion: None,
            destroyed: true,
            custom_metadata: BTreeMap::new(),
        }))?;
        self.key_of(version.key_version)
            .ok_or(StoreError::Integrity(
                "a version names a key generation its namespace does not have",
            ))?
            .open(
                ciphertext,
                &self.entry_aad(&row.id, version.version, version.kind),
            )
            .map_err(corrupt("secret value"))
    }

    /// The plaintext of `version` as a read may see it at `now`: a version soft-deleted by
    /// then, or destroyed, is [`StoreError::Gone`] with the secret's custom metadata.
    pub fn readable(
        &self,
        row: &SecretRow,
        version: &VersionRow,
        meta: &MetaBlob,
        now: Timestamp,
    ) -> Result<SecretBytes, StoreError> {
        meta.check_version(version)?;
        let deletion = meta.deletion(version.version);
        let destroyed = version.ciphertext.is_none();
        if destroyed || deletion.is_some_and(|d| d <= now) {
            return Err(StoreError::Gone(Gone {
                version: version.version,
                created: version.created,
                deletion,
                destroyed,
                custom_metadata: meta.custom.clone(),
            }));
        }
        self.open_version(row, version)
    }

    /// Plans a new version given the live row (if any), checking mode, check-and-set and
    /// kind; a derived value is computed here, from the newest version read in the same
    /// transaction.
    pub fn write_plan(self: Arc<Self>, w: VersionPlan) -> WritePlan {
        Box::new(move |live: Live<'_>| {
            let current = live.row();
            match (w.mode, current) {
                (WriteMode::Create, Some(_)) => {
                    return Err(StoreError::Conflict(
                        "a secret by that name exists; rotate it instead",
                    ));
                }
                (WriteMode::Update, None) => return Err(StoreError::NotFound("secret")),
                _ => {}
            }
            if current.is_none() && matches!(w.value, PlanValue::Derived(_)) {
                return Err(StoreError::NotFound("secret"));
            }
            let kind = w.kind.or(current.map(|r| r.kind)).unwrap_or(w.new_kind);
            let stored_meta = current.map(|row| self.meta_of(row)).transpose()?;
            match w.cas {
                Some(cas) if cas != current.map_or(0, |r| r.current.get()) => {
                    return Err(StoreError::Conflict(crate::CAS_MISMATCH));
                }
                None if w.cas_required || stored_meta.as_ref().is_some_and(|m| m.cas_required) => {
                    return Err(StoreError::Conflict(
                        "check-and-set parameter required for this call",
                    ));
                }
                _ => {}
            }
            let now = Timestamp::now();
            let value = match w.value {
                PlanValue::Given(value) => value,
                PlanValue::Derived(derive) => {
                    let (Some(row), Some(meta), Some(newest)) =
                        (current, stored_meta.as_ref(), live.newest()?)
                    else {
                        return Err(StoreError::NotFound("secret"));
                    };
                    let plain = self.readable(row, &newest, meta, now)?;
                    derive(&plain, newest.kind)?
                }
            };
            kind.check(value.expose_secret())
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            let (id, version, create, mut meta) = match (current, stored_meta) {
                (Some(row), Some(meta)) => (
                    row.id,
                    row.current.next().ok_or(StoreError::Conflict(
                        "the secret has reached the last version number",
                    ))?,
                    None,
                    meta,
                ),
                _ => (
                    SecretId::generate()?,
                    Version::FIRST,
                    Some(()),
                    MetaBlob {
                        max_versions: w.new_max_versions.filter(|m| *m > 0),
                        ..MetaBlob::default()
                    },
                ),
            };
            meta.apply(w.description, w.max_versions);
            meta.generated = w.generated;
            meta.rotate(
                w.rotation.as_ref(),
                current.map(|r| r.current),
                version,
                now,
            )?;
            meta.schedule_deletion(version, now);
            let prune_before = meta.prune_before(version);
            meta.forget_before(prune_before);
            let state = RowState {
                name_hash: w.name_hash,
                current: version,
                kind,
                created: current.map_or(now, |r| r.created),
                updated: now,
                revoked: None,
            };
            let meta_ct = self.seal_meta(&id, &state, &meta)?;
            let create = match create {
                Some(()) => Some(NewSecret {
                    id,
                    name_ct: self
                        .key
                        .seal(w.name.as_str().as_bytes(), &self.name_aad(&id))
                        .map_err(StoreError::Crypto)?,
                    meta_ct: meta_ct.clone(),
                    created: now,
                }),
                None => None,
            };
            let ciphertext = self
                .key
                .seal(value.expose_secret(), &self.entry_aad(&id, version, kind))
                .map_err(StoreError::Crypto)?;
            Ok(Planned {
                meta_ct: create.is_none().then_some(meta_ct),
                create,
                prune_before,
                version: VersionRow {
                    version,
                    kind,
                    created: now,
                    actor: w.actor,
                    key_version: self.key_version,
                    ciphertext: Some(ciphertext),
                },
            })
        })
    }

    /// Plans a metadata change.
    pub fn describe_plan(self: Arc<Self>, change: Describe) -> ModifyPlan {
        Box::new(move |row: &SecretRow| {
            let mut meta = self.meta_of(row)?;
            meta.apply_kv(&change, row.current, Timestamp::now())?;
            meta.apply(change.description, change.max_versions);
            let destroy = match &change.rotation {
                Some(resolve) => meta.resolve(resolve, row.current, Timestamp::now())?,
                None => vec![],
            };
            let prune_before = meta.prune_before(row.current);
            meta.forget_before(prune_before);
            Ok(Modification {
                meta_ct: Some(self.seal_meta(&row.id, &RowState::of(row), &meta)?),
                prune_before,
                destroy,
                ..Modification::default()
            })
        })
    }

    /// Plans a revocation at `at`: the metadata is sealed again to the revoked row, so
    /// clearing `revoked` later leaves a row that no longer opens.
    pub fn revoke_plan(self: Arc<Self>, at: Timestamp) -> ModifyPlan {
        Box::new(move |row: &SecretRow| {
            let meta = self.meta_of(row)?;
            let state = RowState {
                revoked: Some(at),
                ..RowState::of(row)
            };
            Ok(Modification {
                meta_ct: Some(self.seal_meta(&row.id, &state, &meta)?),
                revoke: Some(at),
                ..Modification::default()
            })
        })
    }

    /// Plans erasing `versions` (sorted, without duplicates): they are recorded as destroyed
    /// in the sealed metadata, so a ciphertext put back from a backup is not served.
    pub fn destroy_plan(self: Arc<Self>, versions: Vec<Version>) -> ModifyPlan {
        Box::new(move |row: &SecretRow| {
            let mut meta = self.meta_of(row)?;
            meta.destroyed.extend(versions.iter().map(|v| v.get()));
            Ok(Modification {
                meta_ct: Some(self.seal_meta(&row.id, &RowState::of(row), &meta)?),
                destroy: versions,
                ..Modification::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::NvIndex;

    fn namespace() -> Arc<OpenNamespace> {
        Arc::new(OpenNamespace {
            id: [7; 32],
            path: Namespace::default_namespace(),
            key: NamespaceKey::generate().expect("random"),
            key_version: 1,
            older: BTreeMap::new(),
            names: Arc::new(NameIndex::empty()),
        })
    }

    /// A live row at `current` with valid sealed metadata.
    fn row(ns: &OpenNamespace, current: Version, meta: &MetaBlob) -> SecretRow {
        let id = SecretId([1; 16]);
        let mut row = SecretRow {
            id,
            namespace: ns.id,
            name_hash: [2; 32],
            name_ct: Vec::new(),
            meta_ct: Vec::new(),
            index: NvIndex::from_slot(0).expect("slot 0"),
            current,
            kind: Kind::Text,
            created: Timestamp::now(),
            updated: Timestamp::now(),
            revoked: None,
        };
        row.meta_ct = ns.seal_meta(&id, &RowState::of(&row), meta).expect("seal");
        row
    }

    fn plan(value: PlanValue, cas: Option<u32>) -> VersionPlan {
        VersionPlan {
            name: SecretName::parse("k").expect("valid"),
            name_hash: [2; 32],
            value,
            kind: None,
            new_kind: Kind::Text,
            actor: "uid:0".to_owned(),
            mode: WriteMode::Upsert,
            description: None,
            max_versions: Some(u32::MAX),
            new_max_versions: None,
            generated: None,
            cas,
            cas_required: false,
            rotation: None,
        }
    }

    fn no_read(_: &SecretRow) -> Result<VersionRow, StoreError> {
        panic!("an ordinary write must not read the newest version")
    }

    #[test]
    fn the_last_version_number_is_a_conflict_not_a_panic() {
        let ns = namespace();
        let last = Version::new(u32::MAX).expect("nonzero");
        let meta = MetaBlob {
            delete_after: Some(u64::MAX),
            max_versions: Some(u32::MAX),
            ..MetaBlob::default()
        };
        let row = row(&ns, last, &meta);
        let value = PlanValue::Given(SecretBytes::copy_from(b"v"));
        let err = ns.clone().write_plan(plan(value, None))(Live::new(Some(&row), &no_read))
            .expect_err("no version after the last");
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        let value = PlanValue::Given(SecretBytes::copy_from(b"v"));
        let err =
            ns.clone().write_plan(plan(value, Some(u32::MAX)))(Live::new(Some(&row), &no_read))
                .expect_err("no version after the last");
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        // Metadata changes at the last version still work.
        let change = Describe {
            max_versions: Some(1),
            mark: Some(crate::Mark::DeleteLatest),
            ..Describe::default()
        };
        let m = ns.describe_plan(change)(&row).expect("describe");
        assert_eq!(m.prune_before, Some(last));
    }

    #[test]
    fn only_a_derived_write_reads_the_newest_version() {
        let ns = namespace();
        let meta = MetaBlob::default();
        let row = row(&ns, Version::FIRST, &meta);
        let value = PlanValue::Given(SecretBytes::copy_from(b"v"));
        let planned = ns.clone().write_plan(plan(value, None))(Live::new(Some(&row), &no_read))
            .expect("ordinary write");
        assert_eq!(planned.version.version.get(), 2);
        let stored = VersionRow {
            version: Version::FIRST,
            kind: Kind::Text,
            created: Timestamp::now(),
            actor: "uid:0".to_owned(),
            key_version: 1,
            ciphertext: Some(
                ns.key
                    .seal(b"old", &ns.entry_aad(&row.id, Version::FIRST, Kind::Text))
                    .expect("seal"),
            ),
        };
        let read = |_: &SecretRow| Ok(stored.clone());
        let derive: DeriveValue = Box::new(|old, _| {
            let mut next = old.expose_secret().to_vec();
            next.extend_from_slice(b"+new");
            Ok(SecretBytes::from_vec(next))
        });
        let planned = ns
            .clone()
            .write_plan(plan(PlanValue::Derived(derive), Some(1)))(Live::new(
            Some(&row),
            &read,
        ))
        .expect("derived write");
        let written = ns
            .open_version(&row, &planned.version)
            .expect("the new version opens");
        assert_eq!(written.expose_secret(), b"old+new");
    }
}
