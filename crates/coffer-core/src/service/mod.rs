//! The service: every request walks the gates in DESIGN.md's order, cheapest first, and
//! leaves one audit record.
//!
//! 1 sealed/unavailable · 2 namespace · 3 identity · 4 rate limit · 5 policy ·
//! 6 name and request validation · 7 the store (behind the JIT cache).
//!
//! A refusal names its gate; the audit record carries it. The audit log fails closed: when
//! it cannot be written, a request is refused before it is carried out (`audit_unavailable`),
//! and a reply is withheld when its own record cannot be written. Store work is blocking and
//! runs on the blocking pool; a cache hit never leaves the calling task. Operations on one
//! secret are in `secret`, operations on the daemon itself in `admin`.

mod admin;
mod secret;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use coffer_audit::{Actor, AuditLog, Outcome, Record};
use coffer_crypto::SecretBytes;
use coffer_crypto::kdf::Argon2Params;
use coffer_store::{ListQuery, SecretStore};
use coffer_types::{Capability, Namespace, SecretName, Timestamp};

use crate::access::{AccessConfig, AccessControl, Principal};
use crate::cache::{CacheLimits, JitCache};
use crate::request::ListRequest;
use crate::vault::Vault;
use crate::{CoreError, Gate, Identity, Refusal, Reply, Request};

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
    access: Arc<AccessControl>,
    audit: Option<Arc<AuditLog>>,
    config: ServiceConfig,
    /// Request ids: a random prefix per start and a counter.
    request_prefix: String,
    requests: AtomicU64,
    /// Values read per namespace (a metric).
    materialized: std::sync::RwLock<std::collections::HashMap<Namespace, AtomicU64>>,
}

type Gated<T> = Result<T, Refusal>;

