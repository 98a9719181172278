//! Key derivations, each under its own context string (DESIGN.md, Key hierarchy).
//!
//! BLAKE3's `derive_key` for keys derived from high-entropy keys; Argon2id for passphrases.
//! A context names the application, the date it was fixed and the purpose, and is never
//! reused for another purpose.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes};

/// Contexts for [`derive()`]. Changing one makes every key derived from it unrecoverable.
pub mod context {
    /// The key that turns (namespace, name) into a row's lookup hash.
    pub const INDEX: &str = "coffer 2026-11-22 row index key";
    /// The wrapping key of a `file` slot, from the key file's 32 bytes.
    pub const FILE_SLOT: &str = "coffer 2026-11-22 file slot wrapping key";
    /// The wrapping key of a `passphrase` slot, from the Argon2id output.
    pub const PASSPHRASE_SLOT: &str = "coffer 2026-11-22 passphrase slot wrapping key";
    /// The wrapping key of the `recovery` slot, from the recovery key.
    pub const RECOVERY_SLOT: &str = "coffer 2026-11-22 recovery slot wrapping key";
    /// The wrapping key of a `tpm` slot, from the TPM-sealed node key.
    pub const TPM_SLOT: &str = "coffer 2026-11-22 tpm slot wrapping key";
    /// The wrapping key of a `tpm+passphrase` slot, from the node key and the Argon2id output.
    pub const TPM_PASSPHRASE_SLOT: &str = "coffer 2026-11-22 tpm+passphrase slot wrapping key";
    /// The key that turns names into `hmac-sha256:` hashes in the audit log.
    pub const AUDIT_NAMES: &str = "coffer 2026-11-22 audit name key";
    /// The key that authenticates the audit log's checkpoints of its chain head.
    pub const AUDIT_CHECKPOINT: &str = "coffer 2026-11-22 audit checkpoint key";
    /// The key that hashes tokens for lookup.
    pub const TOKEN_HASH: &str = "coffer 2026-11-22 token hash key";
    /// The key that encrypts namespace paths in the store.
    pub const NAMESPACE_NAMES: &str = "coffer 2026-11-22 namespace name key";
    /// The key a namespace's passphrase wrap is sealed under, from the Argon2id output.
    pub const NAMESPACE_PASSPHRASE: &str = "coffer 2026-12-01 namespace passphrase wrap key";
    /// The key that authenticates a backup's manifest.
    pub const BACKUP_MAC: &str = "coffer 2026-12-01 backup manifest key";
}

/// A 32-byte key derived from `material` for one purpose.
pub fn derive(context: &'static str, material: &SecretBytes) -> SecretBytes {
    let out = Zeroizing::new(blake3::derive_key(context, material.expose_secret()));
    SecretBytes::copy_from(out.as_ref())
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// m = 64 MiB, t = 3, p = 1 (DESIGN.md).
    fn default() -> Self {
        Self {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    fn to_params(self) -> Result<Params, CryptoError> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| CryptoError::Argon2(e.to_string()))
    }

    /// Checks the parameters without hashing.
    pub fn validate(self) -> Result<(), CryptoError> {
        self.to_params().map(drop)
    }
}

/// Argon2id of `passphrase` with `salt`: 32 bytes in locked memory.
pub fn argon2id(
    passphrase: &SecretBytes,
    salt: &[u8],
    params: Argon2Params,
) -> Result<SecretBytes, CryptoError> {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_params()?);
    SecretBytes::fill_with(32, |out| {
        argon
            .hash_password_into(passphrase.expose_secret(), salt, out)
            .map(|()| 32)
            .map_err(|e| CryptoError::Argon2(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_separate_keys() {
        let m = SecretBytes::copy_from(&[7u8; 32]);
        let a = derive(context::INDEX, &m);
        let b = derive(context::FILE_SLOT, &m);
        assert!(!a.ct_eq(&b));
        assert!(a.ct_eq(&derive(context::INDEX, &m)));
    }

    #[test]
    fn blake3_derive_key_vector() {
        // BLAKE3's test_vectors.json, input of 1 byte, first 32 bytes of derive_key (also
        // checked with the Python `blake3` package).
        let m = SecretBytes::copy_from(&[0u8]);
        let k = derive("BLAKE3 2019-12-27 16:29:52 test vectors context", &m);
        assert_eq!(
            data_encoding::HEXLOWER.encode(k.expose_secret()),
            "b3e2e340a117a499c6cf2398a19ee0d29cca2bb7404c73063382693bf66cb06c"
        );
    }

    #[test]
    fn argon2id_reference_vector() {
        // Computed with the reference implementation's CLI (Debian package `argon2`):
        // echo -n password | argon2 somesalt -id -t 2 -m 16 -p 1 -l 32 -r
        let pass = SecretBytes::copy_from(b"password");
        let params = Argon2Params {
            memory_kib: 65536,
            iterations: 2,
            parallelism: 1,
        };
        let out = argon2id(&pass, b"somesalt", params).unwrap();
        assert_eq!(
            data_encoding::HEXLOWER.encode(out.expose_secret()),
            "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
        );
    }

    #[test]
    fn bad_params_are_refused() {
        let p = Argon2Params {
            memory_kib: 1,
            iterations: 1,
            parallelism: 1,
        };
        assert!(p.validate().is_err());
    }
}
