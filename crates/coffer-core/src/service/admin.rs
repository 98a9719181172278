//! Operations on the daemon itself: namespaces, status, seal and unseal, key slots,
//! policies, tokens and the audit log. Each is checked as `sudo` on `sys/<area>` (listing
//! namespaces as `list` on `sys/namespaces`; status needs no grant, it holds no name).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use coffer_crypto::SecretBytes;
use coffer_tpm::PcrPolicy;
use coffer_types::wire::UnsealWith;
use coffer_types::{Capability, Namespace};

use super::{Gated, Resolved, Service, at, blocking};
use crate::access::policy::ROOT_POLICY;
use crate::access::{PolicyDoc, PolicySet, TokenSpec};
use crate::request::{AuditReport, BindingView, PolicyListing, PolicySource, PolicyView};
use crate::status::CacheStatus;
use crate::status::StatusReport;
use crate::vault::NewSlot;
use crate::{CoreError, Gate, Refusal, Reply, Request};

/// The longest token lifetime accepted: ten years.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn invalid(m: impl Into<String>) -> Refusal {
    Refusal::at(Gate::Validation, CoreError::InvalidRequest(m.into()))
}

impl Service {
    pub(super) async fn admin(&self, principal: &Resolved, request: Request) -> Gated<Reply> {
        match request {
            Request::CreateNamespace { namespace } => {
                self.create_namespace(principal, namespace).await
            }
            Request::ListNamespaces => self.list_namespaces(principal),
            Request::Status => self.status(principal).await,
            Request::Seal => self.seal(principal),
            Request::Unseal { with, key } => {
                self.sudo(principal, "seal")?;
                self.unseal(with, key).await
            }
            Request::UnsealByKey { with, key } => self.unseal(with, Some(key)).await,
            Request::SlotList => {
                self.sudo(principal, "slots")?;
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
            } => self.add_slot(principal, kind, pcrs, key, path).await,
            Request::SlotRemove { id } => {
                let p = self.sudo(principal, "slots")?;
                let vault = self.vault.clone();
                blocking(move || vault.remove_slot(id))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "slot_remove", slot = id, actor = %p.actor(), "slot removed");
                Ok(Reply::Done)
            }
            Request::SlotReseal { id, key } => {
                let p = self.sudo(principal, "slots")?;
                let vault = self.vault.clone();
                let done = blocking(move || vault.reseal(id, key))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "slot_reseal", slots = ?done, actor = %p.actor(), "slots resealed");
                Ok(Reply::Resealed(done))
            }
            Request::PolicyPut { name, rules } => {
                let (store, p) = self.sys(principal, "policy")?;
                let access = self.access.clone();
                let actor = p.actor();
                let shown = name.clone();
                blocking(move || access.put_policy(&store, &name, &rules, &actor))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "policy_put", policy = %shown, actor = %p.actor(), "policy put");
                Ok(Reply::Done)
            }
            Request::PolicyDelete { name } => {
                let (store, p) = self.sys(principal, "policy")?;
                let access = self.access.clone();
                let actor = p.actor();
                let shown = name.clone();
                blocking(move || access.delete_policy(&store, &name, &actor))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "policy_delete", policy = %shown, actor = %p.actor(), "policy deleted");
                Ok(Reply::Done)
            }
            Request::SubjectSet { subject, policies } => {
                let (store, p) = self.sys(principal, "policy")?;
                let access = self.access.clone();
                let actor = p.actor();
                let shown = subject.clone();
                blocking(move || access.bind(&store, &subject, policies, &actor))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "subject_set", subject = %shown, actor = %p.actor(), "binding changed");
                Ok(Reply::Done)
            }
            Request::PolicyGet { name } => {
                self.sys(principal, "policy")?;
                let listing = self.listing();
                listing
                    .policies
                    .into_iter()
                    .find(|v| v.name == name)
                    .map(|v| Reply::Policy(Box::new(v)))
                    .ok_or_else(|| {
                        Refusal::at(
                            Gate::Store,
                            CoreError::Store(coffer_store::StoreError::NotFound("policy")),
                        )
                    })
            }
            Request::PolicyList => {
                self.sys(principal, "policy")?;
                Ok(Reply::Policies(Box::new(self.listing())))
            }
            Request::TokenCreate {
                policies,
                ttl,
                namespace,
                display_name,
            } => {
                let (store, p) = self.sys(principal, "token")?;
                if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
                    return Err(invalid("a token's ttl is between 1 second and 10 years"));
                }
                if display_name.as_ref().is_some_and(|d| d.len() > 128) {
                    return Err(invalid("a display name is at most 128 bytes"));
                }
                let access = self.access.clone();
                let actor = p.actor();
                let spec = TokenSpec {
                    policies,
                    ttl,
                    namespace,
                    display_name,
                };
                let minted = blocking(move || access.create_token(&store, spec, &actor))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "token_create", accessor = %minted.record.accessor, actor = %p.actor(), "token created");
                Ok(Reply::TokenCreated {
                    token: minted.token,
                    record: Box::new(minted.record),
                })
            }
            Request::TokenList => {
                self.sys(principal, "token")?;
                Ok(Reply::Tokens(
                    self.access.tokens().iter().map(|t| (**t).clone()).collect(),
                ))
            }
            Request::TokenRevoke { accessor } => {
                let (store, p) = self.sys(principal, "token")?;
                let access = self.access.clone();
                let shown = accessor.clone();
                blocking(move || access.revoke_token(&store, &accessor))
                    .await
                    .map_err(at(Gate::Store))?;
                tracing::info!(event = "secret_action", action = "token_revoke", accessor = %shown, actor = %p.actor(), "token revoked");
                Ok(Reply::Done)
            }
            Request::TokenLookup { accessor: None } => {
                self.vault.store().map_err(at(Gate::Seal))?;
                let p = self.identity_and_rate(principal)?;
                match &p.token {
                    Some(t) => Ok(Reply::TokenInfo(Box::new((**t).clone()))),
                    None => Err(invalid(
                        "this request carries no token; give an accessor to look one up",
                    )),
                }
            }
            Request::TokenRevokeSelf => {
                let store = self.vault.store().map_err(at(Gate::Seal))?;
                let p = self.identity_and_rate(principal)?;
                let Some(token) = &p.token else {
                    return Err(invalid("this request carries no token to revoke"));
                };
                let (access, accessor) = (self.access.clone(), token.accessor.clone());
                blocking(move || access.revoke_token(&store, &accessor))
                    .await
                    .map(|()| Reply::Done)
                    .map_err(at(Gate::Store))
            }
            Request::TokenRenewSelf => {
                let store = self.vault.store().map_err(at(Gate::Seal))?;
                let p = self.identity_and_rate(principal)?;
                let Some(token) = &p.token else {
                    return Err(invalid("this request carries no token to renew"));
                };
                let (access, accessor, actor) =
                    (self.access.clone(), token.accessor.clone(), p.actor());
                blocking(move || access.renew_token(&store, &accessor, &actor))
                    .await
                    .map(|record| Reply::TokenInfo(Box::new(record)))
                    .map_err(at(Gate::Store))
            }
            Request::TokenLookup {
                accessor: Some(accessor),
            } => {
                self.sys(principal, "token")?;
                self.access
                    .token(&accessor)
                    .map(|t| Reply::TokenInfo(Box::new((*t).clone())))
                    .ok_or_else(|| {
                        Refusal::at(
                            Gate::Store,
                            CoreError::Store(coffer_store::StoreError::NotFound("token")),
                        )
                    })
            }
            Request::AuditHash { name, namespace } => {
                self.vault.store().map_err(at(Gate::Seal))?;
                self.sudo(principal, "audit")?;
                let keys = self
                    .vault
                    .audit_keys()
                    .ok_or(Refusal::at(Gate::Seal, CoreError::Sealed))?;
                Ok(Reply::AuditHash {
                    name: name.map(|n| keys.name_hash(&n)),
                    namespace: namespace.map(|n| keys.name_hash(&n)),
                })
            }
            Request::Metrics => {
                let p = self.identity_and_rate(principal)?;
                self.allow(p, Capability::Read, "sys/metrics", None)?;
                Ok(Reply::Done)
            }
            Request::AuditVerify => {
                self.sudo(principal, "audit")?;
                let audit = self.audit.clone().ok_or_else(|| {
                    Refusal::at(
                        Gate::Validation,
                        CoreError::Unsupported("this daemon runs without an audit log"),
                    )
                })?;
                let keys = self.vault.audit_keys();
                let report = blocking(move || {
                    // Anchor what was just written, so the live tail is covered too.
                    if let Err(e) = audit.sync() {
                        tracing::warn!(error = %e, "cannot checkpoint the audit log before verifying it");
                    }
                    coffer_audit::verify(audit.dir(), keys.as_ref()).map_err(|e| {
                        CoreError::AuditUnavailable(e.to_string())
                    })
                })
                .await
                .map_err(at(Gate::Store))?;
                Ok(Reply::AuditVerified(Box::new(AuditReport::from(&report))))
            }
            // Secret operations and lists are dispatched before this.
            Request::Secret { .. } | Request::List { .. } => {
                Err(invalid("not an operation on the daemon"))
            }
        }
    }

    /// Gates 1 and 3 to 5 for an operation on the store's own records.
    fn sys<'p>(
        &self,
        principal: &'p Resolved,
        area: &str,
    ) -> Gated<(
        Arc<dyn coffer_store::SecretStore>,
        &'p crate::access::Principal,
    )> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        let p = self.sudo(principal, area)?;
        Ok((store, p))
    }

    fn listing(&self) -> PolicyListing {
        let (file, stored) = self.access.policies();
        let mut policies = vec![PolicyView {
            name: ROOT_POLICY.to_owned(),
            source: PolicySource::Builtin,
            rules: PolicyDoc::root().to_text(),
        }];
        let mut subjects = Vec::new();
        let daemon_uid = nix::unistd::geteuid().as_raw();
        for uid in if daemon_uid == 0 {
            vec![0]
        } else {
            vec![0, daemon_uid]
        } {
            subjects.push(BindingView {
                subject: format!("uid:{uid}"),
                policies: vec![ROOT_POLICY.to_owned()],
                source: PolicySource::Builtin,
            });
        }
        let mut add = |set: &PolicySet, source| {
            for (name, doc) in &set.policies {
                policies.push(PolicyView {
                    name: name.clone(),
                    source,
                    rules: doc.to_text(),
                });
            }
            for (subject, names) in &set.subjects {
                subjects.push(BindingView {
                    subject: subject.to_string(),
                    policies: names.clone(),
                    source,
                });
            }
        };
        add(&file, PolicySource::File);
        add(&stored, PolicySource::Store);
        PolicyListing { policies, subjects }
    }

    async fn add_slot(
        &self,
        principal: &Resolved,
        kind: String,
        pcrs: Option<String>,
        key: Option<SecretBytes>,
        path: Option<String>,
    ) -> Gated<Reply> {
        let p = self.sudo(principal, "slots")?;
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
                path.map(PathBuf::from)
                    .ok_or_else(|| invalid("a file slot needs `path`"))?,
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
                    "the slot kind is one of file, passphrase, recovery, tpm, tpm+passphrase",
                ));
            }
        };
        let kind_name = new.kind().as_str();
        let vault = self.vault.clone();
        let added = blocking(move || vault.add_slot(new))
            .await
            .map_err(at(Gate::Store))?;
        tracing::info!(event = "secret_action", action = "slot_add", kind = kind_name, slot = added.id, actor = %p.actor(), "slot added");
        Ok(Reply::SlotAdded {
            id: added.id,
            recovery: added.recovery.map(|r| r.display()),
        })
    }

    async fn create_namespace(&self, principal: &Resolved, namespace: String) -> Gated<Reply> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        let namespace =
            Namespace::parse_owned(namespace).map_err(|e| at(Gate::Namespace)(e.into()))?;
        let p = self.sudo(principal, "namespaces")?;
        blocking(move || Ok(store.create_namespace(&namespace)?))
            .await
            .map_err(at(Gate::Store))?;
        tracing::info!(event = "secret_action", action = "namespace_create", actor = %p.actor(), "namespace created");
        Ok(Reply::Done)
    }

    fn list_namespaces(&self, principal: &Resolved) -> Gated<Reply> {
        let store = self.vault.store().map_err(at(Gate::Seal))?;
        let p = self.identity_and_rate(principal)?;
        self.allow(p, Capability::List, "sys/namespaces", None)?;
        Ok(Reply::Namespaces(
            store
                .namespaces()
                .into_iter()
                .filter(|n| !n.is_system())
                .collect(),
        ))
    }

    async fn status(&self, principal: &Resolved) -> Gated<Reply> {
        self.identity_and_rate(principal)?;
        let (entries, bytes) = self.cache.usage();
        let cache = CacheStatus {
            entries,
            bytes,
            ttl_seconds: self.cache.ttl().as_secs(),
        };
        Ok(Reply::Status(Box::new(self.report(cache).await)))
    }

    pub(super) async fn report(&self, cache: CacheStatus) -> StatusReport {
        // Reading the header is a store read; keep it off the async workers.
        let vault = self.vault.clone();
        match tokio::task::spawn_blocking(move || vault.status(cache)).await {
            Ok(report) => report,
            Err(_) => self.vault.status(cache),
        }
    }

    fn seal(&self, principal: &Resolved) -> Gated<Reply> {
        let p = self.sudo(principal, "seal")?;
        self.vault.seal();
        self.cache.flush();
        tracing::info!(event = "secret_action", action = "seal", actor = %p.actor(), "sealed");
        Ok(Reply::Done)
    }

    async fn unseal(&self, with: UnsealWith, key: Option<SecretBytes>) -> Gated<Reply> {
        let vault = self.vault.clone();
        blocking(move || vault.unseal(with, key))
            .await
            .map_err(at(Gate::Seal))?;
        tracing::info!(
            event = "secret_action",
            action = "unseal",
            slot = with.as_str(),
            "unsealed"
        );
        Ok(Reply::Done)
    }
}

impl From<&coffer_audit::VerifyReport> for AuditReport {
    fn from(r: &coffer_audit::VerifyReport) -> Self {
        Self {
            ok: r.ok(),
            records: r.records,
            files: r.files,
            last_seq: r.last_seq,
            checkpoint: r.checkpoint,
            unanchored: r.unanchored,
            problem: r
                .problem
                .as_ref()
                .map(|p| format!("{}, line {}: {}", p.file.display(), p.line, p.reason)),
        }
    }
}
