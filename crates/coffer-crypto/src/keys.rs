//! The key hierarchy's keys as distinct types (DESIGN.md, Key hierarchy).
//!
//! master key ──wraps──> namespace keys ──encrypt──> entries and names
//!      └──derives──> index key ──hashes──> (namespace, name) into row lookups
//!
//! Each type exposes operations, never bytes, so a namespace key cannot be passed where a
//! master key is expected and no key can be printed.

use crate::aead::{self, Aad};
use crate::kdf::{self, context};
use crate::{CryptoError, SecretBytes};

const KEY_LEN: usize = 32;

fn checked(bytes: SecretBytes) -> Result<SecretBytes, CryptoError> {
    if bytes.len() == KEY_LEN {
        Ok(bytes)
    } else {
        Err(CryptoError::KeyLength {
            expected: KEY_LEN,
            got: bytes.len(),
        })
    }
}

/// The store's master key: 32 random bytes, in locked memory only while unsealed, stored
/// only wrapped by key slots.
pub struct MasterKey(SecretBytes);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        SecretBytes::random(KEY_LEN).map(Self)
    }

    /// An independent copy in its own locked allocation (the vault keeps one to add slots
    /// while the store holds another).
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }

    pub(crate) fn from_bytes(bytes: SecretBytes) -> Result<Self, CryptoError> {
        checked(bytes).map(Self)
    }

    pub(crate) fn bytes(&self) -> &SecretBytes {
        &self.0
    }

    /// Encrypts store records that belong to no namespace (namespace keys, namespace paths).
    pub fn seal(&self, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.0, plaintext, aad)
    }

    /// Decrypts what [`MasterKey::seal`] made.
    pub fn open(&self, envelope: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
        aead::open(&self.0, envelope, aad)
    }

    /// Wraps a namespace key for storage.
    pub fn wrap(&self, key: &NamespaceKey, aad: &Aad) -> Result<Vec<u8>, CryptoError> {
        self.seal(key.0.expose_secret(), aad)
    }

    /// Unwraps a namespace key.
    pub fn unwrap_key(&self, wrapped: &[u8], aad: &Aad) -> Result<NamespaceKey, CryptoError> {
        self.open(wrapped, aad).and_then(checked).map(NamespaceKey)
    }

    /// Wraps `root` (the key every other key is derived from: the store's first master key)
    /// under this master key, as the store header keeps it: base64 of an AES-256-GCM
    /// envelope bound to the store's id (`coffer derivation root v1`).
    pub fn wrap_root(&self, root: &MasterKey, store_id: &str) -> Result<String, CryptoError> {
        let sealed = self.seal(root.0.expose_secret(), &Self::root_aad(store_id))?;
        Ok(data_encoding::BASE64.encode(&sealed))
    }

    /// Opens what [`MasterKey::wrap_root`] made.
    pub fn unwrap_root(&self, wrapped: &str, store_id: &str) -> Result<MasterKey, CryptoError> {
        let sealed = data_encoding::BASE64
            .decode(wrapped.as_bytes())
            .map_err(|_| CryptoError::Decrypt)?;
        self.open(&sealed, &Self::root_aad(store_id))
            .and_then(checked)
            .map(Self)
    }

    fn root_aad(store_id: &str) -> Aad {
        Aad::new("coffer derivation root v1").with(store_id)
    }

    /// The key that turns names into row lookups.
    pub fn index_key(&self) -> IndexKey {
        IndexKey(kdf::derive(context::INDEX, &self.0))
    }

    /// The audit log's keys.
    pub fn audit_keys(&self) -> AuditKeys {
        AuditKeys::new(
            kdf::derive(context::AUDIT_NAMES, &self.0),
            kdf::derive(context::AUDIT_CHECKPOINT, &self.0),
        )
    }

    /// The key that hashes tokens for lookup.
    pub fn token_key(&self) -> TokenKey {
        TokenKey(kdf::derive(context::TOKEN_HASH, &self.0))
    }

    /// The key that authenticates backups' manifests: a backup opens only for whoever also
    /// holds one of the store's slots.
    pub fn backup_key(&self) -> BackupKey {
        BackupKey(kdf::derive(context::BACKUP_MAC, &self.0))
    }
}

/// The key that authenticates a backup's manifest (HMAC-SHA256), derived from the master key.
pub struct BackupKey(SecretBytes);

impl BackupKey {
    /// HMAC-SHA256 of a manifest's bytes.
    pub fn mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, message)
    }

    /// Checks a manifest's MAC in constant time.
    pub fn verify(&self, message: &[u8], mac: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.mac(message)[..], mac).into()
    }
}

