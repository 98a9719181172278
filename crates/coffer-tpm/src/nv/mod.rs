//! The TPM NV store (`coffer serve --store tpm-nv`): the device daemon's storage model
//! (reference 000), with nothing about secrets on the filesystem.
//!
//! Each live secret lives in NV indices of the `0x01520000` range, its home index (the one
//! `set` answers) stable for its life; values are the same AES-256-GCM envelopes as in every
//! backend (the namespace keys are wrapped by the master key, which only a slot, such as the
//! TPM-sealed node key, opens), so reading an index with owner authorization shows no
//! plaintext. The name-to-index map is in NV too (the directory). How records change without
//! ever leaving NV unreadable is in the private `state` module.
//!
//! Everything is read into memory at open; reads are served from there, and every write goes
//! to NV before it is acknowledged. NV exhaustion answers `nv_full` (TPM_RC_NV_SPACE, 0x14b).

mod chain;
#[doc(hidden)]
pub mod fuzzing;
mod state;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coffer_store::SnapshotRow;
use coffer_store::{
    Backend, EventPlan, Live, Modified, ModifyPlan, NameHash, NamespaceId, NamespaceRow, SecretId,
    SecretRow, StoreError, VersionRow, WritePlan, Written,
};
use coffer_types::{NvIndex, Version};

use crate::Tpm;
use state::{NvState, SecretRecord, store_error};

/// Secrets in TPM NV.
pub struct NvBackend {
    tpm: Arc<Tpm>,
    state: Arc<Mutex<NvState>>,
    /// The event feed, in memory only: NV has no room for a log. Its revisions start again
    /// at each start, so a consumer resuming across a restart is told to resync.
    events: Arc<Events>,
}

/// The kept events and their fan-out.
struct Events {
    kept: coffer_store::MemoryEvents,
    feed: coffer_store::Feed,
}

impl Events {
    /// Numbers, keeps and publishes a committed change's event (called on the TPM thread,
    /// under the state lock, right after NV accepted the change).
    fn keep(&self, plan: Option<EventPlan>, version: Option<Version>) {
        let Some(plan) = plan else {
            return;
        };
        match self.kept.record(plan, version) {
            Ok(event) => self.feed.publish([event]),
            Err(e) => tracing::error!(error = %e, "a change's event could not be kept"),
        }
    }
}

fn lock(state: &Mutex<NvState>) -> MutexGuard<'_, NvState> {
    // Every change to the state is applied only after NV accepted it, so a panic cannot leave
    // memory and NV disagreeing.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs a plan on the TPM thread. A plan that panics (a bug, or a caller's derive closure)
/// must not take that thread down, and every TPM operation with it: the panic becomes an
/// error, and since plans run before anything changes, nothing was written.
fn guarded<T>(plan: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    catch_unwind(AssertUnwindSafe(plan)).unwrap_or_else(|_| {
        tracing::error!("a write panicked; nothing was written");
        Err(StoreError::Malformed("a write failed inside the store"))
    })
}

impl NvBackend {
    /// Opens the store in `tpm`'s NV, freeing indices an interrupted write left behind.
    pub fn open(tpm: Arc<Tpm>) -> Result<Self, StoreError> {
        let state = tpm.run(|s| Ok(NvState::open(s))).map_err(store_error)??;
        Ok(Self {
            tpm,
            state: Arc::new(Mutex::new(state)),
            events: Arc::new({
                // NV keeps no log: this start's revisions begin above every earlier start's
                // (the time in microseconds), so a consumer's old revision asks for a resync
                // instead of being taken for a new one.
                let base = u64::try_from(coffer_types::Timestamp::now().as_millis())
                    .unwrap_or(0)
                    .saturating_mul(1000);
                Events {
                    kept: coffer_store::MemoryEvents::starting_at(base),
                    feed: coffer_store::Feed::new(base),
                }
            }),
        })
    }

    /// Whether `tpm`'s NV holds a coffer NV store (its directory is defined), without
    /// reading it: a store this data directory's TPM authorization cannot read still counts.
    pub fn present(tpm: &Tpm) -> Result<bool, StoreError> {
        tpm.run(|s| Ok(state::present(s))).map_err(store_error)?
    }

    /// The TPM underneath.
    pub fn tpm(&self) -> &Arc<Tpm> {
        &self.tpm
    }

