//! Following the other hubs sharing this daemon's store: each change another hub commits
//! wakes this task (the backend's [`coffer_store::Shared`]), which hands the changes to the
//! store (namespace keys, name indexes) and drops what they touched from this daemon's
//! caches: decrypted values, and tokens and policies (loaded again at once) when one of
//! them changed. The schedule of rotations is read again when this hub leads.
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
                // Full when it covered a page of rows, this hub's own (left out) included.
                let full = page.lost || page.newest.saturating_sub(seen) >= PAGE as u64;
                let newest = page.newest;
                if (newest > seen || page.lost) && !self.apply_remote(page).await {
                    // Sealed, or the store did not answer: read the same changes again
                    // later (applying one twice changes nothing).
                    break;
                }
                seen = seen.max(newest);
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

    /// Applies a page of the other hubs' changes to the store and the caches; answers
    /// whether it did (not while sealed: the changes are applied after the unseal).
    async fn apply_remote(&self, page: RemoteChanges) -> bool {
        let Ok(store) = self.vault.store() else {
            return false;
        };
        let newest = page.newest;
        let followed = match blocking(move || {
            store.follow(&page).or_else(|e| {
                // A page that cannot be applied (a key generation dropped meanwhile, say):
                // every namespace opened again and its name index rebuilt, as after lost
                // changes.
                tracing::warn!(error = %e, "applying the other hubs' changes failed; reloading every namespace");
                store.follow(&RemoteChanges {
                    lost: true,
                    newest,
                    changes: Vec::new(),
                })
            })
            .map_err(crate::CoreError::from)
        })
        .await
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "reloading after the other hubs' changes failed; retrying");
                self.drop_followed(&Followed {
                    everything: true,
                    ..Followed::default()
                });
                self.sync(self.vault.epoch()).await;
                return false;
            }
        };
        if followed.master_replaced {
            // New keys sealed under the old master key would be lost at the next start:
            // stop serving with it, and open the store again with its slots.
            self.vault.reopen_later(
                "the master key was replaced by another hub; the store is opened again with \
                 its slots (run `coffer unseal` where none opens unattended)",
            );
            self.cache.flush();
            return true;
        }
        if self.drop_followed(&followed) {
            // Loaded again now, not at the next request: a watch asking whether its token
            // is still good meanwhile must not find every token gone.
            self.sync(self.vault.epoch()).await;
        }
        true
    }

    /// This daemon's member id among the daemons sharing its store (`None`: it shares it
    /// with none).
    pub fn store_member(&self) -> Option<String> {
        self.vault.backend().shared().map(|s| s.member().to_owned())
    }

    /// The hubs sharing the store and who leads, for Vault's `sys/ha-status`: only to a
    /// token granted `read` on `sys/ha-status` (not audited, like `sys/health`). `Ok(None)`:
    /// this daemon shares its store with no other.
    pub async fn ha_status(
        &self,
        caller: &crate::Caller,
    ) -> Result<Option<crate::cluster::ClusterView>, crate::Refusal> {
        if !self.token_reads(caller, HA_STATUS_PATH).await? {
            return Err(crate::Refusal::at(
                crate::Gate::Policy,
                crate::CoreError::Denied(format!("reading {HA_STATUS_PATH} needs read on it")),
            ));
        }
        Ok(self.cluster.view())
    }

    /// Drops from the caches what another hub changed; answers whether the tokens and
    /// policies were forgotten (to be loaded again).
    pub(super) fn drop_followed(&self, followed: &Followed) -> bool {
        let system = Namespace::system();
        let mut access = followed.everything;
        let mut schedule = followed.everything;
        if followed.everything {
            self.cache.flush();
            self.fleet.note(crate::fleet::FleetNote::Everything);
        }
        for ns in &followed.namespaces {
            self.cache.flush_namespace(ns);
            access |= *ns == system;
            schedule |= *ns == system;
        }
        for key in &followed.secrets {
            self.cache.invalidate(key);
            if key.0 == system {
                if let Some(rest) = key.1.as_str().strip_prefix(crate::fleet::NODES) {
                    self.fleet
                        .note(crate::fleet::FleetNote::Node(rest.to_owned()));
                } else if key.1.as_str() == crate::fleet::RULES_AT {
                    self.fleet.note(crate::fleet::FleetNote::Rules);
                }
                // Only a change to tokens or policies calls for loading them again (a
                // wrapped response or AppRole's bookkeeping does not).
                access |= crate::access::holds_access(key.1.as_str());
                schedule = true;
            }
        }
        if access {
            self.access.forget();
        }
        if schedule && self.cluster.is_leader() {
            // The schedule's records live in the store's own namespace too.
            self.rotation.reset(None);
        }
        access
    }
}
