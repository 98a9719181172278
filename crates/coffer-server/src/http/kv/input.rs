//! From a KV request (method, query, body) under one mount to the core operation it asks
//! for, and the [`Shape`] its answer takes. Only the wire's shape is checked here (JSON
//! types, the content type of a patch); every rule is the core's.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method};
use coffer_core::op::{MetadataChange, RotationInput, SecretOp, SpecInput, WriteOptions};
use coffer_core::{ListInput, Operation};
use coffer_crypto::SecretBytes;
use coffer_types::custom::CustomMetadataChange;
use coffer_types::{
    Action, DigestEncoding, Encoding, HmacAlgorithm, Kind, Parsed, Target, Version, duration,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroize;

use super::mount::Candidate;
use crate::http::error::ApiError;
use crate::http::extract::{Body, Query, lists, reads, writes};

/// What a KV request is, whatever mount it turns out to be under. Shared by the readings of
/// its path, so the body is read once and parsed only for the reading chosen.
pub(crate) struct KvRequest {
    pub method: Method,
    pub query: Query,
    pub headers: HeaderMap,
    pub body: Body,
    /// What building the chosen reading refused, for the answer (a 415 is not a 400).
    pub rejected: std::sync::Mutex<Option<ApiError>>,
}

/// How an answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A value with its metadata (`data` GET).
    Value,
    /// The keys of a value (`subkeys` GET), to this depth.
    Subkeys(usize),
    /// A version just written (`data` POST or PATCH).
    Written,
    /// A secret's metadata.
    Metadata,
    /// Keys under a folder (LIST).
    Keys,
    /// Revoked secrets with their history.
    Revoked,
    /// Nothing (204).
    NoContent,
    /// 204 even when there was nothing to delete (`metadata` DELETE).
    Deleted,
    /// The mount's settings (`config` GET).
    Config,
    /// coffer's own operations: a JSON object under `data`.
    Coffer,
}

/// What a reading asks, from its word and the method alone (no body): which operation it
/// will be, how its answer is shown, how it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    DataRead,
    DataWrite,
    DataPatch,
    DataDelete,
    MetadataList,
    MetadataRead,
    MetadataDelete,
    MetadataWrite { patching: bool },
    Versions(Action),
    Subkeys,
    ConfigRead,
    ConfigWrite,
    VersionList,
    Revoke,
    Mint(Action),
    Hmac,
    BasicAuth,
    Yescrypt,
    Revoked,
    Unsupported(Action),
}

impl Route {
    /// The route of `word` with this request's method.
    pub fn of(word: &str, rest: &str, req: &KvRequest) -> Self {
        let (method, query) = (&req.method, &req.query);
        match word {
            "data" if reads(method, query) => Self::DataRead,
            "data" if writes(method) => Self::DataWrite,
            "data" if method == Method::PATCH => Self::DataPatch,
            "data" if method == Method::DELETE => Self::DataDelete,
            "metadata" if lists(method, query) => Self::MetadataList,
            "metadata" if reads(method, query) => Self::MetadataRead,
            "metadata" if method == Method::DELETE => Self::MetadataDelete,
            "metadata" if writes(method) || method == Method::PATCH => Self::MetadataWrite {
                patching: method == Method::PATCH,
            },
            "revoked" if reads(method, query) || lists(method, query) => Self::Revoked,
            "delete" if writes(method) => Self::Versions(Action::Delete),
            "undelete" if writes(method) => Self::Versions(Action::Undelete),
            "destroy" if writes(method) => Self::Versions(Action::Destroy),
            "subkeys" if reads(method, query) => Self::Subkeys,
            "config" if rest.is_empty() && reads(method, query) => Self::ConfigRead,
            "config" if rest.is_empty() => Self::ConfigWrite,
            "versions" if reads(method, query) => Self::VersionList,
            "revoke" if writes(method) => Self::Revoke,
            "generate" if writes(method) => Self::Mint(Action::Generate),
            "rotate" if writes(method) => Self::Mint(Action::Rotate),
            "describe" if writes(method) => Self::Mint(Action::Describe),
            "hmac" if writes(method) => Self::Hmac,
            "basic-auth" if writes(method) => Self::BasicAuth,
            "yescrypt" if writes(method) => Self::Yescrypt,
            _ => Self::Unsupported(match word {
                "data" | "subkeys" => Action::Get,
                "metadata" => Action::Meta,
                "revoked" => Action::List,
                "delete" => Action::Delete,
                "undelete" => Action::Undelete,
                "destroy" => Action::Destroy,
                "config" => Action::Mount,
                "versions" => Action::Versions,
                "revoke" => Action::Revoke,
                "generate" => Action::Generate,
                "rotate" => Action::Rotate,
                "describe" => Action::Describe,
                "hmac" => Action::Hmac,
                "yescrypt" => Action::Yescrypt,
                _ => Action::BasicAuth,
            }),
        }
    }

