//! Access control: who the caller is (gate 3), whether it is within its rate (gate 4), and
//! whether a policy grants what it asks (gate 5). Deny by default.
//!
//! - [`pattern`]: path patterns (`acme/prod/*`, `acme/+/db`).
//! - [`policy`]: policies, subjects and the policy file.
//! - [`engine`]: the compiled decision.
//! - [`token`]: tokens, stored as keyed hashes.
//! - `lineage`: making, renewing and revoking tokens, with Vault's rules (a child holds no
//!   more than its creator; revoking a token revokes its descendants).
//! - [`rate`]: the token bucket per identity.
//! - [`review`]: grants that amount to root (`coffer policy check`).
//! - `system`: policies and tokens kept in the store's own namespace; `records`: the
//!   bookkeeping records beside them (AppRole's, wrapped responses).
//! - [`wrap`]: response wrapping's single-use tokens and what they hold.
//!
//! The policy file is read at start and never changes; policies, bindings and tokens put at
//! run time live in the store (encrypted like every secret) and are loaded into memory each
//! time the store is unsealed.

pub mod engine;
pub mod hcl;
mod lineage;
pub mod pattern;
pub mod policy;
pub mod rate;
pub(crate) mod records;
pub mod review;
mod system;
pub mod vault_map;

pub(crate) use system::ensure_namespace as ensure_system_namespace;
pub(crate) use system::holds_access;
pub mod approle;
pub mod token;
pub mod token_role;
pub mod wrap;

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_store::{SecretStore, StoreError};
use coffer_types::{Capability, Timestamp};

pub use engine::{Caller, Decision, Engine};
pub use policy::{
    DEFAULT_POLICY, PolicyDoc, PolicyError, PolicySet, PolicyText, ROOT_POLICY, Subject,
};
pub use rate::{RateKey, RateLimiter, RateLimits};
pub use token::{Minted, TokenRecord, TokenSpec};

use crate::CoreError;

/// What the access gates start with.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The policy file's policies and bindings.
    pub file: PolicySet,
    /// The rate limit.
    pub rate: RateLimits,
}

/// What is loaded from the store while it is unsealed.
#[derive(Default)]
struct Loaded {
    /// The vault epoch this was loaded for (`None`: nothing loaded).
    epoch: Option<u64>,
    stored: PolicySet,
    tokens: token::Tokens,
    token_key: Option<TokenKey>,
    /// The stored policies could not be loaded: callers that do not hold `root` are
    /// refused (fail closed) rather than judged by fewer rules.
    broken: Option<Broken>,
}

/// Why the stored policies are not in force.
#[derive(Debug, Clone)]
struct Broken {
    /// What failed, naming the policy where one is to blame.
    why: String,
    /// Whether an operator's change may replace them: yes when they were read and are
    /// invalid; no when the store could not be read (a change would overwrite policies
    /// nobody has seen).
    replaceable: bool,
}

/// The access gates.
pub struct AccessControl {
    daemon_uid: u32,
    file: PolicySet,
    engine: RwLock<Arc<Engine>>,
    loaded: RwLock<Loaded>,
    /// Serializes loading and changes.
    changing: Mutex<()>,
    rate: RateLimiter,
}

/// How a refusal by a deny rule begins.
const DENY_RULE: &str = "a policy rule denies";

/// The identity a request runs as, once gate 3 resolved it.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The peer's uid.
    pub uid: u32,
    /// The peer's gid.
    pub gid: u32,
    /// The token, when the request carried a valid one.
    pub token: Option<Arc<TokenRecord>>,
    /// The systemd unit asking through the credentials socket: the principal is then
    /// `unit:NAME` and holds only that subject's grants (`uid` and `gid` are not its own).
    pub unit: Option<Arc<str>>,
}

impl Principal {
    /// How the principal is recorded on what it writes: `uid:0`, `token:<accessor>` or
    /// `unit:<name>`.
    pub fn actor(&self) -> String {
        if let Some(unit) = &self.unit {
            return format!("unit:{unit}");
        }
        match &self.token {
            Some(t) => format!("token:{}", t.accessor),
            None => format!("uid:{}", self.uid),
        }
    }

