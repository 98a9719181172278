//! AppRole's records, kept in the store's own namespace beside tokens (see `system`):
//!
//! - `approle/roles/<name>`: a role's settings and its role-id (kind `kv`);
//! - `approle/secret-ids/<name>/<hex of the secret-id's keyed hash>`: one secret-id's record
//!   (its accessor, expiry, uses left, metadata), never the secret-id itself.
//!
//! A secret-id is hashed with the token key under a prefix of its own, so no secret-id hash
//! can ever be taken for a token's.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_crypto::{SecretBytes, TokenKey};
use coffer_store::{SecretStore, StoreError};
use coffer_types::{Kind, Timestamp};
use serde::{Deserialize, Serialize};

use super::records::{encode, get, names, put, remove};
use crate::CoreError;

const ROLES: &str = "approle/roles/";
const SECRET_IDS: &str = "approle/secret-ids/";
/// What a secret-id is hashed under, apart from tokens.
const HASH_PREFIX: &[u8] = b"coffer-approle-secret-id\0";

/// The longest role name, in bytes.
pub const MAX_ROLE_NAME: usize = 128;
/// The most metadata entries a secret-id keeps.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// The most bytes of metadata (keys and values) a secret-id keeps.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// The most live secret-ids one role may have.
pub const MAX_SECRET_IDS: usize = 10_000;

/// A role: what a login with it gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Role {
    /// Its name.
    pub name: String,
    /// Its role-id (not secret: the secret-id is the credential).
    pub role_id: String,
    /// The policies its tokens carry.
    pub token_policies: Vec<String>,
    /// How long a secret-id lives, in seconds (0: until destroyed).
    pub secret_id_ttl: u64,
    /// How many logins a secret-id allows (0: any number).
    pub secret_id_num_uses: u64,
    /// Its tokens' time to live in seconds (0: the default).
    pub token_ttl: u64,
    /// Its tokens' max time to live in seconds (0: the default).
    pub token_max_ttl: u64,
    /// Leave `default` out of its tokens' policies.
    pub token_no_default_policy: bool,
}

/// A secret-id's record: never the secret-id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SecretIdRecord {
    /// Its accessor (public: for listing and destroying).
    pub accessor: String,
    /// When it was made.
    pub created: Timestamp,
    /// When it expires (`None`: never).
    pub expires: Option<Timestamp>,
    /// Its time to live as made, in seconds (0: none).
    pub ttl: u64,
    /// Logins left (0: any number).
    pub num_uses: u64,
    /// Its metadata.
    pub metadata: BTreeMap<String, String>,
}

impl SecretIdRecord {
    /// Whether it has expired at `now`.
    pub fn expired(&self, now: Timestamp) -> bool {
        self.expires.is_some_and(|e| now >= e)
    }
}

/// Whether `name` may name a role: 1 to 128 of `A-Za-z0-9_.-`.
pub fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROLE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

