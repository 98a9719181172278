//! Scheduled rotation: the daemon's own work, through the same store calls, cache and audit
//! log as a request's.
//!
//! Which secrets have a policy is filed in the store's own namespace, one small record each
//! (`rotation/<hash of namespace and name>`, holding the namespace and the name), written
//! before the secret itself. At unseal the scheduler reads those records (and only those
//! secrets' metadata) once into a min-heap of due times; `generate` with a policy adds to it.
//! A tick pops what is due: nothing else is read or decrypted.
//!
//! A period is rotated once: the store checks, inside the write's transaction, that the due
//! time the scheduler saw is still the stored one ([`RotationStep::Scheduled`]), and writes
//! the next due time with the new version. A daemon that was down rotates once on its return
//! and keeps the original rhythm (the next due time is the first period end after now).
//!
//! With a hook the new version is written `pending` (not served by a plain read, and with no
//! event), the hook gets the value on its standard input, and exit 0 promotes it
//! (`secret.rotated`); anything else destroys it (`secret.rotation_failed`, the exit status
//! in the secret's rotation state and in the audit record). A pending version found at
//! unseal (the daemon stopped while its hook ran) is dropped the same way: a hook is never
//! run twice for one version.

use std::sync::Arc;
use std::time::Duration;

use coffer_audit::Outcome;
use coffer_crypto::{SecretBytes, mint};
use coffer_store::{
    Change, Describe, ListQuery, Resolve, RotationStep, SecretStore, StoreError, Write, WriteMode,
};
use coffer_types::{
    Action, ErrorCode, EventAction, Kind, Namespace, RotationInfo, SecretName, Timestamp,
};

use super::hook::{HookEnd, reason_word, run_hook};
use super::record::OwnWork;
use super::state::{Gated, Service, blocking, stored};
use crate::CoreError;
use crate::cache::CacheKey;

/// Where the schedule records live in the store's own namespace.
const PREFIX: &str = "rotation/";
/// The longest the scheduler sleeps between two looks at the heap.
const TICK: Duration = Duration::from_secs(1);
/// Who the store records as the author of a rotation.
pub(super) const ACTOR: &str = "coffer";

/// The schedule record's name for a secret.
fn record_name(key: &CacheKey) -> Result<SecretName, CoreError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(key.0.as_str().as_bytes());
    h.update([0]);
    h.update(key.1.as_str().as_bytes());
    let digest = h.finalize();
    let hex = data_encoding::HEXLOWER.encode(&digest[..16]);
    SecretName::parse(&format!("{PREFIX}{hex}")).map_err(CoreError::from)
}

/// What a schedule record holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Filed {
    namespace: String,
    name: String,
}

use crate::access::ensure_system_namespace as ensure_system;

/// Reads every schedule record: the secrets that have (or had) a policy.
fn filed(store: &Arc<dyn SecretStore>) -> Result<Vec<(SecretName, CacheKey)>, CoreError> {
    let ns = ensure_system(store)?;
    let mut out = Vec::new();
    let mut query = ListQuery {
        prefix: Some(PREFIX.to_owned()),
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&ns, &query)?;
        for record in page.items {
            let Ok(secret) = store.get(&ns, &record, None) else {
                continue;
            };
            let parsed = serde_json::from_slice::<Filed>(secret.value.expose_secret())
                .ok()
                .and_then(|f| {
                    Some((
                        Namespace::parse(&f.namespace).ok()?,
                        SecretName::parse(&f.name).ok()?,
                    ))
                });
            match parsed {
                Some(key) => out.push((record, key)),
                None => tracing::warn!("a rotation schedule record cannot be read; skipped"),
            }
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok(out),
        }
    }
}

impl Service {
    /// Files `key` in the schedule records (before a secret with a policy is written).
    pub(super) async fn file_rotation(
        &self,
        store: Arc<dyn SecretStore>,
        key: CacheKey,
    ) -> Gated<()> {
        blocking(move || {
            let ns = ensure_system(&store)?;
            let value = serde_json::to_vec(&Filed {
                namespace: key.0.as_str().to_owned(),
                name: key.1.as_str().to_owned(),
            })
            .map_err(|_| CoreError::Unavailable("a schedule record".to_owned()))?;
            let value = SecretBytes::from_vec(value);
            let mut write = Write::new(&value, ACTOR);
            write.change = Change::by(ACTOR).quiet();
            write.kind = Some(Kind::Kv);
            write.new_max_versions = Some(1);
            store.set(&ns, &record_name(&key)?, write)?;
            Ok(())
        })
        .await
        .map_err(stored)
    }