    /// Runs a change on the TPM thread with the state locked.
    fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::Session, &mut NvState) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let state = self.state.clone();
        self.tpm
            .run(move |s| Ok(f(s, &mut lock(&state))))
            .map_err(store_error)?
    }
}

impl Backend for NvBackend {
    fn kind(&self) -> &'static str {
        "tpm-nv"
    }

    fn header(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(lock(&self.state).header())
    }

    fn put_header(&self, body: &[u8]) -> Result<(), StoreError> {
        let body = body.to_vec();
        self.change(move |s, st| st.change_directory(s, |d| d.set_header(body)))
    }

    fn namespaces(&self) -> Result<Vec<NamespaceRow>, StoreError> {
        Ok(lock(&self.state).namespaces())
    }

    fn create_namespace(
        &self,
        row: NamespaceRow,
        event: Option<EventPlan>,
    ) -> Result<(), StoreError> {
        let events = self.events.clone();
        self.change(move |s, st| {
            if st.namespaces().iter().any(|n| n.id == row.id) {
                return Err(StoreError::Conflict("the namespace already exists"));
            }
            st.change_directory(s, |d| d.add_namespace(&row))?;
            events.keep(event, None);
            Ok(())
        })
    }

    fn record_event(&self, event: EventPlan) -> Result<(), StoreError> {
        // Under the state lock, as every change's event is, so revisions stay in order.
        let _state = lock(&self.state);
        self.events.keep(Some(event), None);
        Ok(())
    }

    fn read(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        version: Option<Version>,
    ) -> Result<Option<(SecretRow, VersionRow)>, StoreError> {
        let state = lock(&self.state);
        let Some(record) = state.live(&(*namespace, *name)) else {
            return Ok(None);
        };
        let row = record.row()?;
        let ver = record
            .version(version.unwrap_or(row.current))
            .ok_or(StoreError::NotFound("version"))?;
        Ok(Some((row, ver)))
    }

    fn write(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: WritePlan,
        event: Option<EventPlan>,
    ) -> Result<Written, StoreError> {
        let key = (*namespace, *name);
        let events = self.events.clone();
        self.change(move |s, st| {
            let current = st.live(&key).map(SecretRecord::row).transpose()?;
            let newest = |row: &SecretRow| {
                st.live(&key)
                    .and_then(|record| record.version(row.current))
                    .ok_or(StoreError::NotFound("version"))
            };
            let planned = guarded(|| plan(Live::new(current.as_ref(), &newest)))?;
            coffer_store::check_plan(current.as_ref(), &planned)?;
            let (mut record, created) = match (st.live(&key).cloned(), planned.create) {
                (Some(mut record), _) => {
                    if let Some(meta) = planned.meta_ct {
                        record.set_meta(meta);
                    }
                    (record, false)
                }
                (None, Some(new)) => {
                    let slot = st.free_slot()?;
                    let index = NvIndex::from_slot(slot).ok_or(StoreError::Full)?;
                    let row = new.into_row(key.0, key.1, index, &planned.version);
                    (SecretRecord::new(&row, slot), true)
                }
                (None, None) => return Err(StoreError::Malformed("a write plan created nothing")),
            };
            let version = planned.version.version;
            record.push(planned.version);
            record.prune(planned.prune_before);
            let index = NvIndex::from_slot(record.slot()).ok_or(StoreError::Full)?;
            let id = record.id();
            st.put_secret(s, record)?;
            events.keep(event, Some(version));
            Ok(Written {
                id,
                version,
                index,
                created,
            })
        })
    }

    fn modify(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        plan: ModifyPlan,
        event: Option<EventPlan>,
    ) -> Result<Option<Modified>, StoreError> {
        let key = (*namespace, *name);
        let events = self.events.clone();
        self.change(move |s, st| {
            let Some(mut record) = st.live(&key).cloned() else {
                return Ok(None);
            };
            let row = record.row()?;
            let m = guarded(|| plan(&row))?;
            coffer_store::check_modification(&row, &record.version_numbers(), &m)?;
            if let Some(at) = m.revoke {
                st.remove_secret(s, record.slot(), Some((at, m.meta_ct.clone())))?;
                let mut row = row;
                row.revoked = Some(at);
                if let Some(meta) = m.meta_ct {
                    row.meta_ct = meta;
                }
                events.keep(event, Some(row.current));
                return Ok(Some(Modified {
                    row,
                    destroyed: m.destroy,
                }));
            }
            record.destroy(&m.destroy);
            record.prune(m.prune_before);
            if let Some(meta) = m.meta_ct {
                record.set_meta(meta);
            }
            let row = record.row()?;
            st.put_secret(s, record)?;
            events.keep(event, Some(row.current));
            Ok(Some(Modified {
                row,
                destroyed: m.destroy,
            }))
        })
    }

    fn delete(
        &self,
        namespace: &NamespaceId,
        name: &NameHash,
        event: Option<EventPlan>,
    ) -> Result<Option<SecretId>, StoreError> {
        let key = (*namespace, *name);
        let events = self.events.clone();
        self.change(move |s, st| {
            let Some((slot, id)) = st.live(&key).map(|r| (r.slot(), r.id())) else {
                return Ok(None);
            };
            st.remove_secret(s, slot, None)?;
            events.keep(event, None);
            Ok(Some(id))
        })
    }

    fn feed(&self) -> &coffer_store::Feed {
        &self.events.feed
    }

    fn events(&self, after: u64, limit: usize) -> Result<coffer_store::EventRows, StoreError> {
        Ok(self.events.kept.after(after, limit))
    }

    fn prune_events(
        &self,
        retention: coffer_store::Retention,
        now: coffer_types::Timestamp,
    ) -> Result<u64, StoreError> {
        Ok(self.events.kept.prune(retention, now))
    }

    fn secrets(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        lock(&self.state)
            .live_in(namespace)
            .map(SecretRecord::row)
            .collect()
    }

    fn revoked(&self, namespace: &NamespaceId) -> Result<Vec<SecretRow>, StoreError> {
        lock(&self.state)
            .revoked_in(namespace)
            .map(SecretRecord::row)
            .collect()
    }

    fn versions(&self, secret: &SecretId) -> Result<Vec<VersionRow>, StoreError> {
        match lock(&self.state).by_id(secret) {
            Some(record) => record.versions(),
            None => Ok(Vec::new()),
        }
    }

    fn snapshot(&self, visit: coffer_store::snapshot::Visit<'_>) -> Result<(), StoreError> {
        // Copied under the state lock (one state; changes and their events are made under
        // it), visited after it.
        let rows = {
            let state = lock(&self.state);
            let mut rows = Vec::new();
            rows.extend(state.header().map(SnapshotRow::Header));
            let namespaces = state.namespaces();
            let mut secrets = Vec::new();
            for ns in &namespaces {
                for record in state.live_in(&ns.id).chain(state.revoked_in(&ns.id)) {
                    secrets.push((record.row()?, record.versions()?));
                }
            }
            rows.extend(namespaces.into_iter().map(SnapshotRow::Namespace));
            secrets.sort_unstable_by_key(|(row, _)| row.id);
            let mut versions = Vec::new();
            for (row, vs) in secrets {
                versions.extend(vs.into_iter().map(|v| SnapshotRow::Version(row.id, v)));
                rows.push(SnapshotRow::Secret(row));
            }
            rows.extend(versions);
            rows.push(SnapshotRow::EventHead(self.events.kept.head()));
            rows
        };
        rows.into_iter().try_for_each(visit)
    }

    fn import(
        &self,
        _rows: coffer_store::snapshot::Rows<'_>,
    ) -> Result<coffer_store::Counts, StoreError> {
        Err(StoreError::Unsupported(
            "restoring a backup into the TPM NV store is not supported: restore it into a \
             SQLite data directory (the default store)",
        ))
    }
}

