//! KV v2 values: how any secret reads as a JSON object, and JSON merge patches (RFC 7396).
//!
//! A secret written through the Vault-compatible API has kind `kv` and holds a JSON object's
//! text. Any other secret reads as `{"value": "<text>"}` (`{"value_b64": "..."}` when it is
//! not UTF-8). Parsed JSON lives in ordinary heap memory for as long as a request needs it;
//! every string in it is wiped before it is dropped.

use coffer_crypto::SecretBytes;
use coffer_types::Kind;
use serde_json::{Map, Value};
use zeroize::Zeroize;

use crate::CoreError;

/// A secret's value as a KV v2 object. The caller wipes it with [`wipe_map`] when done.
pub fn to_object(value: &SecretBytes, kind: Kind) -> Result<Map<String, Value>, CoreError> {
    if kind == Kind::Kv {
        return match serde_json::from_slice(value.expose_secret()) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(mut other) => {
                wipe(&mut other);
                Err(CoreError::InvalidRequest(
                    "a stored kv secret is not a JSON object".to_owned(),
                ))
            }
            Err(_) => Err(CoreError::InvalidRequest(
                "a stored kv secret is not valid JSON".to_owned(),
            )),
        };
    }
    let mut map = Map::new();
    match value.expose_str() {
        Some(text) => map.insert("value".to_owned(), Value::String(text.to_owned())),
        None => map.insert(
            "value_b64".to_owned(),
            Value::String(data_encoding::BASE64.encode(value.expose_secret())),
        ),
    };
    Ok(map)
}

/// Encodes an object as a kv secret's value, wiping the object.
pub fn from_object(mut map: Map<String, Value>) -> Result<SecretBytes, CoreError> {
    let encoded = serde_json::to_vec(&map);
    wipe_map(&mut map);
    encoded
        .map(SecretBytes::from_vec)
        .map_err(|_| CoreError::InvalidRequest("the data cannot be encoded as JSON".to_owned()))
}

/// The value `current` (of `kind`) with the merge patch `patch` (a JSON object) applied.
pub fn merge(
    current: &SecretBytes,
    kind: Kind,
    patch: &SecretBytes,
) -> Result<SecretBytes, CoreError> {
    let mut patch: Value = serde_json::from_slice(patch.expose_secret())
        .map_err(|_| CoreError::InvalidRequest("the patch is not valid JSON".to_owned()))?;
    if !patch.is_object() {
        wipe(&mut patch);
        return Err(CoreError::InvalidRequest(
            "the patch's data must be a JSON object".to_owned(),
        ));
    }
    let mut doc = Value::Object(to_object(current, kind)?);
    json_patch::merge(&mut doc, &patch);
    wipe(&mut patch);
    match doc {
        Value::Object(map) => from_object(map),
        mut other => {
            wipe(&mut other);
            Err(CoreError::InvalidRequest(
                "the patched data is not a JSON object".to_owned(),
            ))
        }
    }
}

/// Wipes every string (and key) in `value`.
pub fn wipe(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(wipe),
        Value::Object(map) => wipe_map(map),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Wipes every string in `map`, keys included, and empties it.
pub fn wipe_map(map: &mut Map<String, Value>) {
    for (mut key, mut value) in std::mem::take(map) {
        key.zeroize();
        wipe(&mut value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> SecretBytes {
        SecretBytes::copy_from(s.as_bytes())
    }

    #[test]
    fn a_plain_secret_reads_as_value() {
        let map = to_object(&text("hunter2"), Kind::Text).unwrap();
        assert_eq!(Value::Object(map), serde_json::json!({"value": "hunter2"}));
        let map = to_object(&SecretBytes::copy_from(&[0xff, 0]), Kind::File).unwrap();
        assert_eq!(Value::Object(map), serde_json::json!({"value_b64": "/wA="}));
    }

    #[test]
    fn merge_follows_rfc_7396() {
        let merged = merge(
            &text(r#"{"a":"1","b":{"c":"2","d":"3"},"e":"4"}"#),
            Kind::Kv,
            &text(r#"{"b":{"c":null,"x":"9"},"e":null,"f":"5"}"#),
        )
        .unwrap();
        let merged: Value = serde_json::from_slice(merged.expose_secret()).unwrap();
        assert_eq!(
            merged,
            serde_json::json!({"a":"1","b":{"d":"3","x":"9"},"f":"5"})
        );
    }

    #[test]
    fn a_patch_must_be_an_object() {
        let e = merge(&text("{}"), Kind::Kv, &text("[1]")).unwrap_err();
        assert!(e.to_string().contains("object"), "{e}");
        let e = merge(&text("{}"), Kind::Kv, &text("{")).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"), "{e}");
    }
}
