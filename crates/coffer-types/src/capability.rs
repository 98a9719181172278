//! Capabilities a policy grants over a path (DESIGN.md, Identity, policy and gates).

use std::fmt;
use std::str::FromStr;

/// One thing an identity may do to secrets under a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Capability {
    /// Read a value.
    Read,
    /// List names.
    List,
    /// Read metadata, never the value.
    Meta,
    /// Create a secret that does not exist.
    Create,
    /// Write a new version of an existing secret.
    Update,
    /// Have the daemon mint a value.
    Generate,
    /// Rotate a secret.
    Rotate,
    /// Soft-delete a secret.
    Revoke,
    /// Erase ciphertexts for good (and delete a secret with every version).
    Destroy,
    /// Everything, and the operations on the daemon itself (seal, unseal, policies).
    Sudo,
    /// Refuse, whatever else is granted.
    Deny,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 11] = [
        Self::Read,
        Self::List,
        Self::Meta,
        Self::Create,
        Self::Update,
        Self::Generate,
        Self::Rotate,
        Self::Revoke,
        Self::Destroy,
        Self::Sudo,
        Self::Deny,
    ];

    /// The stable string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::List => "list",
            Self::Meta => "meta",
            Self::Create => "create",
            Self::Update => "update",
            Self::Generate => "generate",
            Self::Rotate => "rotate",
            Self::Revoke => "revoke",
            Self::Destroy => "destroy",
            Self::Sudo => "sudo",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability")]
pub struct UnknownCapability;

impl FromStr for Capability {
    type Err = UnknownCapability;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownCapability)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), c);
        }
    }
}