#[cfg(test)]
mod conformance {
    use super::*;
    use crate::fixture::Swtpm;

    fn make() -> coffer_store::conformance::Made<NvBackend> {
        let swtpm = Swtpm::start();
        let tpm =
            Arc::new(Tpm::open(&swtpm.tcti(), crate::fixture::auth()).expect("swtpm answers"));
        let backend = NvBackend::open(tpm).expect("open");
        (Arc::new(backend), Box::new(swtpm))
    }

    coffer_store::conformance_suite!(make);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Swtpm;
    use coffer_crypto::{MasterKey, RecoveryKey, SecretBytes, SlotKey, SlotParams, SlotRecord};
    use coffer_store::{EncryptedStore, SecretStore, Write};
    use coffer_types::{ErrorCode, Namespace, SecretName};

    struct Fixture {
        swtpm: Swtpm,
        tpm: Arc<Tpm>,
        recovery: RecoveryKey,
        slot: SlotRecord,
    }

    impl Fixture {
        fn new() -> Self {
            let swtpm = Swtpm::start();
            let tpm = Arc::new(Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap());
            let master = MasterKey::generate().unwrap();
            let recovery = RecoveryKey::generate().unwrap();
            let slot = SlotRecord::wrap(
                1,
                SlotParams::Recovery {},
                &SlotKey::from_recovery(&recovery),
                &master,
            )
            .unwrap();
            let store =
                EncryptedStore::open(Arc::new(NvBackend::open(tpm.clone()).unwrap()), master)
                    .unwrap();
            store
                .create_namespace(&Namespace::default(), coffer_store::Change::by("uid:0"))
                .unwrap();
            Self {
                swtpm,
                tpm,
                recovery,
                slot,
            }
        }

