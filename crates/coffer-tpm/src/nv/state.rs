//! What the NV store keeps, in memory and in NV, and how it changes without ever leaving NV
//! unreadable.
//!
//! Handles, relative to `0x01520000`:
//! - `0x0000-0x3fff`: a secret's home (side A head); this is the index `set` answers.
//! - `0x4000-0x7fff`: the same secret's side B head (home + 0x4000).
//! - `0x8000-0xfffd`: continuations of any chain.
//! - `0xfffe`, `0xffff`: the directory's two sides.
//!
//! Every record has two sides. A write goes to the side that is not current, with the next
//! generation; readers take the valid side with the highest generation. A write torn by a
//! crash or power cut leaves that side invalid (its hash fails) and the other side current, so
//! an acknowledged write is never lost and NV is never left unreadable. The directory (store
//! header, namespaces, live slots, revoked history) changes the same way; a secret is created
//! by writing it first and committing the directory second, and deleted in the reverse order;
//! indices a crash left unreferenced are freed at the next open.

use std::collections::{BTreeSet, HashMap};

use coffer_store::{NamespaceRow, SecretId, SecretRow, StoreError, VersionRow};
use coffer_types::{Kind, NvIndex, Timestamp, Version};

use super::chain::{self, Chain};
use crate::{Session, TpmError, TpmRc};

pub(super) const BASE: u32 = NvIndex::BASE;
const SLOTS: u32 = 0x4000;
const B_OFFSET: u32 = 0x4000;
const CONT_FIRST: u32 = BASE + 0x8000;
const CONT_END: u32 = BASE + 0xfffe;
const DIR_A: u32 = BASE + 0xfffe;
const DIR_B: u32 = BASE + 0xffff;
pub(super) const SPAN: u32 = 0x1_0000;

/// One version as kept in NV.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct VersionRecord {
    version: u32,
    kind: Kind,
    created: i64,
    actor: String,
    key_version: u32,
    ciphertext: Option<Vec<u8>>,
}

/// One secret with every version, as kept in NV (one record, two sides).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct SecretRecord {
    id: [u8; 16],
    namespace: [u8; 32],
    name_hash: [u8; 32],
    name_ct: Vec<u8>,
    meta_ct: Vec<u8>,
    slot: u32,
    current: u32,
    kind: Kind,
    created: i64,
    updated: i64,
    revoked: Option<i64>,
    versions: Vec<VersionRecord>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct NamespaceRecord {
    id: [u8; 32],
    name_ct: Vec<u8>,
    key_version: u32,
    wrapped_key: Vec<u8>,
    created: i64,
}

/// The directory: everything that is not one live secret.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Directory {
    header: Option<Vec<u8>>,
    namespaces: Vec<NamespaceRecord>,
    live: Vec<u32>,
    /// Revoked secrets: history kept, ciphertexts erased to give the NV space back.
    revoked: Vec<SecretRecord>,
}

impl Directory {
    pub(super) fn set_header(&mut self, body: Vec<u8>) {
        self.header = Some(body);
    }

    pub(super) fn add_namespace(&mut self, row: &NamespaceRow) {
        self.namespaces.push(NamespaceRecord {
            id: row.id,
            name_ct: row.name_ct.clone(),
            key_version: row.key_version,
            wrapped_key: row.wrapped_key.clone(),
            created: row.created.as_millis(),
        });
    }
}

fn malformed(_: postcard::Error) -> StoreError {
    StoreError::Malformed("an NV record")
}

/// Maps TPM failures to store errors: no NV space is `nv_full`.
pub(super) fn store_error(e: TpmError) -> StoreError {
    match e.rc() {
        Some(rc) if rc == TpmRc::NV_SPACE => StoreError::Full,
        _ => StoreError::unavailable("using TPM NV", e),
    }
}

impl VersionRecord {
    fn row(&self) -> Result<VersionRow, StoreError> {
        Ok(VersionRow {
            version: Version::new(self.version).ok_or(StoreError::Malformed("version 0"))?,
            kind: self.kind,
            created: Timestamp::from_millis(self.created),
            actor: self.actor.clone(),
            key_version: self.key_version,
            ciphertext: self.ciphertext.clone(),
        })
    }
}

