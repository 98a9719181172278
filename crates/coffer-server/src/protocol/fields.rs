//! Reading the fields of one request off the wire.
//!
//! Every field the protocol knows is declared once, in [`fields!`], with its type and the
//! words that describe that type. Values, keys and tokens are read straight into
//! `SecretBytes`. No message built here ever quotes the input: serde's own "invalid type"
//! errors do (`invalid type: integer `1234``), so a field that fails to parse is reported by
//! its name and the type it needs, and only serde_json's syntax errors (which carry
//! positions, never content) pass through.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use coffer_crypto::SecretBytes;
use coffer_types::ErrorCode;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

/// A request that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// `invalid_request` (or `too_large` for an oversized base64 value).
    pub code: ErrorCode,
    /// What is wrong, without quoting the request.
    pub message: String,
}

impl ParseError {
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
        }
    }
}

/// The field that failed to deserialize, and what it needed.
type Failed = Cell<Option<(&'static str, &'static str)>>;

/// Reads a request's fields into `fields`, in place (the struct is large; moving it
/// through serde's layers on every request costs more than the rest of parsing).
struct FieldsSeed<'a> {
    failed: &'a Failed,
    fields: &'a mut Fields,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

/// Shows an untrusted key safely: printable ASCII only, at most 32 characters.
fn shown(key: &str) -> String {
    let clean: String = key
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if key.chars().count() > 32 {
        format!("{clean}...")
    } else {
        clean
    }
}

/// A field name, borrowed from the request when it has no escapes.
struct FieldName<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for FieldName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(FieldName(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON scalar for `id`, kept as its JSON text.
pub(super) struct IdText(pub String);

impl<'de> de::Deserialize<'de> for IdText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                Ok(IdText(v.to_string()))
            }
            _ => Err(de::Error::custom("id")),
        }
    }
}

/// A version: a number, or `previous` (the one before the last rotation).
pub(super) enum VersionField {
    /// A version number.
    Number(u64),
    /// `previous`.
    Previous,
}

impl<'de> de::Deserialize<'de> for VersionField {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(VersionField::Number)
                .ok_or_else(|| de::Error::custom("version")),
            serde_json::Value::String(s) if s == "previous" => Ok(VersionField::Previous),
            _ => Err(de::Error::custom("version")),
        }
    }
}

/// A duration: a number of seconds, or text such as `90s` or `30d`.
pub(super) struct Seconds(pub u64);

impl<'de> de::Deserialize<'de> for Seconds {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(Seconds)
                .ok_or_else(|| de::Error::custom("seconds")),
            serde_json::Value::String(s) => coffer_types::duration::parse_seconds(&s)
                .map(Seconds)
                .map_err(|_| de::Error::custom("seconds")),
            _ => Err(de::Error::custom("seconds")),
        }
    }
}

/// Custom metadata: an object of strings, replacing what the secret had.
pub(super) struct CustomMap(pub coffer_types::custom::CustomMetadataChange);

impl<'de> de::Deserialize<'de> for CustomMap {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(CustomMap(
            coffer_types::custom::CustomMetadataChange::Replace(map),
        ))
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(FieldName(key)) = map.next_key::<FieldName<'de>>()? {
            self.fields.read(&key, &mut map, self.failed)?;
        }
        Ok(())
    }
}

fn syntax_message(e: &serde_json::Error, failed: &Failed) -> String {
    use serde_json::error::Category;
    match e.classify() {
        // Our own messages (unknown or repeated fields) and serde's type errors. Only ours
        // are safe to show; a failed field is described by name instead.
        Category::Data => match failed.get() {
            Some((field, needs)) => format!("field `{field}` must be {needs}"),
            None => {
                let text = e.to_string();
                if text.starts_with("unknown field") || text.contains("appears twice") {
                    text
                } else {
                    "the request is not a JSON object".to_owned()
                }
            }
        },
        // Syntax and end-of-input messages give positions, never content.
        Category::Syntax | Category::Eof => format!("malformed JSON: {e}"),
        Category::Io => "the request could not be read".to_owned(),
    }
}

/// Declares the fields: the struct, reading each by name, and listing which are present.
macro_rules! fields {
    ($( $field:ident : $ty:ty = $needs:literal, )+) => {
        /// Every field the protocol knows, as read off the wire.
        #[derive(Default)]
        pub(super) struct Fields {
            $( pub $field: Option<$ty>, )+
            /// One bit per field present, in declaration order (see [`FieldSet`]).
            pub present: FieldSet,
        }

        /// Field names in declaration order: bit `i` of a [`FieldSet`] is `NAMES[i]`.
        const NAMES: &[&str] = &[$( stringify!($field), )+];

        impl Fields {
            fn read<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
                failed: &Failed,
            ) -> Result<(), A::Error> {
                match key {
                    $(
                        stringify!($field) => {
                            if self.$field.is_some() {
                                return Err(de::Error::custom(concat!(
                                    "field `", stringify!($field), "` appears twice"
                                )));
                            }
                            failed.set(Some((stringify!($field), $needs)));
                            self.$field = Some(map.next_value::<$ty>()?);
                            failed.set(None);
                            self.present = self
                                .present
                                .and(const { FieldSet::EMPTY.with(stringify!($field)) });
                            Ok(())
                        }
                    )+
                    other => Err(de::Error::custom(format_args!(
                        "unknown field `{}`",
                        shown(other)
                    ))),
                }
            }
        }
    };
}

