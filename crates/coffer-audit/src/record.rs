//! What one audit line says: [`Record`] as the daemon hands it over, and `Names`, which
//! turns it into the JSON line the chain hashes.
//!
//! The field order is fixed (`v`, `seq`, `time`, `request_id`, `actor`, `action`, `namespace`,
//! `name`, `withheld`, `outcome`, `code`, `gate`, `repeated`, `namespace_invalid`,
//! `name_invalid`, `prev`, `mac`) so lines read the same in every file and a reviewer can
//! diff them. Names and namespaces arrive in the clear and leave as
//! `hmac-sha256:<hex>` under the audit key, in the clear when the operator asked for plain
//! names, or withheld (null, with `"withheld":true`) while no key is known. The namespace and
//! the name are hashed each on its own ([`AuditKeys::name_hash`] of the exact text), so
//! `coffer audit hash NAME` finds a name whatever namespace it was used in.
//!
//! A line is made in two steps so that the part every request pays for runs in parallel:
//! the body (everything but `seq` and `prev`) is encoded by the appending task on its own
//! (`Names::encode_body`); only `finish_line`, which wraps it in its `seq` and `prev`,
//! runs in the chain's order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard};

use coffer_crypto::AuditKeys;
use coffer_types::{Action, ErrorCode, Timestamp};
use serde::{Serialize, Serializer};

use crate::AuditError;
use crate::chain::Hash;

/// Who made the request.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Actor<'a> {
    /// The peer's user id (socket peer credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The peer's group id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The peer's process id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The peer's executable path.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "lossy_path")]
    pub exe: Option<Cow<'a, Path>>,
    /// The client's network address (HTTP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<Cow<'a, str>>,
    /// The accessor of the token used (never the token itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Cow<'a, str>>,
}

/// A path as text; bytes that are not UTF-8 become U+FFFD rather than failing the record.
fn lossy_path<S: Serializer>(path: &Option<Cow<'_, Path>>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It was carried out.
    Ok,
    /// A gate refused it.
    Denied,
    /// It failed for another reason.
    Error,
}

/// One request, as the daemon hands it over (names in the clear; the log hashes them). It
/// borrows what it can from the request, so building one allocates little.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    /// When the request arrived.
    pub time: Timestamp,
    /// The request's id, as in the daemon's log lines.
    pub request_id: Cow<'a, str>,
    /// Who made it.
    pub actor: Actor<'a>,
    /// What was asked (written as its wire word: `"get"`, `"set"`, `"token_create"`).
    pub action: Action,
    /// The namespace, in the clear.
    pub namespace: Option<Cow<'a, str>>,
    /// The secret's name, in the clear.
    pub name: Option<Cow<'a, str>>,
    /// How it ended.
    pub outcome: Outcome,
    /// The wire error code, when it did not end `ok`.
    pub code: Option<ErrorCode>,
    /// The gate that refused it, e.g. `"policy"`.
    pub gate: Option<&'static str>,
    /// A summary record: this many more refusals of this action and code from this peer
    /// in the window were counted here rather than recorded one by one.
    pub repeated: Option<u64>,
    /// The namespace was invalid: only its length in bytes is recorded (never its text,
    /// which a caller controls and may have pasted a value into).
    pub namespace_invalid: Option<usize>,
    /// The name was invalid: only its length in bytes is recorded.
    pub name_invalid: Option<usize>,
}

/// The line's body as encoded: everything but `seq` and `prev`.
#[derive(Serialize)]
struct Body<'a> {
    time: Timestamp,
    request_id: &'a str,
    actor: &'a Actor<'a>,
    action: &'a str,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    withheld: bool,
    outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeated: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace_invalid: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name_invalid: Option<usize>,
}

/// Above this many cached name hashes the cache starts over (bounds memory on a store with
/// very many names, while a working set of hot names stays cached).
const NAME_CACHE_LIMIT: usize = 8192;