    /// Its rate limit bucket.
    pub fn rate_key(&self) -> RateKey {
        if let Some(unit) = &self.unit {
            return RateKey::Unit(unit.to_string());
        }
        match &self.token {
            Some(t) => RateKey::Token(t.accessor.clone()),
            None => RateKey::Uid(self.uid),
        }
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            uid: self.uid,
            gid: self.gid,
            token: self
                .token
                .as_deref()
                .map(|t| (t.accessor.as_str(), t.policies.as_slice())),
            unit: self.unit.as_deref(),
        }
    }

    /// How refusals name the principal: `uid 65534`, `token <accessor>`.
    pub fn describe(&self) -> String {
        if let Some(unit) = &self.unit {
            return format!("unit {unit}");
        }
        match &self.token {
            Some(t) => format!("token {}", t.accessor),
            None => format!("uid {}", self.uid),
        }
    }
}

impl AccessControl {
    /// The gates with the policy file's policies; the store's are loaded at unseal.
    pub fn new(config: AccessConfig, daemon_uid: u32) -> Self {
        let engine = Engine::compile(daemon_uid, &[&config.file]);
        Self {
            daemon_uid,
            file: config.file,
            engine: RwLock::new(Arc::new(engine)),
            loaded: RwLock::new(Loaded::default()),
            changing: Mutex::new(()),
            rate: RateLimiter::new(config.rate, daemon_uid),
        }
    }

