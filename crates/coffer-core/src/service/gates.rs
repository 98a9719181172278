//! Gates 1 to 6, in DESIGN.md's order: the store is open, the caller is known, the namespace
//! exists, the caller is within its rate, a policy grants what the operation needs, and the
//! input is valid. They run in place (no waiting but for loading policies after an unseal),
//! and what passes comes out as [`Admitted`] work for gate 7.

use std::sync::Arc;

use coffer_crypto::SecretBytes;
use coffer_store::{ListQuery, NameFilter, SecretStore, WriteMode};
use coffer_types::{Capability, Namespace, Parsed, SecretName, Target};

use super::record::Pending;
use super::state::{Gated, Service, at};
use crate::access::Principal;
use crate::cache::CacheKey;
use crate::op::secret::{Checked, Needs, SecretOp};
use crate::op::{
    Candidate, DEFAULT_LIST_LIMIT, ListInput, MAX_LIST_LIMIT, Operation, Request, WatchInput,
};
use crate::watch::WatchScope;
use crate::{CoreError, Gate, Identity, Refusal, Reply};

/// Work that passed gates 1 to 6.
pub(super) enum Admitted {
    /// An operation on one secret.
    Secret(SecretWork),
    /// A list.
    List(ListWork),
    /// An operation on the daemon itself (its own validation runs with it).
    Daemon(Operation),
    /// Answered by the gates themselves (which mount serves a path).
    Done(Reply, Namespace),
    /// A watch, its scope checked.
    Watch(WatchWork),
}

/// A watch, checked.
pub(super) struct WatchWork {
    pub store: Arc<dyn SecretStore>,
    pub scope: WatchScope,
    pub since: Option<u64>,
}

/// An operation on one secret, checked.
pub(super) struct SecretWork {
    pub store: Arc<dyn SecretStore>,
    pub key: CacheKey,
    pub op: Checked,
    /// Create-only or update-only, when the caller holds one of the two.
    pub restrict: Option<WriteMode>,
    /// Who it is recorded as on what it writes.
    pub actor: String,
}

/// A list, checked.
pub(super) struct ListWork {
    pub store: Arc<dyn SecretStore>,
    pub namespace: Namespace,
    pub query: ListQuery,
    pub detail: bool,
    pub revoked: bool,
    pub folders: bool,
    /// The prefix of a folder listing.
    pub prefix: String,
}

impl Admitted {
    /// The namespace the work acts in, once known.
    pub(super) fn namespace(&self) -> Option<&Namespace> {
        match self {
            Self::Secret(w) => Some(&w.key.0),
            Self::List(w) => Some(&w.namespace),
            Self::Done(_, ns) => Some(ns),
            Self::Watch(w) => w.scope.namespace.as_ref(),
            Self::Daemon(_) => None,
        }
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal::at(Gate::Validation, CoreError::InvalidRequest(message.into()))
}

impl Service {
    /// Gates 1 and 2: the store is open (unless the operation runs sealed), then who the
    /// caller is; answers the caller and the open store (taken once, for the gates after).
    /// Brings what is derived from the keys (policies and tokens from the store, the audit
    /// keys) in line with the vault first, after a seal or an unseal.
    pub(super) async fn identify(
        &self,
        who: &Identity,
        (runs_sealed, by_key): (bool, bool),
        token: Option<&SecretBytes>,
    ) -> Gated<(Principal, Option<Arc<dyn SecretStore>>)> {
        let store = if runs_sealed {
            None
        } else {
            Some(self.store()?)
        };
        if by_key {
            // An AppRole login (the store open) makes a token: tokens must be loaded.
            let epoch = self.vault.epoch();
            if store.is_some() && self.access.loaded_epoch() != Some(epoch) {
                self.sync(epoch).await;
            }
            // The key (or the login's credential) is the authority; whoever sends it is
            // recorded by address.
            let principal = Principal {
                uid: who.uid,
                gid: who.gid,
                token: None,
                unit: None,
            };
            return Ok((principal, store));
        }
        let epoch = self.vault.epoch();
        if self.access.loaded_epoch() != Some(epoch) {
            self.sync(epoch).await;
        }
        let principal = self.recognize(who, token)?;
        Ok((principal, store))
    }

