//! The fleet formats' one error type.

/// What can go wrong in the fleet's formats. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Input that is not what it must be.
    #[error("{0}")]
    Invalid(&'static str),
    /// A payload or bundle that does not open with this key and binding (or was changed).
    #[error("the payload does not open with this key")]
    Crypto,
    /// Issuing or reading a certificate failed.
    #[error("fleet PKI: {0}")]
    Pki(String),
    /// A message that cannot be read or written.
    #[error("fleet wire: {0}")]
    Wire(String),
    /// The connection failed.
    #[error("fleet connection: {0}")]
    Io(#[from] std::io::Error),
}