/// What a record MAC's message starts with (checkpoint messages start with
/// `coffer audit checkpoint`).
const RECORD_MAC_PREFIX: &[u8] = b"coffer audit record v2\n";

/// What a record tag's message starts with (format 3: the chain carried by the tag).
const RECORD_TAG_PREFIX: &[u8] = b"coffer audit record v3\n";

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The audit log's keys, derived from the master key: one hashes names and namespaces so the
/// log can be searched without showing them, one authenticates records (the keyed chain) and
/// checkpoints of the chain head.
pub struct AuditKeys {
    names: SecretBytes,
    checkpoint: SecretBytes,
    /// HMAC under `checkpoint`, keyed once: a record's MAC clones it instead of keying a new
    /// one (which costs two more SHA-256 compressions per record). Zeroized on drop.
    record: HmacSha256,
}

impl AuditKeys {
    fn new(names: SecretBytes, checkpoint: SecretBytes) -> Self {
        let record = keyed(&checkpoint);
        Self {
            names,
            checkpoint,
            record,
        }
    }

    /// Keys from raw bytes (tests, and verifiers given keys some other way).
    pub fn from_bytes(names: SecretBytes, checkpoint: SecretBytes) -> Result<Self, CryptoError> {
        Ok(Self::new(checked(names)?, checked(checkpoint)?))
    }

    /// `hmac-sha256:<64 hex>` of `text`: what the audit log shows for a name or namespace.
    pub fn name_hash(&self, text: &str) -> String {
        let mut out = String::with_capacity(12 + 64);
        out.push_str("hmac-sha256:");
        out.push_str(&data_encoding::HEXLOWER.encode(&hmac_sha256(&self.names, text.as_bytes())));
        out
    }

    /// HMAC-SHA256 of a checkpoint's bytes.
    pub fn checkpoint_mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.checkpoint, message)
    }

    /// Checks a checkpoint's MAC in constant time.
    pub fn checkpoint_mac_ok(&self, message: &[u8], mac: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.checkpoint_mac(message)[..], mac).into()
    }

    /// HMAC-SHA256 of an audit record line (the chain's keyed link). Under the checkpoint
    /// key, domain-separated from checkpoints by a prefix no checkpoint message starts with.
    pub fn record_mac(&self, line: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.record.clone();
        mac.update(RECORD_MAC_PREFIX);
        mac.update(line);
        mac.finalize().into_bytes().into()
    }

    /// Checks a record's MAC in constant time.
    pub fn record_mac_ok(&self, line: &[u8], mac: &[u8]) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.record_mac(line)[..], mac).into()
    }

    /// A format-3 record's tag: HMAC-SHA256 under the checkpoint key of the previous
    /// record's link (`prev`, at most 255 bytes, its length first) and the line without its
    /// tag, domain-separated from format 2's MACs and from checkpoints by its prefix. The
    /// log keeps the first 16 bytes.
    pub fn record_tag(&self, prev: &[u8], line: &[u8]) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = self.record.clone();
        mac.update(RECORD_TAG_PREFIX);
        // Links are 16 or 32 bytes; a longer one is cut (the length byte still differs).
        let prev = &prev[..prev.len().min(255)];
        mac.update(&[prev.len() as u8]);
        mac.update(prev);
        mac.update(line);
        mac.finalize().into_bytes().into()
    }

    /// Checks the first `tag.len()` (at least 16) bytes of a [`AuditKeys::record_tag`] in
    /// constant time.
    pub fn record_tag_ok(&self, prev: &[u8], line: &[u8], tag: &[u8]) -> bool {
        if tag.len() < 16 || tag.len() > 32 {
            return false;
        }
        let full = self.record_tag(prev, line);
        subtle::ConstantTimeEq::ct_eq(&full[..tag.len()], tag).into()
    }

    /// An independent copy.
    pub fn duplicate(&self) -> Self {
        Self {
            names: self.names.clone(),
            checkpoint: self.checkpoint.clone(),
            record: self.record.clone(),
        }
    }
}

/// Hashes tokens so they are stored and looked up without keeping the token itself.
pub struct TokenKey(SecretBytes);

impl TokenKey {
    /// Keyed BLAKE3 of a token.
    pub fn hash(&self, token: &SecretBytes) -> [u8; 32] {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(self.0.expose_secret());
        let hash = blake3::keyed_hash(&key, token.expose_secret());
        zeroize::Zeroize::zeroize(&mut key);
        *hash.as_bytes()
    }
}

/// HMAC-SHA256 keyed with `key`, ready to clone per message.
fn keyed(key: &SecretBytes) -> HmacSha256 {
    use hmac::KeyInit;
    match HmacSha256::new_from_slice(key.expose_secret()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    }
}

