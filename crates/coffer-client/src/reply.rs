//! Replies: one JSON object (`{"ok":true,...}` or `{"error":"...","code":"..."}`) decoded into
//! [`Reply`], or into any shape a caller names, with refusals turned into
//! [`ClientError::Refused`].
//!
//! A reply is read twice: first for its outcome (`ok`, `error`, `code`, `rc`), skipping every
//! other field without copying it, then into its type, whose value fields are `SecretBytes` and
//! so go straight into locked memory. Decoding errors are reported without serde's message,
//! which may quote the input, and so a value.

use coffer_crypto::SecretBytes;
use coffer_types::reply::{AuditReport, BindingView, PolicyView, StatusReport, TokenRecord};
use coffer_types::wire::SlotSummary;
use coffer_types::{ErrorCode, NvIndex, SecretMeta, SecretSummary, Version, VersionInfo};
use serde::de::DeserializeOwned;

use crate::ClientError;

/// A successful reply, as the protocol shapes it: each action fills the fields it answers
/// (docs/protocol.md, Requests). Values are `SecretBytes`, which never print.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Reply {
    /// A text value (`get`; `generate` and `rotate` when they mint).
    pub value: Option<SecretBytes>,
    /// A binary value, base64 (decoded by [`Reply::take_value`]).
    pub value_b64: Option<SecretBytes>,
    /// The secret's index (writes).
    pub index: Option<NvIndex>,
    /// The version a write made.
    pub version: Option<Version>,
    /// The status report.
    pub status: Option<StatusReport>,
    /// A secret's metadata.
    pub meta: Option<SecretMeta>,
    /// A version history.
    pub versions: Option<Vec<VersionInfo>>,
    /// The versions `destroy` erased.
    pub destroyed: Option<Vec<Version>>,
    /// A page of names.
    pub names: Option<Vec<String>>,
    /// A page of secrets with metadata.
    pub secrets: Option<Vec<SecretSummary>>,
    /// Revoked secrets with their history.
    pub revoked: Option<Vec<SecretMeta>>,
    /// The cursor for the next page.
    pub next: Option<String>,
    /// An HMAC digest.
    pub digest: Option<String>,
    /// A password hash in crypt(3)'s form (`yescrypt`).
    pub hash: Option<String>,
    /// A basic-auth header value.
    pub header: Option<SecretBytes>,
    /// The namespaces.
    pub namespaces: Option<Vec<String>>,
    /// The namespaces locked (`namespace_list`).
    pub locked: Option<Vec<String>>,
    /// The key slots.
    pub slots: Option<Vec<SlotSummary>>,
    /// The id of a slot just added.
    pub slot_id: Option<u32>,
    /// The recovery key of a recovery slot just added (shown once).
    pub recovery_key: Option<SecretBytes>,
    /// The slots resealed.
    pub resealed: Option<Vec<u32>>,
    /// The passphrase slots a master key rotation dropped.
    pub dropped_slots: Option<Vec<u32>>,
    /// A token just made (shown once).
    pub token: Option<SecretBytes>,
    /// A token's record.
    pub token_info: Option<TokenRecord>,
    /// Token records.
    pub tokens: Option<Vec<TokenRecord>>,
    /// The accessors of the tokens a revocation ended: the one asked for, then its
    /// descendants.
    pub revoked_tokens: Option<Vec<String>>,
    /// One policy.
    pub policy: Option<PolicyView>,
    /// Every policy.
    pub policies: Option<Vec<PolicyView>>,
    /// Every binding.
    pub subjects: Option<Vec<BindingView>>,
    /// The audit log's hash of a name.
    pub name_hash: Option<String>,
    /// The audit log's hash of a namespace.
    pub namespace_hash: Option<String>,
    /// The audit log's verification.
    pub audit: Option<AuditReport>,
    /// The seq of the gap record `audit_acknowledge` wrote.
    pub gap_seq: Option<u64>,
    /// The request's `id`, echoed.
    pub id: Option<serde_json::Value>,
}

impl Reply {
    /// The value of a `get`, decoding base64 when it came that way.
    pub fn take_value(&mut self) -> Result<SecretBytes, ClientError> {
        if let Some(v) = self.value.take() {
            return Ok(v);
        }
        let b64 = self
            .value_b64
            .take()
            .ok_or(ClientError::Protocol("a get reply without a value"))?;
        let text = b64
            .expose_str()
            .ok_or(ClientError::Protocol("value_b64 is not text"))?;
        SecretBytes::from_base64(text).map_err(|_| ClientError::Protocol("value_b64 is not base64"))
    }
}

