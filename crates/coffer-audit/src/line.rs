//! The line formats, as every reader sees them: which fields the chain check needs, how a
//! line authenticates itself, and what link it leaves for the next one.
//!
//! - Format 1 (no `"v"`): a bare BLAKE3 chain, `prev` naming the hash of the line before.
//! - Format 2 (`"v":2`): format 1 plus, with keys, a `mac` (HMAC-SHA256 under the audit key
//!   of everything before it, `prev` included).
//! - Format 3 (`"v":3`, written now): short field names and no `prev` but in a file's first
//!   line. The chain is carried by the line's tag, its last field: `"m"` (with keys: HMAC-SHA256
//!   under the audit key of the previous record's link and the line up to the tag, see
//!   [`AuditKeys::record_tag`]) or `"h"` (while sealed: BLAKE3 of the same), 16 bytes in
//!   unpadded base64url (22 characters).
//!   A record's link is its tag; for a line of format 1 or 2 it is the line's BLAKE3 hash, so
//!   a log upgraded in the middle of a file chains on across the switch.

use std::borrow::Cow;

use coffer_crypto::AuditKeys;
use serde::Deserialize;

use crate::chain::Hash;
pub(crate) use crate::chain::TAG_LEN;

/// The format every line written now carries (`"v":3`).
pub(crate) const FORMAT: u64 = 3;
/// The format before it: full field names, a `prev` hash per line, a 32-byte MAC.
pub(crate) const V2: u64 = 2;
/// Characters of a tag as written (unpadded base64url of 16 bytes).
const TAG_TEXT: usize = 22;
/// What precedes a keyed tag: `,"m":"`.
pub(crate) const KEYED_FIELD: &[u8] = b",\"m\":\"";
/// What precedes an unkeyed tag (written while sealed): `,"h":"`.
pub(crate) const PLAIN_FIELD: &[u8] = b",\"h\":\"";
/// What an unkeyed tag's message starts with.
const PLAIN_PREFIX: &[u8] = b"coffer audit record v3 unkeyed\n";

/// The fields the chain check needs; the hash, MAC or tag covers the rest.
#[derive(Deserialize)]
pub(crate) struct Head<'a> {
    /// The format (absent in the first one).
    pub(crate) v: Option<u64>,
    #[serde(alias = "s")]
    pub(crate) seq: u64,
    /// The link of the record before: every line of formats 1 and 2; in format 3, a file's
    /// first line.
    #[serde(borrow, default)]
    pub(crate) prev: Option<Cow<'a, str>>,
    /// `gap` or `retention` for the records the log writes about itself.
    #[serde(borrow, default)]
    pub(crate) event: Option<Cow<'a, str>>,
    /// A gap record: the last record before the gap.
    pub(crate) after: Option<u64>,
    /// A gap record: what is missing; and who acknowledged it.
    #[serde(borrow, default)]
    pub(crate) missing: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) acknowledged_by: Option<Cow<'a, str>>,
    /// A retention record: the seq the log starts with after it.
    pub(crate) oldest: Option<u64>,
}

/// How a format-3 line is tagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagKind {
    /// HMAC under the audit key.
    Keyed,
    /// BLAKE3, no key (written while sealed).
    Plain,
}

/// A format-3 line split into the part its tag covers, the tag's kind and the tag; `None`
/// when the line does not end in a well-formed tag field.
pub(crate) fn split_tag(line: &[u8]) -> Option<(&[u8], TagKind, [u8; TAG_LEN])> {
    let rest = line.strip_suffix(b"\"}")?;
    let at = rest.len().checked_sub(TAG_TEXT)?;
    let (head, text) = rest.split_at(at);
    let (covered, kind) = if let Some(c) = head.strip_suffix(KEYED_FIELD) {
        (c, TagKind::Keyed)
    } else {
        (head.strip_suffix(PLAIN_FIELD)?, TagKind::Plain)
    };
    let mut tag = [0u8; TAG_LEN];
    // Canonical only: the decoder refuses set bits past the 128th.
    let n = data_encoding::BASE64URL_NOPAD
        .decode_mut(text, &mut tag)
        .ok()?;
    (n == TAG_LEN).then_some((covered, kind, tag))
}

/// The keyed tag of `covered` (a line up to its tag) after a record whose link is `prev`.
pub(crate) fn keyed_tag(keys: &AuditKeys, prev: &Hash, covered: &[u8]) -> [u8; TAG_LEN] {
    let full = keys.record_tag(prev.bytes(), covered);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// The unkeyed tag: BLAKE3 of a fixed prefix, the previous link (its length first) and
/// `covered`.
pub(crate) fn plain_tag(prev: &Hash, covered: &[u8]) -> [u8; TAG_LEN] {
    let prev = prev.bytes();
    let mut h = blake3::Hasher::new();
    h.update(PLAIN_PREFIX);
    // A link is 16 or 32 bytes.
    h.update(&[u8::try_from(prev.len()).unwrap_or(u8::MAX)]);
    h.update(prev);
    h.update(covered);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&h.finalize().as_bytes()[..TAG_LEN]);
    tag
}

