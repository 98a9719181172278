//! Key slots: the master key stored wrapped once per slot, any one of which opens it
//! (DESIGN.md, Key hierarchy; as LUKS does).
//!
//! A slot record holds what is needed to rebuild its wrapping key (a salt and Argon2id
//! parameters, a key file's path, later a TPM-sealed blob and PCR selection) and the master
//! key wrapped under that key with AES-256-GCM, bound to the slot's id and kind. The record
//! is public; without the slot's secret (key file, passphrase, recovery key, TPM) it is noise.
//!
//! Adding a kind (the TPM slots) means a new [`SlotParams`] variant and a new way to make a
//! [`SlotKey`]; wrapping and unwrapping stay as they are.

use std::path::PathBuf;

use coffer_types::Timestamp;

use crate::aead::Aad;
use crate::kdf::{self, Argon2Params, context};
use crate::{CryptoError, MasterKey, RecoveryKey, SecretBytes, aead};

/// Length of a key file.
pub const KEY_FILE_LEN: usize = 32;
/// Length of a passphrase slot's salt.
pub const SALT_LEN: usize = 16;

pub use coffer_types::SlotKind;

/// What a slot keeps to rebuild its wrapping key. Public data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[non_exhaustive]
pub enum SlotParams {
    /// A key file at `path`.
    File {
        /// Absolute path of the key file.
        path: PathBuf,
    },
    /// A passphrase.
    Passphrase {
        /// Per-slot random salt.
        #[serde(with = "b64")]
        salt: Vec<u8>,
        /// Argon2id cost.
        argon2: Argon2Params,
    },
    /// The recovery key.
    Recovery {},
    /// A TPM-sealed node key.
    Tpm {
        /// The PCR policy it is sealed to, e.g. `sha256:7`.
        pcrs: String,
        /// The sealed object's public part (TPM2B_PUBLIC, marshalled).
        #[serde(with = "b64")]
        public: Vec<u8>,
        /// The sealed object's private part (encrypted by the TPM).
        #[serde(with = "b64")]
        private: Vec<u8>,
    },
    /// A TPM-sealed node key and a passphrase.
    #[serde(rename = "tpm+passphrase")]
    TpmPassphrase {
        /// The PCR policy the node key is sealed to.
        pcrs: String,
        /// The sealed object's public part.
        #[serde(with = "b64")]
        public: Vec<u8>,
        /// The sealed object's private part.
        #[serde(with = "b64")]
        private: Vec<u8>,
        /// Per-slot random salt for the passphrase.
        #[serde(with = "b64")]
        salt: Vec<u8>,
        /// Argon2id cost.
        argon2: Argon2Params,
    },
}

impl SlotParams {
    /// The slot kind these parameters belong to.
    pub fn kind(&self) -> SlotKind {
        match self {
            Self::File { .. } => SlotKind::File,
            Self::Passphrase { .. } => SlotKind::Passphrase,
            Self::Recovery {} => SlotKind::Recovery,
            Self::Tpm { .. } => SlotKind::Tpm,
            Self::TpmPassphrase { .. } => SlotKind::TpmPassphrase,
        }
    }

    /// The PCR policy of a TPM slot.
    pub fn pcrs(&self) -> Option<&str> {
        match self {
            Self::Tpm { pcrs, .. } | Self::TpmPassphrase { pcrs, .. } => Some(pcrs),
            _ => None,
        }
    }

    /// The sealed node key of a TPM slot: (public, private).
    pub fn sealed(&self) -> Option<(&[u8], &[u8])> {
        match self {
            Self::Tpm {
                public, private, ..
            }
            | Self::TpmPassphrase {
                public, private, ..
            } => Some((public, private)),
            _ => None,
        }
    }

    /// A fresh salt, for a new `tpm+passphrase` slot.
    pub fn new_salt() -> Result<Vec<u8>, CryptoError> {
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
        Ok(salt)
    }

    /// Parameters for a new passphrase slot, with a fresh salt.
    pub fn new_passphrase(argon2: Argon2Params) -> Result<Self, CryptoError> {
        argon2.validate()?;
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(|_| CryptoError::Random)?;
        Ok(Self::Passphrase { salt, argon2 })
    }
}

/// A slot's wrapping key, rebuilt from the slot's secret.
pub struct SlotKey(SecretBytes);

impl SlotKey {
    /// From a key file's contents (exactly 32 bytes).
    pub fn from_key_file(contents: &SecretBytes) -> Result<Self, CryptoError> {
        if contents.len() != KEY_FILE_LEN {
            return Err(CryptoError::KeyLength {
                expected: KEY_FILE_LEN,
                got: contents.len(),
            });
        }
        Ok(Self(kdf::derive(context::FILE_SLOT, contents)))
    }