/// Decodes one reply: `T` when it says `"ok":true`, the daemon's refusal when it carries an
/// `error`. `T` is [`Reply`] for the protocol's own actions.
pub fn decode<T: DeserializeOwned>(reply: &[u8]) -> Result<T, ClientError> {
    if reply.iter().all(u8::is_ascii_whitespace) {
        return Err(ClientError::Protocol(
            "coffer closed the connection without a reply",
        ));
    }
    let outcome: Outcome = serde_json::from_slice(reply)
        .map_err(|_| ClientError::Protocol("the reply is not a JSON object"))?;
    outcome.check()?;
    serde_json::from_slice(reply).map_err(|_| {
        ClientError::Protocol("the reply's fields do not have the shapes the protocol gives them")
    })
}

/// The fields that say how a request went; every other field is skipped unread.
#[derive(serde::Deserialize)]
struct Outcome {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    rc: Option<String>,
}

impl Outcome {
    fn check(self) -> Result<(), ClientError> {
        match (self.ok, self.error) {
            (true, None) => Ok(()),
            (_, Some(message)) => Err(ClientError::Refused {
                // A code this client does not know yet is still a refusal.
                code: self
                    .code
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(ErrorCode::Internal),
                message,
                rc: self.rc,
            }),
            (false, None) => Err(ClientError::Protocol(
                "a reply with neither \"ok\" nor \"error\"",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::reply::{PolicySource, SealState};

    #[test]
    fn refusals_carry_code_message_and_rc() {
        let err = decode::<Reply>(
            br#"{"error":"no such secret","code":"not_found","rc":"0x18b","id":3}"#,
        )
        .unwrap_err();
        match err {
            ClientError::Refused { code, message, rc } => {
                assert_eq!(code, ErrorCode::NotFound);
                assert_eq!(message, "no such secret");
                assert_eq!(rc.as_deref(), Some("0x18b"));
            }
            other => panic!("{other:?}"),
        }
        let unknown = decode::<Reply>(br#"{"error":"new","code":"brand_new"}"#).unwrap_err();
        assert_eq!(unknown.code(), ErrorCode::Internal);
        assert!(matches!(
            decode::<Reply>(b"{}"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            decode::<Reply>(b" \n"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            decode::<Reply>(b"[1]"),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn shape_errors_never_quote_the_reply() {
        // A value where the protocol promises a number: serde's message would quote it.
        let err = decode::<Reply>(br#"{"ok":true,"version":"sk_live_leak"}"#).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("sk_live_leak"));
    }

    #[test]
    fn values_and_typed_replies_decode() {
        let mut r: Reply = decode(b"{\"ok\":true,\"value_b64\":\"AJ//\",\"id\":\"a\"}\n").unwrap();
        assert_eq!(r.take_value().unwrap().expose_secret(), &[0, 0x9f, 0xff]);
        assert_eq!(r.id, Some(serde_json::json!("a")));
        assert!(!format!("{r:?}").contains("AJ//"), "Debug hides values");

        let r: Reply = decode(
            br#"{"ok":true,"status":{"state":"sealed","reason":"waiting","version":"0.1.0",
            "backend":"sqlite","slots":[{"id":1,"kind":"tpm","created":"2026-01-01T00:00:00.000Z",
            "pcrs":"sha256:7"}],"tpm":{"present":false},"cache":{"entries":0,"bytes":0,
            "ttl_seconds":300},"memory":{"locked_pages":2,"lock_refusals":0}}}"#,
        )
        .unwrap();
        let status = r.status.unwrap();
        assert_eq!(status.state, SealState::Sealed);
        assert_eq!(status.slots[0].pcrs.as_deref(), Some("sha256:7"));

        let r: Reply = decode(
            br#"{"ok":true,"policies":[{"name":"root","source":"builtin","rules":{"rules":
            [{"path":"*","capabilities":["sudo"]}]}}],"subjects":[{"subject":"uid:0",
            "policies":["root"],"source":"builtin"}]}"#,
        )
        .unwrap();
        assert_eq!(r.policies.unwrap()[0].source, PolicySource::Builtin);
        assert_eq!(r.subjects.unwrap()[0].subject, "uid:0");

        let r: Reply = decode(
            br#"{"ok":true,"token_info":{"accessor":"acc","policies":["app"],
            "created":"2026-01-01T00:00:00.000Z","expires":"2026-01-02T00:00:00.000Z",
            "creator":"uid:0"},"token":"cft_x"}"#,
        )
        .unwrap();
        assert_eq!(r.token_info.unwrap().accessor, "acc");
        assert_eq!(r.token.unwrap().expose_secret(), b"cft_x");

        let r: Reply = decode(
            br#"{"ok":true,"audit":{"ok":true,"records":3,"files":1,"last_seq":3,
            "unanchored":3}}"#,
        )
        .unwrap();
        let audit = r.audit.unwrap();
        assert_eq!((audit.records, audit.checkpoint), (3, None));
    }
}
