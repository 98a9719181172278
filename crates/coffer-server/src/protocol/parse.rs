//! Parsing one request of the socket protocol (DESIGN.md, Local socket protocol; reference
//! 000 for `set`/`get`/`del`).
//!
//! Values, keys and tokens are read straight into `SecretBytes`. No message built here ever
//! quotes the input: serde's own "invalid type" errors do (`invalid type: integer `1234``),
//! so a field that fails to parse is reported by its name and the type it needs, and only
//! serde_json's syntax errors (which carry positions, never content) pass through.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;

use coffer_core::Request;
use coffer_crypto::SecretBytes;
use coffer_types::wire::{Action, UnsealWith};
use coffer_types::{ErrorCode, Kind, Version};
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
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::InvalidRequest,
            message: message.into(),
        }
    }
}

/// A parsed request with its envelope fields.
#[derive(Debug)]
pub struct Parsed {
    /// What to do.
    pub request: Request,
    /// The `id` to echo, as JSON text.
    pub id: Option<String>,
    /// Whether the client asked to keep the connection open.
    pub keep_alive: bool,
}

/// Every field the protocol knows, as read off the wire.
#[derive(Default)]
struct Fields {
    action: Option<String>,
    name: Option<String>,
    value: Option<SecretBytes>,
    value_b64: Option<SecretBytes>,
    namespace: Option<String>,
    token: Option<SecretBytes>,
    version: Option<u64>,
    id: Option<String>,
    keep_alive: Option<bool>,
    key: Option<SecretBytes>,
    slot: Option<String>,
    kind: Option<String>,
}

/// The field that failed to deserialize, and what it needed.
type Failed = Cell<Option<(&'static str, &'static str)>>;

struct FieldsSeed<'a> {
    failed: &'a Failed,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Fields;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Fields, D::Error> {
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
struct IdText(String);

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

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields = Fields::default();
        let failed = self.failed;
        // Reads one field's value, remembering which field failed and what it needed.
        macro_rules! field {
            ($slot:expr, $name:literal, $ty:ty, $needs:literal) => {{
                if $slot.is_some() {
                    return Err(de::Error::custom(concat!(
                        "field `",
                        $name,
                        "` appears twice"
                    )));
                }
                failed.set(Some(($name, $needs)));
                let v: $ty = map.next_value()?;
                failed.set(None);
                $slot = Some(v);
            }};
        }
        while let Some(FieldName(key)) = map.next_key::<FieldName<'de>>()? {
            match key.as_ref() {
                "action" => field!(fields.action, "action", String, "a string"),
                "name" => field!(fields.name, "name", String, "a string"),
                "value" => field!(fields.value, "value", SecretBytes, "a string"),
                "value_b64" => field!(
                    fields.value_b64,
                    "value_b64",
                    SecretBytes,
                    "a base64 string"
                ),
                "namespace" => field!(fields.namespace, "namespace", String, "a string"),
                "token" => field!(fields.token, "token", SecretBytes, "a string"),
                "version" => field!(fields.version, "version", u64, "a positive integer"),
                "keep_alive" => field!(fields.keep_alive, "keep_alive", bool, "true or false"),
                "key" => field!(fields.key, "key", SecretBytes, "a string"),
                "slot" => field!(fields.slot, "slot", String, "a string"),
                "kind" => field!(fields.kind, "kind", String, "a string"),
                "id" => {
                    if fields.id.is_some() {
                        return Err(de::Error::custom("field `id` appears twice"));
                    }
                    failed.set(Some(("id", "a string or a number")));
                    let v: IdText = map.next_value()?;
                    failed.set(None);
                    fields.id = Some(v.0);
                }
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown field `{}`",
                        shown(other)
                    )));
                }
            }
        }
        Ok(fields)
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

fn required(
    field: Option<String>,
    name: &'static str,
    action: Action,
) -> Result<String, ParseError> {
    field.ok_or_else(|| ParseError::invalid(format!("`{action}` needs the field `{name}`")))
}