impl SecretRecord {
    pub(super) fn row(&self) -> Result<SecretRow, StoreError> {
        Ok(SecretRow {
            id: SecretId(self.id),
            namespace: self.namespace,
            name_hash: self.name_hash,
            name_ct: self.name_ct.clone(),
            meta_ct: self.meta_ct.clone(),
            index: NvIndex::from_slot(self.slot).ok_or(StoreError::Malformed("an NV slot"))?,
            current: Version::new(self.current).ok_or(StoreError::Malformed("version 0"))?,
            kind: self.kind,
            created: Timestamp::from_millis(self.created),
            updated: Timestamp::from_millis(self.updated),
            revoked: self.revoked.map(Timestamp::from_millis),
        })
    }

    pub(super) fn versions(&self) -> Result<Vec<VersionRow>, StoreError> {
        self.versions.iter().map(VersionRecord::row).collect()
    }

    /// One version; `None` when it is not kept (or its record is malformed).
    pub(super) fn version(&self, v: Version) -> Option<VersionRow> {
        self.versions
            .iter()
            .find(|r| r.version == v.get())
            .and_then(|r| r.row().ok())
    }

    pub(super) fn new(row: &SecretRow, slot: u32) -> Self {
        Self {
            id: row.id.0,
            namespace: row.namespace,
            name_hash: row.name_hash,
            name_ct: row.name_ct.clone(),
            meta_ct: row.meta_ct.clone(),
            slot,
            current: row.current.get(),
            kind: row.kind,
            created: row.created.as_millis(),
            updated: row.updated.as_millis(),
            revoked: row.revoked.map(Timestamp::as_millis),
            versions: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, v: VersionRow) {
        self.current = v.version.get();
        self.kind = v.kind;
        self.updated = v.created.as_millis();
        self.versions.push(VersionRecord {
            version: v.version.get(),
            kind: v.kind,
            created: v.created.as_millis(),
            actor: v.actor,
            key_version: v.key_version,
            ciphertext: v.ciphertext,
        });
    }

    pub(super) fn prune(&mut self, before: Option<Version>) {
        if let Some(b) = before {
            self.versions.retain(|v| v.version >= b.get());
        }
    }

    pub(super) fn destroy(&mut self, versions: &[Version]) {
        for v in &mut self.versions {
            if versions.iter().any(|d| d.get() == v.version) {
                v.ciphertext = None;
            }
        }
    }

    pub(super) fn set_meta(&mut self, meta: Vec<u8>) {
        self.meta_ct = meta;
    }

    pub(super) fn revoke(mut self, at: Timestamp) -> Self {
        self.revoked = Some(at.as_millis());
        for v in &mut self.versions {
            v.ciphertext = None;
        }
        self
    }

    pub(super) fn key(&self) -> ([u8; 32], [u8; 32]) {
        (self.namespace, self.name_hash)
    }

    pub(super) fn id(&self) -> SecretId {
        SecretId(self.id)
    }

    pub(super) fn slot(&self) -> u32 {
        self.slot
    }

    pub(super) fn version_numbers(&self) -> Vec<Version> {
        self.versions
            .iter()
            .filter_map(|v| Version::new(v.version))
            .collect()
    }
}

/// A record kept on two sides.
#[derive(Debug, Clone, Default)]
struct Sides {
    generation: u64,
    /// Whether side B (rather than A) holds the current generation.
    b_current: bool,
    a: Option<Chain>,
    b: Option<Chain>,
}

impl Sides {
    fn handles(&self) -> impl Iterator<Item = u32> + '_ {
        self.a.iter().chain(self.b.iter()).flat_map(Chain::handles)
    }
}

struct LiveSecret {
    record: SecretRecord,
    sides: Sides,
}

/// The store in memory: the directory, every live secret, and every defined handle.
pub(super) struct NvState {
    dir: Directory,
    dir_sides: Sides,
    secrets: HashMap<u32, LiveSecret>,
    by_name: HashMap<([u8; 32], [u8; 32]), u32>,
    by_id: HashMap<SecretId, u32>,
    used: BTreeSet<u32>,
    index_max: usize,
}