/// A random UUID (version 4), as Vault's role-ids, secret-ids and accessors are.
pub fn uuid() -> Result<String, CoreError> {
    let raw = SecretBytes::random(16).map_err(|e| CoreError::Store(StoreError::Crypto(e)))?;
    let mut b = [0u8; 16];
    b.copy_from_slice(raw.expose_secret());
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

/// The keyed hash a secret-id is kept as.
pub fn hash_secret_id(key: &TokenKey, secret_id: &SecretBytes) -> [u8; 32] {
    super::token::domain_hash(key, HASH_PREFIX, secret_id)
}

/// A role, if it exists.
pub fn role(store: &Arc<dyn SecretStore>, role: &str) -> Result<Option<Role>, CoreError> {
    get(store, &format!("{ROLES}{role}"), "AppRole role")
}

/// Writes a role.
pub fn save_role(store: &Arc<dyn SecretStore>, role: &Role) -> Result<(), CoreError> {
    put(
        store,
        &format!("{ROLES}{}", role.name),
        encode("an AppRole role", role)?,
    )
}

/// Every role's name.
pub fn role_names(store: &Arc<dyn SecretStore>) -> Result<Vec<String>, CoreError> {
    let mut all = names(store, ROLES)?;
    all.retain(|n| !n.contains('/'));
    Ok(all)
}

/// The role whose role-id is `role_id`.
pub fn role_by_id(store: &Arc<dyn SecretStore>, role_id: &str) -> Result<Option<Role>, CoreError> {
    for n in role_names(store)? {
        if let Some(r) = role(store, &n)?
            && r.role_id == role_id
        {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Deletes a role and its secret-ids; answers whether it existed.
pub fn delete_role(store: &Arc<dyn SecretStore>, role: &str) -> Result<bool, CoreError> {
    for hex in secret_id_hashes(store, role)? {
        remove(store, &format!("{SECRET_IDS}{role}/{hex}"))?;
    }
    remove(store, &format!("{ROLES}{role}"))
}

fn secret_id_at(role: &str, hash: &[u8; 32]) -> String {
    format!(
        "{SECRET_IDS}{role}/{}",
        data_encoding::HEXLOWER.encode(hash)
    )
}

/// The hex hashes of a role's secret-ids.
fn secret_id_hashes(store: &Arc<dyn SecretStore>, role: &str) -> Result<Vec<String>, CoreError> {
    names(store, &format!("{SECRET_IDS}{role}/"))
}

/// A secret-id's record, by its hash.
pub fn secret_id(
    store: &Arc<dyn SecretStore>,
    role: &str,
    hash: &[u8; 32],
) -> Result<Option<SecretIdRecord>, CoreError> {
    get(store, &secret_id_at(role, hash), "AppRole secret-id")
}

/// Writes a secret-id's record.
pub fn save_secret_id(
    store: &Arc<dyn SecretStore>,
    role: &str,
    hash: &[u8; 32],
    record: &SecretIdRecord,
) -> Result<(), CoreError> {
    put(
        store,
        &secret_id_at(role, hash),
        encode("an AppRole secret-id", record)?,
    )
}

/// Spends one use of a secret-id, decided in the store's transaction so that two daemons
/// sharing the store cannot both spend the last one: a single-use record is deleted (the
/// caller wins if its delete removed it), a counted one written over the version read
/// (retried when another writer got there first). Answers whether a use was spent; an
/// unlimited one (`num_uses` 0) always is.
pub fn spend_secret_id(
    store: &Arc<dyn SecretStore>,
    role: &str,
    hash: &[u8; 32],
) -> Result<bool, CoreError> {
    let at = secret_id_at(role, hash);
    for _ in 0..8 {
        let Some((bytes, version)) = super::records::get_versioned(store, &at)? else {
            return Ok(false);
        };
        let mut record: SecretIdRecord = serde_json::from_slice(bytes.expose_secret())
            .map_err(super::records::malformed("AppRole secret-id"))?;
        match record.num_uses {
            0 => return Ok(true),
            1 => return remove(store, &at),
            _ => record.num_uses -= 1,
        }
        let json = SecretBytes::from_vec(encode("an AppRole secret-id", &record)?);
        match super::records::put_bytes_over(store, &at, &json, Kind::Kv, Some(version)) {
            Ok(()) => return Ok(true),
            Err(CoreError::Store(coffer_store::StoreError::Conflict(_))) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CoreError::Unavailable(
        "the secret-id is being used from elsewhere at this moment; try again".to_owned(),
    ))
}

/// Deletes a secret-id's record; answers whether it existed.
pub fn delete_secret_id(
    store: &Arc<dyn SecretStore>,
    role: &str,
    hash: &[u8; 32],
) -> Result<bool, CoreError> {
    remove(store, &secret_id_at(role, hash))
}

/// Every secret-id record of a role, with its hash; expired ones are removed on the way.
pub fn secret_ids(
    store: &Arc<dyn SecretStore>,
    role: &str,
) -> Result<Vec<([u8; 32], SecretIdRecord)>, CoreError> {
    let now = Timestamp::now();
    let mut all = Vec::new();
    for hex in secret_id_hashes(store, role)? {
        let Ok(bytes) = data_encoding::HEXLOWER.decode(hex.as_bytes()) else {
            continue;
        };
        let Ok(hash) = <[u8; 32]>::try_from(bytes.as_slice()) else {
            continue;
        };
        if let Some(record) = secret_id(store, role, &hash)? {
            if record.expired(now) {
                delete_secret_id(store, role, &hash)?;
            } else {
                all.push((hash, record));
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_v4_shape() {
        let a = uuid().unwrap();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, uuid().unwrap());
    }

    #[test]
    fn role_names_are_plain() {
        assert!(valid_role_name("web-app_1.x"));
        assert!(!valid_role_name("a/b") && !valid_role_name("") && !valid_role_name(".."));
        assert!(!valid_role_name(&"a".repeat(129)));
    }

    #[test]
    fn a_secret_id_hash_is_not_its_token_hash() {
        let key = coffer_crypto::MasterKey::generate().unwrap().token_key();
        let id = SecretBytes::copy_from(b"same");
        assert_ne!(hash_secret_id(&key, &id), key.hash(&id));
    }
}
