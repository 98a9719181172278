//! The service: every request walks the gates in DESIGN.md's order, cheapest first.
//!
//! 1 sealed/unavailable · 2 namespace · 3 identity · 4 rate limit · 5 policy ·
//! 6 name and request validation · 7 the store (behind the JIT cache).
//!
//! A refusal names its gate, so the audit log (and the daemon's debug log) can say where a
//! request stopped. Store work is blocking and runs on the blocking pool; a cache hit never
//! leaves the calling task.

use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_store::{SecretStore, Write};
use coffer_types::wire::UnsealWith;
use coffer_types::{Capability, Kind, Namespace, SecretName, Version};

use crate::cache::{CacheKey, CacheLimits, JitCache};
use crate::gate::{Access, FirstBootPolicy, Policy, RateLimiter, Unlimited};
use crate::status::{CacheStatus, StatusReport};
use crate::vault::Vault;
use crate::{CoreError, Gate, Identity, Refusal, Reply, Request};

/// Limits and tunables of the service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// The cache.
    pub cache: CacheLimits,
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            cache: CacheLimits::default(),
            max_value_bytes: 1 << 20,
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
            Request::Get {
                namespace,
                name,
                version,
            } => self.get(who, namespace, name, version).await,
            Request::Set {
                namespace,
                name,
                value,
                kind,
            } => self.set(who, namespace, name, value, kind).await,
            Request::Del { namespace, name } => self.del(who, namespace, name).await,
            Request::Status => self.status(who).await,
            Request::Seal => self.seal(who),
            Request::Unseal { with, key } => self.unseal(who, with, key).await,
        }
    }

    /// Gates 1 to 5 for a secret operation: the store, the namespace, and the caller's right.
    fn admit(
        &self,
        who: &Identity,
        namespace: Option<String>,
        name: &str,
        capability: Capability,
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
        self.policy
            .check(
                who,
                Access {
                    capability,
                    namespace: Some(&namespace),
                    name: Some(name),
                },
            )
            .map_err(|why| Refusal::at(Gate::Policy, CoreError::Denied(why)))?;
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

    /// Gate 5 for operations on the daemon itself.
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

    fn name(name: String) -> Gated<SecretName> {
        SecretName::parse_owned(name).map_err(|e| Refusal::at(Gate::Validation, e))
    }

    async fn get(
        &self,
        who: &Identity,
        namespace: Option<String>,
        name: String,
        version: Option<Version>,
    ) -> Gated<Reply> {
        let (store, namespace) = self.admit(who, namespace, &name, Capability::Read)?;
        let key: CacheKey = (namespace, Self::name(name)?);
        if version.is_none()
            && let Some(hit) = self.cache.get(&key)
        {
            tracing::debug!(event = "secret_materialize", cached = true, "secret read");
            return Ok(Reply::Get {
                value: hit.value,
                version: hit.version,
                kind: hit.kind,
            });
        }
        let epoch = self.cache.epoch();
        let (namespace, name) = key.clone();
        let secret = blocking(move || Ok(store.get(&namespace, &name, version)?))
            .await
            .map_err(at(Gate::Store))?;
        let value = Arc::new(secret.value);
        if version.is_none() {
            self.cache
                .insert(key, &value, secret.version, secret.kind, epoch);
        }
        tracing::debug!(event = "secret_materialize", cached = false, "secret read");
        Ok(Reply::Get {
            value,
            version: secret.version,
            kind: secret.kind,
        })
    }

    async fn set(
        &self,
        who: &Identity,
        namespace: Option<String>,
        name: String,
        value: SecretBytes,
        kind: Option<Kind>,
    ) -> Gated<Reply> {
        // Creating and updating are told apart by the policy engine; until it exists both
        // need the same grant.
        let (store, namespace) = self.admit(who, namespace, &name, Capability::Update)?;
        let name = Self::name(name)?;
        let max = self.config.max_value_bytes;
        if value.len() > max {
            return Err(Refusal::at(
                Gate::Validation,
                CoreError::TooLarge {
                    len: value.len(),
                    max,
                },
            ));
        }
        let key: CacheKey = (namespace, name);
        let (ns, n) = key.clone();
        let actor = who.actor();
        let kind = kind.unwrap_or_default();
        let written = blocking(move || {
            Ok(store.set(
                &ns,
                &n,
                Write {
                    value: &value,
                    kind,
                    actor: &actor,
                },
            )?)
        })
        .await;
        // Invalidate after the write whatever its outcome: a failed commit may still have
        // reached the disk.
        self.cache.invalidate(&key);
        let written = written.map_err(at(Gate::Store))?;
        tracing::debug!(
            event = "secret_action",
            action = "set",
            version = written.version.get(),
            "secret written"
        );
        Ok(Reply::Set {
            index: written.index,
            version: written.version,
        })
    }

    async fn del(&self, who: &Identity, namespace: Option<String>, name: String) -> Gated<Reply> {
        let (store, namespace) = self.admit(who, namespace, &name, Capability::Destroy)?;
        let key: CacheKey = (namespace, Self::name(name)?);
        let (ns, n) = key.clone();
        let deleted = blocking(move || Ok(store.delete(&ns, &n)?)).await;
        self.cache.invalidate(&key);
        deleted.map_err(at(Gate::Store))?;
        tracing::debug!(event = "secret_action", action = "del", "secret deleted");
        Ok(Reply::Deleted)
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
        Ok(Reply::Sealed)
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
        Ok(Reply::Unsealed)
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
