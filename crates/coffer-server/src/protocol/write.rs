//! Writing replies: `{"ok":true,...}` or `{"error":"...","code":"..."}`, one JSON object and
//! a newline, with the request's `id` echoed last when it had one.
//!
//! A reply that carries a value is written into a buffer sized exactly beforehand, so the
//! buffer never grows and leaves no copy of the value behind in freed memory; the connection
//! zeroizes it after sending.

use coffer_core::{Reply, StatusReport};
use coffer_crypto::SecretBytes;
use coffer_types::wire::json_string_len;
use coffer_types::{ErrorCode, Kind};

fn string(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn finish(out: &mut Vec<u8>, id: Option<&str>) {
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

/// Writes a successful reply.
pub fn reply(out: &mut Vec<u8>, reply: &Reply, id: Option<&str>) {
    match reply {
        Reply::Set { index, .. } => {
            out.extend_from_slice(b"{\"ok\":true,\"index\":\"");
            out.extend_from_slice(index.to_string().as_bytes());
            out.push(b'"');
        }
        Reply::Get { value, kind, .. } => value_reply(out, value, *kind, id),
        Reply::Deleted | Reply::Sealed | Reply::Unsealed => out.extend_from_slice(b"{\"ok\":true"),
        Reply::Status(report) => status(out, report),
        _ => out.extend_from_slice(b"{\"ok\":true"),
    }
    finish(out, id);
}

fn value_reply(out: &mut Vec<u8>, value: &SecretBytes, kind: Kind, id: Option<&str>) {
    let text = match kind {
        Kind::File => None,
        _ => value.expose_str(),
    };
    let tail = 8 + id.map_or(0, str::len);
    match text {
        Some(text) => {
            // Small values: the worst case (every byte escaped as \u00XX) is cheap to reserve
            // and spares a pass over the value; large ones are measured exactly.
            let escaped = if text.len() <= 4096 {
                6 * text.len() + 2
            } else {
                json_string_len(text)
            };
            let need = b"{\"ok\":true,\"value\":".len() + escaped + tail;
            *out = reserve_exact(std::mem::take(out), need);
            out.extend_from_slice(b"{\"ok\":true,\"value\":");
            string(out, text);
        }
        None => {
            let enc = &data_encoding::BASE64;
            let len = enc.encode_len(value.len());
            let need = b"{\"ok\":true,\"value_b64\":\"".len() + len + 1 + tail;
            *out = reserve_exact(std::mem::take(out), need);
            out.extend_from_slice(b"{\"ok\":true,\"value_b64\":\"");
            let start = out.len();
            out.resize(start + len, 0);
            enc.encode_mut(value.expose_secret(), &mut out[start..]);
            out.push(b'"');
        }
    }
}

/// A buffer with room for `need` more bytes, moving (and zeroizing) the old one if needed.
fn reserve_exact(mut buf: Vec<u8>, need: usize) -> Vec<u8> {
    if buf.capacity() - buf.len() >= need {
        return buf;
    }
    let mut bigger = Vec::with_capacity(buf.len() + need);
    bigger.extend_from_slice(&buf);
    zeroize::Zeroize::zeroize(&mut buf);
    bigger
}

fn status(out: &mut Vec<u8>, report: &StatusReport) {
    out.extend_from_slice(b"{\"ok\":true,\"status\":");
    // A status report holds no secret; serializing it cannot fail.
    let _ = serde_json::to_writer(&mut *out, report);
}

/// Writes an error reply.
pub fn error(out: &mut Vec<u8>, code: ErrorCode, message: &str, id: Option<&str>) {
    out.extend_from_slice(b"{\"error\":");
    string(out, message);
    out.extend_from_slice(b",\"code\":\"");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b'"');
    if let Some(rc) = code.implied_rc() {
        out.extend_from_slice(b",\"rc\":\"");
        out.extend_from_slice(rc.as_bytes());
        out.push(b'"');
    }
    finish(out, id);
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::{NvIndex, Version};
    use proptest::prelude::*;

    fn text(out: &[u8]) -> &str {
        std::str::from_utf8(out).unwrap()
    }

    #[test]
    fn device_shapes() {
        let mut out = Vec::new();
        reply(
            &mut out,
            &Reply::Set {
                index: NvIndex::from_slot(0x42).unwrap(),
                version: Version::FIRST,
            },
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"index\":\"0x01520042\"}\n");
        out.clear();
        reply(
            &mut out,
            &Reply::Get {
                value: SecretBytes::copy_from(b"sk_live_abc123xyz").into(),
                version: Version::FIRST,
                kind: Kind::Text,
            },
            None,
        );
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"value\":\"sk_live_abc123xyz\"}\n"
        );
        out.clear();
        reply(&mut out, &Reply::Deleted, Some("7"));
        assert_eq!(text(&out), "{\"ok\":true,\"id\":7}\n");
        out.clear();
        error(
            &mut out,
            ErrorCode::NotFound,
            "no such secret",
            Some("\"a\""),
        );
        assert_eq!(
            text(&out),
            "{\"error\":\"no such secret\",\"code\":\"not_found\",\"rc\":\"0x18b\",\"id\":\"a\"}\n"
        );
    }

    #[test]
    fn binary_and_file_values_go_as_base64() {
        let mut out = Vec::new();
        reply(
            &mut out,
            &Reply::Get {
                value: SecretBytes::copy_from(&[0, 159, 255]).into(),
                version: Version::FIRST,
                kind: Kind::File,
            },
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"value_b64\":\"AJ//\"}\n");
    }

    proptest! {
        #[test]
        fn value_replies_never_reallocate_and_parse_back(s in "\\PC{0,64}|[\\x00-\\x1f\"\\\\]{0,64}", id in proptest::option::of(0u32..1000)) {
            let mut out = Vec::new();
            let id = id.map(|i| i.to_string());
            let value = SecretBytes::copy_from(s.as_bytes());
            value_reply(&mut out, &value, Kind::Text, id.as_deref());
            let cap = out.capacity();
            finish(&mut out, id.as_deref());
            prop_assert_eq!(out.capacity(), cap, "the buffer grew after sizing");
            let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(parsed["value"].as_str().unwrap(), s.as_str());
        }
    }
}
