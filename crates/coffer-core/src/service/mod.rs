//! The service: every request walks the gates in DESIGN.md's order, cheapest first.
//!
//! 1 sealed/unavailable · 2 namespace · 3 identity · 4 rate limit · 5 policy ·
//! 6 name and request validation · 7 the store (behind the JIT cache).
//!
//! A refusal names its gate, so the audit log (and the daemon's debug log) can say where a
//! request stopped. Store work is blocking and runs on the blocking pool; a cache hit never
//! leaves the calling task. Operations on one secret are in the `secret` module.

mod secret;

use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_crypto::kdf::Argon2Params;
use coffer_store::{ListQuery, SecretStore};
use coffer_types::wire::UnsealWith;
use coffer_types::{Capability, Namespace, SecretName};

use crate::cache::{CacheLimits, JitCache};
use crate::gate::{Access, FirstBootPolicy, Policy, RateLimiter, Unlimited};
use crate::request::ListRequest;
use crate::status::{CacheStatus, StatusReport};
use crate::vault::{NewSlot, Vault};
use crate::{CoreError, Gate, Identity, Refusal, Reply, Request};
use coffer_tpm::PcrPolicy;

/// Most names one `list` page returns.
pub const MAX_LIST_LIMIT: usize = 10_000;

/// Limits and tunables of the service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// The cache.
    pub cache: CacheLimits,
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
    /// Argon2id cost of passphrase slots added at run time.
    pub argon2: Argon2Params,
    /// The version limit of a new secret written without one (`None`: unlimited). The TPM NV
    /// store defaults to a small one: NV holds kilobytes, and every kept version takes room.
    pub default_max_versions: Option<u32>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            cache: CacheLimits::default(),
            max_value_bytes: 1 << 20,
            argon2: Argon2Params::default(),
            default_max_versions: None,
        }
    }
}

/// The service behind every listener.
pub struct Service {
    vault: Arc<Vault>,
    cache: JitCache,
    policy: Box<dyn Policy>,
    limiter: Box<dyn RateLimiter>,
    config: ServiceConfig,
}

type Gated<T> = Result<T, Refusal>;

fn at(gate: Gate) -> impl FnOnce(CoreError) -> Refusal {
    move |error| Refusal { gate, error }
}

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CoreError> + Send + 'static,
) -> Result<T, CoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a store task failed");
        Err(CoreError::Unavailable("a store task failed".to_owned()))
    })
}

impl Service {
    /// A service over `vault` with the first-boot policy and no rate limit.
    pub fn new(vault: Vault, config: ServiceConfig) -> Self {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        Self {
            vault: Arc::new(vault),
            cache: JitCache::new(config.cache),
            policy: Box::new(FirstBootPolicy::new(daemon_uid)),
            limiter: Box::new(Unlimited),
            config,
        }
    }

    /// Replaces the policy gate.
    pub fn with_policy(mut self, policy: Box<dyn Policy>) -> Self {
        self.policy = policy;
        self
    }