fn refuse_extra(action: Action, present: &[(&'static str, bool)]) -> Result<(), ParseError> {
    match present.iter().find(|(_, here)| *here) {
        Some((field, _)) => Err(ParseError::invalid(format!(
            "the field `{field}` does not apply to `{action}`"
        ))),
        None => Ok(()),
    }
}

/// Parses one request. `max_value` bounds a base64 value before it is decoded.
pub fn parse(bytes: &[u8], max_value: usize) -> Result<Parsed, ParseError> {
    let failed = Failed::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = FieldsSeed { failed: &failed }
        .deserialize(&mut de)
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| ParseError::invalid(syntax_message(&e, &failed)))?;
    let Fields {
        action,
        name,
        value,
        value_b64,
        namespace,
        token,
        version,
        id,
        keep_alive,
        key,
        slot,
        kind,
    } = fields;
    let action: Action = action
        .ok_or_else(|| ParseError::invalid("the request needs the field `action`"))?
        .parse()
        .map_err(|e: coffer_types::wire::UnknownAction| ParseError::invalid(e.to_string()))?;
    if token.is_some() {
        return Err(ParseError {
            code: ErrorCode::Unsupported,
            message: "token authentication is not available in this version; \
                      the socket identifies callers by their uid"
                .to_owned(),
        });
    }
    let version = version
        .map(|v| {
            u32::try_from(v)
                .ok()
                .and_then(Version::new)
                .ok_or_else(|| ParseError::invalid("field `version` must be a positive integer"))
        })
        .transpose()?;
    let kind = kind
        .map(|k| {
            k.parse::<Kind>()
                .map_err(|e| ParseError::invalid(e.to_string()))
        })
        .transpose()?;
    let request = match action {
        Action::Set => {
            refuse_extra(
                action,
                &[
                    ("version", version.is_some()),
                    ("key", key.is_some()),
                    ("slot", slot.is_some()),
                ],
            )?;
            let (value, kind) = match (value, value_b64) {
                (Some(v), None) => (v, kind),
                (None, Some(b64)) => {
                    // Base64 is 4/3 of its bytes; refuse what cannot fit before decoding.
                    if b64.len() / 4 * 3 > max_value + 3 {
                        return Err(ParseError {
                            code: ErrorCode::TooLarge,
                            message: format!(
                                "the value is larger than the limit of {max_value} bytes"
                            ),
                        });
                    }
                    let text = b64.expose_str().ok_or_else(|| {
                        ParseError::invalid("field `value_b64` must be a base64 string")
                    })?;
                    let decoded = SecretBytes::from_base64(text).map_err(|_| {
                        ParseError::invalid(
                            "field `value_b64` is not valid base64 (RFC 4648, padded)",
                        )
                    })?;
                    (decoded, Some(kind.unwrap_or(Kind::File)))
                }
                (Some(_), Some(_)) => {
                    return Err(ParseError::invalid(
                        "`set` takes `value` or `value_b64`, not both",
                    ));
                }
                (None, None) => {
                    return Err(ParseError::invalid(
                        "`set` needs the field `value` (or `value_b64`)",
                    ));
                }
            };
            Request::Set {
                namespace,
                name: required(name, "name", action)?,
                value,
                kind,
            }
        }
        Action::Get => {
            refuse_extra(
                action,
                &[
                    ("value", value.is_some() || value_b64.is_some()),
                    ("key", key.is_some()),
                    ("kind", kind.is_some()),
                ],
            )?;
            Request::Get {
                namespace,
                name: required(name, "name", action)?,
                version,
            }
        }
        Action::Del => {
            refuse_extra(
                action,
                &[
                    ("value", value.is_some() || value_b64.is_some()),
                    ("version", version.is_some()),
                    ("key", key.is_some()),
                    ("kind", kind.is_some()),
                ],
            )?;
            Request::Del {
                namespace,
                name: required(name, "name", action)?,
            }
        }
        Action::Status | Action::Seal => {
            refuse_extra(
                action,
                &[
                    ("name", name.is_some()),
                    ("value", value.is_some() || value_b64.is_some()),
                    ("key", key.is_some()),
                    ("version", version.is_some()),
                ],
            )?;
            if action == Action::Status {
                Request::Status
            } else {
                Request::Seal
            }
        }
        Action::Unseal => {
            refuse_extra(
                action,
                &[
                    ("name", name.is_some()),
                    ("value", value.is_some() || value_b64.is_some()),
                    ("version", version.is_some()),
                ],
            )?;
            let with = match slot.as_deref() {
                None if key.is_some() => UnsealWith::Passphrase,
                None => UnsealWith::KeyFile,
                Some(s) => s.parse().map_err(|_| {
                    ParseError::invalid("field `slot` must be `passphrase`, `recovery` or `file`")
                })?,
            };
            Request::Unseal { with, key }
        }
        _ => {
            return Err(ParseError::invalid(
                "this action is not available on the socket",
            ));
        }
    };
    Ok(Parsed {
        request,
        id,
        keep_alive: keep_alive.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &str) -> ParseError {
        parse(input.as_bytes(), 1 << 20).expect_err("expected an error")
    }

    #[test]
    fn the_device_requests_parse() {
        let p = parse(
            br#"{"action":"set","name":"third-party-api-key","value":"sk_live_abc123xyz"}"#,
            1 << 20,
        )
        .unwrap();
        let Request::Set {
            name,
            value,
            kind,
            namespace,
        } = p.request
        else {
            panic!()
        };
        assert_eq!(name, "third-party-api-key");
        assert_eq!(value.expose_secret(), b"sk_live_abc123xyz");
        assert_eq!((kind, namespace), (None, None));
        assert!(!p.keep_alive && p.id.is_none());
        assert!(matches!(
            parse(br#"{"action":"get","name":"k"}"#, 10)
                .unwrap()
                .request,
            Request::Get { version: None, .. }
        ));
        assert!(matches!(
            parse(br#"{"action":"del","name":"k"}"#, 10)
                .unwrap()
                .request,
            Request::Del { .. }
        ));
    }

    #[test]
    fn envelope_fields() {
        let p = parse(
            br#"{"action":"get","name":"k","namespace":"acme/prod","version":2,"id":"r-1","keep_alive":true}"#,
            10,
        )
        .unwrap();
        assert_eq!(p.id.as_deref(), Some(r#""r-1""#));
        assert!(p.keep_alive);
        let Request::Get {
            version, namespace, ..
        } = p.request
        else {
            panic!()
        };
        assert_eq!(version.map(Version::get), Some(2));
        assert_eq!(namespace.as_deref(), Some("acme/prod"));
        assert_eq!(
            parse(br#"{"action":"status","id":7}"#, 10)
                .unwrap()
                .id
                .as_deref(),
            Some("7")
        );
    }

    #[test]
    fn base64_values() {
        let p = parse(br#"{"action":"set","name":"f","value_b64":"AAEC/w=="}"#, 10).unwrap();
        let Request::Set { value, kind, .. } = p.request else {
            panic!()
        };
        assert_eq!(value.expose_secret(), &[0, 1, 2, 255]);
        assert_eq!(kind, Some(Kind::File));
        assert_eq!(
            err(r#"{"action":"set","name":"f","value_b64":"@@@"}"#).code,
            ErrorCode::InvalidRequest
        );
        let big = format!(
            r#"{{"action":"set","name":"f","value_b64":"{}"}}"#,
            "A".repeat(100)
        );
        assert_eq!(
            parse(big.as_bytes(), 10).err().unwrap().code,
            ErrorCode::TooLarge
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let cases = [
            ("{", "malformed JSON"),
            (r#"{"action":"get","name":"k",}"#, "malformed JSON"),
            (r#"{"name":"k"}"#, "needs the field `action`"),
            (r#"{"action":"steal","name":"k"}"#, "unknown action"),
            (r#"{"action":"get"}"#, "`get` needs the field `name`"),
            (
                r#"{"action":"set","name":"k"}"#,
                "`set` needs the field `value`",
            ),
            (
                r#"{"action":"get","name":7}"#,
                "field `name` must be a string",
            ),
            (
                r#"{"action":"get","name":"k","version":0}"#,
                "positive integer",
            ),
            (
                r#"{"action":"get","name":"k","version":-1}"#,
                "field `version` must be a positive integer",
            ),
            (
                r#"{"action":"get","name":"k","vlaue":"x"}"#,
                "unknown field `vlaue`",
            ),
            (r#"{"action":"get","name":"k","name":"j"}"#, "appears twice"),
            (
                r#"{"action":"get","name":"k","value":"v"}"#,
                "does not apply to `get`",
            ),
            (
                r#"{"action":"get","name":"k","id":{"a":1}}"#,
                "field `id` must be a string or a number",
            ),
            (r#"{"action":"get","name":"k"} trailing"#, "malformed JSON"),
            (r#"["get"]"#, "not a JSON object"),
        ];
        for (input, expected) in cases {
            let e = err(input);
            assert_eq!(e.code, ErrorCode::InvalidRequest, "{input}");
            assert!(e.message.contains(expected), "{input}: {}", e.message);
        }
    }

    #[test]
    fn mistyped_values_are_never_quoted() {
        for input in [
            r#"{"action":"set","name":"k","value":918273645}"#,
            r#"{"action":"set","name":"k","value":[918273645]}"#,
            r#"{"action":"set","name":918273645,"value":"x"}"#,
            r#"{"action":"get","name":"k","version":"918273645"}"#,
            r#"{"action":"unseal","key":918273645}"#,
            r#"{"action":"get","name":"k","keep_alive":"918273645"}"#,
        ] {
            let e = err(input);
            assert!(!e.message.contains("918273645"), "{input}: {}", e.message);
            assert!(e.message.starts_with("field `"), "{input}: {}", e.message);
        }
    }

    #[test]
    fn tokens_are_refused_until_supported() {
        let e = err(r#"{"action":"get","name":"k","token":"t"}"#);
        assert_eq!(e.code, ErrorCode::Unsupported);
    }

    #[test]
    fn unseal_slots() {
        let p = parse(br#"{"action":"unseal","slot":"recovery","key":"AAAA"}"#, 10).unwrap();
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::Recovery,
                key: Some(_)
            }
        ));
        let p = parse(br#"{"action":"unseal","key":"pw"}"#, 10).unwrap();
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::Passphrase,
                ..
            }
        ));
        let p = parse(br#"{"action":"unseal"}"#, 10).unwrap();
        assert!(matches!(
            p.request,
            Request::Unseal {
                with: UnsealWith::KeyFile,
                key: None
            }
        ));
        assert!(
            err(r#"{"action":"unseal","slot":"tpm"}"#)
                .message
                .contains("`slot`")
        );
    }
}
