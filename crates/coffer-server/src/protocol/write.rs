//! Writing replies: `{"ok":true,...}` or `{"error":"...","code":"..."}`, one JSON object and
//! a newline, with the request's `id` echoed last when it had one.
//!
//! A reply that carries a value is written into a buffer sized exactly beforehand, so the
//! buffer never grows and leaves no copy of the value behind in freed memory; the connection
//! zeroizes it after sending.

use coffer_core::Reply;
use coffer_crypto::SecretBytes;
use coffer_types::Action;
use coffer_types::wire::json_string_len;
use coffer_types::{ErrorCode, Kind, NvIndex};

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

/// Writes a successful reply to `action`.
pub fn reply(out: &mut Vec<u8>, action: Action, reply: &Reply, id: Option<&str>) {
    match reply {
        Reply::Written { index, version } => {
            written(out, *index);
            // `set` answers exactly as the device daemon does; the others add the version.
            if action != Action::Set {
                field(out, "version", version);
            }
        }
        Reply::Minted {
            index,
            version,
            value,
        } => {
            let need = 64 + secret_len(value) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            written(out, *index);
            field(out, "version", version);
            out.extend_from_slice(b",\"value\":");
            secret_string(out, value);
        }
        Reply::Value { value, kind, .. } => value_reply(out, value, *kind, id),
        Reply::Done => out.extend_from_slice(b"{\"ok\":true"),
        Reply::Destroyed(versions) => ok_with(out, "destroyed", versions),
        Reply::Meta(meta) => ok_with(out, "meta", meta),
        Reply::Versions(versions) => ok_with(out, "versions", versions),
        Reply::Names(page) => {
            ok_with(out, "names", &page.items);
            if let Some(next) = &page.next {
                field(out, "next", next);
            }
        }
        Reply::Summaries(page) => {
            ok_with(out, "secrets", &page.items);
            if let Some(next) = &page.next {
                field(out, "next", next);
            }
        }
        Reply::Revoked(page) => {
            ok_with(out, "revoked", &page.items);
            if let Some(next) = &page.next {
                field(out, "next", next);
            }
        }
        Reply::Keys(keys) => ok_with(out, "keys", keys),
        Reply::Mount(namespace) => ok_with(out, "namespace", namespace),
        Reply::Digest(digest) => ok_with(out, "digest", digest),
        Reply::PasswordHash(hash) => ok_with(out, "hash", hash),
        Reply::Header(header) => {
            let need = 32 + secret_len(header) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            out.extend_from_slice(b"{\"ok\":true,\"header\":");
            secret_string(out, header);
        }
        Reply::Namespaces { all, locked } => {
            ok_with(out, "namespaces", all);
            field(out, "locked", locked);
        }
        Reply::Status(report) => ok_with(out, "status", report),
        Reply::Slots(slots) => ok_with(out, "slots", slots),
        Reply::SlotAdded { id: slot, recovery } => {
            let need = 64 + recovery.as_ref().map_or(0, secret_len) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            ok_with(out, "slot_id", slot);
            if let Some(key) = recovery {
                out.extend_from_slice(b",\"recovery_key\":");
                secret_string(out, key);
            }
        }
        Reply::Resealed(slots) => ok_with(out, "resealed", slots),
        Reply::MasterRotated { recovery, dropped } => {
            let need = 64 + recovery.as_ref().map_or(0, secret_len) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            ok_with(out, "dropped_slots", dropped);
            if let Some(key) = recovery {
                out.extend_from_slice(b",\"recovery_key\":");
                secret_string(out, key);
            }
        }
        Reply::Policy(view) => ok_with(out, "policy", view),
        Reply::Policies(listing) => {
            ok_with(out, "policies", &listing.policies);
            field(out, "subjects", &listing.subjects);
        }
        Reply::TokenCreated { token, record } => {
            // The record first: the buffer may grow for it, but not once the token is in.
            ok_with(out, "token_info", record);
            let need = 16 + secret_len(token) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            out.extend_from_slice(b",\"token\":");
            secret_string(out, token);
        }
        Reply::Tokens(all) => ok_with(out, "tokens", all),
        Reply::Webhooks(all) => ok_with(out, "webhooks", all),
        Reply::WebhookStatus(all) => ok_with(out, "webhooks", all),
        Reply::WebhookAdded { webhook, secret } => {
            // The record first: the buffer may grow for it, but not once the secret is in.
            ok_with(out, "webhook", webhook);
            let need = 24 + secret_len(secret) + id.map_or(0, str::len);
            *out = reserve_exact(std::mem::take(out), need);
            out.extend_from_slice(b",\"signing_secret\":");
            secret_string(out, secret);
        }
        Reply::TokenInfo(record) => ok_with(out, "token_info", record),
        Reply::TokensRevoked(accessors) => ok_with(out, "revoked_tokens", accessors),
        Reply::AuditHash { name, namespace } => {
            out.extend_from_slice(b"{\"ok\":true");
            if let Some(h) = name {
                field(out, "name_hash", h);
            }
            if let Some(h) = namespace {
                field(out, "namespace_hash", h);
            }
        }
        Reply::AuditVerified(report) => ok_with(out, "audit", report),
        Reply::AuditAcknowledged(seq) => {
            out.extend_from_slice(b"{\"ok\":true");
            if let Some(seq) = seq {
                // Writing into a Vec cannot fail.
                let _ = std::io::Write::write_fmt(out, format_args!(",\"gap_seq\":{seq}"));
            }
        }
        Reply::AppRole(r) => approle(out, r, id),
        Reply::Fleet(v) => ok_with(out, "fleet", v),
        _ => out.extend_from_slice(b"{\"ok\":true"),
    }
    finish(out, id);
}