/// Reads both sides at `a` and `b`; answers the current payload and the sides' layout.
fn read_sides(
    s: &mut Session,
    a: u32,
    b: u32,
    used: &BTreeSet<u32>,
) -> Result<(Option<Vec<u8>>, Sides), StoreError> {
    let read = |s: &mut Session, h: u32| -> Result<_, StoreError> {
        if !used.contains(&h) {
            return Ok(None);
        }
        s.read_chain(h).map_err(store_error)
    };
    let (ra, rb) = (read(s, a)?, read(s, b)?);
    let mut sides = Sides::default();
    let mut payload = None;
    let ga = ra.as_ref().map(|(g, ..)| *g);
    let gb = rb.as_ref().map(|(g, ..)| *g);
    if let Some((g, p, chain)) = ra {
        sides.a = Some(chain);
        if gb.is_none_or(|gb| g > gb) {
            sides.generation = g;
            payload = Some(p);
        }
    } else if used.contains(&a) {
        // A torn or foreign head: keep the handle, know nothing of its continuations.
        sides.a = Some(Chain {
            head: a,
            ..Chain::default()
        });
    }
    if let Some((g, p, chain)) = rb {
        sides.b = Some(chain);
        if ga.is_none_or(|ga| g > ga) {
            sides.generation = g;
            sides.b_current = true;
            payload = Some(p);
        }
    } else if used.contains(&b) {
        sides.b = Some(Chain {
            head: b,
            ..Chain::default()
        });
    }
    Ok((payload, sides))
}

/// Whether a directory side is defined in NV: a coffer NV store is there, readable or not.
/// Listing handles needs no authorization.
pub(super) fn present(s: &mut Session) -> Result<bool, StoreError> {
    let listed = s.nv_list(DIR_A, 2).map_err(store_error)?;
    Ok(listed.iter().any(|h| *h == DIR_A || *h == DIR_B))
}

impl NvState {
    /// Loads the store from NV, freeing what a crash left unreferenced.
    pub(super) fn open(s: &mut Session) -> Result<Self, StoreError> {
        let used: BTreeSet<u32> = s
            .nv_list(BASE, SPAN)
            .map_err(store_error)?
            .into_iter()
            .collect();
        // Nothing is read from, or freed in, an index coffer did not define with its own
        // authorization (an older store's, another program's).
        for &h in &used {
            s.nv_check_ours(h).map_err(store_error)?;
        }
        let (dir_payload, dir_sides) = read_sides(s, DIR_A, DIR_B, &used)?;
        let dir: Directory = match dir_payload {
            Some(p) => postcard::from_bytes(&p).map_err(malformed)?,
            None => Directory::default(),
        };
        let mut state = Self {
            dir,
            dir_sides,
            secrets: HashMap::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            used,
            index_max: s.index_max,
        };
        for slot in state.dir.live.clone() {
            let (payload, sides) = read_sides(s, BASE + slot, BASE + B_OFFSET + slot, &state.used)?;
            let payload = payload.ok_or(StoreError::Malformed(
                "a live secret has no valid side in NV",
            ))?;
            let record: SecretRecord = postcard::from_bytes(&payload).map_err(malformed)?;
            state.index(slot, &record);
            state.secrets.insert(slot, LiveSecret { record, sides });
        }
        state.sweep(s);
        Ok(state)
    }

    fn index(&mut self, slot: u32, record: &SecretRecord) {
        self.by_name.insert(record.key(), slot);
        self.by_id.insert(record.id(), slot);
    }

