//! KV v2's response shapes: a value with its version's metadata, a secret's metadata, a
//! version that is gone, a secret's subkeys.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use coffer_core::cache::Facts;
use coffer_crypto::SecretBytes;
use coffer_store::{Gone, SecretMeta};
use coffer_types::{Kind, Timestamp, Version, duration};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::http::envelope::{self, Envelope};
use crate::http::error::ApiError;
use axum::response::IntoResponse as _;

/// A minted value, shown this once.
#[derive(Serialize)]
pub(crate) struct Minted<'a> {
    pub value: &'a str,
    pub version: u32,
}

/// A basic-auth header.
#[derive(Serialize)]
pub(crate) struct Header<'a> {
    pub header: &'a str,
}

/// The metadata KV v2 shows with a version.
#[derive(Serialize)]
pub(crate) struct VersionMeta<'a> {
    pub created_time: String,
    pub custom_metadata: Option<&'a BTreeMap<String, String>>,
    pub deletion_time: String,
    pub destroyed: bool,
    pub version: u32,
}

impl<'a> VersionMeta<'a> {
    /// The metadata of a version read with its value.
    pub fn of(version: Version, facts: &'a Facts) -> Self {
        Self {
            created_time: facts.created.to_string(),
            custom_metadata: custom(&facts.custom_metadata),
            deletion_time: deletion_text(facts.deletion),
            destroyed: false,
            version: version.get(),
        }
    }

    /// The metadata of a version just written.
    pub fn written(version: Version) -> Self {
        Self {
            created_time: Timestamp::now().to_string(),
            custom_metadata: None,
            deletion_time: String::new(),
            destroyed: false,
            version: version.get(),
        }
    }
}

fn deletion_text(deletion: Option<Timestamp>) -> String {
    deletion.map(|t| t.to_string()).unwrap_or_default()
}

fn custom(map: &BTreeMap<String, String>) -> Option<&BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

#[derive(Serialize)]
struct KvData<'a, D: Serialize + ?Sized> {
    data: &'a D,
    metadata: VersionMeta<'a>,
}

/// A read's answer, written straight into a wiped buffer: a `kv` value is embedded as the
/// JSON text it is stored as, without a parsed copy.
pub(crate) fn value(value: &SecretBytes, kind: Kind, version: Version, facts: &Facts) -> Response {
    let meta = VersionMeta::of(version, facts);
    let id = envelope::request_id();
    let encoded = if kind == Kind::Kv {
        match serde_json::from_slice::<&RawValue>(value.expose_secret()) {
            Ok(raw) => envelope::encode(&Envelope::data(
                &id,
                KvData {
                    data: raw,
                    metadata: meta,
                },
            )),
            Err(_) => return internal("a stored kv secret is not valid JSON"),
        }
    } else {
        let mut map = match coffer_core::kv::to_object(value, kind) {
            Ok(m) => m,
            Err(e) => return internal(&e.to_string()),
        };
        let encoded = envelope::encode(&Envelope::data(
            &id,
            KvData {
                data: &map,
                metadata: meta,
            },
        ));
        coffer_core::kv::wipe_map(&mut map);
        encoded
    };
    match encoded {
        Ok(bytes) => envelope::raw(StatusCode::OK, bytes),
        Err(_) => internal("an answer could not be encoded"),
    }
}

/// A fault inside coffer, as a response.
fn internal(detail: &str) -> Response {
    ApiError::internal(detail).into_response()
}

/// Vault's 404 for a deleted or destroyed version: no data, and the version's metadata.
pub(crate) fn gone(gone: &Gone) -> Response {
    #[derive(Serialize)]
    struct GoneData<'a> {
        data: Option<()>,
        metadata: VersionMeta<'a>,
    }
    let id = envelope::request_id();
    envelope::json(
        StatusCode::NOT_FOUND,
        &Envelope::data(
            &id,
            GoneData {
                data: None,
                metadata: VersionMeta {
                    created_time: gone.created.to_string(),
                    custom_metadata: custom(&gone.custom_metadata),
                    deletion_time: if gone.destroyed {
                        String::new()
                    } else {
                        deletion_text(gone.deletion)
                    },
                    destroyed: gone.destroyed,
                    version: gone.version.get(),
                },
            },
        ),
    )
}

