//! Gate 7 (with its validation) for AppRole: roles, secret-ids and the login. Gate 5 for
//! managing them (`sudo` on `sys/approle`) is in `gates`; a login needs no token, and a
//! failed one is counted against its peer as a bad token is (see `call`).
//!
//! Every change to AppRole's records, a login's spending of a use included, runs under one
//! lock, so two logins racing for a secret-id's last use cannot both win.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_store::{SecretStore, StoreError};
use coffer_types::Timestamp;

use super::state::{Gated, Service, blocking, invalid, stored};
use crate::access::approle::{
    self, MAX_METADATA_BYTES, MAX_METADATA_ENTRIES, MAX_SECRET_IDS, Role, SecretIdRecord,
};
use crate::access::token::{DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
use crate::access::{DEFAULT_POLICY, TokenSpec};
use crate::op::{AppRoleOp, RoleInput, SecretIdInput};
use crate::{AppRoleReply, CoreError, Gate, Refusal, Reply};

/// Serializes every change to AppRole's records (one daemon owns its store).
static CHANGING: Mutex<()> = Mutex::new(());

/// The most policies a role names.
const MAX_ROLE_POLICIES: usize = 64;

/// What every failed login answers, whatever was wrong (Vault's words).
pub(crate) const INVALID_LOGIN: &str = "invalid role or secret ID";

fn not_found(what: &'static str) -> CoreError {
    CoreError::Store(StoreError::NotFound(what))
}

fn reply(r: AppRoleReply) -> Reply {
    Reply::AppRole(Box::new(r))
}

fn after(now: Timestamp, secs: u64) -> Timestamp {
    let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    Timestamp::from_millis(now.as_millis().saturating_add(ms))
}

fn check_ttl(field: &str, secs: Option<u64>) -> Gated<()> {
    if secs.is_some_and(|s| s > MAX_TOKEN_TTL.as_secs()) {
        return Err(invalid(format!(
            "{field} is at most 10 years ({} seconds)",
            MAX_TOKEN_TTL.as_secs()
        )));
    }
    Ok(())
}

fn check_role_name(name: &str) -> Gated<()> {
    if !approle::valid_role_name(name) {
        return Err(invalid(format!(
            "a role name is 1 to {} of A-Z a-z 0-9 _ - . (not {} bytes as given)",
            approle::MAX_ROLE_NAME,
            name.len()
        )));
    }
    Ok(())
}

fn check_role_input(input: &RoleInput) -> Gated<()> {
    check_ttl("secret_id_ttl", input.secret_id_ttl)?;
    check_ttl("token_ttl", input.token_ttl)?;
    check_ttl("token_max_ttl", input.token_max_ttl)?;
    if let Some(policies) = &input.token_policies {
        if policies.len() > MAX_ROLE_POLICIES {
            return Err(invalid(format!(
                "a role names at most {MAX_ROLE_POLICIES} policies"
            )));
        }
        if let Some(p) = policies.iter().find(|p| p.is_empty() || p.len() > 128) {
            return Err(invalid(format!(
                "a policy name is 1 to 128 bytes (one is {} bytes)",
                p.len()
            )));
        }
    }
    Ok(())
}

fn check_secret_id_input(input: &SecretIdInput) -> Gated<()> {
    check_ttl("ttl", input.ttl)?;
    let bytes: usize = input.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if input.metadata.len() > MAX_METADATA_ENTRIES || bytes > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "a secret-id's metadata is at most {MAX_METADATA_ENTRIES} entries and \
             {MAX_METADATA_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The policies a login's token carries: `default` (unless the role leaves it out) and the
/// role's, each once, sorted as Vault shows them.
fn login_policies(role: &Role) -> Vec<String> {
    let mut set: BTreeSet<String> = role.token_policies.iter().cloned().collect();
    if !role.token_no_default_policy {
        set.insert(DEFAULT_POLICY.to_owned());
    }
    set.into_iter().collect()
}

impl Service {
    pub(super) async fn approle(
        &self,
        who: &crate::access::Principal,
        op: AppRoleOp,
    ) -> Gated<Reply> {
        if let Some(name) = op.role() {
            check_role_name(name)?;
        }
        match &op {
            AppRoleOp::RolePut { input, .. } => check_role_input(input)?,
            AppRoleOp::SecretIdCreate { input, .. } => check_secret_id_input(input)?,
            AppRoleOp::RoleIdSet { role_id, .. } if role_id.is_empty() || role_id.len() > 256 => {
                return Err(invalid("a role-id is 1 to 256 bytes"));
            }
            _ => {}
        }
        let store = self.store()?;
        let key = self
            .vault
            .token_key()
            .ok_or(Refusal::at(Gate::Seal, CoreError::Sealed))?;
        if let AppRoleOp::Login { role_id, secret_id } = op {
            return self.login(store, key, role_id, secret_id).await;
        }
        let _ = who;
        blocking(move || {
            let _changing = CHANGING.lock().unwrap_or_else(PoisonError::into_inner);
            manage(&store, &key, op)
        })
        .await
        .map(reply)
        .map_err(|e| match e {
            e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
            e => stored(e),
        })
    }

    async fn login(
        &self,
        store: Arc<dyn SecretStore>,
        key: TokenKey,
        role_id: String,
        secret_id: SecretBytes,
    ) -> Gated<Reply> {
        let access = self.access.clone();
        let outcome = blocking(move || {
            let _changing = CHANGING.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(role) = approle::role_by_id(&store, &role_id)? else {
                return Ok(None);
            };
            let hash = approle::hash_secret_id(&key, &secret_id);
            drop(secret_id);
            let Some(record) = approle::secret_id(&store, &role.name, &hash)? else {
                return Ok(None);
            };
            if record.expired(Timestamp::now()) {
                approle::delete_secret_id(&store, &role.name, &hash)?;
                return Ok(None);
            }
            let ttl = match role.token_ttl {
                0 => DEFAULT_TOKEN_TTL,
                s => Duration::from_secs(s),
            };
            let max_ttl = match role.token_max_ttl {
                0 => MAX_TOKEN_TTL,
                s => Duration::from_secs(s),
            };
            let spec = TokenSpec {
                policies: login_policies(&role),
                ttl: ttl.min(max_ttl),
                namespace: None,
                display_name: Some("approle".to_owned()),
                max_ttl,
                parent: None,
                ceiling: None,
            };
            let actor = format!("approle:{}", role.name);
            // The use is spent before the token is made, in the store's transaction: of two
            // logins racing for the last use (through two hubs sharing the store), one gets
            // it. A token that then fails to be made costs the use, never the limit.
            if !approle::spend_secret_id(&store, &role.name, &hash)? {
                return Ok(None);
            }
            let minted = access.create_token(&store, spec, &actor)?;
            Ok(Some((minted, role.name)))
        })
        .await
        .map_err(|e| match e {
            e @ CoreError::InvalidRequest(_) => Refusal::at(Gate::Validation, e),
            e => stored(e),
        })?;
        let Some((minted, role)) = outcome else {
            return Err(Refusal::at(
                Gate::Identity,
                CoreError::InvalidRequest(INVALID_LOGIN.to_owned()),
            ));
        };
        Ok(reply(AppRoleReply::Login {
            token: minted.token,
            record: minted.record,
            role,
        }))
    }
}

/// Role and secret-id management (blocking; under the lock).
fn manage(
    store: &Arc<dyn SecretStore>,
    key: &TokenKey,
    op: AppRoleOp,
) -> Result<AppRoleReply, CoreError> {
    let need_role = |name: &str| approle::role(store, name)?.ok_or_else(|| not_found("role"));
    Ok(match op {
        AppRoleOp::RolePut { name, input } => {
            let mut role = match approle::role(store, &name)? {
                Some(r) => r,
                None => Role {
                    name: name.clone(),
                    role_id: approle::uuid()?,
                    token_policies: Vec::new(),
                    secret_id_ttl: 0,
                    secret_id_num_uses: 0,
                    token_ttl: 0,
                    token_max_ttl: 0,
                    token_no_default_policy: false,
                },
            };
            if let Some(mut p) = input.token_policies {
                p.sort();
                p.dedup();
                role.token_policies = p;
            }
            role.secret_id_ttl = input.secret_id_ttl.unwrap_or(role.secret_id_ttl);
            role.secret_id_num_uses = input.secret_id_num_uses.unwrap_or(role.secret_id_num_uses);
            role.token_ttl = input.token_ttl.unwrap_or(role.token_ttl);
            role.token_max_ttl = input.token_max_ttl.unwrap_or(role.token_max_ttl);
            role.token_no_default_policy = input
                .token_no_default_policy
                .unwrap_or(role.token_no_default_policy);
            approle::save_role(store, &role)?;
            AppRoleReply::Done
        }
        AppRoleOp::RoleGet { name } => AppRoleReply::Role(need_role(&name)?),
        AppRoleOp::RoleList => {
            let names = approle::role_names(store)?;
            if names.is_empty() {
                return Err(not_found("role"));
            }
            AppRoleReply::Keys(names)
        }
        AppRoleOp::RoleDelete { name } => {
            approle::delete_role(store, &name)?;
            AppRoleReply::Done
        }
        AppRoleOp::RoleIdGet { name } => AppRoleReply::RoleId(need_role(&name)?.role_id),
        AppRoleOp::RoleIdSet { name, role_id } => {
            let mut role = need_role(&name)?;
            if approle::role_by_id(store, &role_id)?.is_some_and(|r| r.name != name) {
                return Err(CoreError::InvalidRequest(
                    "another role has this role-id; choose another".to_owned(),
                ));
            }
            role.role_id = role_id;
            approle::save_role(store, &role)?;
            AppRoleReply::Done
        }
        AppRoleOp::SecretIdCreate { name, input } => {
            let role = need_role(&name)?;
            if approle::secret_ids(store, &name)?.len() >= MAX_SECRET_IDS {
                return Err(CoreError::InvalidRequest(format!(
                    "the role {name} has {MAX_SECRET_IDS} live secret-ids, the most it may; \
                     destroy some first"
                )));
            }
            let mut ttl = input.ttl.unwrap_or(role.secret_id_ttl);
            if role.secret_id_ttl > 0 && (ttl == 0 || ttl > role.secret_id_ttl) {
                ttl = role.secret_id_ttl;
            }
            let now = Timestamp::now();
            let record = SecretIdRecord {
                accessor: approle::uuid()?,
                created: now,
                expires: (ttl > 0).then(|| after(now, ttl)),
                ttl,
                num_uses: input.num_uses.unwrap_or(role.secret_id_num_uses),
                metadata: input.metadata,
            };
            let secret_id = SecretBytes::from_vec(approle::uuid()?.into_bytes());
            let hash = approle::hash_secret_id(key, &secret_id);
            approle::save_secret_id(store, &name, &hash, &record)?;
            AppRoleReply::SecretId { secret_id, record }
        }
        AppRoleOp::SecretIdLookup { name, secret_id } => {
            need_role(&name)?;
            let hash = approle::hash_secret_id(key, &secret_id);
            match approle::secret_id(store, &name, &hash)? {
                Some(r) if !r.expired(Timestamp::now()) => AppRoleReply::SecretIdInfo(r),
                _ => return Err(not_found("secret-id")),
            }
        }
        AppRoleOp::SecretIdDestroy { name, secret_id } => {
            need_role(&name)?;
            let hash = approle::hash_secret_id(key, &secret_id);
            approle::delete_secret_id(store, &name, &hash)?;
            AppRoleReply::Done
        }
        AppRoleOp::AccessorLookup { name, accessor } => {
            need_role(&name)?;
            approle::secret_ids(store, &name)?
                .into_iter()
                .find(|(_, r)| r.accessor == accessor)
                .map(|(_, r)| AppRoleReply::SecretIdInfo(r))
                .ok_or_else(|| not_found("secret-id"))?
        }
        AppRoleOp::AccessorDestroy { name, accessor } => {
            need_role(&name)?;
            let (hash, _) = approle::secret_ids(store, &name)?
                .into_iter()
                .find(|(_, r)| r.accessor == accessor)
                .ok_or_else(|| not_found("secret-id"))?;
            approle::delete_secret_id(store, &name, &hash)?;
            AppRoleReply::Done
        }
        AppRoleOp::SecretIdList { name } => {
            need_role(&name)?;
            let mut all: Vec<String> = approle::secret_ids(store, &name)?
                .into_iter()
                .map(|(_, r)| r.accessor)
                .collect();
            if all.is_empty() {
                return Err(not_found("secret-id"));
            }
            all.sort();
            AppRoleReply::Keys(all)
        }
        AppRoleOp::Login { .. } => {
            return Err(CoreError::InvalidRequest(
                "a login is not a management operation".to_owned(),
            ));
        }
    })
}
