//! coffer's key material and the operations on it.
//!
//! - [`SecretBytes`]: locked, zeroized, unprintable bytes for every value and key.
//! - [`aead`]: the AES-256-GCM envelope with associated data binding a ciphertext to its row.
//! - [`kdf`]: context-separated BLAKE3 derivations and Argon2id.
//! - [`keys`]: the master key, namespace keys and the index key as distinct types.
//! - [`slot`]: key slots that each wrap the master key; [`recovery`]: the recovery key.
//! - [`mint`]: values the daemon generates; [`compute`]: HMAC and basic-auth results;
//!   [`pwhash`]: yescrypt password hashes as crypt(3) writes them.
//!
//! Only [`locked`] uses `unsafe` (to call `mlock`).
#![deny(unsafe_code)]

pub mod aead;
pub mod compute;
mod error;
pub mod kdf;
pub mod keys;
pub mod locked;
pub mod mint;
pub mod nslock;
pub mod pwhash;
pub mod recovery;
mod secret;
pub mod slot;

pub use error::CryptoError;
pub use keys::{AuditKeys, BackupKey, IndexKey, MasterKey, NamespaceKey, RowHash, TokenKey};
pub use recovery::RecoveryKey;
pub use secret::SecretBytes;
pub use slot::{SlotKey, SlotKind, SlotParams, SlotRecord};
