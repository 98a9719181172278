//! Shapes of the local socket protocol that carry no secret (DESIGN.md, Local socket protocol).
//!
//! Requests and replies that carry values are read and written by coffer-server and
//! coffer-client straight into locked memory; this module holds the vocabulary they share.

use crate::ErrorCode;
pub use crate::action::{Action, UnknownAction};

string_enum! {
    /// Which slot an `unseal` request opens the store with.
    pub enum UnsealWith {
        /// A passphrase slot.
        Passphrase = "passphrase",
        /// The recovery slot.
        Recovery = "recovery",
        /// A key file slot: the daemon reads the key file itself.
        KeyFile = "file",
        /// The TPM slots: the daemon asks its TPM again (after the PCRs were restored).
        Tpm = "tpm",
    }
    /// A `slot` string that is not one of ours.
    error UnknownSlot = "unknown slot; expected passphrase, recovery, file or tpm";
}

/// One key slot as shown to operators.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SlotSummary {
    /// Slot id.
    pub id: u32,
    /// `file`, `passphrase`, `recovery`, `tpm`, `tpm+passphrase`.
    pub kind: std::borrow::Cow<'static, str>,
    /// When it was added.
    pub created: String,
    /// The key file, for a file slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The PCR policy, for a TPM slot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pcrs: Option<String>,
    /// Why the slot cannot open here, when the daemon found out (a TPM slot sealed by
    /// another machine's TPM, in a restored data directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The error object every interface answers with:
/// `{"error":"<message>","code":"<code>"}` plus `"rc"` where a TPM code applies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// A message for the person reading it: what happened and what to do next.
    pub error: String,
    /// The stable code.
    pub code: ErrorCode,
    /// A TPM return code such as `0x18b`, where one applies.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rc: Option<String>,
}

impl ErrorBody {
    /// An error body, with the `rc` the code implies.
    pub fn new(code: ErrorCode, error: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            code,
            rc: code.implied_rc().map(str::to_owned),
        }
    }
}

/// Bytes serde_json writes for `s` as a JSON string, quotes included. Lets a writer size a
/// buffer exactly before putting a secret in it, so the buffer never reallocates and leaves
/// no copy behind.
pub fn json_string_len(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x00..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_string_len_matches_serde_json() {
        for s in [
            "",
            "plain",
            "quote\"back\\slash",
            "ctl\u{0}\u{1f}\n\t\r\u{8}\u{c}",
            "ünïcode ✓",
            "\u{7f}",
        ] {
            assert_eq!(
                json_string_len(s),
                serde_json::to_string(s).unwrap().len(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn error_body_shape() {
        let body = ErrorBody::new(ErrorCode::NotFound, "no secret by that name");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"no secret by that name","code":"not_found","rc":"0x18b"}"#
        );
        let body = ErrorBody::new(ErrorCode::Denied, "no");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"no","code":"denied"}"#
        );
    }
}
