//! The in-memory backend: for tests and for daemons that must keep nothing on disk.
//!
//! It holds the same sealed rows as the others (values stay encrypted even in memory) behind
//! one mutex, which also gives writes their serialization.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use coffer_types::{NvIndex, Version};

use crate::StoreError;
use crate::backend::{
    Backend, Live, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretId, SecretRow,
    VersionRow, WritePlan, Written, check_modification, check_plan,
};
use crate::events::EventPlan;
use crate::snapshot::{Counts, ImportCheck, Rows, SnapshotRow, Visit};

#[derive(Default)]
struct State {
    header: Option<Vec<u8>>,
    namespaces: BTreeMap<NamespaceId, NamespaceRow>,
    /// Live and revoked secrets.
    secrets: HashMap<SecretId, SecretRow>,
    /// Live secrets by name.
    live: HashMap<(NamespaceId, NameHash), SecretId>,
    versions: BTreeMap<(SecretId, Version), VersionRow>,
    /// Index slots freed by deletes and revocations, lowest first.
    free_slots: BTreeSet<u32>,
    /// The first slot never handed out.
    next_slot: u32,
    /// Older namespace key generations (a key rotation in progress).
    namespace_keys: BTreeMap<(NamespaceId, u32), Vec<u8>>,
}

impl State {
    /// The lowest free index, as the SQLite backend allocates them; taken once the write
    /// cannot fail any more.
    fn free_index(&self) -> Result<NvIndex, StoreError> {
        let slot = self.free_slots.first().copied().unwrap_or(self.next_slot);
        NvIndex::from_slot(slot).ok_or(StoreError::Full)
    }

    fn take_index(&mut self, index: NvIndex) {
        if !self.free_slots.remove(&index.slot()) {
            self.next_slot = self.next_slot.max(index.slot().saturating_add(1));
        }
    }

    fn free(&mut self, index: NvIndex) {
        self.free_slots.insert(index.slot());
    }

    fn version_numbers(&self, id: SecretId) -> Vec<Version> {
        self.versions
            .range((id, Version::FIRST)..)
            .take_while(|((sid, _), _)| *sid == id)
            .map(|((_, v), _)| *v)
            .collect()
    }

    fn prune(&mut self, id: SecretId, before: Option<Version>) {
        if let Some(before) = before {
            self.versions
                .retain(|(sid, v), _| *sid != id || *v >= before);
        }
    }
}

/// Sealed rows in memory; gone when dropped.
pub struct MemoryBackend {
    state: Mutex<State>,
    events: crate::MemoryEvents,
    feed: crate::Feed,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: crate::MemoryEvents::default(),
            feed: crate::Feed::new(0),
        }
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied write: every mutation
        // below is a sequence of infallible map updates after all fallible steps.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers and keeps a change's event while the caller holds the state lock (so the
    /// number and the change are one step); answers it for publishing after the change.
    fn record(
        &self,
        event: Option<EventPlan>,
        version: Option<Version>,
    ) -> Result<Option<coffer_types::ChangeEvent>, StoreError> {
        event.map(|e| self.events.record(e, version)).transpose()
    }

    fn publish(&self, event: Option<coffer_types::ChangeEvent>) {
        if let Some(e) = event {
            self.feed.publish([e]);
        }
    }
}

impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn header(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state().header.clone())
    }

    fn put_header(&self, body: &[u8]) -> Result<(), StoreError> {
        self.state().header = Some(body.to_vec());
        Ok(())
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        Ok(self.state().namespaces.values().cloned().collect())
    }

    fn create_namespace(
        &self,
        row: NamespaceRow,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.namespaces.contains_key(&row.id) {
            return Err(StoreError::Conflict("the namespace already exists"));
        }
        let event = self.record(event, None)?;
        state.namespaces.insert(row.id, row);
        self.publish(event);
        Ok(())
    }

    fn record_event(&self, event: EventPlan) -> Result<(), StoreError> {
        let _state = self.state();
        let event = self.record(Some(event), None)?;
        self.publish(event);
        Ok(())
    }

    fn supports_locking(&self) -> bool {
        true
    }

    fn set_namespace_wraps(
        &self,
        id: &NamespaceId,
        from: crate::KeyWraps,
        to: crate::KeyWraps,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.namespaces.get(id) {
            None => return Err(StoreError::NotFound("namespace")),
            Some(row) if crate::KeyWraps::of(row) != from => {
                return Err(StoreError::Conflict(crate::backend::WRAPS_CHANGED));
            }
            Some(_) => {}
        }
        let event = self.record(event, None)?;
        if let Some(row) = state.namespaces.get_mut(id) {
            row.wrapped_key = to.wrapped_key;
            row.lock_wrap = to.lock_wrap;
        }
        self.publish(event);
        Ok(())
    }

    fn read(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        version: Option<Version>,
    ) -> Result<Option<(SecretRow, VersionRow)>, StoreError> {
        let state = self.state();
        let Some(id) = state.live.get(&(*namespace, *name)) else {
            return Ok(None);
        };
        let row = &state.secrets[id];
        let v = version.unwrap_or(row.current);
        let ver = state
            .versions
            .get(&(*id, v))
            .ok_or(StoreError::NotFound("version"))?;
        Ok(Some((row.clone(), ver.clone())))
    }

    fn write(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: WritePlan,
        event: Option<EventPlan>,
    ) -> Result<Written, StoreError> {
        let mut state = self.state();
        let key = (*namespace, *name);
        let current = state.live.get(&key).map(|id| state.secrets[id].clone());
        let newest = |row: &SecretRow| {
            state
                .versions
                .get(&(row.id, row.current))
                .cloned()
                .ok_or(StoreError::NotFound("version"))
        };
        let planned = plan(Live::new(current.as_ref(), &newest))?;
        check_plan(current.as_ref(), &planned)?;
        let v = &planned.version;
        // Every fallible step comes before the first change.
        let new_index = match current {
            None => Some(state.free_index()?),
            Some(_) => None,
        };
        let event = self.record(event, Some(v.version))?;
        let (id, index, created) = match (current, planned.create, new_index) {
            (Some(mut row), _, _) => {
                row.current = v.version;
                row.kind = v.kind;
                row.updated = v.created;
                if let Some(meta) = planned.meta_ct {
                    row.meta_ct = meta;
                }
                let (id, index) = (row.id, row.index);
                state.secrets.insert(id, row);
                (id, index, false)
            }
            (None, Some(new), Some(index)) => {
                state.take_index(index);
                let id = new.id;
                state
                    .secrets
                    .insert(id, new.into_row(*namespace, *name, index, v));
                state.live.insert(key, id);
                (id, index, true)
            }
            (None, _, _) => return Err(StoreError::Malformed("a write plan created nothing")),
        };
        let version = v.version;
        state.versions.insert((id, version), planned.version);
        state.prune(id, planned.prune_before);
        self.publish(event);
        Ok(Written {
            id,
            version,
            index,
            created,
        })
    }

    fn modify(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: ModifyPlan,
        event: Option<EventPlan>,
    ) -> Result<Option<Modified>, StoreError> {
        let mut state = self.state();
        let key = (*namespace, *name);
        let Some(id) = state.live.get(&key).copied() else {
            return Ok(None);
        };
        let mut row = state.secrets[&id].clone();
        let m = plan(&row)?;
        check_modification(&row, &state.version_numbers(id), &m)?;
        let event = self.record(event, Some(row.current))?;
        for v in &m.destroy {
            if let Some(ver) = state.versions.get_mut(&(id, *v)) {
                ver.ciphertext = None;
            }
        }
        state.prune(id, m.prune_before);
        if let Some(meta) = m.meta_ct {
            row.meta_ct = meta;
        }
        if let Some(at) = m.revoke {
            row.revoked = Some(at);
            state.free(row.index);
            state.live.remove(&key);
        }
        state.secrets.insert(id, row.clone());
        self.publish(event);
        Ok(Some(Modified {
            row,
            destroyed: m.destroy,
        }))
    }

    fn delete(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        event: Option<EventPlan>,
    ) -> Result<Option<SecretId>, StoreError> {
        let mut state = self.state();
        let Some(id) = state.live.get(&(*namespace, *name)).copied() else {
            return Ok(None);
        };
        let event = self.record(event, None)?;
        state.live.remove(&(*namespace, *name));
        if let Some(row) = state.secrets.remove(&id) {
            state.free(row.index);
        }
        state.versions.retain(|(sid, _), _| *sid != id);
        self.publish(event);
        Ok(Some(id))
    }

    fn feed(&self) -> &crate::Feed {
        &self.feed
    }

    fn events(&self, after: u64, limit: usize) -> Result<crate::EventRows, StoreError> {
        Ok(self.events.after(after, limit))
    }

    fn prune_events(
        &self,
        retention: crate::Retention,
        now: coffer_types::Timestamp,
    ) -> Result<u64, StoreError> {
        Ok(self.events.prune(retention, now))
    }

    fn secrets(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        let state = self.state();
        Ok(state
            .secrets
            .values()
            .filter(|s| s.namespace == *namespace && s.revoked.is_none())
            .cloned()
            .collect())
    }

    fn revoked(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        let state = self.state();
        Ok(state
            .secrets
            .values()
            .filter(|s| s.namespace == *namespace && s.revoked.is_some())
            .cloned()
            .collect())
    }

    fn versions(&self, secret: &SecretId) -> Result<Vec<VersionRow>, StoreError> {
        let state = self.state();
        Ok(state
            .versions
            .range((*secret, Version::FIRST)..)
            .take_while(|((sid, _), _)| sid == secret)
            .map(|(_, v)| v.clone())
            .collect())
    }

    fn namespace_keys(&self) -> Result<Vec<crate::NamespaceKeyRow>, StoreError> {
        Ok(self
            .state()
            .namespace_keys
            .iter()
            .map(
                |((namespace, key_version), wrapped)| crate::NamespaceKeyRow {
                    namespace: *namespace,
                    key_version: *key_version,
                    wrapped_key: wrapped.clone(),
                },
            )
            .collect())
    }

    fn rotate_namespace_key(
        &self,
        r: crate::KeyRotation,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let Some(row) = state.namespaces.get(&r.namespace) else {
            return Err(StoreError::NotFound("namespace"));
        };
        if row.key_version != r.from {
            return Err(StoreError::Conflict(
                "the namespace's key changed meanwhile; try again",
            ));
        }
        let old = (r.namespace, row.key_version);
        let wrapped = row.wrapped_key.clone();
        let event = self.record(event, None)?;
        state.namespace_keys.insert(old, wrapped);
        if let Some(row) = state.namespaces.get_mut(&r.namespace) {
            row.key_version = r.to;
            row.wrapped_key = r.wrapped_key;
        }
        self.publish(event);
        Ok(())
    }

    fn rekey(&self, changes: Vec<crate::Rekey>) -> Result<u64, StoreError> {
        let mut state = self.state();
        let mut applied = 0;
        for change in changes {
            match change {
                crate::Rekey::Version {
                    secret,
                    version,
                    from,
                    old,
                    to,
                    new,
                } => {
                    if let Some(v) = state.versions.get_mut(&(secret, version))
                        && v.key_version == from
                        && v.ciphertext.as_ref() == Some(&old)
                    {
                        v.key_version = to;
                        v.ciphertext = Some(new);
                        applied += 1;
                    }
                }
                crate::Rekey::Name { secret, old, new } => {
                    if let Some(row) = state.secrets.get_mut(&secret)
                        && row.name_ct == old
                    {
                        row.name_ct = new;
                        applied += 1;
                    }
                }
                crate::Rekey::Meta { secret, old, new } => {
                    if let Some(row) = state.secrets.get_mut(&secret)
                        && row.meta_ct == old
                    {
                        row.meta_ct = new;
                        applied += 1;
                    }
                }
            }
        }
        Ok(applied)
    }

    fn drop_namespace_key(
        &self,
        namespace: &NamespaceId,
        key_version: u32,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let used = state.versions.iter().any(|((sid, _), v)| {
            v.key_version == key_version
                && v.ciphertext.is_some()
                && state
                    .secrets
                    .get(sid)
                    .is_some_and(|s| s.namespace == *namespace)
        });
        if used {
            return Err(StoreError::Conflict(
                "a version is still encrypted under that key generation",
            ));
        }
        let event = self.record(event, None)?;
        state.namespace_keys.remove(&(*namespace, key_version));
        self.publish(event);
        Ok(())
    }

    fn rewrap(
        &self,
        header: &[u8],
        namespaces: Vec<crate::Rewrapped>,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let mut state = self.state();
        let older: usize = namespaces.iter().map(|n| n.older.len()).sum();
        let known = namespaces.len() == state.namespaces.len()
            && older == state.namespace_keys.len()
            && namespaces.iter().all(|n| {
                state.namespaces.contains_key(&n.namespace)
                    && n.older
                        .iter()
                        .all(|(k, _)| state.namespace_keys.contains_key(&(n.namespace, *k)))
            });
        if !known {
            return Err(StoreError::Conflict(
                "the namespaces changed while the master key was being replaced; try again",
            ));
        }
        for n in namespaces {
            if let Some(row) = state.namespaces.get_mut(&n.namespace) {
                row.name_ct = n.name_ct;
                row.wrapped_key = n.wrapped_key;
            }
            for (k, wrapped) in n.older {
                state.namespace_keys.insert((n.namespace, k), wrapped);
            }
        }
        let event = self.record(event, None)?;
        state.header = Some(header.to_vec());
        self.publish(event);
        Ok(())
    }

    fn snapshot(&self, visit: Visit<'_>) -> Result<(), StoreError> {
        // Copied under the lock (one state), visited after it (writers go on meanwhile).
        let rows = {
            let state = self.state();
            if !state.namespace_keys.is_empty() {
                return Err(StoreError::Conflict(crate::snapshot::ROTATING));
            }
            let mut rows = Vec::with_capacity(
                2 + state.namespaces.len() + state.secrets.len() + state.versions.len(),
            );
            rows.extend(state.header.clone().map(SnapshotRow::Header));
            rows.extend(
                state
                    .namespaces
                    .values()
                    .cloned()
                    .map(SnapshotRow::Namespace),
            );
            let mut secrets: Vec<&SecretRow> = state.secrets.values().collect();
            secrets.sort_unstable_by_key(|s| s.id);
            rows.extend(secrets.into_iter().cloned().map(SnapshotRow::Secret));
            rows.extend(
                state
                    .versions
                    .iter()
                    .map(|((id, _), v)| SnapshotRow::Version(*id, v.clone())),
            );
            rows.push(SnapshotRow::EventHead(self.events.head()));
            rows
        };
        rows.into_iter().try_for_each(visit)
    }

    fn import(&self, rows: Rows<'_>) -> Result<Counts, StoreError> {
        let mut state = self.state();
        if state.header.is_some() || !state.namespaces.is_empty() || !state.secrets.is_empty() {
            return Err(StoreError::Conflict(
                "the store is not empty: a snapshot is imported only into an empty store",
            ));
        }
        // Built aside and swapped in at the end: a failed import leaves the store empty.
        let mut next = State::default();
        let mut check = ImportCheck::default();
        for row in rows {
            let row = row?;
            check.check(&row)?;
            match row {
                SnapshotRow::Header(h) => next.header = Some(h),
                SnapshotRow::Namespace(n) => {
                    next.namespaces.insert(n.id, n);
                }
                SnapshotRow::Secret(s) => {
                    if s.revoked.is_none() {
                        next.live.insert((s.namespace, s.name_hash), s.id);
                    }
                    next.secrets.insert(s.id, s);
                }
                SnapshotRow::Version(id, v) => {
                    next.versions.insert((id, v.version), v);
                }
                SnapshotRow::EventHead(_) => {}
            }
        }
        let head = check.finish()?;
        let slots = check.live_slots();
        next.next_slot = slots.iter().max().map_or(0, |m| m + 1);
        next.free_slots = (0..next.next_slot).filter(|s| !slots.contains(s)).collect();
        *state = next;
        let head = self.events.restart_at(head);
        self.feed.advance(head);
        Ok(check.counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EncryptedStore, SecretStore, Write};
    use coffer_crypto::{MasterKey, SecretBytes};
    use coffer_types::{ErrorCode, Namespace, SecretName};
    use std::sync::Arc;

    fn store() -> EncryptedStore<MemoryBackend> {
        let store = EncryptedStore::open(
            Arc::new(MemoryBackend::new()),
            MasterKey::generate().unwrap(),
        )
        .unwrap();
        store
            .create_namespace(&Namespace::default(), crate::Change::by("uid:0"))
            .unwrap();
        for (n, v) in [("a", "value-a"), ("b", "value-b")] {
            let v = SecretBytes::copy_from(v.as_bytes());
            store
                .set(
                    &Namespace::default(),
                    &SecretName::parse(n).unwrap(),
                    Write::new(&v, "uid:0"),
                )
                .unwrap();
        }
        store
    }

    fn code(store: &EncryptedStore<MemoryBackend>, n: &str) -> ErrorCode {
        store
            .get(&Namespace::default(), &SecretName::parse(n).unwrap(), None)
            .map(|_| ())
            .expect_err("a tampered row must not be served")
            .code()
    }

    /// The two live entries, by name hash.
    fn keys(state: &State) -> ((NamespaceId, NameHash), (NamespaceId, NameHash)) {
        let mut keys: Vec<_> = state.live.keys().copied().collect();
        keys.sort();
        (keys[0], keys[1])
    }

    /// Rows bound to their names (issue 12, item 8) in the layer every backend shares: two
    /// rows' name hashes swapped read as `integrity`, and so does a backend that answers
    /// the wrong row for a name.
    #[test]
    fn swapped_rows_and_a_lying_backend_are_integrity_errors() {
        let store = store();
        {
            let mut state = store.backend().state();
            let (ka, kb) = keys(&state);
            let (ia, ib) = (state.live[&ka], state.live[&kb]);
            // The rows' own columns swapped, and found by them (as SQLite would).
            state.live.insert(ka, ib);
            state.live.insert(kb, ia);
            state.secrets.get_mut(&ia).unwrap().name_hash = kb.1;
            state.secrets.get_mut(&ib).unwrap().name_hash = ka.1;
        }
        assert_eq!(code(&store, "a"), ErrorCode::Integrity);
        assert_eq!(code(&store, "b"), ErrorCode::Integrity);

        let store = self::tests::store();
        {
            let mut state = store.backend().state();
            let (ka, kb) = keys(&state);
            let (ia, ib) = (state.live[&ka], state.live[&kb]);
            // Only the lookup swapped: the rows still say whose they are.
            state.live.insert(ka, ib);
            state.live.insert(kb, ia);
        }
        assert_eq!(code(&store, "a"), ErrorCode::Integrity);
        assert_eq!(code(&store, "b"), ErrorCode::Integrity);
    }
}
