//! Where a template's secrets come from: the [`Secrets`] a render reads (the agent's reads
//! through the daemon's socket, recording the versions it rendered from: agent/sink.rs).

use std::fmt;

use coffer_crypto::SecretBytes;
use coffer_types::{Namespace, SecretMeta};

/// Where a template's secrets come from.
pub trait Secrets {
    /// The newest value (`None` namespace: the agent's default namespace).
    fn value(&self, namespace: Option<&str>, name: &str) -> Result<SecretBytes, Missing>;
    /// Metadata: version, kind, description, custom metadata, times.
    fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, Missing>;
    /// The namespace a reference without one means; [`Rendered::uses`](super::Rendered::uses) names it.
    fn default_namespace(&self) -> &str {
        Namespace::DEFAULT
    }
}

/// Why a secret could not be had: its reference and the daemon's code and message (never a
/// value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The secret, as [`reference()`] writes it.
    pub reference: String,
    /// Why: the daemon's code and message, e.g. `not_found: no secret named db`.
    pub reason: String,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret {} is unavailable: {}",
            self.reference, self.reason
        )
    }
}

/// How errors name a secret: `name`, or `namespace/name` when the template gave one.
pub fn reference(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}