        /// A store over a fresh read of NV, as after a restart.
        fn open(&self) -> EncryptedStore<NvBackend> {
            let master = self
                .slot
                .unwrap_master(&SlotKey::from_recovery(&self.recovery))
                .unwrap();
            EncryptedStore::open(Arc::new(NvBackend::open(self.tpm.clone()).unwrap()), master)
                .unwrap()
        }
    }

    fn set(
        store: &dyn SecretStore,
        name: &str,
        value: &[u8],
    ) -> Result<coffer_store::Written, StoreError> {
        let v = SecretBytes::copy_from(value);
        store.set(
            &Namespace::default(),
            &SecretName::parse(name).unwrap(),
            Write::new(&v, "uid:0"),
        )
    }

    fn get(store: &dyn SecretStore, name: &str) -> Vec<u8> {
        store
            .get(
                &Namespace::default(),
                &SecretName::parse(name).unwrap(),
                None,
            )
            .unwrap()
            .value
            .expose_secret()
            .to_vec()
    }

    #[test]
    fn everything_reads_back_after_a_restart_and_values_span_indices() {
        let f = Fixture::new();
        let big = "B".repeat(6000);
        {
            let store = f.open();
            set(&store, "small", b"one").unwrap();
            set(&store, "small", b"two").unwrap();
            set(&store, "big", big.as_bytes()).unwrap();
        }
        let store = f.open();
        assert_eq!(get(&store, "small"), b"two");
        assert_eq!(get(&store, "big"), big.as_bytes());
        assert_eq!(
            store
                .versions(&Namespace::default(), &SecretName::parse("small").unwrap())
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn raw_nv_holds_no_plaintext_and_the_index_is_real() {
        let f = Fixture::new();
        let store = f.open();
        let w = set(&store, "probe-name", b"PROBE-PLAINTEXT-123").unwrap();
        set(&store, "probe-name", b"PROBE-PLAINTEXT-456").unwrap();
        let handles = f.tpm.run(|s| s.nv_list(NvIndex::BASE, 0x1_0000)).unwrap();
        assert!(handles.contains(&w.index.handle()), "{handles:x?}");
        for h in handles {
            let bytes = f.tpm.run(move |s| s.nv_read(h)).unwrap();
            for needle in [&b"PROBE-PLAINTEXT"[..], b"probe-name", b"default"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "index {h:#x}"
                );
            }
        }
    }

    #[test]
    fn a_torn_write_leaves_the_previous_generation_current() {
        let f = Fixture::new();
        let index = {
            let store = f.open();
            set(&store, "k", b"acknowledged").unwrap().index
        };
        // The next write goes to side B: tear it (a head that does not verify).
        let b = index.handle() + 0x4000;
        f.tpm
            .run(move |s| {
                s.nv_define(b, 64)?;
                s.nv_write(b, &[0xAB; 64])
            })
            .unwrap();
        // And leave an orphan index the store never referred to.
        f.tpm
            .run(|s| s.nv_define(NvIndex::BASE + 0x9000, 16))
            .unwrap();
        let store = f.open();
        assert_eq!(get(&store, "k"), b"acknowledged");
        let handles = f.tpm.run(|s| s.nv_list(NvIndex::BASE, 0x1_0000)).unwrap();
        assert!(
            !handles.contains(&(NvIndex::BASE + 0x9000)),
            "the orphan is freed"
        );
        // The torn side is rewritten cleanly by the next write.
        set(&store, "k", b"next").unwrap();
        assert_eq!(get(&f.open(), "k"), b"next");
    }

    #[test]
    fn a_panicking_derived_write_changes_nothing_and_the_tpm_thread_lives_on() {
        let f = Fixture::new();
        let store = f.open();
        set(&store, "k", b"before").unwrap();
        let derive: coffer_store::DeriveValue = Box::new(|_, _| panic!("a bug in a derive"));
        let err = store
            .set(
                &Namespace::default(),
                &SecretName::parse("k").unwrap(),
                Write::derived(derive, "uid:0"),
            )
            .expect_err("the panic is an error");
        assert_eq!(err.code(), ErrorCode::Internal, "{err}");
        assert_eq!(get(&store, "k"), b"before");
        set(&store, "k", b"after").unwrap();
        assert_eq!(get(&f.open(), "k"), b"after");
    }

    #[test]
    fn filling_nv_answers_nv_full_and_a_delete_makes_room() {
        let f = Fixture::new();
        let store = f.open();
        let value = vec![b'x'; 1500];
        let mut n = 0;
        let err = loop {
            match set(&store, &format!("fill-{n}"), &value) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 10_000, "NV never filled");
        };
        assert_eq!(err.code(), ErrorCode::NvFull, "{err}");
        assert_eq!(err.code().implied_rc(), Some("0x14b"));
        // Everything written before is intact, also after a restart.
        assert_eq!(get(&store, "fill-0"), value);
        drop(store);
        let store = f.open();
        assert_eq!(get(&store, &format!("fill-{}", n - 1)), value);
        // A delete frees space for the next secret.
        store
            .delete(
                &Namespace::default(),
                &SecretName::parse("fill-0").unwrap(),
                coffer_store::Change::by("uid:0"),
            )
            .unwrap();
        set(&store, "after-delete", &value).unwrap();
        assert_eq!(get(&f.open(), "after-delete"), value);
        let _ = &f.swtpm;
    }