/// What an AppRole operation answers; a secret-id or a login's token last, into room
/// reserved for it.
fn approle(out: &mut Vec<u8>, reply: &coffer_core::AppRoleReply, id: Option<&str>) {
    use coffer_core::AppRoleReply as R;
    let secret = |out: &mut Vec<u8>, key: &[u8], value: &SecretBytes| {
        let need = 16 + secret_len(value) + id.map_or(0, str::len);
        *out = reserve_exact(std::mem::take(out), need);
        out.extend_from_slice(key);
        secret_string(out, value);
    };
    match reply {
        R::Role(role) => ok_with(out, "role", role),
        R::Keys(keys) => ok_with(out, "keys", keys),
        R::RoleId(role_id) => ok_with(out, "role_id", role_id),
        R::SecretId { secret_id, record } => {
            ok_with(out, "secret_id_info", record);
            secret(out, b",\"secret_id\":", secret_id);
        }
        R::SecretIdInfo(record) => ok_with(out, "secret_id_info", record),
        R::Login {
            token,
            record,
            role,
        } => {
            ok_with(out, "token_info", record);
            field(out, "role_name", role);
            secret(out, b",\"token\":", token);
        }
        _ => out.extend_from_slice(b"{\"ok\":true"),
    }
}

fn written(out: &mut Vec<u8>, index: NvIndex) {
    out.extend_from_slice(b"{\"ok\":true,\"index\":\"");
    out.extend_from_slice(index.to_string().as_bytes());
    out.push(b'"');
}

