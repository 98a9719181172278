//! Gate 7 (with the validation that belongs to each) for operations on the daemon itself:
//! namespaces, status, seal and unseal, key slots, policies and the audit log. Their grants
//! (`sudo` on `sys/<area>`, `list` on `sys/namespaces`) were checked at gate 5; tokens are
//! in `tokens`.

use std::path::PathBuf;

use coffer_crypto::SecretBytes;
use coffer_tpm::PcrPolicy;
use coffer_types::reply::{BindingView, PolicyListing, PolicySource, PolicyView};
use coffer_types::wire::UnsealWith;
use coffer_types::{Namespace, SlotKind};

use super::nslock::LockOp;
use super::state::{Gated, Service, at, blocking, invalid, stored};
use crate::access::policy::ROOT_POLICY;
use crate::access::{PolicyDoc, PolicySet, Principal};
use crate::op::Operation;
use crate::status::{CacheStatus, StatusReport};
use crate::vault::NewSlot;
use crate::{CoreError, Gate, Refusal, Reply};

fn not_found(what: &'static str) -> Refusal {
    Refusal::at(
        Gate::Store,
        CoreError::Store(coffer_store::StoreError::NotFound(what)),
    )
}

impl Service {
    pub(super) async fn admin(&self, who: &Principal, op: Operation) -> Gated<Reply> {
        match op {
            Operation::NamespaceCreate {
                namespace,
                passphrase,
            } => {
                self.namespace_lock_op(who, &namespace, LockOp::Create(passphrase))
                    .await
            }
            Operation::NamespacePassphrase {
                namespace,
                passphrase,
            } => {
                self.namespace_lock_op(who, &namespace, LockOp::Passphrase(passphrase))
                    .await
            }
            Operation::NamespaceLock { namespace } => {
                self.namespace_lock_op(who, &namespace, LockOp::Lock).await
            }
            Operation::NamespaceUnlock {
                namespace,
                passphrase,
            } => {
                self.namespace_lock_op(who, &namespace, LockOp::Unlock(passphrase))
                    .await
            }
            Operation::NamespaceRotateKey { namespace } => {
                let store = self.store()?;
                let namespace = namespace
                    .valid()
                    .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?
                    .clone();
                let actor = who.actor();
                // A locked namespace is refused by the store (LOCK's check joins here).
                blocking(move || {
                    Ok(store.rotate_key(&namespace, coffer_store::Change::by(&actor))?)
                })
                .await
                .map_err(stored)?;
                Ok(Reply::Done)
            }
            Operation::RotateMaster {
                passphrases,
                drop_passphrase_slots,
            } => {
                let passphrases: Vec<SecretBytes> = passphrases
                    .map(|all| {
                        all.expose_secret()
                            .split(|b| *b == b'\n')
                            .filter(|p| !p.is_empty())
                            .map(SecretBytes::copy_from)
                            .collect()
                    })
                    .unwrap_or_default();
                let (vault, actor) = (self.vault.clone(), who.actor());
                let done = blocking(move || {
                    vault.rotate_master(&passphrases, drop_passphrase_slots, &actor)
                })
                .await
                .map_err(stored)?;
                // The store switched keys: cached values stay valid (same namespace keys),
                // but nothing of the old store is kept.
                self.cache.flush();
                Ok(Reply::MasterRotated {
                    recovery: done.recovery.map(|r| r.display()),
                    dropped: done.dropped,
                })
            }
            Operation::NamespaceList => {
                let store = self.store()?;
                let locked = store
                    .namespaces()
                    .into_iter()
                    .filter(|n| !n.is_system() && store.is_locked(n))
                    .collect::<Vec<Namespace>>();
                Ok(Reply::Namespaces {
                    all: store
                        .namespaces()
                        .into_iter()
                        .filter(|n| !n.is_system())
                        .collect::<Vec<Namespace>>(),
                    locked,
                })
            }
            Operation::Status => {
                let report = self.report().await;
                // The details only to callers allowed `meta` on sys/status (crate::status).
                let detail = self.access.unconditional(who)
                    || self.access.grants(
                        who,
                        coffer_types::Capability::Meta,
                        crate::status::STATUS_PATH,
                        None,
                    );
                Ok(Reply::Status(Box::new(if detail {
                    let mut report = report;
                    report.daemon = Some(self.daemon_facts().await);
                    report
                } else {
                    crate::status::without_detail(report)
                })))
            }
            Operation::Seal => {
                self.vault.seal();
                self.cache.flush();
                Ok(Reply::Done)
            }
            Operation::Unseal { with, key, by_key } => {
                // A key that is its own authority opens only what a key opens: a
                // passphrase or the recovery slot (the daemon opens file and TPM slots).
                if by_key
                    && (key.is_none()
                        || !matches!(with, UnsealWith::Passphrase | UnsealWith::Recovery))
                {
                    return Err(invalid(
                        "unsealing by key opens a passphrase or recovery slot and needs the \
                         key; file and tpm slots are opened by the daemon itself",
                    ));
                }
                self.unseal(with, key, !by_key).await
            }
            Operation::SlotList => {
                let vault = self.vault.clone();
                blocking(move || vault.slots())
                    .await
                    .map(Reply::Slots)
                    .map_err(stored)
            }
            Operation::SlotAdd {
                kind,
                pcrs,
                key,
                path,
            } => self.add_slot(kind, pcrs, key, path).await,
            Operation::SlotRemove { id } => {
                let vault = self.vault.clone();
                blocking(move || vault.remove_slot(id))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Done)
            }
            Operation::SlotReseal { id, key } => {
                let vault = self.vault.clone();
                let done = blocking(move || vault.reseal(id, key))
                    .await
                    .map_err(stored)?;
                Ok(Reply::Resealed(done))
            }
            Operation::PolicyPut { name, rules } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.put_policy(&store, &name, &rules, &actor))
                    .await
                    .map_err(policy_refusal)?;
                Ok(Reply::Done)
            }
            Operation::PolicyDelete { name } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.delete_policy(&store, &name, &actor))
                    .await
                    .map_err(policy_refusal)?;
                Ok(Reply::Done)
            }
            Operation::SubjectSet { subject, policies } => {
                let store = self.store()?;
                let (access, actor) = (self.access.clone(), who.actor());
                blocking(move || access.bind(&store, &subject, policies, &actor))
                    .await
                    .map_err(policy_refusal)?;
                Ok(Reply::Done)
            }
            Operation::PolicyGet { name } => self
                .listing()
                .policies
                .into_iter()
                .find(|v| v.name == name)
                .map(|v| Reply::Policy(Box::new(v)))
                .ok_or_else(|| not_found("policy")),
            Operation::PolicyList => Ok(Reply::Policies(Box::new(self.listing()))),
            Operation::AuditHash { name, namespace } => {
                if name.is_none() && namespace.is_none() {
                    return Err(invalid("audit_hash needs a name, a namespace, or both"));
                }
                let keys = self
                    .vault
                    .audit_keys()
                    .ok_or(Refusal::at(Gate::Seal, CoreError::Sealed))?;
                Ok(Reply::AuditHash {
                    name: name.map(|n| keys.name_hash(&n)),
                    namespace: namespace.map(|n| keys.name_hash(&n)),
                })
            }
            Operation::AuditList => Ok(Reply::AuditDevices(
                self.audit.as_ref().map(|a| a.dir().display().to_string()),
            )),
            Operation::AuditVerify => {
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
                    let report =
                        coffer_audit::verify_anchored(audit.dir(), audit.anchor(), keys.as_ref())
                            .map_err(|e| CoreError::AuditUnavailable(e.to_string()))?;
                    let mut reply = report.to_reply();
                    // Where the checkpoint is anchored in the TPM's counter: the comparison,
                    // and a rollback of the directory with its anchor is a problem.
                    if let Some((consistent, text)) = audit.counter_report() {
                        if !consistent && reply.problem.is_none() {
                            reply.ok = false;
                            reply.problem = Some(text.clone());
                        }
                        reply.counter = Some(text);
                    }
                    Ok(reply)
                })
                .await
                .map_err(at(Gate::Store))?;
                Ok(Reply::AuditVerified(Box::new(report)))
            }
            Operation::AuditAcknowledge => {
                let audit = self.audit.clone().ok_or_else(|| {
                    Refusal::at(
                        Gate::Validation,
                        CoreError::Unsupported("this daemon runs without an audit log"),
                    )
                })?;
                let by = who.actor();
                let seq = blocking(move || {
                    audit
                        .acknowledge(&by)
                        .map_err(|e| CoreError::AuditUnavailable(e.to_string()))
                })
                .await
                .map_err(at(Gate::Audit))?;
                Ok(Reply::AuditAcknowledged(seq))
            }
            Operation::Metrics => Ok(Reply::Done),
            Operation::Webhook(op) => self.webhook(who, op).await,
            Operation::Backup {
                recipients,
                passphrase,
            } => self.backup(recipients, passphrase, who.actor()),
            Operation::TokenCreate(_)
            | Operation::TokenList
            | Operation::TokenRevoke { .. }
            | Operation::TokenRevokeOrphan { .. }
            | Operation::TokenRenew { .. }
            | Operation::TokenRevokeSelf
            | Operation::TokenRenewSelf
            | Operation::TokenLookup { .. } => self.tokens(who, op).await,
            Operation::AppRole(op) => self.approle(who, op).await,
            Operation::Fleet(op) => self.fleet(who, op).await,
            Operation::Wrapping(op) => self.wrapping(who, op).await,
            Operation::TokenRole(op) => self.token_roles(who, op).await,
            Operation::Capabilities { of, paths } => self.capabilities(who, of, paths),
            // Secrets, lists and mounts are admitted as their own work.
            Operation::Secret { .. }
            | Operation::List { .. }
            | Operation::Mount { .. }
            | Operation::Watch(_) => Err(invalid("not an operation on the daemon")),
        }
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
        kind: SlotKind,
        pcrs: Option<String>,
        key: Option<SecretBytes>,
        path: Option<String>,
    ) -> Gated<Reply> {
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
        let new = match kind {
            SlotKind::File => NewSlot::KeyFile(
                path.map(PathBuf::from)
                    .ok_or_else(|| invalid("a file slot needs `path`"))?,
            ),
            SlotKind::Passphrase => NewSlot::Passphrase {
                passphrase: passphrase(key)?,
                argon2,
            },
            SlotKind::Recovery => NewSlot::Recovery,
            SlotKind::Tpm => NewSlot::Tpm { pcrs },
            SlotKind::TpmPassphrase => NewSlot::TpmPassphrase {
                pcrs,
                passphrase: passphrase(key)?,
                argon2,
            },
            _ => return Err(invalid("this slot kind cannot be added")),
        };
        let vault = self.vault.clone();
        let added = blocking(move || vault.add_slot(new))
            .await
            .map_err(stored)?;
        Ok(Reply::SlotAdded {
            id: added.id,
            recovery: added.recovery.map(|r| r.display()),
        })
    }

    pub(super) async fn report(&self) -> StatusReport {
        let (entries, bytes) = self.cache.usage();
        let cache = CacheStatus {
            entries,
            bytes,
            ttl_seconds: self.cache.ttl().as_secs(),
        };
        // Reading the header is a store read; keep it off the async workers.
        let vault = self.vault.clone();
        match tokio::task::spawn_blocking(move || vault.status(cache)).await {
            Ok(report) => report,
            Err(_) => self.vault.status(cache),
        }
    }

    /// The daemon's own facts for `status`: only for callers allowed its details (counting
    /// the secrets reads an index of the store, so it is never done for an unauthenticated
    /// health check).
    async fn daemon_facts(&self) -> coffer_types::reply::DaemonFacts {
        let vault = self.vault.clone();
        let secrets = tokio::task::spawn_blocking(move || {
            vault.store().ok().and_then(|s| s.secret_count().ok())
        })
        .await
        .ok()
        .flatten();
        let (file, stored) = self.access.policies();
        coffer_types::reply::DaemonFacts {
            data_dir: self
                .data_dir
                .get()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            listeners: self.listeners.get().cloned().unwrap_or_default(),
            audit: match &self.audit {
                Some(log) => format!("on ({})", log.dir().display()),
                None => "off (--danger-no-audit)".to_owned(),
            },
            policies: format!(
                "{} from the policy file, {} from the store (and the built-in root and default)",
                file.policies.len(),
                stored.policies.len()
            ),
            uptime_seconds: self.started.elapsed().as_secs(),
            secrets,
            fleet: self.fleet.facts(),
        }
    }

    async fn unseal(
        &self,
        with: UnsealWith,
        key: Option<SecretBytes>,
        queue: bool,
    ) -> Gated<Reply> {
        let vault = self.vault.clone();
        blocking(move || vault.unseal(with, key, queue))
            .await
            .map_err(at(Gate::Seal))?;
        Ok(Reply::Done)
    }
}

/// A refusal from a policy change: a policy or binding the request got wrong is invalid
/// input; the rest is the store's.
fn policy_refusal(error: CoreError) -> Refusal {
    match error {
        e @ (CoreError::InvalidRequest(_) | CoreError::InvalidName(_)) => {
            Refusal::at(Gate::Validation, e)
        }
        e => stored(e),
    }
}