    /// From a passphrase and the slot's parameters. Costs an Argon2id run.
    pub fn from_passphrase(
        passphrase: &SecretBytes,
        params: &SlotParams,
    ) -> Result<Self, CryptoError> {
        let SlotParams::Passphrase { salt, argon2 } = params else {
            return Err(CryptoError::Malformed("not a passphrase slot"));
        };
        let stretched = kdf::argon2id(passphrase, salt, *argon2)?;
        Ok(Self(kdf::derive(context::PASSPHRASE_SLOT, &stretched)))
    }

    /// From the recovery key.
    pub fn from_recovery(key: &RecoveryKey) -> Self {
        Self(kdf::derive(context::RECOVERY_SLOT, key.bytes()))
    }

    /// From a node key the TPM unsealed (a `tpm` slot).
    pub fn from_node_key(node: &SecretBytes) -> Self {
        Self(kdf::derive(context::TPM_SLOT, node))
    }

    /// From a node key and a passphrase (a `tpm+passphrase` slot): both are needed. Costs an
    /// Argon2id run.
    pub fn from_node_key_and_passphrase(
        node: &SecretBytes,
        passphrase: &SecretBytes,
        params: &SlotParams,
    ) -> Result<Self, CryptoError> {
        let SlotParams::TpmPassphrase { salt, argon2, .. } = params else {
            return Err(CryptoError::Malformed("not a tpm+passphrase slot"));
        };
        let stretched = kdf::argon2id(passphrase, salt, *argon2)?;
        let mut both = SecretBytes::zeroed(node.len() + stretched.len());
        both.expose_secret_mut()[..node.len()].copy_from_slice(node.expose_secret());
        both.expose_secret_mut()[node.len()..].copy_from_slice(stretched.expose_secret());
        Ok(Self(kdf::derive(context::TPM_PASSPHRASE_SLOT, &both)))
    }
}

/// One slot as stored: its parameters and the master key wrapped under its key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SlotRecord {
    /// Unique within the store.
    pub id: u32,
    /// When the slot was added.
    pub created: Timestamp,
    /// How to rebuild the wrapping key.
    #[serde(flatten)]
    pub params: SlotParams,
    /// The wrapped master key.
    #[serde(with = "b64")]
    pub wrapped: Vec<u8>,
}

impl SlotRecord {
    fn aad(id: u32, kind: SlotKind) -> Aad {
        Aad::new("coffer slot v1").with_u32(id).with(kind.as_str())
    }

    /// Wraps `master` under `key` as slot `id`.
    pub fn wrap(
        id: u32,
        params: SlotParams,
        key: &SlotKey,
        master: &MasterKey,
    ) -> Result<Self, CryptoError> {
        let wrapped = aead::seal(
            &key.0,
            master.bytes().expose_secret(),
            &Self::aad(id, params.kind()),
        )?;
        Ok(Self {
            id,
            created: Timestamp::now(),
            params,
            wrapped,
        })
    }

    /// Opens the master key with `key`; [`CryptoError::Decrypt`] when it is not this slot's.
    pub fn unwrap_master(&self, key: &SlotKey) -> Result<MasterKey, CryptoError> {
        let bytes = aead::open(
            &key.0,
            &self.wrapped,
            &Self::aad(self.id, self.params.kind()),
        )?;
        MasterKey::from_bytes(bytes)
    }

    /// The slot's kind.
    pub fn kind(&self) -> SlotKind {
        self.params.kind()
    }
}

