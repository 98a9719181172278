//! Where a template's secrets come from: the [`Secrets`] a render reads, and the one the
//! agent uses, [`ClientSecrets`] over the daemon's socket.

use std::fmt;

use coffer_client::{Client, ClientError};
use coffer_crypto::SecretBytes;
use coffer_types::{Namespace, SecretMeta};

/// Where a template's secrets come from: the agent passes its socket client
/// ([`ClientSecrets`]).
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

/// [`Secrets`] from the daemon, through the agent's socket client.
pub struct ClientSecrets<'a> {
    client: &'a Client,
    default_ns: Option<String>,
}

impl<'a> ClientSecrets<'a> {
    /// Reads through `client`; a reference without a namespace means `default_ns` (the
    /// daemon's `default` when `None`).
    pub fn new(client: &'a Client, default_ns: Option<String>) -> Self {
        Self { client, default_ns }
    }

    fn missing(&self, namespace: Option<&str>, name: &str, e: &ClientError) -> Missing {
        Missing {
            reference: reference(namespace, name),
            reason: format!("{}: {e}", e.code()),
        }
    }
}

impl Secrets for ClientSecrets<'_> {
    fn value(&self, namespace: Option<&str>, name: &str) -> Result<SecretBytes, Missing> {
        let ns = namespace.or(self.default_ns.as_deref());
        self.client
            .get(ns, name, None)
            .map_err(|e| self.missing(namespace, name, &e))
    }

    fn meta(&self, namespace: Option<&str>, name: &str) -> Result<SecretMeta, Missing> {
        let ns = namespace.or(self.default_ns.as_deref());
        self.client
            .meta(ns, name)
            .map_err(|e| self.missing(namespace, name, &e))
    }

    fn default_namespace(&self) -> &str {
        self.default_ns.as_deref().unwrap_or(Namespace::DEFAULT)
    }
}
