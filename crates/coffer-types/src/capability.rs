//! Capabilities a policy grants over a path (DESIGN.md, Identity, policy and gates).

string_enum! {
    /// One thing an identity may do to secrets under a path.
    #[derive(PartialOrd, Ord)]
    pub enum Capability {
        /// Read a value.
        Read = "read",
        /// List names.
        List = "list",
        /// Read metadata, never the value.
        Meta = "meta",
        /// Create a secret that does not exist.
        Create = "create",
        /// Write a new version of an existing secret.
        Update = "update",
        /// Have the daemon mint a value.
        Generate = "generate",
        /// Rotate a secret.
        Rotate = "rotate",
        /// Soft-delete a secret.
        Revoke = "revoke",
        /// Erase ciphertexts for good (and delete a secret with every version).
        Destroy = "destroy",
        /// Everything, and the operations on the daemon itself (seal, unseal, policies).
        Sudo = "sudo",
        /// Refuse, whatever else is granted.
        Deny = "deny",
    }
    /// A string that is not a capability.
    error UnknownCapability = "unknown capability";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for &c in Capability::ALL {
            assert_eq!(c.as_str().parse::<Capability>().unwrap(), c);
        }
        assert_eq!(Capability::ALL.len(), 11);
    }
}