    /// What the reading is recorded as, should it not become an operation.
    pub fn action(self) -> Action {
        match self {
            Self::DataRead | Self::Subkeys => Action::Get,
            Self::DataWrite => Action::Set,
            Self::DataPatch => Action::Patch,
            Self::DataDelete => Action::Delete,
            Self::MetadataList | Self::Revoked => Action::List,
            Self::MetadataRead => Action::Meta,
            Self::MetadataDelete => Action::Del,
            Self::MetadataWrite { .. } => Action::Describe,
            Self::ConfigRead | Self::ConfigWrite => Action::Mount,
            Self::VersionList => Action::Versions,
            Self::Revoke => Action::Revoke,
            Self::Hmac => Action::Hmac,
            Self::BasicAuth => Action::BasicAuth,
            Self::Yescrypt => Action::Yescrypt,
            Self::Versions(a) | Self::Mint(a) | Self::Unsupported(a) => a,
        }
    }

    /// How its answer is shown.
    pub fn shape(self, query: &Query) -> Shape {
        match self {
            Self::DataRead => Shape::Value,
            Self::Subkeys => {
                Shape::Subkeys(query.get("depth").and_then(|d| d.parse().ok()).unwrap_or(0))
            }
            Self::DataWrite | Self::DataPatch => Shape::Written,
            Self::MetadataRead => Shape::Metadata,
            Self::MetadataList => Shape::Keys,
            Self::Revoked => Shape::Revoked,
            Self::MetadataDelete => Shape::Deleted,
            Self::ConfigRead => Shape::Config,
            Self::VersionList | Self::Mint(_) | Self::Hmac | Self::BasicAuth | Self::Yescrypt => {
                Shape::Coffer
            }
            _ => Shape::NoContent,
        }
    }
}

fn secret(c: &Candidate, op: SecretOp) -> Result<Operation, ApiError> {
    if c.rest().is_empty() {
        return Err(ApiError::no_route(&format!("{}/", c.word)));
    }
    Ok(Operation::Secret {
        target: Target {
            namespace: Parsed::Valid(c.namespace.clone()),
            name: Target::parse(None, c.rest()).name,
        },
        op,
    })
}

