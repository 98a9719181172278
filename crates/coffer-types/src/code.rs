//! The stable error codes every interface speaks (DESIGN.md, Error codes).
//!
//! One enum, mapped to socket JSON here and to HTTP status and CLI exit status in one place
//! each. The strings are a public contract: scripts match on them, so a variant's string never
//! changes once released.

string_enum! {
    /// A stable, machine-readable error code.
    pub enum ErrorCode {
        /// The store is sealed: no slot has opened the master key yet.
        Sealed = "sealed",
        /// The store cannot be used (broken key file, unreadable database).
        StoreUnavailable = "store_unavailable",
        /// An audit record could not be written, so the request was refused.
        AuditUnavailable = "audit_unavailable",
        /// The audit log does not match its checkpoint (records, files or its directory
        /// missing); requests are refused until an operator acknowledges the gap.
        AuditTampered = "audit_tampered",
        /// The access policies kept in the store could not be loaded: every caller that
        /// does not hold `root` is refused until an operator fixes them.
        PolicyUnavailable = "policy_unavailable",
        /// The caller's identity could not be established (bad or expired token).
        Unauthenticated = "unauthenticated",
        /// The caller is known but not allowed to do this.
        Denied = "denied",
        /// The caller sent too many requests, or the daemon has too many connections.
        RateLimited = "rate_limited",
        /// A secret name or namespace outside the grammar.
        InvalidName = "invalid_name",
        /// Malformed JSON, an unknown action, a missing or mistyped field.
        InvalidRequest = "invalid_request",
        /// A value or request above the configured size limit.
        TooLarge = "too_large",
        /// No such secret, version or namespace.
        NotFound = "not_found",
        /// A check-and-set precondition did not hold.
        Conflict = "conflict",
        /// The TPM refused an operation; `rc` carries its return code.
        Tpm = "tpm",
        /// TPM NV storage is full.
        NvFull = "nv_full",
        /// The operation is not offered by this store or build.
        Unsupported = "unsupported",
        /// A fault inside coffer; details are in the daemon's log, never in the reply.
        Internal = "internal",
        /// Stored data failed its integrity check: a row edited, swapped with another or put
        /// back from a copy outside coffer. Nothing of it is served.
        Integrity = "integrity",
        /// The event feed no longer holds the revision asked for (it is older than the
        /// retention window, or newer than this store's feed): read the current state, then
        /// watch from now.
        Resync = "resync",
        /// The namespace is locked by its own passphrase: nothing in it is served until an
        /// operator unlocks it (`coffer namespaces unlock NS`).
        Locked = "locked",
    }
    /// A string that is not one of the codes.
    error UnknownCode = "unknown error code";
}

impl ErrorCode {
    /// The TPM return code a device-daemon client expects with this code, if any.
    ///
    /// The device daemon (reference 000) answers a missing name as an undefined NV index
    /// does (TPM_RC_HANDLE for an NV index, 0x18b) and an exhausted NV as TPM_RC_NV_SPACE
    /// (0x14b). Clients written against it check these.
    pub const fn implied_rc(self) -> Option<&'static str> {
        match self {
            Self::NotFound => Some(RC_NV_UNDEFINED),
            Self::NvFull => Some(RC_NV_SPACE),
            _ => None,
        }
    }

    /// The process exit status the CLI uses for this code (sysexits-like, stable).
    pub const fn exit_status(self) -> u8 {
        match self {
            Self::InvalidName | Self::InvalidRequest | Self::TooLarge => 65,
            Self::NotFound | Self::Resync => 66,
            Self::Sealed
            | Self::StoreUnavailable
            | Self::AuditUnavailable
            | Self::AuditTampered
            | Self::PolicyUnavailable
            | Self::Locked => 69,
            Self::RateLimited => 75,
            Self::Unauthenticated | Self::Denied => 77,
            Self::Conflict => 73,
            Self::Tpm | Self::NvFull => 74,
            Self::Unsupported => 64,
            Self::Internal | Self::Integrity => 70,
        }
    }
}

/// TPM_RC_HANDLE for an NV index: the index is not defined.
pub const RC_NV_UNDEFINED: &str = "0x18b";
/// TPM_RC_NV_SPACE: no room left in NV.
pub const RC_NV_SPACE: &str = "0x14b";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_the_documented_ones_and_round_trip() {
        let strings: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            strings,
            [
                "sealed",
                "store_unavailable",
                "audit_unavailable",
                "audit_tampered",
                "policy_unavailable",
                "unauthenticated",
                "denied",
                "rate_limited",
                "invalid_name",
                "invalid_request",
                "too_large",
                "not_found",
                "conflict",
                "tpm",
                "nv_full",
                "unsupported",
                "internal",
                "integrity",
                "resync",
                "locked"
            ]
        );
        for &code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
            assert!(code.exit_status() >= 64);
        }
        assert!("nope".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn device_daemon_return_codes() {
        assert_eq!(ErrorCode::NotFound.implied_rc(), Some("0x18b"));
        assert_eq!(ErrorCode::NvFull.implied_rc(), Some("0x14b"));
        assert_eq!(ErrorCode::Denied.implied_rc(), None);
    }
}
