//! The stable error codes every interface speaks (DESIGN.md, Error codes).
//!
//! One enum, mapped to socket JSON here and to HTTP status and CLI exit status in one place
//! each. The strings are a public contract: scripts match on them, so a variant's string never
//! changes once released.

use std::fmt;
use std::str::FromStr;

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The store is sealed: no slot has opened the master key yet.
    Sealed,
    /// The store cannot be used (broken key file, unreadable database).
    StoreUnavailable,
    /// An audit record could not be written, so the request was refused.
    AuditUnavailable,
    /// The caller's identity could not be established (bad or expired token).
    Unauthenticated,
    /// The caller is known but not allowed to do this.
    Denied,
    /// The caller sent too many requests, or the daemon has too many connections.
    RateLimited,
    /// A secret name or namespace outside the grammar.
    InvalidName,
    /// Malformed JSON, an unknown action, a missing or mistyped field.
    InvalidRequest,
    /// A value or request above the configured size limit.
    TooLarge,
    /// No such secret, version or namespace.
    NotFound,
    /// A check-and-set precondition did not hold.
    Conflict,
    /// The TPM refused an operation; `rc` carries its return code.
    Tpm,
    /// TPM NV storage is full.
    NvFull,
    /// The operation is not offered by this store or build.
    Unsupported,
    /// A fault inside coffer; details are in the daemon's log, never in the reply.
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 15] = [
        Self::Sealed,
        Self::StoreUnavailable,
        Self::AuditUnavailable,
        Self::Unauthenticated,
        Self::Denied,
        Self::RateLimited,
        Self::InvalidName,
        Self::InvalidRequest,
        Self::TooLarge,
        Self::NotFound,
        Self::Conflict,
        Self::Tpm,
        Self::NvFull,
        Self::Unsupported,
        Self::Internal,
    ];

    /// The stable snake_case string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sealed => "sealed",
            Self::StoreUnavailable => "store_unavailable",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Unauthenticated => "unauthenticated",
            Self::Denied => "denied",
            Self::RateLimited => "rate_limited",
            Self::InvalidName => "invalid_name",
            Self::InvalidRequest => "invalid_request",
            Self::TooLarge => "too_large",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Tpm => "tpm",
            Self::NvFull => "nv_full",
            Self::Unsupported => "unsupported",
            Self::Internal => "internal",
        }
    }

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
            Self::NotFound => 66,
            Self::Sealed | Self::StoreUnavailable | Self::AuditUnavailable => 69,
            Self::RateLimited => 75,
            Self::Unauthenticated | Self::Denied => 77,
            Self::Conflict => 73,
            Self::Tpm | Self::NvFull => 74,
            Self::Unsupported => 64,
            Self::Internal => 70,
        }
    }
}

/// TPM_RC_HANDLE for an NV index: the index is not defined.
pub const RC_NV_UNDEFINED: &str = "0x18b";
/// TPM_RC_NV_SPACE: no room left in NV.
pub const RC_NV_SPACE: &str = "0x14b";

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownCode;

impl FromStr for ErrorCode {
    type Err = UnknownCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownCode)
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|_| serde::de::Error::custom("unknown error code"))
    }
}

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
                "internal"
            ]
        );
        for code in ErrorCode::ALL {
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