/// The operation `req` asks for, read as `c` (whose route is `route`): the body is parsed
/// here, for the one reading the core chose.
pub(crate) fn build(req: &KvRequest, c: &Candidate, route: Route) -> Result<Operation, ApiError> {
    let query = &req.query;
    match route {
        Route::DataRead => secret(
            c,
            SecretOp::Get {
                version: version(query)?,
            },
        ),
        Route::DataWrite => {
            let input: WriteIn<'_> = req.body.json()?;
            let value = object_text(input.data)?;
            let options = WriteOptions {
                kind: Some(Kind::Kv),
                cas: input.options.and_then(|o| o.cas),
                ..WriteOptions::default()
            };
            secret(c, SecretOp::Set { value, options })
        }
        Route::DataPatch => {
            merge_patch_type(&req.headers)?;
            let input: WriteIn<'_> = req.body.json()?;
            let patch = object_text(input.data)?;
            let cas = input.options.and_then(|o| o.cas);
            secret(c, SecretOp::Patch { patch, cas })
        }
        Route::DataDelete => secret(c, SecretOp::DeleteVersions { versions: None }),
        Route::MetadataList => {
            let rest = c.rest();
            let prefix = if rest.is_empty() || rest.ends_with('/') {
                rest.to_owned()
            } else {
                format!("{rest}/")
            };
            Ok(Operation::List {
                namespace: Parsed::Valid(c.namespace.clone()),
                input: ListInput {
                    prefix: (!prefix.is_empty()).then_some(prefix),
                    folders: true,
                    ..ListInput::default()
                },
            })
        }
        Route::MetadataRead => secret(c, SecretOp::Meta),
        Route::MetadataDelete => secret(c, SecretOp::Del),
        Route::MetadataWrite { patching } => {
            if patching {
                merge_patch_type(&req.headers)?;
            }
            let input: MetadataIn = req.body.json()?;
            let change = input.change(patching)?;
            secret(c, SecretOp::Describe { change })
        }
        // coffer's own: revoked secrets (kept for audit) whose names start with the rest,
        // with their history; `after` and `limit` page as the socket's `list` does.
        Route::Revoked => Ok(Operation::List {
            namespace: Parsed::Valid(c.namespace.clone()),
            input: ListInput {
                prefix: (!c.rest().is_empty()).then(|| c.rest().to_owned()),
                after: query.get("after").map(str::to_owned),
                limit: match query.get("limit") {
                    None => None,
                    Some(l) => Some(
                        l.parse::<u64>()
                            .map_err(|_| ApiError::bad("limit must be a number"))?,
                    ),
                },
                revoked: true,
                ..ListInput::default()
            },
        }),
        Route::Versions(action) => {
            let versions = versions(&req.body)?;
            let op = match action {
                Action::Delete => SecretOp::DeleteVersions {
                    versions: Some(versions),
                },
                Action::Undelete => SecretOp::Undelete { versions },
                _ => SecretOp::Destroy { versions },
            };
            secret(c, op)
        }
        Route::Subkeys => {
            if query
                .get("depth")
                .is_some_and(|d| d.parse::<usize>().is_err())
            {
                return Err(ApiError::bad("depth must be a number"));
            }
            secret(
                c,
                SecretOp::Get {
                    version: version(query)?,
                },
            )
        }
        // The mount's settings need only a caller who may use the mount.
        Route::ConfigRead => Ok(Operation::Mount {
            candidates: vec![c.namespace.clone()],
        }),
        Route::ConfigWrite => Err(ApiError::bad(
            "coffer keeps these settings per secret, not per mount: write them with \
             POST metadata/<path> (max_versions, cas_required, delete_version_after)",
        )),
        Route::VersionList => secret(c, SecretOp::Versions),
        Route::Revoke => secret(c, SecretOp::Revoke),
        Route::Mint(action) => {
            let mut input: GenerateIn = req.body.json()?;
            let spec = input.spec()?;
            let options = input.options()?;
            let op = match action {
                Action::Generate => SecretOp::Generate {
                    spec: spec.unwrap_or_default(),
                    options,
                    rotation: input.rotation()?,
                },
                Action::Rotate => SecretOp::Rotate {
                    value: input
                        .value
                        .take()
                        .map(|v| SecretBytes::copy_from(v.0.as_bytes())),
                    spec,
                    options,
                },
                _ => SecretOp::Describe {
                    change: MetadataChange {
                        description: input.description.take(),
                        max_versions: input.max_versions,
                        ..MetadataChange::default()
                    },
                },
            };
            secret(c, op)
        }
        Route::Hmac => {
            let input: HmacIn = req.body.json()?;
            let op = SecretOp::Hmac {
                algorithm: word::<HmacAlgorithm>(input.algorithm.as_deref())?.unwrap_or_default(),
                data: input.data.into_bytes(),
                encoding: word::<DigestEncoding>(input.encoding.as_deref())?.unwrap_or_default(),
            };
            secret(c, op)
        }
        Route::BasicAuth => {
            let input: BasicAuthIn = req.body.json()?;
            secret(c, SecretOp::BasicAuth { user: input.user })
        }
        Route::Yescrypt => {
            let input: YescryptIn = req.body.json()?;
            secret(
                c,
                SecretOp::Yescrypt {
                    setting: input.setting,
                },
            )
        }
        Route::Unsupported(_) => Err(ApiError::unsupported()),
    }
}

fn word<T: std::str::FromStr>(text: Option<&str>) -> Result<Option<T>, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.map(|w| w.parse::<T>().map_err(|e| ApiError::bad(e.to_string())))
        .transpose()
}

fn version(query: &Query) -> Result<Option<Version>, ApiError> {
    match query.get("version") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .and_then(Version::new)
            .map(Some)
            .ok_or_else(|| ApiError::bad("version must be a positive integer")),
    }
}

fn merge_patch_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/merge-patch+json"));
    if ok {
        Ok(())
    } else {
        Err(ApiError::Edge(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH requires Content-Type: application/merge-patch+json".to_owned(),
        ))
    }
}

#[derive(Deserialize, Default)]
struct WriteOptionsIn {
    #[serde(default)]
    cas: Option<u64>,
}

#[derive(Deserialize)]
struct WriteIn<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<WriteOptionsIn>,
}

/// The `data` of a write: a JSON object's text, in locked memory.
fn object_text(raw: Option<&RawValue>) -> Result<SecretBytes, ApiError> {
    let raw = raw.ok_or_else(|| ApiError::bad("no data provided"))?;
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad("data must be a JSON object"));
    }
    Ok(SecretBytes::copy_from(text.as_bytes()))
}

