//! What one audit line says: [`Record`] as the daemon hands it over, and `Names`, which
//! turns it into the line the chain tags.
//!
//! Lines are written in format 3: one JSON object with short field names in a fixed order
//! (`v`, `s`, `t`, `id`, `u`, `g`, `p`, `exe`, `ip`, `tok`, `unit`, `op`, `ns`, `n`, `namespace`,
//! `name`, `w`, `o`, `c`, `gate`, `rep`, `nsi`, `ni`, then `prev` in a file's first line, and
//! the tag `m` or `h` last); docs/audit.md has the table and `coffer audit tail` prints them
//! with full names. Names and namespaces arrive in the clear and leave as the first 32 hex
//! digits (128 bits) of their HMAC under the audit key (`ns`, `n`), in the clear when the
//! operator asked for plain names (`namespace`, `name`), or withheld (`"w":true`) while no
//! key is known. The namespace and the name are hashed each on its own
//! ([`AuditKeys::name_hash`] of the exact text), so `coffer audit hash NAME` finds a name
//! whatever namespace it was used in.
//!
//! A line is made in two steps so that the part every request pays for runs in parallel:
//! the body (everything but the seq, `prev` and the tag) is encoded by the appending task on
//! its own (`Names::encode_body`); only `finish_line`, which wraps it in its seq and tags
//! it, runs in the chain's order.

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
use crate::line::{TagKind, keyed_tag, plain_tag, push_tag};

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
    /// The systemd unit a credential was served to (the credentials socket): the request
    /// acted as the policy subject `unit:<this>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Cow<'a, str>>,
}

/// A path as text; bytes that are not UTF-8 become U+FFFD rather than failing the record.
fn lossy_path<S: Serializer>(path: &Option<Cow<'_, Path>>, s: S) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => s.serialize_str(&p.to_string_lossy()),
        None => s.serialize_none(),
    }
}

/// [`lossy_path`] of a borrowed path.
fn lossy_path_ref<S: Serializer>(path: &Option<&Cow<'_, Path>>, s: S) -> Result<S::Ok, S::Error> {
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

/// The line's body as encoded (format 3, short field names; docs/audit.md has the table):
/// everything but `v`, `s` (the seq), `prev` and the tag.
#[derive(Serialize)]
struct Body<'a> {
    /// Unix milliseconds.
    t: i64,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    g: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    p: Option<i32>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "lossy_path_ref"
    )]
    exe: Option<&'a Cow<'a, Path>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tok: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    op: &'a str,
    /// The namespace's and the name's HMAC (the first 32 hex digits of
    /// [`AuditKeys::name_hash`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    ns: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    n: Option<&'a str>,
    /// In the clear, when the operator asked for plain names.
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Names were given but withheld (no key yet).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    w: bool,
    o: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    c: Option<ErrorCode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rep: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nsi: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ni: Option<usize>,
    /// The hub that wrote the line, when several serve one store.
    #[serde(skip_serializing_if = "Option::is_none")]
    hub: Option<&'a str>,
}

/// How many hex digits of a name's HMAC a line keeps (128 bits).
pub const NAME_HEX: usize = 32;

/// The part of [`AuditKeys::name_hash`]'s answer (`hmac-sha256:<64 hex>`) that format-3
/// lines carry: its first 32 hex digits. This is what `coffer audit hash` prints; it is found
/// in the lines of every format (format 2 carries all 64 digits).
pub fn short_name_hash(full: &str) -> &str {
    let hex = full.strip_prefix("hmac-sha256:").unwrap_or(full);
    hex.get(..NAME_HEX).unwrap_or(hex)
}

/// Above this many cached name hashes the cache starts over (bounds memory on a store with
/// very many names, while a working set of hot names stays cached).
const NAME_CACHE_LIMIT: usize = 8192;

/// The audit keys and the name hashes made under them.
struct Keyed {
    keys: Option<AuditKeys>,
    /// Clear text to its HMAC's first 32 hex digits: the daemon logs the same few names over and over,
    /// and an HMAC per name per record would cost more than the rest of the line.
    cache: HashMap<String, String, foldhash::fast::RandomState>,
}

/// How names appear in lines: hashed under the audit key when one is set, withheld while
/// none is, or in the clear when configured. Shared by every appending task (read-mostly).
pub(crate) struct Names {
    plain: bool,
    keyed: RwLock<Keyed>,
    /// The hub every record names, when several share a store.
    hub: Option<Box<str>>,
}

impl Names {
    pub(crate) fn new(plain: bool) -> Self {
        Self {
            plain,
            hub: None,
            keyed: RwLock::new(Keyed {
                keys: None,
                cache: HashMap::default(),
            }),
        }
    }

    /// Every record names `hub`.
    pub(crate) fn with_hub(mut self, hub: Option<&str>) -> Self {
        self.hub = hub.map(Into::into);
        self
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

    /// Encodes `record`'s body (a JSON object without `v`, `s`, `prev` and the tag) into
    /// `buf`.
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
        let (ns, n) = if self.plain {
            (None, None)
        } else {
            (shown(&keyed, texts[0]), shown(&keyed, texts[1]))
        };
        let (namespace, name) = if self.plain {
            (texts[0], texts[1])
        } else {
            (None, None)
        };
        let actor = &record.actor;
        let body = Body {
            t: record.time.as_millis(),
            id: &record.request_id,
            u: actor.uid,
            g: actor.gid,
            p: actor.pid,
            exe: actor.exe.as_ref(),
            ip: actor.addr.as_deref(),
            tok: actor.token.as_deref(),
            unit: actor.unit.as_deref(),
            op: record.action.as_str(),
            ns,
            n,
            namespace,
            name,
            w: withheld,
            o: record.outcome,
            c: record.code,
            gate: record.gate,
            rep: record.repeated,
            nsi: record.namespace_invalid,
            ni: record.name_invalid,
            hub: self.hub.as_deref(),
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
                let full = keys.name_hash(text);
                cache.insert((*text).to_owned(), short_name_hash(&full).to_owned());
            }
        }
    }
}