    /// Gate 2 once policies and tokens are loaded: who `who` is, acting through `token`.
    /// A remote caller needs a token; a bad token is refused here, before anything else.
    pub(super) fn recognize(
        &self,
        who: &Identity,
        token: Option<&SecretBytes>,
    ) -> Gated<Principal> {
        if let Some(unit) = &who.unit {
            // The credentials socket vouched for the unit; a token has no place here.
            if token.is_some() {
                return Err(Refusal::at(
                    Gate::Identity,
                    CoreError::Unauthenticated("a unit's request carries no token"),
                ));
            }
            return Ok(self.access.resolve_unit(unit));
        }
        if who.remote.is_some() && token.is_none() {
            return Err(Refusal::at(
                Gate::Identity,
                CoreError::Unauthenticated(
                    "a token is required (X-Vault-Token or Authorization: Bearer)",
                ),
            ));
        }
        self.access
            .resolve(who.uid, who.gid, token)
            .map_err(|e| match e {
                CoreError::Unauthenticated(m) => {
                    Refusal::at(Gate::Identity, CoreError::Unauthenticated(m))
                }
                _ => Refusal::at(
                    Gate::Identity,
                    CoreError::Unauthenticated("the token could not be checked"),
                ),
            })
    }

    /// Whether identifying a caller must first load policies and tokens (the first request
    /// after a seal or an unseal).
    pub(super) fn identity_waits(&self) -> bool {
        self.access.loaded_epoch() != Some(self.vault.epoch())
    }

    pub(super) async fn sync(&self, epoch: u64) {
        let keys = (self.vault.store(), self.vault.token_key());
        if let Some(audit) = &self.audit {
            audit.set_keys(self.vault.audit_keys());
        }
        match keys {
            (Ok(store), Some(token_key)) => {
                let access = self.access.clone();
                let loaded =
                    super::state::blocking(move || access.load(epoch, &store, token_key)).await;
                if let Err(e) = loaded {
                    // Tokens and stored policies stay unknown; the next request tries again.
                    tracing::error!(error = %e, "cannot load policies and tokens from the store");
                }
            }
            _ => self.access.unload(epoch),
        }
    }

    /// Gates 3 to 6; for readings of a mounted path, also which one was chosen (the first
    /// whose namespace exists; only it is made into an operation).
    #[allow(clippy::result_large_err)]
    pub(super) fn admit(
        &self,
        who: &Principal,
        store: Option<Arc<dyn SecretStore>>,
        request: Request,
        pending: &mut Pending,
    ) -> Result<(Admitted, Option<usize>), (Refusal, Option<usize>)> {
        let readings = match request {
            Request::One(op) => {
                return self
                    .admit_one(who, store, op)
                    .map(|a| (a, None))
                    .map_err(|r| (r, None));
            }
            Request::FirstMounted(readings) => readings,
        };
        let store = self.opened(store).map_err(|r| (r, None))?;
        let first = readings
            .first()
            .map(|c| c.namespace.as_str().to_owned())
            .unwrap_or_default();
        let (chosen, reading) = readings
            .into_iter()
            .enumerate()
            .find(|(_, c)| store.has_namespace(&c.namespace))
            .ok_or((
                Refusal::at(Gate::Namespace, CoreError::NoNamespace(first)),
                None,
            ))?;
        pending.chose(&reading);
        let Candidate {
            namespace,
            text,
            name_at,
            action,
            build,
        } = reading;
        let op = match build() {
            Ok(op) => op,
            Err(rejected) => {
                // The reading's own shape does not fit (its body, its method): refused at
                // validation, after the caller's rate and the least grant its action needs.
                self.rate(who).map_err(|r| (r, Some(chosen)))?;
                let name = text.get(name_at..).unwrap_or("");
                self.least_grant(who, &namespace, name, action)
                    .map_err(|r| (r, Some(chosen)))?;
                let refusal = Refusal::at(
                    Gate::Validation,
                    CoreError::Rejected {
                        code: rejected.code,
                        message: rejected.message,
                    },
                );
                return Err((refusal, Some(chosen)));
            }
        };
        pending.built(&op);
        self.admit_one(who, Some(store), op)
            .map(|a| (a, Some(chosen)))
            .map_err(|r| (r, Some(chosen)))
    }

    /// The store gate 1 opened, or (for an operation that runs sealed) the store if open.
    fn opened(&self, store: Option<Arc<dyn SecretStore>>) -> Gated<Arc<dyn SecretStore>> {
        match store {
            Some(store) => Ok(store),
            None => self.store(),
        }
    }