/// `{"versions":[1,"2"]}`: the bao CLI sends numbers as strings.
fn versions(body: &Body) -> Result<Vec<Version>, ApiError> {
    #[derive(Deserialize)]
    struct VersionsIn {
        #[serde(default)]
        versions: Vec<serde_json::Value>,
    }
    let input: VersionsIn = body.json()?;
    input
        .versions
        .iter()
        .map(|v| {
            let n = match v {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            n.and_then(|n| u32::try_from(n).ok())
                .and_then(Version::new)
                .ok_or_else(|| ApiError::bad("versions are positive integers"))
        })
        .collect()
}

#[derive(Deserialize)]
struct MetadataIn {
    #[serde(default)]
    max_versions: Option<u64>,
    #[serde(default)]
    cas_required: Option<bool>,
    #[serde(default)]
    delete_version_after: Option<serde_json::Value>,
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, Option<String>>>,
}

impl MetadataIn {
    /// The change: a write replaces the custom metadata, a patch merges into it (`null`
    /// removes a key).
    fn change(self, patching: bool) -> Result<MetadataChange, ApiError> {
        let after = self
            .delete_version_after
            .as_ref()
            .map(|v| match v {
                serde_json::Value::Number(n) => n.as_u64().ok_or(()),
                serde_json::Value::String(s) => duration::parse_seconds(s).map_err(drop),
                _ => Err(()),
            })
            .transpose()
            .map_err(|()| {
                ApiError::bad(format!("delete_version_after: {}", duration::DurationError))
            })?;
        let custom_metadata = self.custom_metadata.map(|map| {
            if patching {
                CustomMetadataChange::Merge(map)
            } else {
                CustomMetadataChange::Replace(
                    map.into_iter()
                        .filter_map(|(k, v)| v.map(|v| (k, v)))
                        .collect(),
                )
            }
        });
        Ok(MetadataChange {
            description: None,
            max_versions: self.max_versions,
            cas_required: self.cas_required,
            delete_version_after: after,
            custom_metadata,
        })
    }
}

#[derive(Deserialize, Default)]
struct GenerateIn {
    #[serde(default)]
    byte_len: Option<u64>,
    #[serde(default)]
    encoding: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    max_versions: Option<u64>,
    #[serde(default)]
    value: Option<WipedString>,
    #[serde(default)]
    rotate_every: Option<serde_json::Value>,
    #[serde(default)]
    rotate_command: Option<String>,
    #[serde(default)]
    rotate_grace: Option<serde_json::Value>,
}

/// A duration field: a number of seconds or a duration's text.
fn seconds(field: &str, v: Option<&serde_json::Value>) -> Result<Option<u64>, ApiError> {
    v.map(|v| match v {
        serde_json::Value::Number(n) => n.as_u64().ok_or(()),
        serde_json::Value::String(s) => duration::parse_seconds(s).map_err(drop),
        _ => Err(()),
    })
    .transpose()
    .map_err(|()| ApiError::bad(format!("{field}: {}", duration::DurationError)))
}

/// A string from a request body that holds a value: zeroized when dropped, whatever
/// happens to the request after it was read.
#[derive(Deserialize)]
#[serde(transparent)]
struct WipedString(String);

impl Drop for WipedString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl GenerateIn {
    fn spec(&self) -> Result<Option<SpecInput>, ApiError> {
        let encoding = word::<Encoding>(self.encoding.as_deref())?;
        Ok(match (self.byte_len, encoding) {
            (None, None) => None,
            (byte_len, encoding) => Some(SpecInput { byte_len, encoding }),
        })
    }

    /// The rotation policy of a `generate` (`rotate_every` is required for the others).
    fn rotation(&mut self) -> Result<Option<RotationInput>, ApiError> {
        let every = seconds("rotate_every", self.rotate_every.as_ref())?;
        let grace = seconds("rotate_grace", self.rotate_grace.as_ref())?;
        let command = self.rotate_command.take();
        match every {
            Some(every) => Ok(Some(RotationInput {
                every,
                command,
                grace,
            })),
            None if command.is_some() || grace.is_some() => Err(ApiError::bad(
                "rotate_command and rotate_grace need rotate_every",
            )),
            None => Ok(None),
        }
    }

    fn options(&self) -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            kind: word::<Kind>(self.kind.as_deref())?,
            description: self.description.clone(),
            max_versions: self.max_versions,
            ..WriteOptions::default()
        })
    }
}

#[derive(Deserialize)]
struct HmacIn {
    data: String,
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct BasicAuthIn {
    user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YescryptIn {
    #[serde(default)]
    setting: Option<String>,
}