/// The hash a line shows for a name or namespace (the cache was filled before asking).
fn shown<'t>(keyed: &'t Keyed, text: Option<&'t str>) -> Option<&'t str> {
    keyed.keys.as_ref()?;
    text.and_then(|t| keyed.cache.get(t)).map(String::as_str)
}

/// Appends line `seq` to `out` (format 3): `{"v":3,"s":N,` + the body's fields, with
/// `,"prev":"<hex>"` when it is the first line of its file, then the tag (unpadded base64url):
/// with keys `,"m":"<tag>"` (HMAC-SHA256 under the audit key of `prev`'s bytes and everything before
/// it, cut to 128 bits), without `,"h":"<tag>"` (BLAKE3 of the same), and `}\n`. Answers
/// the line's link (its tag), which the next line's tag covers: so every tag covers every
/// line before it. One keyed hash per line, from a key state made once.
pub(crate) fn finish_line(
    out: &mut Vec<u8>,
    seq: u64,
    body: &[u8],
    prev: Hash,
    keys: Option<&AuditKeys>,
    first_in_file: bool,
) -> Hash {
    let start = out.len();
    out.extend_from_slice(b"{\"v\":3,\"s\":");
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{seq}");
    // The body is a JSON object: its fields sit between its braces.
    if let [b'{', inner @ .., b'}'] = body
        && !inner.is_empty()
    {
        out.push(b',');
        out.extend_from_slice(inner);
    }
    if first_in_file {
        out.extend_from_slice(b",\"prev\":\"");
        out.extend_from_slice(prev.to_hex().as_bytes());
        out.push(b'"');
    }
    let (kind, tag) = match keys {
        Some(keys) => (TagKind::Keyed, keyed_tag(keys, &prev, &out[start..])),
        None => (TagKind::Plain, plain_tag(&prev, &out[start..])),
    };
    push_tag(out, kind, &tag);
    out.push(b'\n');
    Hash::Tag(tag)
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
        let link = finish_line(&mut buf, 7, &body, Hash::ZERO, None, false);
        let text = &buf[..buf.len() - 1];
        assert_eq!(crate::line::link_of(text, Some(3)), Some(link));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn fields_come_in_a_fixed_order() {
        let enc = Names::new(true);
        let text = line(&enc, &record());
        let tag = crate::line::plain_tag(
            &Hash::ZERO,
            br#"{"v":3,"s":7,"t":1700000000123,"id":"r-1","u":1000,"p":42,"op":"get","namespace":"default","name":"db/password","o":"denied","c":"denied","gate":"policy""#,
        );
        assert_eq!(
            text,
            format!(
                "{{\"v\":3,\"s\":7,\"t\":1700000000123,\"id\":\"r-1\",\"u\":1000,\"p\":42,\
                 \"op\":\"get\",\"namespace\":\"default\",\"name\":\"db/password\",\"o\":\"denied\",\
                 \"c\":\"denied\",\"gate\":\"policy\",\"h\":\"{}\"}}\n",
                data_encoding::BASE64URL_NOPAD.encode(&tag)
            )
        );
    }

    #[test]
    fn a_files_first_line_names_its_prev_and_keys_tag_it() {
        let enc = Names::new(true);
        let mut body = Vec::new();
        enc.encode_body(&mut body, &record()).unwrap();
        let k = keys();
        let prev = Hash::Tag([9; 16]);
        let mut buf = Vec::new();
        let link = finish_line(&mut buf, 8, &body, prev, Some(&k), true);
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(
            text.contains(&format!(
                r#","gate":"policy","prev":"{}","m":""#,
                "09".repeat(16)
            )),
            "{text}"
        );
        let line = &buf[..buf.len() - 1];
        assert_eq!(
            crate::line::authenticate(line, Some(3), &Hash::ZERO, Some(&k)),
            Err(crate::line::AuthError::BadMac),
            "the tag covers the previous link"
        );
        assert_eq!(
            crate::line::authenticate(line, Some(3), &prev, Some(&k)),
            Ok((crate::line::Auth::Keyed, link))
        );
    }

    #[test]
    fn names_are_withheld_without_keys_and_hashed_with_them() {
        let enc = Names::new(false);
        let text = line(&enc, &record());
        assert!(
            text.contains(r#""op":"get","w":true,"o":"denied""#),
            "{text}"
        );
        assert!(!text.contains("db/password"));

        let k = keys();
        let full = k.name_hash("db/password");
        let expected = short_name_hash(&full);
        assert_eq!(expected.len(), 32);
        assert!(full.contains(expected));
        enc.set_keys(Some(k));
        for _ in 0..2 {
            let text = line(&enc, &record());
            assert!(
                text.contains(&format!(r#","n":"{expected}","o""#)),
                "{text}"
            );
            assert!(!text.contains("\"w\"") && !text.contains("db/password"));
        }
        enc.set_keys(None);
        assert!(line(&enc, &record()).contains(r#""w":true"#));
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
        assert!(text.contains(r#""op":"get","o":"denied","h":""#), "{text}");
    }
}