/// Gate 3's result: the principal, or why the token was refused.
type Resolved = Result<Principal, &'static str>;

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
    /// A service over `vault` with no policy file (root and the daemon's user hold
    /// everything), the default rate limit, and no audit log.
    pub fn new(vault: Vault, config: ServiceConfig) -> Self {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        let prefix = SecretBytes::random(4)
            .map(|b| data_encoding::HEXLOWER.encode(b.expose_secret()))
            .unwrap_or_else(|_| format!("{:08x}", std::process::id()));
        Self {
            vault: Arc::new(vault),
            cache: JitCache::new(config.cache),
            access: Arc::new(AccessControl::new(AccessConfig::default(), daemon_uid)),
            audit: None,
            config,
            request_prefix: prefix,
            requests: AtomicU64::new(0),
            materialized: Default::default(),
        }
    }

    /// Uses these policies and rate limits.
    pub fn with_access(mut self, config: AccessConfig) -> Self {
        let daemon_uid = nix::unistd::geteuid().as_raw();
        self.access = Arc::new(AccessControl::new(config, daemon_uid));
        self
    }

    /// Records every request in `audit`.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Handles one request from `who`, without a token.
    pub async fn handle(&self, who: &Identity, request: Request) -> Result<Reply, Refusal> {
        self.handle_with_token(who, None, request).await
    }

    /// Handles one request from `who`, carrying `token` when it has one: the request then
    /// runs as the token, and the peer is still recorded.
    pub async fn handle_with_token(
        &self,
        who: &Identity,
        token: Option<SecretBytes>,
        request: Request,
    ) -> Result<Reply, Refusal> {
        let Some(audit) = &self.audit else {
            let principal = self.identify(who, token.as_ref()).await;
            return self.dispatch(&principal, request).await;
        };
        if let Err(e) = audit.ready() {
            tracing::error!(error = %e, action = request.action(), peer = %who, "request refused: the audit log cannot be written");
            return Err(Refusal::at(
                Gate::Audit,
                CoreError::AuditUnavailable(e.to_string()),
            ));
        }
        let action = request.action();
        let (namespace, name) = request.target();
        let (namespace, name) = (namespace.map(str::to_owned), name.map(str::to_owned));
        let principal = self.identify(who, token.as_ref()).await;
        drop(token);
        let result = self.dispatch(&principal, request).await;
        let request_id = self.request_id();
        let record = Record {
            time: Timestamp::now(),
            request_id: Cow::Borrowed(&request_id),
            actor: Actor {
                uid: who.remote.is_none().then_some(who.uid),
                gid: who.remote.is_none().then_some(who.gid),
                pid: who.pid,
                exe: who.exe().map(Cow::Borrowed),
                addr: who.remote.map(|a| Cow::Owned(a.to_string())),
                token: principal
                    .as_ref()
                    .ok()
                    .and_then(|p| p.token.as_ref())
                    .map(|t| Cow::Borrowed(t.accessor.as_str())),
            },
            action,
            namespace: namespace.as_deref().map(Cow::Borrowed),
            name: name.as_deref().map(Cow::Borrowed),
            outcome: match &result {
                Ok(_) => Outcome::Ok,
                Err(r) if r.gate == Gate::Store => Outcome::Error,
                Err(_) => Outcome::Denied,
            },
            code: result.as_ref().err().map(|r| r.error.code()),
            gate: result.as_ref().err().map(|r| r.gate.as_str()),
        };
        let appending = audit.append(&record);
        drop(record);
        match appending.await {
            Ok(_) => result,
            Err(e) => {
                tracing::error!(error = %e, action, peer = %who, "a record could not be written; the reply is withheld");
                Err(Refusal::at(
                    Gate::Audit,
                    CoreError::AuditUnavailable(format!(
                        "{e}; {}",
                        if result.is_ok() && changes_state(action) {
                            "the change was carried out, but its record could not be written"
                        } else {
                            "the reply is withheld"
                        }
                    )),
                ))
            }
        }
    }

    fn request_id(&self) -> String {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.request_prefix)
    }

    /// Brings what is derived from the keys (policies and tokens from the store, the audit
    /// keys) in line with the vault after it was sealed or unsealed, then resolves the
    /// caller: gate 3's work, whose refusal is reported at gate 3.
    async fn identify(&self, who: &Identity, token: Option<&SecretBytes>) -> Resolved {
        let epoch = self.vault.epoch();
        if self.access.loaded_epoch() != Some(epoch) {
            self.sync(epoch).await;
        }
        if who.remote.is_some() && token.is_none() {
            return Err("a token is required (X-Vault-Token or Authorization: Bearer)");
        }
        self.access
            .resolve(who.uid, who.gid, token)
            .map_err(|e| match e {
                CoreError::Unauthenticated(m) => m,
                _ => "the token could not be checked",
            })
    }

    async fn sync(&self, epoch: u64) {
        let keys = (self.vault.store(), self.vault.token_key());
        if let Some(audit) = &self.audit {
            audit.set_keys(self.vault.audit_keys());
        }
        match keys {
            (Ok(store), Some(token_key)) => {
                let access = self.access.clone();
                let loaded = blocking(move || access.load(epoch, &store, token_key)).await;
                if let Err(e) = loaded {
                    // Tokens and stored policies stay unknown; the next request tries again.
                    tracing::error!(error = %e, "cannot load policies and tokens from the store");
                }
            }
            _ => self.access.unload(epoch),
        }
    }

    async fn dispatch(&self, principal: &Resolved, request: Request) -> Gated<Reply> {
        match request {
            // The data plane's read is most of the traffic: it runs on a small future of its
            // own; every other request's larger state lives on the heap.
            Request::Secret {
                namespace,
                name,
                op: crate::SecretOp::Get { version },
            } => self.get(principal, namespace, name, version).await,
            other => Box::pin(self.handle_other(principal, other)).await,
        }
    }

    async fn handle_other(&self, principal: &Resolved, request: Request) -> Gated<Reply> {
        match request {
            Request::Secret {
                namespace,
                name,
                op,
            } => self.secret(principal, namespace, name, op).await,
            Request::List { namespace, query } => self.list(principal, namespace, query).await,
            other => self.admin(principal, other).await,
        }
    }

    /// Gates 3 and 4.
    fn identity_and_rate<'p>(&self, principal: &'p Resolved) -> Gated<&'p Principal> {
        let p = principal
            .as_ref()
            .map_err(|m| Refusal::at(Gate::Identity, CoreError::Unauthenticated(m)))?;
        if !self.access.admit(p) {
            return Err(Refusal::at(Gate::RateLimit, CoreError::RateLimited));
        }
        Ok(p)
    }

    /// Gate 5 for `capability` on `path`.
    fn allow(
        &self,
        p: &Principal,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> Gated<()> {
        self.access
            .check(p, capability, path, namespace)
            .map_err(|e| Refusal::at(Gate::Policy, e))
    }

    /// Gates 1 to 5 for work in a namespace: the store, the namespace, the caller, its rate,
    /// its right to every capability in `needs` on `namespace/name`.
    fn admit<'p>(
        &self,
        principal: &'p Resolved,
        namespace: Option<String>,
        name: Option<&str>,
        needs: &[Capability],
    ) -> Gated<(Arc<dyn SecretStore>, Namespace, &'p Principal)> {
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
        let p = self.identity_and_rate(principal)?;
        if !self.access.unconditional(p) {
            let path = secret_path(&namespace, name.unwrap_or(""));
            for &capability in needs {
                self.allow(p, capability, &path, Some(namespace.as_str()))?;
            }
        }
        Ok((store, namespace, p))
    }

    /// Gates 3 to 5 for operations on the daemon itself, checked at `sys/<area>`.
    fn sudo<'p>(&self, principal: &'p Resolved, area: &str) -> Gated<&'p Principal> {
        let p = self.identity_and_rate(principal)?;
        self.allow(p, Capability::Sudo, &format!("sys/{area}"), None)?;
        Ok(p)
    }

    async fn list(
        &self,
        principal: &Resolved,
        namespace: Option<String>,
        request: ListRequest,
    ) -> Gated<Reply> {
        let needs: &[Capability] = if request.detail || request.revoked {
            &[Capability::List, Capability::Meta]
        } else {
            &[Capability::List]
        };
        let prefix = request.prefix.clone().unwrap_or_default();
        let (store, namespace, _) = self.admit(principal, namespace, Some(&prefix), needs)?;
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

    /// Seals the store, flushes the cache, and closes the audit log (at shutdown).
    pub fn shutdown(&self) {
        self.vault.seal();
        self.cache.flush();
        self.access.unload(self.vault.epoch());
        if let Some(audit) = &self.audit {
            audit.shutdown();
        }
    }

    /// Whether the store is sealed (or unavailable). Not a request: nothing is audited.
    pub fn sealed(&self) -> bool {
        self.vault.store().is_err()
    }

    /// The namespace `text` names when it exists (never the store's own), for routing;
    /// `None` while sealed. Not a request: nothing is audited, and callers must not answer
    /// whether a namespace exists to anyone the gates would not tell.
    pub fn namespace_for_routing(&self, text: &str) -> Option<Namespace> {
        let store = self.vault.store().ok()?;
        let namespace = Namespace::parse(text).ok()?;
        (!namespace.is_system() && store.has_namespace(&namespace)).then_some(namespace)
    }

    /// The seal state and store facts without a caller (Vault's unauthenticated
    /// `sys/health` and `sys/seal-status`, which are not audited either).
    pub async fn public_status(&self) -> crate::StatusReport {
        let (entries, bytes) = self.cache.usage();
        self.report(crate::CacheStatus {
            entries,
            bytes,
            ttl_seconds: self.cache.ttl().as_secs(),
        })
        .await
    }

    /// Whether `token` is a live token (gate 3 alone; not audited).
    pub async fn token_is_live(&self, token: &SecretBytes) -> bool {
        let epoch = self.vault.epoch();
        if self.access.loaded_epoch() != Some(epoch) {
            self.sync(epoch).await;
        }
        self.access.resolve(u32::MAX, u32::MAX, Some(token)).is_ok()
    }

    /// How many values were read (materialized) in each namespace since the start.
    pub fn materializations(&self) -> Vec<(Namespace, u64)> {
        let map = self
            .materialized
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut all: Vec<_> = map
            .iter()
            .map(|(ns, n)| (ns.clone(), n.load(Ordering::Relaxed)))
            .collect();
        all.sort();
        all
    }

    /// Counts one materialization in `namespace`.
    pub(crate) fn materialized(&self, namespace: &Namespace) {
        if let Some(n) = self
            .materialized
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(namespace)
        {
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.materialized
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(namespace.clone())
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The cache's time to live.
    pub fn ttl(&self) -> Duration {
        self.cache.ttl()
    }
}

/// The policy path of a secret: `namespace/name`.
pub(crate) fn secret_path(namespace: &Namespace, name: &str) -> String {
    let mut path = String::with_capacity(namespace.as_str().len() + 1 + name.len());
    path.push_str(namespace.as_str());
    path.push('/');
    path.push_str(name);
    path
}

/// Whether an action changes state (so a failed record after success is worth saying).
fn changes_state(action: &str) -> bool {
    !matches!(
        action,
        "get"
            | "meta"
            | "versions"
            | "list"
            | "hmac"
            | "basic_auth"
            | "namespace_list"
            | "status"
            | "slot_list"
            | "policy_get"
            | "policy_list"
            | "token_list"
            | "token_lookup"
            | "audit_hash"
            | "audit_verify"
            | "metrics"
    )
}