    /// What the metrics show of rotation.
    pub fn rotation_stats(&self) -> crate::schedule::RotationStats {
        self.rotation.stats()
    }

    /// Starts the scheduler, in the service's tasks (a shutdown's drain waits for the
    /// rotation in progress), until `stop` turns true.
    pub fn start_rotations(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let this = self.clone();
        self.tasks
            .spawn(async move { this.run_rotations(stop).await });
    }

    /// Runs the scheduler until `stop` turns true.
    /// Runs only on the hub holding the lease when several share the store: another hub
    /// forgets its schedule, and reads it afresh when it takes the lease.
    async fn run_rotations(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut leading = self.cluster.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let wait = if self.cluster.is_leader() {
                self.rotate_due().await
            } else {
                self.rotation.reset(None);
                TICK
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = leading.changed() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// One look at the schedule: builds it after an unseal, rotates what is due; answers how
    /// long to wait before the next look.
    pub async fn rotate_due(&self) -> Duration {
        let Ok(store) = self.vault.store() else {
            // Sealed: the next unseal builds the schedule again.
            self.rotation.reset(None);
            return TICK;
        };
        let address = Arc::as_ptr(&store).cast::<()>() as usize;
        if self.rotation.built() != Some(address)
            && let Err(e) = self.build_schedule(&store, address).await
        {
            tracing::warn!(error = %e.error, "the rotation schedule could not be read; retrying");
            return TICK;
        }
        let now = Timestamp::now();
        // The store is taken again for each secret, and let go while a hook runs: a seal
        // takes effect at once, not after every due hook has run.
        drop(store);
        for (key, due) in self.rotation.take_due(now) {
            match self.vault.store() {
                Ok(store) => self.rotate_one(store, key, due).await,
                Err(_) => self.rotation.schedule(key, due),
            }
        }
        match self.rotation.next_due() {
            Some(due) => {
                let ms = due.as_millis().saturating_sub(Timestamp::now().as_millis());
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).min(TICK)
            }
            None => TICK,
        }
    }

    /// Reads the schedule records and the metadata of the secrets they name; drops a
    /// version found pending (its hook was interrupted) and records stale ones.
    async fn build_schedule(&self, store: &Arc<dyn SecretStore>, address: usize) -> Gated<()> {
        // Started empty and marked built first: a policy set while the records are read is
        // scheduled by its `generate` and kept.
        self.rotation.reset(Some(address));
        let s = store.clone();
        let found = blocking(move || {
            let mut found = Vec::new();
            for (record, key) in filed(&s)? {
                match s.metadata(&key.0, &key.1) {
                    Ok(meta) => match meta.rotation {
                        Some(info) => found.push((key, Some(info))),
                        None => forget(&s, &record),
                    },
                    Err(StoreError::NotFound(_)) => forget(&s, &record),
                    // A locked namespace is skipped quietly: looked at again each tick.
                    Err(StoreError::Locked(_)) => found.push((key, None)),
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(found)
        })
        .await
        .map_err(stored)
        .inspect_err(|_| self.rotation.reset(None))?;
        let mut interrupted = Vec::new();
        for (key, info) in found {
            let Some(info) = info else {
                // In a locked namespace: its metadata is read once it is unlocked.
                self.rotation
                    .schedule_if_absent(key, Timestamp::now().saturating_add_secs(TICK.as_secs()));
                continue;
            };
            if let Some(pending) = info.pending {
                interrupted.push((key.clone(), pending));
            }
            self.rotation.schedule_if_absent(key, info.next_due);
        }
        for (key, pending) in interrupted {
            let reason =
                "the daemon stopped while the hook ran; the version was dropped".to_owned();
            self.resolve(
                store,
                &key,
                Resolve::Drop {
                    version: pending,
                    reason,
                },
            )
            .await;
        }
        Ok(())
    }

    /// Rotates one secret whose schedule said it was due at `due`.
    async fn rotate_one(&self, store: Arc<dyn SecretStore>, key: CacheKey, due: Timestamp) {
        let s = store.clone();
        let k = key.clone();
        let info = blocking(move || {
            let meta = s.metadata(&k.0, &k.1)?;
            Ok(meta.rotation.map(|r| (r, meta.current)))
        })
        .await;
        let (info, current): (RotationInfo, coffer_types::Version) = match info {
            Ok(Some(found)) => found,
            // Gone, or its policy with it: the record is dropped at the next build.
            Ok(None) | Err(CoreError::Store(StoreError::NotFound(_))) => return,
            // Locked: no error, looked at again a tick later (it may be unlocked by then).
            Err(CoreError::Store(StoreError::Locked(_))) => {
                self.rotation
                    .schedule(key, Timestamp::now().saturating_add_secs(TICK.as_secs()));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a secret due for rotation could not be read; retrying");
                self.rotation
                    .schedule(key, Timestamp::now().saturating_add_secs(1));
                return;
            }
        };
        let now = Timestamp::now();
        if info.next_due > now || info.pending.is_some() {
            // Rotated elsewhere, or its hook runs: look again when it is next due.
            let again = if info.next_due > now {
                info.next_due
            } else {
                now.saturating_add_secs(1)
            };
            self.rotation.schedule(key, again);
            return;
        }
        // The stored due time is the one the store checks (the heap's may be older).
        let _ = due;
        let due = info.next_due;
        let hook = info.policy.command.clone();
        let value = match mint::mint(info.policy.spec) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "a rotation could not mint a value");
                self.rotation.schedule(key, now.saturating_add_secs(1));
                return;
            }
        };
        let (s, k, v) = (store.clone(), key.clone(), value.clone());
        let spec = info.policy.spec;
        let writing = self.cache.writing(&key);
        let written = blocking(move || {
            let mut write = Write::new(&v, ACTOR);
            write.mode = WriteMode::Update;
            write.kind = Some(Kind::Line);
            write.generated = Some(spec);
            // Check-and-set on the version read: it satisfies a secret that requires `cas`,
            // and a write that came in between makes this one a conflict, tried again.
            write.cas = Some(current.get());
            write.rotation = Some(RotationStep::Scheduled {
                due,
                pending: hook.is_some(),
            });
            // A version waiting for its hook is not served and has no event: the promotion
            // (`secret.rotated`) or the drop (`secret.rotation_failed`) is the change.
            write.change = if hook.is_some() {
                Change::by(ACTOR).quiet()
            } else {
                Change::by(ACTOR).named(EventAction::Rotated)
            };
            Ok(s.set(&k.0, &k.1, write)?)
        })
        .await;
        drop(writing);
        let next = info.advance(due, Timestamp::now());
        let written = match written {
            Ok(w) => w,
            Err(CoreError::Store(StoreError::Conflict(_))) => {
                // Another daemon (or a restart) made this period's rotation.
                self.rotation.schedule(key, now.saturating_add_secs(1));
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a scheduled rotation failed; retrying");
                self.record(&key, Outcome::Error, Some(e.code()), Some("store"))
                    .await;
                self.rotation.schedule(key, now.saturating_add_secs(1));
                return;
            }
        };
        self.rotation.schedule(key.clone(), next);
        match &info.policy.command {
            None => {
                self.rotation.count(true);
                self.record(&key, Outcome::Ok, None, None).await;
            }
            Some(command) => {
                let (command, k, version) = (command.clone(), key.clone(), written.version);
                drop(store);
                let end =
                    tokio::task::spawn_blocking(move || run_hook(&command, &k, version, &value))
                        .await
                        .unwrap_or_else(|_| HookEnd::Failed("the hook's runner failed".to_owned()));
                let resolve = match end {
                    HookEnd::Ok => Resolve::Promote { version },
                    HookEnd::Failed(reason) => Resolve::Drop { version, reason },
                };
                match self.vault.store() {
                    Ok(store) => self.resolve(&store, &key, resolve).await,
                    // Sealed while the hook ran: the version stays pending, and the next
                    // unseal's schedule resolves it (docs/rotation.md).
                    Err(_) => tracing::warn!(
                        "the store was sealed while a rotation hook ran; its version is \
                         resolved at the next unseal"
                    ),
                }
            }
        }
    }