fn hmac_sha256(key: &SecretBytes, message: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key.expose_secret()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A namespace's data key: encrypts its entries and secret names.
pub struct NamespaceKey(SecretBytes);

impl NamespaceKey {
    /// A fresh random namespace key.
    pub fn generate() -> Result<Self, CryptoError> {
        SecretBytes::random(KEY_LEN).map(Self)
    }

    /// An independent copy in its own locked allocation (a key rotation keeps the older
    /// generation beside the new one).
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }

    /// Encrypts under this key.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad) -> Result<Vec<u8>, CryptoError> {
        aead::seal(&self.0, plaintext, aad)
    }

    /// Decrypts under this key.
    pub fn open(&self, envelope: &[u8], aad: &Aad) -> Result<SecretBytes, CryptoError> {
        aead::open(&self.0, envelope, aad)
    }

    /// Decrypts under this key into ordinary memory (see [`aead::open_unlocked`]): only for
    /// what is not kept secret once opened, such as names.
    pub fn open_unlocked(
        &self,
        envelope: &[u8],
        aad: &Aad,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CryptoError> {
        aead::open_unlocked(&self.0, envelope, aad)
    }
}

/// A keyed hash: how rows are found without storing names in the clear.
pub struct IndexKey(SecretBytes);

/// The output of [`IndexKey::hash`].
pub type RowHash = [u8; 32];

impl IndexKey {
    /// Keyed BLAKE3 over length-prefixed `fields`, under a purpose label.
    pub fn hash(&self, purpose: &'static str, fields: &[&[u8]]) -> RowHash {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(self.0.expose_secret());
        let mut hasher = blake3::Hasher::new_keyed(&key);
        zeroize::Zeroize::zeroize(&mut key);
        let mut put = |b: &[u8]| {
            hasher.update(&(b.len() as u64).to_be_bytes());
            hasher.update(b);
        };
        put(purpose.as_bytes());
        for f in fields {
            put(f);
        }
        *hasher.finalize().as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_name_hashes_are_hmac_sha256() {
        // Known answer from `printf 'default/app' | openssl dgst -sha256 -mac HMAC -macopt
        // hexkey:0b0b...0b` (32 bytes of 0x0b).
        let keys = AuditKeys::from_bytes(
            SecretBytes::copy_from(&[0x0b; 32]),
            SecretBytes::copy_from(&[0x0c; 32]),
        )
        .unwrap();
        assert_eq!(
            keys.name_hash("default/app"),
            "hmac-sha256:48213324ca43d00c6018ac227e47591239d476d212a09ae4ab03bf3f330d3743"
        );
        let mac = keys.checkpoint_mac(b"seq 7");
        assert!(keys.checkpoint_mac_ok(b"seq 7", &mac));
        assert!(!keys.checkpoint_mac_ok(b"seq 8", &mac));
        // Derived keys differ by purpose and by store.
        let mk = MasterKey::generate().unwrap();
        let a = mk.audit_keys();
        assert_ne!(
            a.name_hash("x"),
            MasterKey::generate().unwrap().audit_keys().name_hash("x")
        );
        assert_eq!(a.name_hash("x"), a.duplicate().name_hash("x"));
        assert!(!a.checkpoint_mac_ok(b"m", &hmac_sha256(&a.names, b"m")));
    }

    #[test]
    fn namespace_keys_wrap_and_unwrap() {
        let mk = MasterKey::generate().unwrap();
        let nk = NamespaceKey::generate().unwrap();
        let aad = Aad::new("coffer namespace key v1").with("default");
        let wrapped = mk.wrap(&nk, &aad).unwrap();
        let back = mk.unwrap_key(&wrapped, &aad).unwrap();
        let entry = Aad::new("e");
        let env = nk.seal(b"v", &entry).unwrap();
        assert_eq!(back.open(&env, &entry).unwrap().expose_secret(), b"v");
        let other = MasterKey::generate().unwrap();
        assert!(other.unwrap_key(&wrapped, &aad).is_err());
    }

    #[test]
    fn index_hash_depends_on_key_purpose_and_fields() {
        let a = MasterKey::generate().unwrap().index_key();
        let b = MasterKey::generate().unwrap().index_key();
        let h = a.hash("name", &[b"default", b"x"]);
        assert_eq!(h, a.hash("name", &[b"default", b"x"]));
        assert_ne!(h, b.hash("name", &[b"default", b"x"]));
        assert_ne!(h, a.hash("ns", &[b"default", b"x"]));
        assert_ne!(h, a.hash("name", &[b"defaultx"]));
    }
}