/// `,"key":<json>` for a value that holds no secret.
fn field(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
    out.push(b',');
    string(out, key);
    out.push(b':');
    // Writing non-secret data to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// `{"ok":true,"key":<json>` for a value that holds no secret.
fn ok_with(out: &mut Vec<u8>, key: &str, value: &impl serde::Serialize) {
    out.extend_from_slice(b"{\"ok\":true");
    field(out, key, value);
}

/// Room a secret needs as a JSON string: the worst case for small ones (cheap, and it spares
/// a pass over the bytes), exact for large ones.
fn secret_len(value: &SecretBytes) -> usize {
    match value.expose_str() {
        Some(text) => text_len(text),
        None => 6 * value.len() + 2,
    }
}

/// Room for `text` as a JSON string: the worst case for short text (no scan), exact for long.
fn text_len(text: &str) -> usize {
    if text.len() <= 4096 {
        6 * text.len() + 2
    } else {
        json_string_len(text)
    }
}

/// A secret that is UTF-8 text, as a JSON string, into room reserved beforehand.
fn secret_string(out: &mut Vec<u8>, value: &SecretBytes) {
    string(out, value.expose_str().unwrap_or_default());
}

fn value_reply(out: &mut Vec<u8>, value: &SecretBytes, kind: Kind, id: Option<&str>) {
    let text = match kind {
        Kind::File => None,
        _ => value.expose_str(),
    };
    let tail = 8 + id.map_or(0, str::len);
    match text {
        Some(text) => {
            // Checked for UTF-8 once, above: a get's reply is on every read's path.
            let need = b"{\"ok\":true,\"value\":".len() + text_len(text) + tail;
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

/// Writes an error reply; `rc` is the TPM return code where one applies.
pub fn error(
    out: &mut Vec<u8>,
    code: ErrorCode,
    message: &str,
    rc: Option<&str>,
    id: Option<&str>,
) {
    out.extend_from_slice(b"{\"error\":");
    string(out, message);
    out.extend_from_slice(b",\"code\":\"");
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(b'"');
    if let Some(rc) = rc {
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
        let written = Reply::Written {
            index: NvIndex::from_slot(0x42).unwrap(),
            version: Version::FIRST,
        };
        reply(&mut out, Action::Set, &written, None);
        assert_eq!(text(&out), "{\"ok\":true,\"index\":\"0x01520042\"}\n");
        out.clear();
        reply(&mut out, Action::Rotate, &written, None);
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"index\":\"0x01520042\",\"version\":1}\n"
        );
        out.clear();
        reply(
            &mut out,
            Action::Get,
            &Reply::Value {
                value: SecretBytes::copy_from(b"sk_live_abc123xyz").into(),
                version: Version::FIRST,
                kind: Kind::Text,
                facts: facts(),
            },
            None,
        );
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"value\":\"sk_live_abc123xyz\"}\n"
        );
        out.clear();
        reply(&mut out, Action::Del, &Reply::Done, Some("7"));
        assert_eq!(text(&out), "{\"ok\":true,\"id\":7}\n");
        out.clear();
        error(
            &mut out,
            ErrorCode::NotFound,
            "no such secret",
            ErrorCode::NotFound.implied_rc(),
            Some("\"a\""),
        );
        assert_eq!(
            text(&out),
            "{\"error\":\"no such secret\",\"code\":\"not_found\",\"rc\":\"0x18b\",\"id\":\"a\"}\n"
        );
    }

    fn facts() -> std::sync::Arc<coffer_core::cache::Facts> {
        std::sync::Arc::new(coffer_core::cache::Facts {
            created: coffer_types::Timestamp::now(),
            deletion: None,
            custom_metadata: Default::default(),
        })
    }

    #[test]
    fn binary_and_file_values_go_as_base64() {
        let mut out = Vec::new();
        reply(
            &mut out,
            Action::Get,
            &Reply::Value {
                value: SecretBytes::copy_from(&[0, 159, 255]).into(),
                version: Version::FIRST,
                kind: Kind::File,
                facts: facts(),
            },
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"value_b64\":\"AJ//\"}\n");
    }

    #[test]
    fn minted_values_and_headers_are_answered_once() {
        let mut out = Vec::new();
        reply(
            &mut out,
            Action::Generate,
            &Reply::Minted {
                index: NvIndex::from_slot(1).unwrap(),
                version: Version::FIRST,
                value: SecretBytes::copy_from(b"abc-_"),
            },
            Some("9"),
        );
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"index\":\"0x01520001\",\"version\":1,\"value\":\"abc-_\",\"id\":9}\n"
        );
        out.clear();
        reply(
            &mut out,
            Action::BasicAuth,
            &Reply::Header(SecretBytes::copy_from(b"Basic YTpi")),
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"header\":\"Basic YTpi\"}\n");
        out.clear();
        reply(
            &mut out,
            Action::Yescrypt,
            &Reply::PasswordHash("$y$j9T$s$h".to_owned()),
            Some("4"),
        );
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"hash\":\"$y$j9T$s$h\",\"id\":4}\n"
        );
        out.clear();
        reply(
            &mut out,
            Action::Destroy,
            &Reply::Destroyed(vec![Version::FIRST]),
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"destroyed\":[1]}\n");
    }

    #[test]
    fn slot_replies_and_tpm_codes() {
        let mut out = Vec::new();
        let added = Reply::SlotAdded {
            id: 3,
            recovery: Some(SecretBytes::copy_from(b"ABCD-EFGH")),
        };
        reply(&mut out, Action::SlotAdd, &added, Some("1"));
        assert_eq!(
            text(&out),
            "{\"ok\":true,\"slot_id\":3,\"recovery_key\":\"ABCD-EFGH\",\"id\":1}\n"
        );
        out.clear();
        reply(
            &mut out,
            Action::SlotReseal,
            &Reply::Resealed(vec![1, 4]),
            None,
        );
        assert_eq!(text(&out), "{\"ok\":true,\"resealed\":[1,4]}\n");
        out.clear();
        error(
            &mut out,
            ErrorCode::Tpm,
            "policy check failed",
            Some("0x99d"),
            None,
        );
        assert_eq!(
            text(&out),
            "{\"error\":\"policy check failed\",\"code\":\"tpm\",\"rc\":\"0x99d\"}\n"
        );
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