/// The audit keys and the name hashes made under them.
struct Keyed {
    keys: Option<AuditKeys>,
    /// Clear text to `hmac-sha256:<hex>`: the daemon logs the same few names over and over,
    /// and an HMAC per name per record would cost more than the rest of the line.
    cache: HashMap<String, String, foldhash::fast::RandomState>,
}

/// How names appear in lines: hashed under the audit key when one is set, withheld while
/// none is, or in the clear when configured. Shared by every appending task (read-mostly).
pub(crate) struct Names {
    plain: bool,
    keyed: RwLock<Keyed>,
}

impl Names {
    pub(crate) fn new(plain: bool) -> Self {
        Self {
            plain,
            keyed: RwLock::new(Keyed {
                keys: None,
                cache: HashMap::default(),
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Keyed> {
        // The state is replaced whole under the write lock; a panic cannot leave it half set.
        self.keyed.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the keys, forgetting every hash made under the old ones.
    pub(crate) fn set_keys(&self, keys: Option<AuditKeys>) {
        let mut keyed = self.keyed.write().unwrap_or_else(|p| p.into_inner());
        keyed.cache.clear();
        keyed.keys = keys;
    }

    /// Encodes `record`'s body (a JSON object without `seq` and `prev`) into `buf`.
    pub(crate) fn encode_body(
        &self,
        buf: &mut Vec<u8>,
        record: &Record<'_>,
    ) -> Result<(), AuditError> {
        let texts = [record.namespace.as_deref(), record.name.as_deref()];
        let mut keyed = self.read();
        if !self.plain && keyed.keys.is_some() {
            let missing = texts
                .iter()
                .flatten()
                .any(|t| !keyed.cache.contains_key(*t));
            if missing {
                drop(keyed);
                self.hash_into_cache(&texts);
                keyed = self.read();
            }
        }
        let withheld = keyed.keys.is_none() && !self.plain && texts.iter().any(Option::is_some);
        let body = Body {
            time: record.time,
            request_id: &record.request_id,
            actor: &record.actor,
            action: record.action.as_str(),
            namespace: shown(self.plain, &keyed, texts[0]),
            name: shown(self.plain, &keyed, texts[1]),
            withheld,
            outcome: record.outcome,
            code: record.code,
            gate: record.gate,
            repeated: record.repeated,
            namespace_invalid: record.namespace_invalid,
            name_invalid: record.name_invalid,
        };
        let start = buf.len();
        serde_json::to_writer(&mut *buf, &body).map_err(|e| {
            buf.truncate(start);
            AuditError::Encode {
                reason: e.to_string(),
            }
        })
    }

    /// Hashes the texts not cached yet (under the write lock).
    fn hash_into_cache(&self, texts: &[Option<&str>]) {
        let mut keyed = self.keyed.write().unwrap_or_else(|p| p.into_inner());
        let Keyed { keys, cache } = &mut *keyed;
        let Some(keys) = keys else { return };
        // Cleared before, not between, the inserts: all must be present for the encoder.
        if cache.len() + texts.len() > NAME_CACHE_LIMIT {
            cache.clear();
        }
        for text in texts.iter().flatten() {
            if !cache.contains_key(*text) {
                cache.insert((*text).to_owned(), keys.name_hash(text));
            }
        }
    }
}

/// What a line shows for a name or namespace (the cache was filled before asking).
fn shown<'t>(plain: bool, keyed: &'t Keyed, text: Option<&'t str>) -> Option<&'t str> {
    match (plain, &keyed.keys) {
        (true, _) => text,
        (false, Some(_)) => text.and_then(|t| keyed.cache.get(t)).map(String::as_str),
        (false, None) => None,
    }
}

/// The format version every line written now carries (`"v":2`); lines without it are the
/// first format's (a bare BLAKE3 chain, no MACs), accepted only before the first v2 line.
pub(crate) const FORMAT: u64 = 2;

/// Appends line `seq` to `out`: `{"v":2,"seq":N,` + the body's fields + `,"prev":"<hex>"`,
/// then, with keys, `,"mac":"<hex>"` (HMAC-SHA256 under the audit key of everything before
/// it), and `}\n`. Answers the line's hash (BLAKE3 of its bytes without the `\n`, MAC
/// included): the next line's `prev`. So every MAC covers, through `prev`, every line before.
pub(crate) fn finish_line(
    out: &mut Vec<u8>,
    seq: u64,
    body: &[u8],
    prev: Hash,
    keys: Option<&AuditKeys>,
) -> Hash {
    let start = out.len();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{{\"v\":{FORMAT},\"seq\":{seq}");
    // The body is a JSON object with at least `time`: its fields sit between its braces.
    if let [b'{', inner @ .., b'}'] = body {
        out.push(b',');
        out.extend_from_slice(inner);
    }
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(prev.to_hex().as_bytes());
    out.push(b'"');
    if let Some(keys) = keys {
        let mac = keys.record_mac(&out[start..]);
        out.extend_from_slice(crate::chain::MAC_FIELD);
        out.extend_from_slice(data_encoding::HEXLOWER.encode(&mac).as_bytes());
        out.push(b'"');
    }
    out.push(b'}');
    let hash = Hash::of_line(&out[start..]);
    out.push(b'\n');
    hash
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use coffer_crypto::SecretBytes;

    pub(crate) fn record() -> Record<'static> {
        Record {
            time: Timestamp::from_millis(1_700_000_000_123),
            request_id: "r-1".into(),
            actor: Actor {
                uid: Some(1000),
                pid: Some(42),
                ..Actor::default()
            },
            action: Action::Get,
            namespace: Some("default".into()),
            name: Some("db/password".into()),
            outcome: Outcome::Denied,
            code: Some(ErrorCode::Denied),
            gate: Some("policy"),
            repeated: None,
            namespace_invalid: None,
            name_invalid: None,
        }
    }

    fn keys() -> AuditKeys {
        AuditKeys::from_bytes(
            SecretBytes::copy_from(&[1; 32]),
            SecretBytes::copy_from(&[2; 32]),
        )
        .unwrap()
    }

    fn line(enc: &Names, r: &Record<'_>) -> String {
        let mut body = Vec::new();
        enc.encode_body(&mut body, r).unwrap();
        let mut buf = Vec::new();
        let hash = finish_line(&mut buf, 7, &body, Hash::ZERO, None);
        assert_eq!(hash, Hash::of_line(&buf[..buf.len() - 1]));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fields_come_in_a_fixed_order() {
        let enc = Names::new(true);
        let zeros = "0".repeat(64);
        assert_eq!(
            line(&enc, &record()),
            format!(
                "{{\"v\":2,\"seq\":7,\"time\":\"2023-11-14T22:13:20.123Z\",\"request_id\":\"r-1\",\
                 \"actor\":{{\"uid\":1000,\"pid\":42}},\"action\":\"get\",\
                 \"namespace\":\"default\",\"name\":\"db/password\",\"outcome\":\"denied\",\
                 \"code\":\"denied\",\"gate\":\"policy\",\"prev\":\"{zeros}\"}}\n"
            )
        );
    }

    #[test]
    fn names_are_withheld_without_keys_and_hashed_with_them() {
        let enc = Names::new(false);
        let text = line(&enc, &record());
        assert!(text.contains(r#""namespace":null,"name":null,"withheld":true,"#));
        assert!(!text.contains("db/password"));

        let k = keys();
        let expected = k.name_hash("db/password");
        enc.set_keys(Some(k));
        for _ in 0..2 {
            let text = line(&enc, &record());
            assert!(
                text.contains(&format!(r#""name":"{expected}","outcome""#)),
                "{text}"
            );
            assert!(!text.contains("withheld") && !text.contains("db/password"));
        }
        enc.set_keys(None);
        assert!(line(&enc, &record()).contains(r#""withheld":true"#));
    }

    #[test]
    fn records_without_names_are_not_marked_withheld() {
        let enc = Names::new(false);
        let mut r = record();
        r.namespace = None;
        r.name = None;
        r.code = None;
        r.gate = None;
        let text = line(&enc, &r);
        assert!(text.contains(r#""namespace":null,"name":null,"outcome":"denied","prev""#));
    }
}