pub(crate) mod b64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&data_encoding::BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        data_encoding::BASE64
            .decode(s.as_bytes())
            .map_err(|_| serde::de::Error::custom("invalid base64"))
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
    fn every_kind_opens_the_same_master() {
        let master = MasterKey::generate().unwrap();
        let probe = Aad::new("probe");
        let env = master.seal(b"x", &probe).unwrap();

        let file = SecretBytes::random(32).unwrap();
        let file_slot = SlotRecord::wrap(
            1,
            SlotParams::File { path: "/k".into() },
            &SlotKey::from_key_file(&file).unwrap(),
            &master,
        )
        .unwrap();
        let pass = SecretBytes::copy_from(b"correct horse");
        let params = SlotParams::new_passphrase(cheap()).unwrap();
        let pass_slot = SlotRecord::wrap(
            2,
            params.clone(),
            &SlotKey::from_passphrase(&pass, &params).unwrap(),
            &master,
        )
        .unwrap();
        let rk = RecoveryKey::generate().unwrap();
        let rec_slot = SlotRecord::wrap(
            3,
            SlotParams::Recovery {},
            &SlotKey::from_recovery(&rk),
            &master,
        )
        .unwrap();

        for (slot, key) in [
            (&file_slot, SlotKey::from_key_file(&file).unwrap()),
            (
                &pass_slot,
                SlotKey::from_passphrase(&pass, &params).unwrap(),
            ),
            (&rec_slot, SlotKey::from_recovery(&rk)),
        ] {
            let opened = slot.unwrap_master(&key).unwrap();
            assert_eq!(opened.open(&env, &probe).unwrap().expose_secret(), b"x");
            // Round trip through the stored form.
            let json = serde_json::to_string(slot).unwrap();
            let back: SlotRecord = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, slot);
        }

        let wrong = SecretBytes::copy_from(b"wrong horse");
        assert_eq!(
            pass_slot
                .unwrap_master(&SlotKey::from_passphrase(&wrong, &params).unwrap())
                .err(),
            Some(CryptoError::Decrypt)
        );
    }

    #[test]
    fn a_wrapped_key_moved_to_another_slot_fails() {
        let master = MasterKey::generate().unwrap();
        let rk = RecoveryKey::generate().unwrap();
        let mut slot = SlotRecord::wrap(
            1,
            SlotParams::Recovery {},
            &SlotKey::from_recovery(&rk),
            &master,
        )
        .unwrap();
        slot.id = 2;
        assert!(slot.unwrap_master(&SlotKey::from_recovery(&rk)).is_err());
    }

    #[test]
    fn tpm_slots_need_the_node_key_and_their_passphrase() {
        let master = MasterKey::generate().unwrap();
        let node = SecretBytes::random(32).unwrap();
        let tpm = SlotRecord::wrap(
            1,
            SlotParams::Tpm {
                pcrs: "sha256:7".into(),
                public: vec![1, 2],
                private: vec![3],
            },
            &SlotKey::from_node_key(&node),
            &master,
        )
        .unwrap();
        assert!(tpm.unwrap_master(&SlotKey::from_node_key(&node)).is_ok());
        let other = SecretBytes::random(32).unwrap();
        assert!(tpm.unwrap_master(&SlotKey::from_node_key(&other)).is_err());

        let params = SlotParams::TpmPassphrase {
            pcrs: "sha256:0,7".into(),
            public: vec![],
            private: vec![],
            salt: SlotParams::new_salt().unwrap(),
            argon2: cheap(),
        };
        let pass = SecretBytes::copy_from(b"pass");
        let key = SlotKey::from_node_key_and_passphrase(&node, &pass, &params).unwrap();
        let both = SlotRecord::wrap(2, params.clone(), &key, &master).unwrap();
        assert!(both.unwrap_master(&key).is_ok());
        let wrong_pass =
            SlotKey::from_node_key_and_passphrase(&node, &SecretBytes::copy_from(b"nope"), &params)
                .unwrap();
        assert!(both.unwrap_master(&wrong_pass).is_err());
        let wrong_node = SlotKey::from_node_key_and_passphrase(&other, &pass, &params).unwrap();
        assert!(both.unwrap_master(&wrong_node).is_err());
        // Stored form.
        let json = serde_json::to_string(&both).unwrap();
        assert!(json.contains(r#""kind":"tpm+passphrase""#), "{json}");
        let back: SlotRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.kind(), SlotKind::TpmPassphrase);
        assert_eq!(back.params.pcrs(), Some("sha256:0,7"));
    }

    #[test]
    fn key_files_must_be_32_bytes() {
        assert!(SlotKey::from_key_file(&SecretBytes::copy_from(&[0; 31])).is_err());
        assert!(SlotKey::from_key_file(&SecretBytes::copy_from(&[0; 33])).is_err());
    }

    #[test]
    fn stored_form_is_stable() {
        let json = r#"{"id":4,"created":"2023-11-14T22:13:20.000Z","kind":"passphrase","salt":"AAAAAAAAAAAAAAAAAAAAAA==","argon2":{"memory_kib":65536,"iterations":3,"parallelism":1},"wrapped":"AQ=="}"#;
        let slot: SlotRecord = serde_json::from_str(json).unwrap();
        assert_eq!(slot.kind(), SlotKind::Passphrase);
        assert_eq!(serde_json::to_string(&slot).unwrap(), json);
    }
}
