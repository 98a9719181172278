//! The passphrase wrap of a namespace key: what lets a namespace be locked (DESIGN.md, "A
//! namespace may also be locked by its own passphrase").
//!
//! The namespace key is wrapped under the master key (as every namespace key is), and that
//! wrap is sealed again under a key derived by Argon2id from the namespace's passphrase (a
//! random salt; the parameters stored beside it). So the passphrase wrap alone opens
//! nothing: it takes the passphrase AND the master key. Locking removes the master-only wrap
//! from the store, so while locked the master key alone opens nothing of the namespace.

use crate::aead::{self, Aad};
use crate::kdf::{self, Argon2Params, context};
use crate::{CryptoError, MasterKey, NamespaceKey, SecretBytes};

/// Bytes of the random salt.
const SALT_LEN: usize = 16;

/// A namespace key sealed under its passphrase and the master key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PassphraseWrap {
    /// The Argon2id salt.
    #[serde(with = "crate::slot::b64")]
    pub salt: Vec<u8>,
    /// The Argon2id cost.
    pub argon2: Argon2Params,
    /// The master key's wrap of the namespace key, sealed under the passphrase's key.
    #[serde(with = "crate::slot::b64")]
    pub sealed: Vec<u8>,
}

fn passphrase_key(
    passphrase: &SecretBytes,
    salt: &[u8],
    params: Argon2Params,
) -> Result<SecretBytes, CryptoError> {
    let stretched = kdf::argon2id(passphrase, salt, params)?;
    Ok(kdf::derive(context::NAMESPACE_PASSPHRASE, &stretched))
}

impl PassphraseWrap {
    /// Wraps `key` under `master` and then under `passphrase` (Argon2id with `params` and a
    /// fresh salt). `aad` binds the wrap to its namespace and key generation.
    pub fn wrap(
        master: &MasterKey,
        key: &NamespaceKey,
        passphrase: &SecretBytes,
        params: Argon2Params,
        aad: &Aad,
    ) -> Result<Self, CryptoError> {
        params.validate()?;
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
        let inner = zeroize::Zeroizing::new(master.wrap(key, aad)?);
        let outer = passphrase_key(passphrase, &salt, params)?;
        let sealed = aead::seal(&outer, &inner, aad)?;
        Ok(Self {
            salt,
            argon2: params,
            sealed,
        })
    }

    /// The namespace key, with the passphrase and the master key. `Ok(None)` when the
    /// passphrase does not open the wrap (a wrong passphrase, or an altered wrap); an error
    /// when the wrap opens but the master key does not open what is inside (the wrong
    /// store), or the parameters are unfit.
    pub fn unwrap(
        &self,
        master: &MasterKey,
        passphrase: &SecretBytes,
        aad: &Aad,
    ) -> Result<Option<NamespaceKey>, CryptoError> {
        self.argon2.validate()?;
        let outer = passphrase_key(passphrase, &self.salt, self.argon2)?;
        let inner = match aead::open(&outer, &self.sealed, aad) {
            Ok(inner) => inner,
            Err(CryptoError::Decrypt) => return Ok(None),
            Err(e) => return Err(e),
        };
        master.unwrap_key(inner.expose_secret(), aad).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Params {
        Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn opens_only_with_the_passphrase_and_the_master_key() {
        let master = MasterKey::generate().unwrap();
        let other = MasterKey::generate().unwrap();
        let key = NamespaceKey::generate().unwrap();
        let aad = Aad::new("test").with("ns");
        let pass = SecretBytes::copy_from(b"correct horse");
        let wrap = PassphraseWrap::wrap(&master, &key, &pass, cheap(), &aad).unwrap();
        let back = wrap.unwrap(&master, &pass, &aad).unwrap().expect("opens");
        // The same key: what one seals, the other opens.
        let sealed = key.seal(b"v", &aad).unwrap();
        assert_eq!(back.open(&sealed, &aad).unwrap().expose_secret(), b"v");
        let wrong = SecretBytes::copy_from(b"wrong");
        assert!(wrap.unwrap(&master, &wrong, &aad).unwrap().is_none());
        assert!(wrap.unwrap(&other, &pass, &aad).is_err());
        let elsewhere = Aad::new("test").with("other");
        assert!(wrap.unwrap(&master, &pass, &elsewhere).unwrap().is_none());
        // The stored form holds neither the passphrase nor the key's wrap in the clear.
        let json = serde_json::to_string(&wrap).unwrap();
        assert!(!json.contains("correct horse"));
        let parsed: PassphraseWrap = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed, wrap);
    }
}