    /// The epoch loaded, if any.
    pub fn loaded_epoch(&self) -> Option<u64> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .epoch
    }

    /// Loads the store's policies and tokens for vault `epoch` (blocking: store reads).
    pub fn load(
        &self,
        epoch: u64,
        store: &Arc<dyn SecretStore>,
        token_key: TokenKey,
    ) -> Result<(), CoreError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        if self.loaded_epoch() == Some(epoch) {
            return Ok(());
        }
        let file = &self.file;
        let (policies, mut tokens) = match system::load(store, &|n| file.policies.contains_key(n)) {
            Ok(loaded) => loaded,
            Err(e) => {
                self.fail_closed(format!("they cannot be read: {e}"), false);
                return Err(e);
            }
        };
        // Expired tokens go, and so do tokens whose parent is gone (revoked just before a
        // crash) or expired: a token never outlives its ancestors.
        let gone = tokens.expired(Timestamp::now());
        for accessor in &gone {
            if let Some(hash) = tokens.hash_of(accessor) {
                system::delete_token(store, &hash, None)?;
                tracing::info!(event = "secret_action", action = "token_expire", accessor = %accessor, "expired token removed");
            }
        }
        for accessor in &gone {
            tokens.remove(accessor);
        }
        let (stored, broken) = match policies {
            Ok(set) => (set, None),
            Err(why) => {
                tracing::error!(
                    error = %why,
                    "the stored policies cannot be loaded: only callers holding root are served \
                     until an operator fixes them (restore what they refer to, or put them again)"
                );
                let broken = Broken {
                    why,
                    replaceable: true,
                };
                (PolicySet::default(), Some(broken))
            }
        };
        self.install(&stored);
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded {
            epoch: Some(epoch),
            stored,
            tokens,
            token_key: Some(token_key),
            broken,
        };
        Ok(())
    }

    /// Forgets what was loaded from the store (another hub changed policies or tokens):
    /// the next request loads them again. The tokens go at once, so a token revoked
    /// elsewhere is refused even if that load fails.
    pub fn forget(&self) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        loaded.epoch = None;
        loaded.tokens = token::Tokens::default();
    }

    /// Marks the stored policies as not in force (the load is retried at the next request).
    fn fail_closed(&self, why: String, replaceable: bool) {
        tracing::error!(error = %why, "the stored policies cannot be loaded: only callers holding root are served");
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .broken = Some(Broken { why, replaceable });
    }

    /// Why the stored policies are not in force, if they are not.
    pub fn policies_unavailable(&self) -> Option<String> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .broken
            .as_ref()
            .map(|b| b.why.clone())
    }

    /// Whether `who` holds the built-in `root` policy without the stored policies: root and
    /// the daemon's user on the socket, or a token made with `root`.
    fn holds_root(&self, who: &Principal) -> bool {
        if who.unit.is_some() {
            return false;
        }
        match &who.token {
            Some(t) => t.policies.iter().any(|p| p == policy::ROOT_POLICY),
            None => who.uid == 0 || who.uid == self.daemon_uid,
        }
    }

    /// Forgets what was loaded (the vault is sealed at `epoch`).
    pub fn unload(&self, epoch: u64) {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded {
            epoch: Some(epoch),
            ..Loaded::default()
        };
        self.install(&PolicySet::default());
    }

    fn install(&self, stored: &PolicySet) {
        let engine = Engine::compile(self.daemon_uid, &[&self.file, stored]);
        *self.engine.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(engine);
    }

    /// Gate 3 for a request the credentials socket makes on behalf of systemd unit `unit`:
    /// the principal is `unit:NAME` alone. Its uid and gid are set to no account's
    /// (`u32::MAX`), so nothing that looks at them finds the connecting peer's (root's).
    pub fn resolve_unit(&self, unit: &str) -> Principal {
        Principal {
            uid: u32::MAX,
            gid: u32::MAX,
            token: None,
            unit: Some(Arc::from(unit)),
        }
    }

    /// Gate 3: the principal of a request from peer `uid`/`gid`, with its token if any.
    pub fn resolve(
        &self,
        uid: u32,
        gid: u32,
        token: Option<&SecretBytes>,
    ) -> Result<Principal, CoreError> {
        let Some(token) = token else {
            return Ok(Principal {
                uid,
                gid,
                token: None,
                unit: None,
            });
        };
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let unknown = CoreError::Unauthenticated("the token is not valid (unknown or revoked)");
        let key = loaded.token_key.as_ref().ok_or(unknown)?;
        let record = loaded
            .tokens
            .by_hash(&key.hash(token))
            .ok_or(CoreError::Unauthenticated(
                "the token is not valid (unknown or revoked)",
            ))?;
        loaded
            .tokens
            .alive(record, Timestamp::now())
            .map_err(CoreError::Unauthenticated)?;
        Ok(Principal {
            uid,
            gid,
            token: Some(record.clone()),
            unit: None,
        })
    }

    /// The accessor of a live token (known, unexpired, every ancestor alive); `None` for
    /// any other. Only a hash and a map lookup: the token itself goes nowhere.
    pub fn accessor_of(&self, token: &SecretBytes) -> Option<String> {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let key = loaded.token_key.as_ref()?;
        let record = loaded.tokens.by_hash(&key.hash(token))?;
        loaded.tokens.alive(record, Timestamp::now()).ok()?;
        Some(record.accessor.clone())
    }

    /// The principal of the live token with this accessor (for `sys/capabilities-accessor`);
    /// `None` when there is none.
    pub fn principal_by_accessor(&self, accessor: &str) -> Option<Principal> {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let record = loaded.tokens.by_accessor(accessor)?;
        loaded.tokens.alive(record, Timestamp::now()).ok()?;
        Some(Principal {
            uid: u32::MAX,
            gid: u32::MAX,
            token: Some(record.clone()),
            unit: None,
        })
    }

    /// Whether every check would pass for `who` without looking at the path: a peer bound
    /// to the built-in `root` policy and nothing else (root, the daemon's user).
    pub fn unconditional(&self, who: &Principal) -> bool {
        who.token.is_none()
            && who.unit.is_none()
            && self
                .engine
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .root_only(who.uid, who.gid)
    }

    /// Gate 4.
    pub fn admit(&self, who: &Principal) -> bool {
        self.rate.admit(&who.rate_key())
    }

    /// Whether a rule denies `capability` on `path` to `who` (not merely grants it not):
    /// which refusal to report when a write may neither create nor update.
    pub fn denies(
        &self,
        who: &Principal,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> bool {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .decide_in(who.caller(), capability, path, namespace)
            == Decision::Denied
    }

    /// Whether the stored policies could not be loaded (everyone but root is refused).
    fn policies_broken(&self) -> bool {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .broken
            .is_some()
    }

    /// Gate 5: `Ok` when a policy grants `capability` on `path` (`namespace/name`, or
    /// `sys/<area>`) and none denies it. `namespace` is the namespace of a secret operation,
    /// for a token confined to one.
    pub fn check(
        &self,
        who: &Principal,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> Result<(), CoreError> {
        // Fail closed: without the stored policies (deny rules among them) nobody but root
        // is judged.
        if self.policies_broken() && !self.holds_root(who) {
            return Err(CoreError::PolicyUnavailable);
        }
        if let Some(t) = &who.token
            && t.namespace.is_some()
            && !namespace.is_some_and(|ns| t.covers(ns))
        {
            return Err(CoreError::Denied(format!(
                "{} is confined to namespace {} and may not act here",
                who.describe(),
                t.namespace.as_deref().unwrap_or_default()
            )));
        }
        let decision = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .decide_in(who.caller(), capability, path, namespace);
        match decision {
            Decision::Allowed => Ok(()),
            Decision::Denied => Err(CoreError::Denied(format!(
                "{DENY_RULE} {} \"{capability}\" on \"{path}\" (a deny rule wins over \
                 any grant; remove it, or narrow its path, to allow this)",
                who.describe()
            ))),
            Decision::NotGranted => Err(CoreError::Denied(denied_advice(
                &who.describe(),
                capability,
                path,
                namespace,
            ))),
        }
    }

    /// Vault's capabilities of `who` on the Vault path `vault_path`, in Vault's words and
    /// order (`sys/capabilities`): `root` for a principal every check passes for, `deny`
    /// when nothing is granted or a rule denies. Fails closed like [`AccessControl::check`].
    pub fn capabilities(&self, who: &Principal, vault_path: &str) -> Vec<&'static str> {
        // A token confined to a namespace may do nothing outside it, whatever it holds
        // (as `check` refuses it).
        if let Some(t) = &who.token
            && t.namespace.is_some()
        {
            let ns = hcl::VaultCap::ALL
                .iter()
                .find_map(|&c| vault_map::coffer_check(vault_path, c))
                .and_then(|(_, _, ns)| ns);
            if !ns.is_some_and(|ns| t.covers(&ns)) {
                return vec!["deny"];
            }
        }
        if self.holds_root(who) {
            return vec!["root"];
        }
        if self.policies_broken() {
            return vec!["deny"];
        }
        let caps = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .vault_capabilities(who.caller(), vault_path);
        match caps.map(hcl::VaultCaps::words) {
            None => vec!["root"],
            Some(words) if words.is_empty() => vec!["deny"],
            Some(words) => words,
        }
    }

    /// Whether `capability` would be granted (for choosing between create and update).
    pub fn grants(
        &self,
        who: &Principal,
        capability: Capability,
        path: &str,
        namespace: Option<&str>,
    ) -> bool {
        self.check(who, capability, path, namespace).is_ok()
    }

    /// The policies and bindings: the file's and the store's.
    pub fn policies(&self) -> (PolicySet, PolicySet) {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        (self.file.clone(), loaded.stored.clone())
    }

    /// Puts a policy in the store (blocking). The file's policies and `root` cannot be
    /// changed here.
    pub fn put_policy(
        &self,
        store: &Arc<dyn SecretStore>,
        name: &str,
        text: &PolicyText,
        actor: &str,
    ) -> Result<(), CoreError> {
        policy::check_policy_name(name).map_err(invalid)?;
        if name == policy::ROOT_POLICY || self.file.policies.contains_key(name) {
            return Err(CoreError::InvalidRequest(format!(
                "policy {name} is {}; it cannot be changed at run time",
                if name == policy::ROOT_POLICY {
                    "built in"
                } else {
                    "defined in the policy file"
                }
            )));
        }
        let doc = PolicyDoc::from_text(text).map_err(invalid)?;
        self.change(store, actor, |set| {
            set.policies.insert(name.to_owned(), doc);
            Ok(())
        })
    }

    /// Deletes a policy from the store (blocking); bindings to it are dropped too.
    pub fn delete_policy(
        &self,
        store: &Arc<dyn SecretStore>,
        name: &str,
        actor: &str,
    ) -> Result<(), CoreError> {
        self.change(store, actor, |set| {
            if set.policies.remove(name).is_none() {
                return Err(CoreError::Store(coffer_store::StoreError::NotFound(
                    "policy",
                )));
            }
            for names in set.subjects.values_mut() {
                names.retain(|n| n != name);
            }
            set.subjects.retain(|_, names| !names.is_empty());
            Ok(())
        })
    }

    /// Binds `subject` to `policies` in the store, replacing its binding (none: unbinds).
    pub fn bind(
        &self,
        store: &Arc<dyn SecretStore>,
        subject: &str,
        policies: Vec<String>,
        actor: &str,
    ) -> Result<(), CoreError> {
        let subject = Subject::parse(subject).map_err(invalid)?;
        let engine = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.change(store, actor, |set| {
            for p in &policies {
                if !engine.has_policy(p) && !set.policies.contains_key(p) {
                    return Err(CoreError::InvalidRequest(format!(
                        "there is no policy named {p}"
                    )));
                }
            }
            if policies.is_empty() {
                set.subjects.remove(&subject);
            } else {
                set.subjects.insert(subject, policies);
            }
            Ok(())
        })
    }

    fn change(
        &self,
        store: &Arc<dyn SecretStore>,
        actor: &str,
        f: impl FnOnce(&mut PolicySet) -> Result<(), CoreError>,
    ) -> Result<(), CoreError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        // The change applies to the policies as stored now, not as loaded here: another hub
        // sharing the store may have changed them since (its change is kept).
        let file = &self.file;
        let (fresh, version) = system::load_policies(store, &|n| file.policies.contains_key(n))?;
        let (mut set, broken) = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            match fresh {
                Ok(set) => (set, None),
                Err(why) => (
                    loaded.stored.clone(),
                    Some(Broken {
                        why,
                        replaceable: true,
                    }),
                ),
            }
        };
        match &broken {
            Some(b) if !b.replaceable => {
                return Err(CoreError::Unavailable(
                    "the stored policies cannot be read now, so they cannot be changed; \
                     retry once the store answers"
                        .to_owned(),
                ));
            }
            Some(b) => tracing::warn!(
                error = %b.why,
                "replacing the stored policies that could not be loaded (the store keeps \
                 the old set as an earlier version)"
            ),
            None => {}
        }
        f(&mut set)?;
        system::save_policies(store, &set, actor, version).map_err(|e| match e {
            CoreError::Store(StoreError::Conflict(_)) => CoreError::Store(StoreError::Conflict(
                "the policies changed meanwhile (on another hub sharing the store); try again",
            )),
            e => e,
        })?;
        self.install(&set);
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        loaded.stored = set;
        loaded.broken = None;
        Ok(())
    }

    /// A token's record by accessor.
    pub fn token(&self, accessor: &str) -> Option<Arc<TokenRecord>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .by_accessor(accessor)
            .cloned()
    }

    /// Whether the token with this accessor is still good now, by the rules gate 3 applies
    /// to a token a request carries: known (not revoked), not expired, and no ancestor revoked
    /// or expired. What a long-lived request (a watch) asks again as it goes.
    pub fn token_alive(&self, accessor: &str) -> Result<(), &'static str> {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let record = loaded
            .tokens
            .by_accessor(accessor)
            .ok_or("the token is not valid (unknown or revoked)")?;
        loaded.tokens.alive(record, Timestamp::now())
    }

    /// Every live token's record.
    pub fn tokens(&self) -> Vec<Arc<TokenRecord>> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .all()
    }
}

/// A refusal that names the capability, the path, and a rule that would grant it.
fn denied_advice(who: &str, capability: Capability, path: &str, namespace: Option<&str>) -> String {
    let parent = match path.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/*"),
        None => path.to_owned(),
    };
    let mut text = format!(
        "{who} needs \"{capability}\" on \"{path}\" (grant it with a policy rule: path \
         \"{parent}\" capabilities [\"{capability}\"]"
    );
    if let Some(vault) = vault_map::advice(capability, path, namespace) {
        text.push_str(&format!(", or in HCL {vault}"));
    }
    text.push(')');
    text
}

fn invalid(e: PolicyError) -> CoreError {
    CoreError::InvalidRequest(e.0)
}