    /// Replaces the rate-limit gate.
    pub fn with_rate_limiter(mut self, limiter: Box<dyn RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Handles one request from `who`.
    pub async fn handle(&self, who: &Identity, request: Request) -> Result<Reply, Refusal> {
        match request {
            // The data plane's read is most of the traffic: it runs on a small future of its
            // own; every other request's larger state lives on the heap.
            Request::Secret {
                namespace,
                name,
                op: crate::SecretOp::Get { version },
            } => self.get(who, namespace, name, version).await,
            other => Box::pin(self.handle_other(who, other)).await,
        }
    }

    async fn handle_other(&self, who: &Identity, request: Request) -> Result<Reply, Refusal> {
        match request {
            Request::Secret {
                namespace,
                name,
                op,
            } => self.secret(who, namespace, name, op).await,
            Request::List { namespace, query } => self.list(who, namespace, query).await,
            Request::CreateNamespace { namespace } => self.create_namespace(who, namespace).await,
            Request::ListNamespaces => self.list_namespaces(who),
            Request::Status => self.status(who).await,
            Request::Seal => self.seal(who),
            Request::Unseal { with, key } => self.unseal(who, with, key).await,
            Request::SlotList => {
                self.sudo(who)?;
                let vault = self.vault.clone();
                blocking(move || vault.slots())
                    .await
                    .map(Reply::Slots)
                    .map_err(at(Gate::Store))
            }
            Request::SlotAdd {
                kind,
                pcrs,
                key,
                path,
            } => self.add_slot(who, kind, pcrs, key, path).await,
            Request::SlotRemove { id } => {
                self.sudo(who)?;
                let vault = self.vault.clone();
                blocking(move || vault.remove_slot(id))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "slot_remove", slot = id, actor = %who, "slot removed");
                Ok(Reply::Done)
            }
            Request::SlotReseal { id, key } => {
                self.sudo(who)?;
                let vault = self.vault.clone();
                let done = blocking(move || vault.reseal(id, key))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "slot_reseal", slots = ?done, actor = %who, "slots resealed");
                Ok(Reply::Resealed(done))
            }
        }
    }

    async fn add_slot(
        &self,
        who: &Identity,
        kind: String,
        pcrs: Option<String>,
        key: Option<SecretBytes>,
        path: Option<String>,
    ) -> Gated<Reply> {
        self.sudo(who)?;
        let invalid = |m: String| Refusal::at(Gate::Validation, CoreError::InvalidRequest(m));
        let pcrs = pcrs
            .map(|p| p.parse::<PcrPolicy>())
            .transpose()
            .map_err(|e| invalid(e.to_string()))?
            .unwrap_or_default();
        let passphrase = |key: Option<SecretBytes>| {
            key.filter(|k| !k.is_empty())
                .ok_or_else(|| invalid(format!("a {kind} slot needs `key`, its passphrase")))
        };
        let argon2 = self.config.argon2;
        let new = match kind.as_str() {
            "file" => NewSlot::KeyFile(
                path.map(std::path::PathBuf::from)
                    .ok_or_else(|| invalid("a file slot needs `path`".to_owned()))?,
            ),
            "passphrase" => NewSlot::Passphrase {
                passphrase: passphrase(key)?,
                argon2,
            },
            "recovery" => NewSlot::Recovery,
            "tpm" => NewSlot::Tpm { pcrs },
            "tpm+passphrase" => NewSlot::TpmPassphrase {
                pcrs,
                passphrase: passphrase(key)?,
                argon2,
            },
            _ => {
                return Err(invalid(
                    "the slot kind is one of file, passphrase, recovery, tpm, tpm+passphrase"
                        .to_owned(),
                ));
            }
        };
        let kind_name = new.kind().as_str();
        let vault = self.vault.clone();
        let added = blocking(move || vault.add_slot(new))
            .await
            .map_err(at(Gate::Store))?;
        tracing::info!(event = "secret_action", action = "slot_add", kind = kind_name, slot = added.id, actor = %who, "slot added");
        Ok(Reply::SlotAdded {
            id: added.id,
            recovery: added.recovery.map(|r| r.display()),
        })
    }

    /// Gates 1 to 5 for work in a namespace: the store, the namespace, the caller's right
    /// to every capability in `needs`.
    fn admit(
        &self,
        who: &Identity,
        namespace: Option<String>,
        name: Option<&str>,
        needs: &[Capability],
    ) -> Gated<(Arc<dyn SecretStore>, Namespace)> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        let namespace = match namespace {
            None => Namespace::default_namespace(),
            Some(text) => {
                Namespace::parse_owned(text).map_err(|e| at(Gate::Namespace)(e.into()))?
            }
        };
        if !store.has_namespace(&namespace) {
            return Err(Refusal::at(Gate::Namespace, CoreError::NoNamespace));
        }
        self.identity_and_rate(who)?;
        for &capability in needs {
            self.policy
                .check(
                    who,
                    Access {
                        capability,
                        namespace: Some(&namespace),
                        name,
                    },
                )
                .map_err(|why| Refusal::at(Gate::Policy, CoreError::Denied(why)))?;
        }
        Ok((store, namespace))
    }

    /// Gates 3 and 4.
    fn identity_and_rate(&self, who: &Identity) -> Gated<()> {
        // Gate 3: on the socket the kernel vouches for the peer; tokens come later.
        if !self.limiter.admit(who) {
            return Err(Refusal::at(Gate::RateLimit, CoreError::RateLimited));
        }
        Ok(())
    }

    /// Gates 3 to 5 for operations on the daemon itself.
    fn sudo(&self, who: &Identity) -> Gated<()> {
        self.identity_and_rate(who)?;
        self.policy
            .check(
                who,
                Access {
                    capability: Capability::Sudo,
                    namespace: None,
                    name: None,
                },
            )
            .map_err(|why| Refusal::at(Gate::Policy, CoreError::Denied(why)))
    }

    async fn list(
        &self,
        who: &Identity,
        namespace: Option<String>,
        request: ListRequest,
    ) -> Gated<Reply> {
        let needs: &[Capability] = if request.detail || request.revoked {
            &[Capability::List, Capability::Meta]
        } else {
            &[Capability::List]
        };
        let (store, namespace) = self.admit(who, namespace, None, needs)?;
        let limit = request.limit.unwrap_or(1000);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(Refusal::at(
                Gate::Validation,
                CoreError::InvalidRequest(format!("limit must be between 1 and {MAX_LIST_LIMIT}")),
            ));
        }
        let after = request
            .after
            .map(SecretName::parse_owned)
            .transpose()
            .map_err(|e| Refusal::at(Gate::Validation, e))?;
        let query = ListQuery {
            prefix: request.prefix,
            after,
            limit,
        };
        blocking(move || {
            Ok(if request.revoked {
                Reply::Revoked(store.revoked(&namespace)?)
            } else if request.detail {
                Reply::Summaries(store.summaries(&namespace, &query)?)
            } else {
                Reply::Names(store.list(&namespace, &query)?)
            })
        })
        .await
        .map_err(at(Gate::Store))
    }

    async fn create_namespace(&self, who: &Identity, namespace: String) -> Gated<Reply> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        let namespace =
            Namespace::parse_owned(namespace).map_err(|e| at(Gate::Namespace)(e.into()))?;
        self.sudo(who)?;
        blocking(move || Ok(store.create_namespace(&namespace)?))
            .await
            .map_err(at(Gate::Store))?;
        tracing::info!(event = "secret_action", action = "namespace_create", actor = %who, "namespace created");
        Ok(Reply::Done)
    }

    fn list_namespaces(&self, who: &Identity) -> Gated<Reply> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        self.identity_and_rate(who)?;
        self.policy
            .check(
                who,
                Access {
                    capability: Capability::List,
                    namespace: None,
                    name: None,
                },
            )
            .map_err(|why| Refusal::at(Gate::Policy, CoreError::Denied(why)))?;
        Ok(Reply::Namespaces(store.namespaces()))
    }

    async fn status(&self, who: &Identity) -> Gated<Reply> {
        self.identity_and_rate(who)?;
        let (entries, bytes) = self.cache.usage();
        let cache = CacheStatus {
            entries,
            bytes,
            ttl_seconds: self.cache.ttl().as_secs(),
        };
        Ok(Reply::Status(Box::new(self.report(cache).await)))
    }

    async fn report(&self, cache: CacheStatus) -> StatusReport {
        // Reading the header is a store read; keep it off the async workers.
        let vault = self.vault.clone();
        match tokio::task::spawn_blocking(move || vault.status(cache)).await {
            Ok(report) => report,
            Err(_) => self.vault.status(cache),
        }
    }

    fn seal(&self, who: &Identity) -> Gated<Reply> {
        self.sudo(who)?;
        self.vault.seal();
        self.cache.flush();
        tracing::info!(event = "secret_action", action = "seal", actor = %who, "sealed");
        Ok(Reply::Done)
    }

    async fn unseal(
        &self,
        who: &Identity,
        with: UnsealWith,
        key: Option<SecretBytes>,
    ) -> Gated<Reply> {
        self.sudo(who)?;
        let vault = self.vault.clone();
        blocking(move || vault.unseal(with, key))
            .await
            .map_err(at(Gate::Seal))?;
        tracing::info!(event = "secret_action", action = "unseal", slot = with.as_str(), actor = %who, "unsealed");
        Ok(Reply::Done)
    }

    /// Seals the store and flushes the cache (at shutdown).
    pub fn shutdown(&self) {
        self.vault.seal();
        self.cache.flush();
    }

    /// The cache's time to live.
    pub fn ttl(&self) -> Duration {
        self.cache.ttl()
    }
}
