//! Following the other hubs sharing this daemon's store: each change another hub commits
//! wakes this task (the backend's [`coffer_store::Shared`]), which hands the changes to the
//! store (namespace keys, name indexes) and drops what they touched from this daemon's
//! caches: decrypted values, and policies and tokens (reloaded at the next request) when
//! the store's own namespace changed. The schedule of rotations is read again when this hub
//! leads.
//!
//! The bound on staleness: a value another hub replaced is served from this hub's cache at
//! most until this task has run for the change: the database's notification (milliseconds)
//! or, when one is lost, the backend's poll ([`coffer_store`]'s backends say how often;
//! PostgreSQL: every second).

use std::sync::Arc;

use coffer_store::{Followed, RemoteChanges};
use coffer_types::Namespace;

use super::Service;
use super::state::blocking;

/// Where a token must hold `read` to see `sys/ha-status`.
pub const HA_STATUS_PATH: &str = "sys/ha-status";

/// Changes read at a time.
const PAGE: usize = 1000;

impl Service {
    /// Starts following the other hubs when the store is shared; does nothing otherwise.
    pub fn start_following(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let backend = self.vault.backend().clone();
        let Some(shared) = backend.shared() else {
            return;
        };
        let (changes, seen) = (shared.subscribe(), shared.opened_at());
        let this = self.clone();
        self.tasks
            .spawn(async move { this.follow_loop(backend, changes, seen, stop).await });
    }

    async fn follow_loop(
        self: Arc<Self>,
        backend: Arc<dyn coffer_store::Backend>,
        mut changes: tokio::sync::watch::Receiver<u64>,
        mut seen: u64,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            loop {
                let b = backend.clone();
                let page = blocking(move || {
                    b.shared()
                        .map(|s| s.changes_after(seen, PAGE))
                        .transpose()
                        .map_err(crate::CoreError::from)
                })
                .await;
                let page = match page {
                    Ok(Some(page)) => page,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the other hubs' changes failed; retrying");
                        break;
                    }
                };
                let full = page.changes.len() >= PAGE || page.lost;
                if page.newest > seen || page.lost {
                    self.apply_remote(page.clone()).await;
                }
                seen = seen.max(page.newest);
                if !full {
                    break;
                }
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
                // A page that failed is read again.
                () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            }
        }
    }

    /// Applies a page of the other hubs' changes to the store and the caches.
    async fn apply_remote(&self, page: RemoteChanges) {
        let Ok(store) = self.vault.store() else {
            // Sealed: nothing is cached; the next unseal reads everything afresh.
            return;
        };
        let followed = match blocking(move || Ok(store.follow(&page)?)).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "applying the other hubs' changes failed; dropping every cache");
                Followed {
                    everything: true,
                    ..Followed::default()
                }
            }
        };
        self.drop_followed(&followed);
    }

    /// The hubs sharing the store and who leads, for Vault's `sys/ha-status`: only to a
    /// token granted `read` on `sys/ha-status` (not audited, like `sys/health`). `Ok(None)`:
    /// this daemon shares its store with no other.
    pub async fn ha_status(
        &self,
        caller: &crate::Caller,
    ) -> Result<Option<crate::cluster::ClusterView>, crate::Refusal> {
        let refused = |error| crate::Refusal {
            gate: crate::Gate::Policy,
            error,
        };
        let Some(token) = caller.token.as_ref() else {
            return Err(crate::Refusal {
                gate: crate::Gate::Identity,
                error: crate::CoreError::Unauthenticated("sys/ha-status needs a token"),
            });
        };
        let epoch = self.vault.epoch();
        if self.access.loaded_epoch() != Some(epoch) {
            self.sync(epoch).await;
        }
        let who = &caller.identity;
        let principal = self
            .access
            .resolve(who.uid, who.gid, Some(token))
            .map_err(|e| crate::Refusal {
                gate: crate::Gate::Identity,
                error: e,
            })?;
        if !self.access.grants(
            &principal,
            coffer_types::Capability::Read,
            HA_STATUS_PATH,
            None,
        ) {
            return Err(refused(crate::CoreError::Denied(format!(
                "reading {HA_STATUS_PATH} needs read on it"
            ))));
        }
        Ok(self.cluster.view())
    }

    /// Drops from the caches what another hub changed.
    pub(super) fn drop_followed(&self, followed: &Followed) {
        let system = Namespace::system();
        let mut access = followed.everything;
        if followed.everything {
            self.cache.flush();
        }
        for ns in &followed.namespaces {
            self.cache.flush_namespace(ns);
            access |= *ns == system;
        }
        for key in &followed.secrets {
            self.cache.invalidate(key);
            access |= key.0 == system;
        }
        if access {
            // Policies, tokens and schedule records live in the store's own namespace.
            self.access.forget();
            if self.cluster.is_leader() {
                self.rotation.reset(None);
            }
        }
    }
}