#[derive(Serialize)]
struct VersionEntry {
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

#[derive(Serialize)]
struct MetadataView<'a> {
    cas_required: bool,
    created_time: String,
    current_version: u32,
    /// OpenBao 2.x's: coffer keeps no versions of the metadata itself, so 0 (as OpenBao
    /// answers for metadata never written apart from data).
    current_metadata_version: u32,
    custom_metadata: Option<&'a BTreeMap<String, String>>,
    delete_version_after: String,
    max_versions: u32,
    /// OpenBao 2.x's: whether metadata writes need a check-and-set (never, in coffer).
    metadata_cas_required: bool,
    oldest_version: u32,
    updated_time: String,
    versions: BTreeMap<String, VersionEntry>,
    // coffer's own, beside Vault's fields.
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

/// A secret's metadata as KV v2 shows it.
pub(crate) fn metadata(meta: &SecretMeta) -> Response {
    let oldest = meta.versions.first().map_or(0, |v| v.version.get());
    envelope::data(MetadataView {
        cas_required: meta.cas_required,
        created_time: meta.created.to_string(),
        current_version: meta.current.get(),
        current_metadata_version: 0,
        custom_metadata: custom(&meta.custom_metadata),
        delete_version_after: duration::go_text(meta.delete_version_after.unwrap_or(0)),
        max_versions: meta.max_versions.unwrap_or(0),
        metadata_cas_required: false,
        // Vault says 0 until versions were pruned.
        oldest_version: if oldest > 1 { oldest } else { 0 },
        updated_time: meta.updated.to_string(),
        versions: meta
            .versions
            .iter()
            .map(|v| {
                (
                    v.version.get().to_string(),
                    VersionEntry {
                        created_time: v.created.to_string(),
                        deletion_time: deletion_text(v.deleted),
                        destroyed: v.destroyed,
                    },
                )
            })
            .collect(),
        kind: meta.kind,
        description: meta.description.as_deref(),
    })
}

/// A secret's subkeys: its object's keys, nested objects down to `depth` (0: all), leaves
/// as null. Never a value.
pub(crate) fn subkeys(
    value: &SecretBytes,
    kind: Kind,
    version: Version,
    facts: &Facts,
    depth: usize,
) -> Result<Response, ApiError> {
    let mut map = match coffer_core::kv::to_object(value, kind) {
        Ok(m) => m,
        Err(e) => return Err(ApiError::internal(&e.to_string())),
    };
    let shape = keys_only(&map, depth, 1);
    coffer_core::kv::wipe_map(&mut map);
    Ok(envelope::data(serde_json::json!({
        "subkeys": shape,
        "metadata": VersionMeta::of(version, facts),
    })))
}

fn keys_only(
    map: &serde_json::Map<String, serde_json::Value>,
    depth: usize,
    at: usize,
) -> serde_json::Value {
    serde_json::Value::Object(
        map.iter()
            .map(|(k, v)| {
                let shape = match v {
                    serde_json::Value::Object(inner) if depth == 0 || at < depth => {
                        keys_only(inner, depth, at + 1)
                    }
                    _ => serde_json::Value::Null,
                };
                (k.clone(), shape)
            })
            .collect(),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A read's answer lives in one buffer that is zeroized when hyper lets go of the body
    /// (issue 12, item 9): sending it whole and dropping it wipes exactly its bytes.
    #[test]
    fn a_read_answer_is_zeroized_once_sent() {
        use http_body_util::BodyExt as _;
        let facts = Facts {
            created: Timestamp::now(),
            deletion: None,
            custom_metadata: BTreeMap::new(),
        };
        let secret = SecretBytes::copy_from(b"{\"password\":\"zeroize-me-4411\"}");
        let before = envelope::WIPED.with(std::cell::Cell::get);
        let response = value(&secret, Kind::Kv, Version::FIRST, &facts);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let sent = runtime.block_on(async {
            let body = response.into_body();
            let mut sent = 0;
            let mut body = std::pin::pin!(body);
            while let Some(frame) = body.frame().await {
                let frame = frame.unwrap();
                let data = frame.into_data().unwrap();
                assert!(
                    data.windows(15).any(|w| w == b"zeroize-me-4411"),
                    "the value is in the answer"
                );
                sent += data.len();
            }
            sent
        });
        let wiped = envelope::WIPED.with(std::cell::Cell::get) - before;
        assert!(sent > 0);
        assert_eq!(wiped, sent, "the answer's buffer was zeroized when dropped");
    }

    #[test]
    fn subkeys_keep_the_shape_only() {
        let map = serde_json::json!({"a": "1", "b": {"c": "2", "d": {"e": "3"}}});
        let map = map.as_object().unwrap();
        assert_eq!(
            keys_only(map, 0, 1),
            serde_json::json!({"a": null, "b": {"c": null, "d": {"e": null}}})
        );
        assert_eq!(
            keys_only(map, 1, 1),
            serde_json::json!({"a": null, "b": null})
        );
    }
}
