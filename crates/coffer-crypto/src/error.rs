//! The one error type of coffer-crypto.

/// What went wrong in a cryptographic operation. Messages never include key material or
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// Authentication failed: a wrong key, or ciphertext that was altered or moved.
    #[error("decryption failed: wrong key, or the data was altered or moved to another record")]
    Decrypt,
    /// Bytes that do not have the expected format.
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// A key of the wrong length.
    #[error("a key must be {expected} bytes, got {got}")]
    KeyLength {
        /// Bytes expected.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Argon2id refused its parameters.
    #[error("argon2id parameters rejected: {0}")]
    Argon2(String),
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Random,
    /// A recovery key that cannot be one (wrong length or alphabet, or a typo).
    #[error("{0}")]
    RecoveryKey(&'static str),
}