/// Appends `tag` as the line's last field (`,"m":"<base64url>"}` or `,"h":"<base64url>"}`).
pub(crate) fn push_tag(out: &mut Vec<u8>, kind: TagKind, tag: &[u8; TAG_LEN]) {
    out.extend_from_slice(match kind {
        TagKind::Keyed => KEYED_FIELD,
        TagKind::Plain => PLAIN_FIELD,
    });
    let at = out.len();
    out.resize(at + TAG_TEXT, 0);
    data_encoding::BASE64URL_NOPAD.encode_mut(tag, &mut out[at..]);
    out.extend_from_slice(b"\"}");
}

/// How a line authenticated itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Its MAC or keyed tag verified under the keys given.
    Keyed,
    /// It carries a MAC or keyed tag, but no keys were given to check it.
    Unchecked,
    /// It carries none (format 1, format 2 while sealed) or only an unkeyed tag (format 3
    /// while sealed, which was checked).
    None,
}

/// What is wrong with a line's authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// A format-3 line without a well-formed tag.
    NoTag,
    /// A MAC or keyed tag that does not verify.
    BadMac,
    /// An unkeyed tag that does not match.
    BadHash,
}

/// A line of format `v` (`None`: the first) authenticated after a record whose link is
/// `prev` (for format 3: the tag covers it); answers how, and the line's own link.
pub(crate) fn authenticate(
    line: &[u8],
    v: Option<u64>,
    prev: &Hash,
    keys: Option<&AuditKeys>,
) -> Result<(Auth, Hash), AuthError> {
    if v != Some(FORMAT) {
        let link = Hash::of_line(line);
        if v != Some(V2) {
            return Ok((Auth::None, link));
        }
        let Some((covered, mac)) = crate::chain::split_mac(line) else {
            return Ok((Auth::None, link));
        };
        let Some(keys) = keys else {
            return Ok((Auth::Unchecked, link));
        };
        let ok = data_encoding::HEXLOWER
            .decode(mac)
            .is_ok_and(|m| keys.record_mac_ok(covered, &m));
        return if ok {
            Ok((Auth::Keyed, link))
        } else {
            Err(AuthError::BadMac)
        };
    }
    let (covered, kind, tag) = split_tag(line).ok_or(AuthError::NoTag)?;
    let link = Hash::Tag(tag);
    match (kind, keys) {
        (TagKind::Plain, _) if plain_tag(prev, covered) == tag => Ok((Auth::None, link)),
        (TagKind::Plain, _) => Err(AuthError::BadHash),
        (TagKind::Keyed, None) => Ok((Auth::Unchecked, link)),
        (TagKind::Keyed, Some(k)) if k.record_tag_ok(prev.bytes(), covered, &tag) => {
            Ok((Auth::Keyed, link))
        }
        (TagKind::Keyed, Some(_)) => Err(AuthError::BadMac),
    }
}

/// The link a line leaves for the next one, without checking it: its tag in format 3, its
/// hash before. `None` for a format-3 line without a well-formed tag.
pub(crate) fn link_of(line: &[u8], v: Option<u64>) -> Option<Hash> {
    if v == Some(FORMAT) {
        split_tag(line).map(|(_, _, tag)| Hash::Tag(tag))
    } else {
        Some(Hash::of_line(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_the_line() {
        let mut line = b"{\"v\":3,\"s\":1".to_vec();
        let tag = plain_tag(&Hash::ZERO, &line);
        push_tag(&mut line, TagKind::Plain, &tag);
        let (covered, kind, parsed) = split_tag(&line).unwrap();
        assert_eq!(
            (covered, kind, parsed),
            (&b"{\"v\":3,\"s\":1"[..], TagKind::Plain, tag)
        );
        assert_eq!(
            authenticate(&line, Some(FORMAT), &Hash::ZERO, None),
            Ok((Auth::None, Hash::Tag(tag)))
        );
        assert_eq!(
            authenticate(&line, Some(FORMAT), &Hash::Tag(tag), None),
            Err(AuthError::BadHash)
        );
        assert_eq!(split_tag(b"{\"v\":3,\"s\":1,\"m\":\"00\"}"), None);
        // The 22nd character carries 4 bits past the 128th, which must be zero: it is one of
        // `A`, `Q`, `g`, `w`, and a `B` there is refused.
        let mut odd = line.clone();
        let last = odd.len() - 3;
        assert!(matches!(odd[last], b'A' | b'Q' | b'g' | b'w'));
        odd[last] = b'B';
        assert_eq!(split_tag(&odd), None);
        assert_eq!(
            authenticate(b"{\"v\":3,\"s\":1}", Some(FORMAT), &Hash::ZERO, None),
            Err(AuthError::NoTag)
        );
    }

    #[test]
    fn the_prev_link_is_length_prefixed() {
        let a = plain_tag(&Hash::Line([0; 32]), b"x");
        let b = plain_tag(&Hash::Tag([0; 16]), b"x");
        assert_ne!(a, b);
    }
}