/// A set of fields, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct FieldSet(u128);

impl FieldSet {
    /// The empty set.
    pub const EMPTY: Self = Self(0);

    /// The set with `name` added. Evaluated at compile time for the constant sets of
    /// request.rs; an unknown name there fails the build.
    pub const fn with(self, name: &str) -> Self {
        let mut i = 0;
        while i < NAMES.len() {
            if str_eq(NAMES[i], name) {
                return Self(self.0 | 1u128 << i);
            }
            i += 1;
        }
        panic!("not a field of the protocol");
    }

    /// The union of two sets.
    pub const fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The first field of `self` that is not in `allowed`.
    pub fn first_outside(self, allowed: Self) -> Option<&'static str> {
        let extra = self.0 & !allowed.0;
        (extra != 0).then(|| NAMES[extra.trailing_zeros() as usize])
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A constant [`FieldSet`] of the named fields.
macro_rules! field_set {
    ($($name:ident),* $(,)?) => {
        $crate::protocol::fields::FieldSet::EMPTY $(.with(stringify!($name)))*
    };
}
pub(super) use field_set;

fields! {
    action: String = "a string",
    id: IdText = "a string or a number",
    keep_alive: bool = "true or false",
    token: SecretBytes = "a string",
    namespace: String = "a string",
    name: String = "a string",
    value: SecretBytes = "a string",
    value_b64: SecretBytes = "a base64 string",
    version: VersionField = "a positive integer or \"previous\"",
    kind: String = "a string",
    description: String = "a string",
    max_versions: u64 = "a whole number",
    cas: u64 = "a whole number",
    cas_required: bool = "true or false",
    delete_version_after: Seconds = "a number of seconds or a duration such as 30d",
    custom_metadata: CustomMap = "an object of strings",
    byte_len: u64 = "a positive integer",
    encoding: String = "a string",
    generate: bool = "true or false",
    rotate_every: Seconds = "a number of seconds or a duration such as 30d",
    rotate_command: String = "a string",
    rotate_grace: Seconds = "a number of seconds or a duration such as 1h",
    versions: Vec<u64> = "a list of positive integers",
    prefix: String = "a string",
    after: String = "a string",
    limit: u64 = "a positive integer",
    detail: bool = "true or false",
    revoked: bool = "true or false",
    algorithm: String = "a string",
    data: SecretBytes = "a string",
    data_b64: SecretBytes = "a base64 string",
    user: String = "a string",
    slot: String = "a string",
    key: SecretBytes = "a string",
    pcrs: String = "a string",
    path: String = "a string",
    slot_id: u64 = "a positive integer",
    policy: String = "a string",
    rules: Vec<coffer_core::access::policy::RuleText> = "a list of {\"path\", \"capabilities\"} objects",
    hcl: String = "a string (a Vault HCL policy)",
    subject: String = "a string",
    policies: Vec<String> = "a list of strings",
    ttl: Seconds = "a number of seconds or a duration such as 8h",
    max_ttl: Seconds = "a number of seconds or a duration such as 30d",
    orphan: bool = "true or false",
    accessor: String = "a string",
    display_name: String = "a string",
    since: u64 = "a revision (a whole number)",
    url: String = "a string",
    events: Vec<String> = "a list of strings",
    webhook: String = "a string",
    setting: String = "a string",
    passphrases: SecretBytes = "a string (passphrases, one a line)",
    drop_passphrase_slots: bool = "true or false",
    recipients: Vec<String> = "a list of strings",
    verb: String = "a string",
    role_id: String = "a string",
    secret_id: SecretBytes = "a string",
    secret_id_ttl: Seconds = "a number of seconds or a duration such as 10m",
    num_uses: u64 = "a whole number",
    tags: Vec<String> = "a list of strings",
    add: Vec<String> = "a list of strings",
    remove: Vec<String> = "a list of strings",
    node: String = "a string",
    public_key: String = "a string",
    tag: String = "a string",
    hubs: Vec<String> = "a list of strings",
}

/// Reads the fields of one request into `fields`.
pub(super) fn read(bytes: &[u8], fields: &mut Fields) -> Result<(), ParseError> {
    let failed = Failed::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    FieldsSeed {
        failed: &failed,
        fields,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end())
    .map_err(|e| ParseError::invalid(syntax_message(&e, &failed)))
}
