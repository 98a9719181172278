//! Making, renewing and revoking tokens, with Vault's rules (DESIGN.md, Tokens):
//!
//! - a new token carries only policies its creator holds (a creator holding `root` may give
//!   any, so only root makes root tokens), and is confined to no wider a namespace;
//! - a token made by a token is that token's child; revoking a token revokes its
//!   descendants; an orphan (no parent) needs `sudo` on `sys/token` and must be asked for;
//! - its max expiry is fixed when it is made (its explicit max TTL, never past its
//!   parent's) and no renewal moves its expiry past it.
//!
//! These are the rules of the operation, checked here once for the socket and HTTP alike.

use std::sync::{Arc, PoisonError};

use coffer_store::{SecretStore, StoreError};
use coffer_types::{Capability, Timestamp};

use super::policy::{DEFAULT_POLICY, ROOT_POLICY};
use super::token::{MAX_TOKEN_DEPTH, MAX_TOKEN_TTL, Minted, TokenRecord, TokenSpec};
use super::{AccessControl, Principal, system, token};
use crate::CoreError;

/// Where token management is checked.
const AREA: &str = "sys/token";

fn not_found() -> CoreError {
    CoreError::Store(coffer_store::StoreError::NotFound("token"))
}

impl AccessControl {
    /// Gate 5 for making a token: `create` on `sys/token` (and `sudo` there for an orphan)
    /// for the namespace the new token is confined to; and every policy it is to carry
    /// (`default` when none is named) held by its creator, unless the creator holds `root`.
    /// Answers the namespace the token is confined to: the one asked for, or a confined
    /// creator's own.
    pub fn check_token_create(
        &self,
        who: &Principal,
        policies: &[String],
        namespace: Option<&str>,
        orphan: bool,
    ) -> Result<Option<String>, CoreError> {
        let namespace = self.may_make(who, AREA, namespace, orphan)?;
        let held = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held(who.caller());
        if held.iter().any(|p| p == ROOT_POLICY) {
            return Ok(namespace);
        }
        let default = [DEFAULT_POLICY.to_owned()];
        let asked = if policies.is_empty() {
            &default[..]
        } else {
            policies
        };
        if let Some(p) = asked.iter().find(|p| !held.contains(p)) {
            return Err(CoreError::Denied(format!(
                "{} may not give a token the policy {p}: a new token carries only policies \
                 its creator holds{}",
                who.describe(),
                if p == ROOT_POLICY {
                    " (only root makes root tokens)"
                } else {
                    ""
                }
            )));
        }
        Ok(namespace)
    }

    /// Gate 5 for making a token through the token role `role`: `create` on
    /// `sys/token/roles/<role>` (and `sudo` on `sys/token` for an orphan asked for); the
    /// role decides the policies at gate 7. Answers the namespace, as
    /// [`AccessControl::check_token_create`] does.
    pub fn check_token_create_by_role(
        &self,
        who: &Principal,
        role: &str,
        namespace: Option<&str>,
        orphan: bool,
    ) -> Result<Option<String>, CoreError> {
        self.may_make(who, &format!("{AREA}/roles/{role}"), namespace, orphan)
    }

    /// `create` on `at` for the namespace the new token is confined to (the one asked for,
    /// or a confined creator's own), and `sudo` on `sys/token` for an orphan asked for.
    /// Answers that namespace.
    fn may_make(
        &self,
        who: &Principal,
        at: &str,
        namespace: Option<&str>,
        orphan: bool,
    ) -> Result<Option<String>, CoreError> {
        let namespace = namespace
            .map(str::to_owned)
            .or_else(|| who.token.as_ref().and_then(|t| t.namespace.clone()));
        let ns = namespace.as_deref();
        self.check(who, Capability::Create, at, ns)?;
        if orphan && self.check(who, Capability::Sudo, AREA, ns).is_err() {
            return Err(CoreError::Denied(format!(
                "an orphan token needs `sudo` on {AREA}, which {} does not hold",
                who.describe()
            )));
        }
        Ok(namespace)
    }

    /// Whether `who` holds the policy `name` (its own, or bound to it).
    pub fn holds(&self, who: &Principal, name: &str) -> bool {
        self.engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .held(who.caller())
            .iter()
            .any(|p| p == name || p == ROOT_POLICY)
    }