    /// How long settling a rotated version is tried again after a store failure (1 + 2 + ... s).
    const RESOLVE_PATIENCE: Duration = Duration::from_secs(16);

    /// Ends a pending version, records it and counts it.
    async fn resolve(&self, store: &Arc<dyn SecretStore>, key: &CacheKey, resolve: Resolve) {
        let promoting = match &resolve {
            Resolve::Promote { version } => Some(*version),
            Resolve::Drop { .. } => None,
        };
        let (action, failed) = match &resolve {
            Resolve::Promote { .. } => (EventAction::Rotated, None),
            Resolve::Drop { reason, .. } => (EventAction::RotationFailed, Some(reason.clone())),
        };
        // A hook that succeeded has applied the value at its source: its promotion must not
        // be lost to a passing store failure. Tried again, with back-off, for about half a
        // minute; a conflict or a missing secret is an answer, not a failure to retry.
        let mut wait = Duration::from_secs(1);
        let writing = self.cache.writing(key);
        let done = loop {
            let (s, k, r) = (store.clone(), key.clone(), resolve.clone());
            let done = blocking(move || {
                let change = Describe {
                    rotation: Some(r),
                    ..Describe::default()
                };
                Ok(s.describe(&k.0, &k.1, change, Change::by(ACTOR).named(action))?)
            })
            .await;
            let passing = matches!(
                &done,
                Err(e) if !matches!(
                    e,
                    CoreError::Store(StoreError::Conflict(_) | StoreError::NotFound(_))
                )
            );
            if !passing || wait > Self::RESOLVE_PATIENCE {
                break done;
            }
            tracing::warn!("settling a rotated version failed; trying again");
            tokio::time::sleep(wait).await;
            wait *= 2;
        };
        drop(writing);
        if let (Some(version), Err(CoreError::Store(StoreError::Conflict(_)))) = (promoting, &done)
        {
            // A write came after the rotated version: it stays current, and the rotated one
            // is dropped rather than left pending.
            let reason = "a write came after the rotated version".to_owned();
            return Box::pin(self.resolve(store, key, Resolve::Drop { version, reason })).await;
        }
        match (done, failed) {
            (Ok(()), None) => {
                self.rotation.count(true);
                self.record(key, Outcome::Ok, None, None).await;
            }
            (Ok(()), Some(reason)) => {
                self.rotation.count(false);
                tracing::warn!(
                    event = "rotation_failed",
                    namespace = key.0.as_str(),
                    reason = reason.as_str(),
                    "a rotation failed; the current version stays"
                );
                self.record(
                    key,
                    Outcome::Error,
                    Some(ErrorCode::Conflict),
                    Some(reason_word(&reason)),
                )
                .await;
            }
            (Err(e), _) => {
                self.rotation.count(false);
                tracing::warn!(error = %e, "a rotated version could not be settled");
                self.record(key, Outcome::Error, Some(e.code()), Some("store"))
                    .await;
            }
        }
    }

    /// The audit record of a rotation the daemon made by itself: the daemon is the actor
    /// (its uid, gid, pid and executable), the action `rotate`.
    async fn record(
        &self,
        key: &CacheKey,
        outcome: Outcome,
        code: Option<ErrorCode>,
        gate: Option<&'static str>,
    ) {
        let what = OwnWork {
            action: Action::Rotate,
            namespace: Some(key.0.as_str()),
            name: Some(key.1.as_str()),
            outcome,
            code,
            gate,
        };
        self.record_own(what, "scheduled rotation").await;
    }
}

/// Deletes a schedule record whose secret is gone or has no policy.
fn forget(store: &Arc<dyn SecretStore>, record: &SecretName) {
    if let Err(e) = store.delete(&Namespace::system(), record, Change::by(ACTOR).quiet()) {
        tracing::debug!(error = %e, "a stale rotation schedule record stays");
    }
}

#[cfg(test)]
#[path = "rotation_tests.rs"]
mod daemon_tests;
