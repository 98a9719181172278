//! The one error type of coffer-tpm: "the TPM refused" (with its return code) kept apart
//! from "coffer or the TSS library refused" (before or without a TPM answer).

use std::fmt;

use tss_esapi::constants::response_code::Tss2ResponseCode;

/// A TPM 2.0 return code, as `tpm2_rc_decode` and the device daemon print it (`0x99d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TpmRc(pub u32);

impl TpmRc {
    /// TPM_RC_POLICY_FAIL in session 1: the PCRs no longer hold the values sealed to.
    pub const POLICY_FAIL: TpmRc = TpmRc(0x99d);
    /// `TPM_RC_INTEGRITY` on `TPM2_Load`'s private area: the sealed object was not made
    /// under this TPM's parent key (another TPM, or another TPM authorization).
    pub const LOAD_INTEGRITY: TpmRc = TpmRc(0x1df);
    /// TPM_RC_NV_SPACE: no room left in NV.
    pub const NV_SPACE: TpmRc = TpmRc(0x14b);
    /// TPM_RC_NV_DEFINED: the index exists already.
    pub const NV_DEFINED: TpmRc = TpmRc(0x14c);
    /// TPM_RC_NV_UNINITIALIZED: the index was defined and never written.
    pub const NV_UNINITIALIZED: TpmRc = TpmRc(0x14a);
    /// TPM_RC_HANDLE on the first handle: no such NV index.
    pub const NV_HANDLE: TpmRc = TpmRc(0x18b);
}

impl fmt::Display for TpmRc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// What went wrong with the TPM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpmError {
    /// The TPM answered with an error.
    #[error("the TPM refused to {op}: {message} (rc {rc})")]
    Tpm {
        /// What coffer asked.
        op: &'static str,
        /// The return code.
        rc: TpmRc,
        /// The TSS library's description of the code.
        message: String,
    },
    /// coffer or the TSS library refused, before or without an answer from the TPM.
    #[error("could not {op}: {reason}")]
    Refused {
        /// What coffer was doing.
        op: &'static str,
        /// Why.
        reason: String,
    },
    /// No TPM answers at the configured TCTI.
    #[error("no TPM reachable through {tcti}: {reason}")]
    Unreachable {
        /// The TCTI tried.
        tcti: String,
        /// Why.
        reason: String,
    },
    /// The thread that owns the TPM context is gone.
    #[error("the TPM thread stopped")]
    Stopped,
}

impl TpmError {
    /// The TPM's return code, when the TPM answered.
    pub fn rc(&self) -> Option<TpmRc> {
        match self {
            Self::Tpm { rc, .. } => Some(*rc),
            _ => None,
        }
    }

    /// Maps a tss-esapi error for an operation.
    pub(crate) fn from_tss(op: &'static str, e: tss_esapi::Error) -> Self {
        match e {
            tss_esapi::Error::Tss2Error(code) => Self::Tpm {
                op,
                rc: TpmRc(raw_rc(code)),
                message: code.to_string(),
            },
            tss_esapi::Error::WrapperError(kind) => Self::Refused {
                op,
                reason: kind.to_string(),
            },
        }
    }

    pub(crate) fn refused(op: &'static str, reason: impl Into<String>) -> Self {
        Self::Refused {
            op,
            reason: reason.into(),
        }
    }
}

/// tss-esapi 7 has no getter for the raw code; its format structs print it as
/// `Response code value: 0x99d`.
fn raw_rc(code: Tss2ResponseCode) -> u32 {
    let text = match code {
        Tss2ResponseCode::Success => return 0,
        Tss2ResponseCode::FormatZero(z) => z.to_string(),
        Tss2ResponseCode::FormatOne(o) => o.to_string(),
    };
    text.rsplit("0x")
        .next()
        .and_then(|hex| u32::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(u32::MAX)
}

/// Adds the operation to tss-esapi results.
pub(crate) trait TssContext<T> {
    fn during(self, op: &'static str) -> Result<T, TpmError>;
}

impl<T> TssContext<T> for tss_esapi::Result<T> {
    fn during(self, op: &'static str) -> Result<T, TpmError> {
        self.map_err(|e| TpmError::from_tss(op, e))
    }
}