    /// Item 7 of issue 12: whoever opens the TPM with another authorization (or none) reads
    /// nothing of coffer's NV store, and coffer, opened that way, refuses rather than taking
    /// the unreadable indices for free space: nothing is freed, and the store opens again
    /// with the right authorization. (swtpm serves one connection at a time: each TPM
    /// handle is dropped before the next is opened.)
    #[test]
    fn another_authorization_reads_nothing_and_frees_nothing() {
        let swtpm = Swtpm::start();
        let master = MasterKey::generate().unwrap();
        let open_store = |tpm: &Arc<Tpm>| {
            let store = EncryptedStore::open(
                Arc::new(NvBackend::open(tpm.clone()).unwrap()),
                master.duplicate(),
            )
            .unwrap();
            if !store.has_namespace(&Namespace::default()) {
                store
                    .create_namespace(&Namespace::default(), coffer_store::Change::by("uid:0"))
                    .unwrap();
            }
            store
        };
        let ours = || Arc::new(Tpm::open(&swtpm.tcti(), crate::fixture::auth()).unwrap());
        let h = {
            let tpm = ours();
            let store = open_store(&tpm);
            set(&store, "k", b"kept").unwrap().index.handle()
        };
        let before = ours().run(|s| s.nv_list(NvIndex::BASE, 0x1_0000)).unwrap();
        assert!(before.contains(&h));
        {
            let stranger =
                Arc::new(Tpm::open(&swtpm.tcti(), crate::TpmAuth::generate().unwrap()).unwrap());
            let err = stranger.run(move |s| s.nv_read(h)).unwrap_err();
            assert!(err.rc().is_some(), "the TPM itself refuses: {err}");
            let err = NvBackend::open(stranger)
                .err()
                .expect("a store that cannot be read is not opened");
            assert!(err.to_string().contains("TPM"), "{err}");
        }
        let after = ours().run(|s| s.nv_list(NvIndex::BASE, 0x1_0000)).unwrap();
        assert_eq!(after, before, "nothing was freed");
        assert_eq!(get(&open_store(&ours()), "k"), b"kept");
    }
}