    /// Makes a token (blocking); answers it with its record. Every policy must exist; a
    /// parent must still be alive, and caps the new token's max expiry.
    pub fn create_token(
        &self,
        store: &Arc<dyn SecretStore>,
        mut spec: TokenSpec,
        actor: &str,
    ) -> Result<Minted, CoreError> {
        if spec.policies.is_empty() {
            return Err(CoreError::InvalidRequest(
                "a token needs at least one policy".to_owned(),
            ));
        }
        let engine = self
            .engine
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(p) = spec.policies.iter().find(|p| !engine.has_policy(p)) {
            return Err(CoreError::InvalidRequest(format!(
                "there is no policy named {p}"
            )));
        }
        if let Some(ns) = &spec.namespace {
            let parsed = coffer_types::Namespace::parse(ns)?;
            if !store.has_namespace(&parsed) {
                return Err(CoreError::NoNamespace(parsed.as_str().to_owned()));
            }
        }
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let minted = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let key = loaded.token_key.as_ref().ok_or(CoreError::Sealed)?;
            if let Some(parent) = &spec.parent {
                // Revoked or expired since the gates: the creator is gone.
                let record =
                    loaded
                        .tokens
                        .by_accessor(parent)
                        .ok_or(CoreError::Unauthenticated(
                            "the token is not valid (unknown or revoked)",
                        ))?;
                loaded
                    .tokens
                    .alive(record, Timestamp::now())
                    .map_err(CoreError::Unauthenticated)?;
                if loaded.tokens.depth(parent) + 1 > MAX_TOKEN_DEPTH {
                    return Err(CoreError::InvalidRequest(format!(
                        "tokens nest at most {MAX_TOKEN_DEPTH} deep"
                    )));
                }
                spec.ceiling = record.max_expires;
            }
            token::mint(key, spec, actor.to_owned())?
        };
        system::save_token(store, &minted.hash, &minted.record, actor, true)?;
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .insert(minted.hash, minted.record.clone());
        Ok(minted)
    }

    /// Revokes a token by accessor, and every token descended from it (blocking). Answers
    /// the accessors revoked, the token's first.
    ///
    /// Deleting the token's own record is the revocation: from that commit on its
    /// descendants are dead too (a token is alive only while its parent is), whatever
    /// happens next. They leave memory at once; their records are deleted after, and any
    /// a crash or a failed write left behind are removed when the store is next opened.
    pub fn revoke_token(
        &self,
        store: &Arc<dyn SecretStore>,
        accessor: &str,
        actor: &str,
    ) -> Result<Vec<String>, CoreError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let (hash, family) = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let hash = loaded.tokens.hash_of(accessor).ok_or_else(not_found)?;
            let family: Vec<(String, Option<[u8; 32]>)> = loaded
                .tokens
                .descendants(accessor)
                .into_iter()
                .map(|a| {
                    let h = loaded.tokens.hash_of(&a);
                    (a, h)
                })
                .collect();
            (hash, family)
        };
        system::delete_token(store, &hash, Some((actor, accessor)))?;
        {
            let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
            loaded.tokens.remove(accessor);
            for (a, _) in &family {
                loaded.tokens.remove(a);
            }
        }
        for (a, h) in &family {
            if let Some(h) = h
                && let Err(e) = system::delete_token(store, h, Some((actor, a)))
            {
                // Dead already (its ancestor's record is gone); removed at the next open.
                tracing::warn!(error = %e, accessor = %a, "a revoked token's record could not be deleted yet");
            }
            tracing::info!(event = "secret_action", action = "token_revoke", accessor = %a, parent_revoked = %accessor, "token revoked with its ancestor");
        }
        let mut revoked = vec![accessor.to_owned()];
        revoked.extend(family.into_iter().map(|(a, _)| a));
        Ok(revoked)
    }

    /// Revokes a token by accessor and leaves its children as orphans (Vault's
    /// `revoke-orphan`; blocking). Answers the accessor revoked.
    ///
    /// The children are written parentless before the token's own record is deleted: a
    /// crash between the two leaves live orphans beside a live parent, never a child whose
    /// parent is gone (which would be dead, the opposite of what was asked).
    pub fn revoke_token_orphan(
        &self,
        store: &Arc<dyn SecretStore>,
        accessor: &str,
        actor: &str,
    ) -> Result<Vec<String>, CoreError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let (hash, children) = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let hash = loaded.tokens.hash_of(accessor).ok_or_else(not_found)?;
            let children: Vec<([u8; 32], TokenRecord)> = loaded
                .tokens
                .all()
                .into_iter()
                .filter(|r| r.parent.as_deref() == Some(accessor))
                .filter_map(|r| {
                    let h = loaded.tokens.hash_of(&r.accessor)?;
                    let mut orphan = (*r).clone();
                    orphan.parent = None;
                    Some((h, orphan))
                })
                .collect();
            (hash, children)
        };
        for (h, record) in &children {
            // A child revoked meanwhile (on another hub sharing the store) stays revoked.
            match system::save_token(store, h, record, actor, false) {
                Err(CoreError::Store(StoreError::NotFound(_))) => continue,
                other => other?,
            }
            self.loaded
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .tokens
                .insert(*h, record.clone());
        }
        system::delete_token(store, &hash, Some((actor, accessor)))?;
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .remove(accessor);
        Ok(vec![accessor.to_owned()])
    }

    /// Renews a token by accessor (blocking): its expiry becomes now plus its time to
    /// live, but never later than its max expiry (for a record made before max expiries
    /// were kept: ten years after it was made).
    pub fn renew_token(
        &self,
        store: &Arc<dyn SecretStore>,
        accessor: &str,
        actor: &str,
    ) -> Result<TokenRecord, CoreError> {
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let (hash, record) = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            let hash = loaded.tokens.hash_of(accessor).ok_or_else(not_found)?;
            let mut record = (**loaded.tokens.by_accessor(accessor).ok_or_else(not_found)?).clone();
            if record.max_expires.is_none() {
                record.max_expires =
                    Some(record.created.saturating_add_secs(MAX_TOKEN_TTL.as_secs()));
            }
            (hash, record.renewed(Timestamp::now()))
        };
        system::save_token(store, &hash, &record, actor, false)?;
        self.loaded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .tokens
            .insert(hash, record.clone());
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use coffer_crypto::MasterKey;
    use coffer_store::{EncryptedStore, ListQuery, MemoryBackend};
    use coffer_types::Namespace;

    use super::*;
    use crate::access::AccessConfig;

    fn spec(parent: Option<&str>) -> TokenSpec {
        TokenSpec {
            policies: vec![DEFAULT_POLICY.to_owned()],
            ttl: Duration::from_secs(60),
            namespace: None,
            display_name: None,
            max_ttl: Duration::from_secs(120),
            parent: parent.map(str::to_owned),
            ceiling: None,
        }
    }

    fn stored_tokens(store: &Arc<dyn SecretStore>) -> usize {
        let query = ListQuery {
            prefix: Some("tokens/".to_owned()),
            ..ListQuery::default()
        };
        store
            .list(&Namespace::system(), &query)
            .unwrap()
            .items
            .len()
    }

    #[test]
    fn revocation_takes_the_family_and_a_crash_midway_finishes_at_the_next_open() {
        let master = MasterKey::generate().unwrap();
        let keys = [master.token_key(), master.token_key(), master.token_key()];
        let [k1, k2, k3] = keys;
        let store: Arc<dyn SecretStore> =
            Arc::new(EncryptedStore::open(Arc::new(MemoryBackend::new()), master).unwrap());
        let access = AccessControl::new(AccessConfig::default(), 0);
        access.load(1, &store, k1).unwrap();
        let parent = access.create_token(&store, spec(None), "uid:0").unwrap();
        let child = access
            .create_token(&store, spec(Some(&parent.record.accessor)), "token:p")
            .unwrap();
        let grand = access
            .create_token(&store, spec(Some(&child.record.accessor)), "token:c")
            .unwrap();
        // The child's max expiry is capped by its parent's.
        assert!(child.record.max_expires <= parent.record.max_expires);
        assert_eq!(stored_tokens(&store), 3);
        let revoked = access
            .revoke_token(&store, &child.record.accessor, "uid:0")
            .unwrap();
        assert_eq!(
            revoked,
            vec![child.record.accessor.clone(), grand.record.accessor.clone()]
        );
        assert_eq!(stored_tokens(&store), 1);
        assert!(access.token(&grand.record.accessor).is_none());

        // A crash right after the revocation's commit (the parent's record deleted, its
        // descendants' not yet): they are dead, and removed at the next open.
        let child = access
            .create_token(&store, spec(Some(&parent.record.accessor)), "token:p")
            .unwrap();
        access
            .create_token(&store, spec(Some(&child.record.accessor)), "token:c")
            .unwrap();
        system::delete_token(&store, &parent.hash, None).unwrap();
        assert_eq!(stored_tokens(&store), 2);
        let restarted = AccessControl::new(AccessConfig::default(), 0);
        restarted.load(2, &store, k2).unwrap();
        assert!(restarted.tokens().is_empty());
        assert_eq!(stored_tokens(&store), 0);
        let again = AccessControl::new(AccessConfig::default(), 0);
        again.load(3, &store, k3).unwrap();
        assert!(again.tokens().is_empty());
    }

    #[test]
    fn revoke_orphan_keeps_the_children_alive_across_a_restart() {
        let master = MasterKey::generate().unwrap();
        let (k1, k2) = (master.token_key(), master.token_key());
        let store: Arc<dyn SecretStore> =
            Arc::new(EncryptedStore::open(Arc::new(MemoryBackend::new()), master).unwrap());
        let access = AccessControl::new(AccessConfig::default(), 0);
        access.load(1, &store, k1).unwrap();
        let parent = access.create_token(&store, spec(None), "uid:0").unwrap();
        let child = access
            .create_token(&store, spec(Some(&parent.record.accessor)), "token:p")
            .unwrap();
        let grand = access
            .create_token(&store, spec(Some(&child.record.accessor)), "token:c")
            .unwrap();
        let revoked = access
            .revoke_token_orphan(&store, &parent.record.accessor, "uid:0")
            .unwrap();
        assert_eq!(revoked, vec![parent.record.accessor.clone()]);
        assert!(access.token(&parent.record.accessor).is_none());
        let orphan = access.token(&child.record.accessor).unwrap();
        assert!(orphan.orphan());
        assert!(access.token_alive(&grand.record.accessor).is_ok());
        let restarted = AccessControl::new(AccessConfig::default(), 0);
        restarted.load(2, &store, k2).unwrap();
        assert_eq!(restarted.tokens().len(), 2);
        assert!(restarted.token_alive(&grand.record.accessor).is_ok());
    }
}