    /// Frees every handle in range that nothing refers to.
    fn sweep(&mut self, s: &mut Session) {
        let mut keep: BTreeSet<u32> = self.dir_sides.handles().collect();
        for live in self.secrets.values() {
            keep.extend(live.sides.handles());
        }
        let orphans: Vec<u32> = self.used.difference(&keep).copied().collect();
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "freeing NV indices an interrupted write left behind"
            );
        }
        for h in orphans {
            if s.nv_undefine(h).is_ok() {
                self.used.remove(&h);
            }
        }
    }

    pub(super) fn header(&self) -> Option<Vec<u8>> {
        self.dir.header.clone()
    }

    pub(super) fn namespaces(&self) -> Vec<NamespaceRow> {
        self.dir
            .namespaces
            .iter()
            .map(|n| NamespaceRow {
                id: n.id,
                name_ct: n.name_ct.clone(),
                key_version: n.key_version,
                wrapped_key: n.wrapped_key.clone(),
                created: Timestamp::from_millis(n.created),
                // NV keeps no passphrase wraps (Backend::supports_locking is false).
                lock_wrap: None,
            })
            .collect()
    }

    pub(super) fn live(&self, key: &([u8; 32], [u8; 32])) -> Option<&SecretRecord> {
        self.by_name
            .get(key)
            .and_then(|slot| self.secrets.get(slot))
            .map(|l| &l.record)
    }

    pub(super) fn live_in(&self, namespace: &[u8; 32]) -> impl Iterator<Item = &SecretRecord> {
        self.secrets
            .values()
            .map(|l| &l.record)
            .filter(move |r| &r.namespace == namespace)
    }

    pub(super) fn revoked_in(&self, namespace: &[u8; 32]) -> impl Iterator<Item = &SecretRecord> {
        self.dir
            .revoked
            .iter()
            .filter(move |r| &r.namespace == namespace)
    }

    pub(super) fn by_id(&self, id: &SecretId) -> Option<&SecretRecord> {
        match self.by_id.get(id) {
            Some(slot) => self.secrets.get(slot).map(|l| &l.record),
            None => self.dir.revoked.iter().find(|r| &r.id() == id),
        }
    }

    /// A free slot whose two heads are free.
    pub(super) fn free_slot(&self) -> Result<u32, StoreError> {
        (0..SLOTS)
            .find(|&s| {
                !self.secrets.contains_key(&s)
                    && !self.used.contains(&(BASE + s))
                    && !self.used.contains(&(BASE + B_OFFSET + s))
            })
            .ok_or(StoreError::Full)
    }

    fn free_cont(&self, taken: &[u32]) -> Result<u32, TpmError> {
        (CONT_FIRST..CONT_END)
            .find(|h| !self.used.contains(h) && !taken.contains(h))
            .ok_or(TpmError::Tpm {
                op: "find a free NV index",
                rc: TpmRc::NV_SPACE,
                message: "coffer's NV handle range is exhausted".to_owned(),
            })
    }

    /// Writes `payload` as the next generation on the side that is not current, redefining
    /// that side's indices where their sizes differ. The current side is never touched.
    fn write_side(
        &mut self,
        s: &mut Session,
        sides: &mut Sides,
        heads: (u32, u32),
        payload: &[u8],
    ) -> Result<(), TpmError> {
        let use_b = !sides.b_current && sides.a.is_some() && sides.generation > 0;
        let (head, old) = if use_b {
            (heads.1, sides.b.take())
        } else {
            (heads.0, sides.a.take())
        };
        let result = self.write_chain(s, head, old, sides.generation + 1, payload);
        match result {
            Ok(chain) => {
                if use_b {
                    sides.b = Some(chain);
                } else {
                    sides.a = Some(chain);
                }
                sides.generation += 1;
                sides.b_current = use_b;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Lays a chain at `head`, reusing `old`'s indices where sizes match. On failure, every
    /// index of this chain is freed (the chain was not current, so nothing is lost).
    fn write_chain(
        &mut self,
        s: &mut Session,
        head: u32,
        old: Option<Chain>,
        generation: u64,
        payload: &[u8],
    ) -> Result<Chain, TpmError> {
        let old = old.unwrap_or(Chain {
            head,
            ..Chain::default()
        });
        let n = chain::continuations(payload.len(), self.index_max);
        let mut conts: Vec<u32> = old.conts.iter().map(|(h, _)| *h).take(n).collect();
        while conts.len() < n {
            let h = self.free_cont(&conts)?;
            conts.push(h);
        }
        let (stream, sizes) = chain::encode(generation, &conts, payload, self.index_max);
        let mut new = Chain {
            head,
            head_size: sizes[0],
            conts: conts
                .iter()
                .copied()
                .zip(sizes[1..].iter().copied())
                .collect(),
        };
        let attempt = (|| {
            // Continuations this side no longer needs.
            for (h, _) in old.conts.iter().skip(n) {
                self.undefine(s, *h)?;
            }
            let mut at = 0;
            // Each piece: handle, size wanted, size defined now (None: not defined; 0: a
            // size we do not know, so it is redefined).
            let defined =
                |h: u32, known: Option<usize>| self.used.contains(&h).then(|| known.unwrap_or(0));
            let mut pieces: Vec<(u32, usize, Option<usize>)> =
                vec![(head, sizes[0], defined(head, Some(old.head_size)))];
            for (i, (h, size)) in new.conts.iter().enumerate() {
                let known = old.conts.get(i).filter(|(oh, _)| oh == h).map(|(_, s)| *s);
                pieces.push((*h, *size, defined(*h, known)));
            }
            // Continuations first, the head last: a reader checks the whole stream anyway.
            let order: Vec<usize> = (1..pieces.len()).chain(std::iter::once(0)).collect();
            let offsets: Vec<usize> = pieces
                .iter()
                .map(|(_, size, _)| {
                    let o = at;
                    at += size;
                    o
                })
                .collect();
            for i in order {
                let (h, size, defined) = pieces[i];
                if defined != Some(size) {
                    if defined.is_some() {
                        self.undefine(s, h)?;
                    }
                    s.nv_define(h, size)?;
                    self.used.insert(h);
                }
                s.nv_write(h, &stream[offsets[i]..offsets[i] + size])?;
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => Ok(new),
            Err(e) => {
                for h in std::iter::once(head).chain(new.conts.drain(..).map(|(h, _)| h)) {
                    let _ = self.undefine(s, h);
                }
                Err(e)
            }
        }
    }

    fn undefine(&mut self, s: &mut Session, handle: u32) -> Result<(), TpmError> {
        if self.used.contains(&handle) {
            s.nv_undefine(handle)?;
            self.used.remove(&handle);
        }
        Ok(())
    }

    fn commit_directory(&mut self, s: &mut Session) -> Result<(), StoreError> {
        let payload = postcard::to_stdvec(&self.dir).map_err(malformed)?;
        let mut sides = std::mem::take(&mut self.dir_sides);
        let result = self.write_side(s, &mut sides, (DIR_A, DIR_B), &payload);
        self.dir_sides = sides;
        result.map_err(store_error)
    }

    /// Changes the directory and commits it; on failure the change is undone in memory.
    pub(super) fn change_directory(
        &mut self,
        s: &mut Session,
        f: impl FnOnce(&mut Directory),
    ) -> Result<(), StoreError> {
        let before = self.dir.clone();
        f(&mut self.dir);
        self.commit_directory(s).inspect_err(|_| self.dir = before)
    }

    /// Writes a live secret's record (creating it when its slot is new).
    pub(super) fn put_secret(
        &mut self,
        s: &mut Session,
        record: SecretRecord,
    ) -> Result<(), StoreError> {
        let slot = record.slot;
        let payload = postcard::to_stdvec(&record).map_err(malformed)?;
        let existing = self.secrets.remove(&slot);
        let mut sides = existing
            .as_ref()
            .map(|l| l.sides.clone())
            .unwrap_or_default();
        let written = self.write_side(
            s,
            &mut sides,
            (BASE + slot, BASE + B_OFFSET + slot),
            &payload,
        );
        if let Err(e) = written {
            // The side being written is gone; the current one, and the record, are as before.
            if let Some(l) = existing {
                self.secrets.insert(
                    slot,
                    LiveSecret {
                        record: l.record,
                        sides,
                    },
                );
            }
            return Err(store_error(e));
        }
        if existing.is_none() {
            // A new secret: visible only once the directory lists it.
            if let Err(e) = self.change_directory(s, |d| d.live.push(slot)) {
                for h in sides.handles().collect::<Vec<_>>() {
                    let _ = self.undefine(s, h);
                }
                return Err(e);
            }
        }
        self.index(slot, &record);
        self.secrets.insert(slot, LiveSecret { record, sides });
        Ok(())
    }

    /// Removes a live secret: the directory first, then its indices.
    pub(super) fn remove_secret(
        &mut self,
        s: &mut Session,
        slot: u32,
        keep_history: Option<(Timestamp, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let Some(live) = self.secrets.get(&slot) else {
            return Err(StoreError::NotFound("secret"));
        };
        let record = live.record.clone();
        self.change_directory(s, |d| {
            d.live.retain(|&l| l != slot);
            if let Some((at, meta)) = keep_history {
                let mut kept = record.clone().revoke(at);
                // The metadata sealed to the revoked row (store format 2).
                if let Some(meta) = meta {
                    kept.set_meta(meta);
                }
                d.revoked.push(kept);
            }
        })?;
        if let Some(live) = self.secrets.remove(&slot) {
            self.by_name.remove(&live.record.key());
            self.by_id.remove(&live.record.id());
            for h in live.sides.handles().collect::<Vec<_>>() {
                // Unreferenced now; a failure here is swept at the next open.
                let _ = self.undefine(s, h);
            }
        }
        Ok(())
    }
}