    fn admit_one(
        &self,
        who: &Principal,
        store: Option<Arc<dyn SecretStore>>,
        op: Operation,
    ) -> Gated<Admitted> {
        match op {
            Operation::Secret { target, op } => {
                self.admit_secret(who, self.opened(store)?, target, op)
            }
            Operation::List { namespace, input } => {
                self.admit_list(who, self.opened(store)?, &namespace, input)
            }
            Operation::Watch(input) => self.admit_watch(who, self.opened(store)?, input),
            Operation::Mount { candidates } => {
                let store = self.opened(store)?;
                let first = candidates
                    .first()
                    .map(|ns| ns.as_str().to_owned())
                    .unwrap_or_default();
                let found = candidates
                    .into_iter()
                    .find(|ns| store.has_namespace(ns))
                    .ok_or(Refusal::at(Gate::Namespace, CoreError::NoNamespace(first)))?;
                self.rate(who)?;
                Ok(Admitted::Done(Reply::Mount(found.clone()), found))
            }
            Operation::TokenCreate(mut input) => {
                // Gate 5 for a new token: `create` on sys/token (`sudo` for an orphan), and
                // only policies and a namespace the creator holds.
                self.rate(who)?;
                input.namespace = match &input.role {
                    // Through a role: `create` on the role; its policies are the role's
                    // to allow (gate 7, `apply_role`).
                    Some(role) => {
                        super::token_roles::check_role_name(role)?;
                        self.access
                            .check_token_create_by_role(
                                who,
                                role,
                                input.namespace.as_deref(),
                                input.orphan,
                            )
                            .map_err(at(Gate::Policy))?
                    }
                    None => self
                        .access
                        .check_token_create(
                            who,
                            &input.policies,
                            input.namespace.as_deref(),
                            input.orphan,
                        )
                        .map_err(at(Gate::Policy))?,
                };
                Ok(Admitted::Daemon(Operation::TokenCreate(input)))
            }
            other => {
                // A namespace to create is checked at validation (it need not exist, so
                // the namespace gate has nothing to say about it).
                self.rate(who)?;
                if let Some((capability, area)) = daemon_grant(&other) {
                    self.allow(who, capability, area, None)?;
                }
                Ok(Admitted::Daemon(other))
            }
        }
    }

    /// Gate 3: the namespace is valid, exists and is unlocked.
    fn namespace_gate(
        &self,
        store: &Arc<dyn SecretStore>,
        namespace: &Parsed<Namespace>,
    ) -> Gated<Namespace> {
        let namespace = namespace
            .valid()
            .map_err(|e| Refusal::at(Gate::Namespace, CoreError::InvalidName(e)))?;
        if !store.has_namespace(namespace) {
            return Err(Refusal::at(
                Gate::Namespace,
                CoreError::NoNamespace(namespace.as_str().to_owned()),
            ));
        }
        if store.is_locked(namespace) {
            return Err(Refusal::at(
                Gate::Namespace,
                CoreError::Store(coffer_store::StoreError::Locked(namespace.to_string())),
            ));
        }
        Ok(namespace.clone())
    }

    /// Gate 4.
    fn rate(&self, who: &Principal) -> Gated<()> {
        if !self.access.admit(who) {
            return Err(Refusal::at(Gate::RateLimit, CoreError::RateLimited));
        }
        Ok(())
    }

    /// Gate 5 for `capability` on `path`.
    pub(super) fn allow(
        &self,
        who: &Principal,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> Gated<()> {
        self.access
            .check(who, capability, path, namespace)
            .map_err(at(Gate::Policy))
    }

    fn admit_secret(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        target: Target,
        op: SecretOp,
    ) -> Gated<Admitted> {
        let namespace = self.namespace_gate(&store, &target.namespace)?;
        self.rate(who)?;
        let restrict = self.policy_for_secret(who, &namespace, target.name.text(), op.needs())?;
        let name = target
            .name
            .valid()
            .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?
            .clone();
        if op.action().changes_state() && self.fleet.is_managed(&namespace, &name) {
            return Err(Refusal::at(
                Gate::Policy,
                CoreError::Denied(
                    "the fleet manages this secret here: change it on the hub".to_owned(),
                ),
            ));
        }
        let op = op
            .check(self.config.max_value_bytes)
            .map_err(at(Gate::Validation))?;
        Ok(Admitted::Secret(SecretWork {
            store,
            key: (namespace, name),
            op,
            restrict,
            actor: who.actor(),
        }))
    }

    /// Gate 5 for a request that could not be made into an operation: one of the
    /// capabilities its action needs at least, on `namespace/name`.
    fn least_grant(
        &self,
        who: &Principal,
        namespace: &Namespace,
        name: &str,
        action: coffer_types::Action,
    ) -> Gated<()> {
        let any = crate::op::least_capabilities(action);
        if any.is_empty() || self.access.unconditional(who) {
            return Ok(());
        }
        let path = super::state::secret_path(namespace, name);
        let ns = Some(namespace.as_str());
        if any.iter().any(|&c| self.access.grants(who, c, &path, ns)) {
            return Ok(());
        }
        self.allow(who, any[0], &path, ns)
    }

    /// Gate 5 for an operation on one secret: every capability it needs on
    /// `namespace/name`; for a plain write, `create` or `update` (answering which one the
    /// caller is limited to, when it holds only one).
    fn policy_for_secret(
        &self,
        who: &Principal,
        namespace: &Namespace,
        name: &str,
        needs: Needs,
    ) -> Gated<Option<WriteMode>> {
        if self.access.unconditional(who) {
            return Ok(None);
        }
        let path = super::state::secret_path(namespace, name);
        let ns = Some(namespace.as_str());
        for &capability in Capability::ALL {
            if needs.capabilities.has(capability) {
                self.allow(who, capability, &path, ns)?;
            }
        }
        if !needs.create_or_update {
            return Ok(None);
        }
        let create = self.access.grants(who, Capability::Create, &path, ns);
        let update = self.access.grants(who, Capability::Update, &path, ns);
        match (create, update) {
            (true, true) => Ok(None),
            (true, false) => Ok(Some(WriteMode::Create)),
            (false, true) => Ok(Some(WriteMode::Update)),
            // Which one the write needs depends on whether the name exists, which gate 5
            // does not look up: a deny rule is reported as such, else the missing `create`,
            // naming `update` too.
            (false, false) => {
                let create = self.allow(who, Capability::Create, &path, ns);
                let update = self.allow(who, Capability::Update, &path, ns);
                let denies = |c| self.access.denies(who, c, &path, ns);
                match (create, update) {
                    (Err(_), Err(u))
                        if denies(Capability::Update) && !denies(Capability::Create) =>
                    {
                        Err(u)
                    }
                    (Err(mut c), Err(_)) => {
                        if let CoreError::Denied(m) = &mut c.error
                            && !denies(Capability::Create)
                        {
                            m.push_str(
                                "; a write to a name that exists needs \"update\" instead, \
                                 not granted either",
                            );
                        }
                        Err(c)
                    }
                    (Err(r), Ok(())) | (Ok(()), Err(r)) => Err(r),
                    (Ok(()), Ok(())) => Ok(None),
                }
            }
        }
    }

    fn admit_list(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        namespace: &Parsed<Namespace>,
        input: ListInput,
    ) -> Gated<Admitted> {
        let namespace = self.namespace_gate(&store, namespace)?;
        self.rate(who)?;
        let needs_meta = input.detail || input.revoked;
        let prefix = input.prefix.clone().unwrap_or_default();
        let filter = if self.access.unconditional(who) {
            None
        } else {
            let path = super::state::secret_path(&namespace, &prefix);
            let ns = Some(namespace.as_str());
            self.allow(who, Capability::List, &path, ns)?;
            if needs_meta {
                self.allow(who, Capability::Meta, &path, ns)?;
            }
            Some(self.name_filter(who, &namespace, needs_meta))
        };
        if prefix.len() > coffer_types::MAX_NAME_LEN {
            return Err(invalid(format!(
                "prefix is longer than {} bytes",
                coffer_types::MAX_NAME_LEN
            )));
        }
        if input.folders && (input.detail || input.revoked) {
            return Err(invalid(
                "a folder listing shows names only (no detail or revoked)",
            ));
        }
        let limit = input.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(invalid(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        let after = input
            .after
            .map(SecretName::parse_owned)
            .transpose()
            .map_err(|e| Refusal::at(Gate::Validation, CoreError::InvalidName(e)))?;
        let query = ListQuery {
            prefix: input.prefix,
            after,
            // Checked above: at most MAX_LIST_LIMIT.
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            filter,
        };
        Ok(Admitted::List(ListWork {
            store,
            namespace,
            query,
            detail: input.detail,
            revoked: input.revoked,
            folders: input.folders,
            prefix,
        }))
    }

    /// Gates 3 to 6 for a watch: in one namespace, `list` or `meta` on the prefix (each
    /// event is then shown only when its name is granted too); across namespaces (HTTP's
    /// event subscription, as OpenBao does), `read` on `sys/events/subscribe/<type>`.
    fn admit_watch(
        &self,
        who: &Principal,
        store: Arc<dyn SecretStore>,
        input: WatchInput,
    ) -> Gated<Admitted> {
        let namespace = input
            .namespace
            .as_ref()
            .map(|ns| self.namespace_gate(&store, ns))
            .transpose()?;
        self.rate(who)?;
        let prefix = input.prefix.unwrap_or_default();
        if !self.access.unconditional(who) {
            match &namespace {
                Some(ns) => {
                    let path = super::state::secret_path(ns, &prefix);
                    let scope = Some(ns.as_str());
                    if !self.access.grants(who, Capability::Meta, &path, scope) {
                        self.allow(who, Capability::List, &path, scope)?;
                    }
                }
                None => {
                    let kind = input.subscription.as_deref().unwrap_or("*");
                    self.allow(
                        who,
                        Capability::Read,
                        &format!("sys/events/subscribe/{kind}"),
                        None,
                    )?;
                }
            }
        }
        if prefix.len() > coffer_types::MAX_NAME_LEN {
            return Err(invalid(format!(
                "prefix is longer than {} bytes",
                coffer_types::MAX_NAME_LEN
            )));
        }
        Ok(Admitted::Watch(WatchWork {
            store,
            scope: WatchScope { namespace, prefix },
            since: input.since,
        }))
    }

    /// The policy applied to every name a list returns: `list` (and `meta` when metadata
    /// is shown) on `namespace/name`, so a deny rule hides names under a wider prefix.
    fn name_filter(&self, who: &Principal, namespace: &Namespace, meta: bool) -> NameFilter {
        let access = Arc::clone(&self.access);
        let who = who.clone();
        let namespace = namespace.clone();
        Arc::new(move |name: &SecretName| {
            let path = super::state::secret_path(&namespace, name.as_str());
            let ns = Some(namespace.as_str());
            access.grants(&who, Capability::List, &path, ns)
                && (!meta || access.grants(&who, Capability::Meta, &path, ns))
        })
    }
}

/// The grant an operation on the daemon needs: (capability, `sys/` path). `None`: the
/// caller's identity is enough (its own token, the daemon's status, unsealing by key).
fn daemon_grant(op: &Operation) -> Option<(Capability, &'static str)> {
    use Capability::{List, Read, Sudo};
    Some(match op {
        // The root of the daemon's own paths: only who may do everything there.
        Operation::RotateMaster { .. } => (Sudo, "sys/"),
        // Creating, locking, unlocking a namespace and setting its passphrase: `sudo` on
        // sys/namespaces, one grant for the whole lifecycle.
        Operation::NamespaceCreate { .. }
        | Operation::NamespaceLock { .. }
        | Operation::NamespaceUnlock { .. }
        | Operation::NamespacePassphrase { .. }
        | Operation::NamespaceRotateKey { .. } => (Sudo, "sys/namespaces"),
        Operation::NamespaceList => (List, "sys/namespaces"),
        Operation::Seal | Operation::Unseal { by_key: false, .. } => (Sudo, "sys/seal"),
        Operation::SlotList
        | Operation::SlotAdd { .. }
        | Operation::SlotRemove { .. }
        | Operation::SlotReseal { .. } => (Sudo, "sys/slots"),
        Operation::PolicyPut { .. }
        | Operation::PolicyGet { .. }
        | Operation::PolicyList
        | Operation::PolicyDelete { .. }
        | Operation::SubjectSet { .. } => (Sudo, "sys/policy"),
        Operation::TokenList
        | Operation::TokenRevoke { .. }
        | Operation::TokenRevokeOrphan { .. }
        | Operation::TokenRenew { .. }
        | Operation::TokenLookup {
            accessor: Some(_), ..
        } => (Sudo, "sys/token"),
        Operation::AuditHash { .. }
        | Operation::AuditVerify
        | Operation::AuditAcknowledge
        | Operation::AuditList => (Sudo, "sys/audit"),
        Operation::Metrics => (Read, "sys/metrics"),
        Operation::Webhook(_) => (Sudo, "sys/webhooks"),
        Operation::Backup { .. } => (Sudo, "sys/backup"),
        // A login's role-id and secret-id are its credential.
        Operation::AppRole(crate::op::AppRoleOp::Login { .. }) => return None,
        Operation::AppRole(_) => (Sudo, "sys/approle"),
        Operation::TokenRole(_) => (Sudo, "sys/token"),
        // A node's join token (or pre-authorized key) is its credential.
        Operation::Fleet(crate::op::FleetOp::Enroll { .. }) => return None,
        Operation::Fleet(_) => (Sudo, "sys/fleet"),
        // Another token's capabilities: what `token lookup` of it would need.
        Operation::Capabilities {
            of: crate::op::CapabilitiesOf::Token(_) | crate::op::CapabilitiesOf::Accessor(_),
            ..
        } => (Sudo, "sys/token"),
        // Wrapping needs a valid token (any); unwrapping, its wrapping token; the caller's
        // own capabilities, its identity.
        _ => return None,
    })
}
