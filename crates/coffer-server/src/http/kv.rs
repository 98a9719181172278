//! KV v2 on every namespace (`/v1/<namespace>/...`, and `default` at `/v1/secret/...`), and
//! coffer's own secret operations beside it (`generate`, `rotate`, `revoke`, `describe`,
//! `versions`, `hmac`, `basic-auth`).
//!
//! The mount is the longest namespace the path starts with (`acme/prod` before `acme`).
//! While the store is sealed nothing can be resolved, and every mount answers 503.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use coffer_core::cache::Facts;
use coffer_core::{ListRequest, Reply, Request, SecretOp, WriteOptions};
use coffer_crypto::SecretBytes;
use coffer_store::{Describe, Mark, SecretMeta};
use coffer_types::{
    DigestEncoding, Encoding, GeneratorSpec, HmacAlgorithm, Kind, Namespace, Timestamp, Version,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::body::Wiped;
use super::reply::{self, Envelope};
use super::route::{Ctx, no_route, unsupported};

/// Custom metadata limits, as Vault's.
const MAX_CUSTOM_KEYS: usize = 64;
const MAX_CUSTOM_KEY_LEN: usize = 128;
const MAX_CUSTOM_VALUE_LEN: usize = 512;

/// A mounted namespace and the rest of the path.
struct Mount<'p> {
    /// Where it is mounted, with a trailing slash (`secret/`).
    path: String,
    namespace: Namespace,
    rest: &'p str,
}

/// Finds the mount of `path`: the longest prefix ending at a `/` that `find` knows as a
/// namespace (a hash lookup per prefix, no list of every namespace).
fn mount<'p>(path: &'p str, find: impl Fn(&str) -> Option<Namespace>) -> Option<Mount<'p>> {
    if path == "secret" || path.starts_with("secret/") {
        return Some(Mount {
            path: "secret/".to_owned(),
            namespace: Namespace::default_namespace(),
            rest: path
                .strip_prefix("secret")
                .unwrap_or("")
                .trim_start_matches('/'),
        });
    }
    let mut end = path.len();
    loop {
        let candidate = &path[..end];
        if let Some(namespace) = find(candidate) {
            return Some(Mount {
                path: format!("{candidate}/"),
                namespace,
                rest: path[end..].trim_start_matches('/'),
            });
        }
        end = candidate.rfind('/')?;
    }
}

/// The mount of `path` in the running store (`None` also while sealed).
fn mount_in<'p>(ctx: &Ctx<'_>, path: &'p str) -> Option<Mount<'p>> {
    mount(path, |c| ctx.shared.service.namespace_for_routing(c))
}

/// The mount entry of `path` for `sys/internal/ui/mounts/<path>` and `sys/mounts`.
pub(crate) fn mount_entry(mount_path: &str, namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "path": mount_path,
        "type": "kv",
        "description": format!("coffer namespace {namespace}"),
        "accessor": format!("kv_{}", &blake3_hex(namespace)[..8]),
        "options": {"version": "2"},
        "config": {
            "default_lease_ttl": 0,
            "max_lease_ttl": 0,
            "force_no_cache": false,
        },
        "local": false,
        "seal_wrap": false,
        "external_entropy_access": false,
        "uuid": "",
        "plugin_version": "",
        "running_plugin_version": "",
        "running_sha256": "",
    })
}

fn blake3_hex(text: &str) -> String {
    data_encoding::HEXLOWER.encode(blake3::hash(text.as_bytes()).as_bytes())
}

/// Resolves `path` to its mount, for the mounts preflight.
pub(crate) fn resolve(ctx: &Ctx<'_>, path: &str) -> Option<(String, Namespace)> {
    mount_in(ctx, path).map(|m| (m.path, m.namespace))
}

/// Handles a path under a mount.
pub(crate) async fn handle(ctx: &Ctx<'_>, path: &str) -> (&'static str, Response) {
    if ctx.token.is_none() {
        return (
            "kv",
            reply::error(StatusCode::FORBIDDEN, "permission denied"),
        );
    }
    if ctx.shared.service.sealed() {
        return (
            "kv",
            reply::error(StatusCode::SERVICE_UNAVAILABLE, reply::SEALED),
        );
    }
    let Some(m) = mount_in(ctx, path) else {
        return ("other", no_route(path));
    };
    let (op, name) = m.rest.split_once('/').unwrap_or((m.rest, ""));
    let ns = m.namespace.as_str().to_owned();
    let response = match op {
        "data" => return ("kv.data", data(ctx, ns, name).await),
        "metadata" => return ("kv.metadata", metadata(ctx, ns, name).await),
        "delete" | "undelete" => mark(ctx, ns, name, op == "delete").await,
        "destroy" => destroy(ctx, ns, name).await,
        "subkeys" => return ("kv.subkeys", subkeys(ctx, ns, name).await),
        "config" if name.is_empty() => return ("kv.config", config(ctx)),
        "generate" | "rotate" | "revoke" | "describe" | "versions" | "hmac" | "basic-auth" => {
            return ("coffer.secret", coffer_op(ctx, ns, op, name).await);
        }
        _ => no_route(path),
    };
    ("kv.delete", response)
}

/// The metadata KV v2 shows with a version.
#[derive(Serialize)]
struct VersionMeta<'a> {
    created_time: String,
    custom_metadata: Option<&'a BTreeMap<String, String>>,
    deletion_time: String,
    destroyed: bool,
    version: u32,
}

fn deletion_text(deletion: Option<Timestamp>) -> String {
    deletion.map(|t| t.to_string()).unwrap_or_default()
}

fn custom(map: &BTreeMap<String, String>) -> Option<&BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

fn parse_version(ctx: &Ctx<'_>) -> Result<Option<Version>, Response> {
    match ctx.query("version") {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .and_then(Version::new)
            .map(Some)
            .ok_or_else(|| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "version must be a positive integer",
                )
            }),
    }
}

async fn data(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    if name.is_empty() {
        return no_route("data/");
    }
    if ctx.reads() {
        let version = match parse_version(ctx) {
            Ok(v) => v,
            Err(r) => return r,
        };
        return read(ctx, ns, name, version).await;
    }
    if ctx.writes() {
        return write(ctx, ns, name).await;
    }
    if ctx.method == Method::PATCH {
        return patch(ctx, ns, name).await;
    }
    if ctx.method == Method::DELETE {
        return describe(
            ctx,
            ns,
            name,
            Describe {
                mark: Some(Mark::DeleteLatest),
                ..Describe::default()
            },
        )
        .await;
    }
    unsupported()
}

async fn read(ctx: &Ctx<'_>, ns: String, name: &str, version: Option<Version>) -> Response {
    let request = secret(ns, name, SecretOp::Get { version });
    match ctx.call(request).await {
        Ok(Reply::Value {
            value,
            version,
            kind,
            facts,
        }) => value_response(&value, kind, version, &facts),
        Ok(_) => reply::unexpected(),
        Err(r) => gone_or(&r),
    }
}

/// A refusal, or for a deleted or destroyed version Vault's 404 with its metadata.
fn gone_or(r: &coffer_core::Refusal) -> Response {
    if let coffer_core::CoreError::Store(coffer_store::StoreError::Gone(gone)) = &r.error {
        #[derive(Serialize)]
        struct GoneData<'a> {
            data: Option<()>,
            metadata: VersionMeta<'a>,
        }
        let id = reply::request_id();
        return reply::json(
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
        );
    }
    if r.error.code() == coffer_types::ErrorCode::NotFound {
        return reply::not_found();
    }
    reply::refusal(r)
}

/// The read answer, written straight into a wiped buffer: a `kv` value is embedded as the
/// JSON text it is stored as, without a parsed copy.
fn value_response(value: &SecretBytes, kind: Kind, version: Version, facts: &Facts) -> Response {
    let meta = VersionMeta {
        created_time: facts.created.to_string(),
        custom_metadata: custom(&facts.custom_metadata),
        deletion_time: deletion_text(facts.deletion),
        destroyed: false,
        version: version.get(),
    };
    let id = reply::request_id();
    let encoded = if kind == Kind::Kv {
        match serde_json::from_slice::<&RawValue>(value.expose_secret()) {
            Ok(raw) => serde_json::to_vec(&Envelope::data(
                &id,
                KvData {
                    data: raw,
                    metadata: meta,
                },
            )),
            Err(_) => {
                return reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "a stored kv secret is not valid JSON",
                );
            }
        }
    } else {
        let mut map = match coffer_core::kv::to_object(value, kind) {
            Ok(m) => m,
            Err(e) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let encoded = serde_json::to_vec(&Envelope::data(
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
        Ok(bytes) => reply::raw(StatusCode::OK, Wiped(bytes)),
        Err(_) => reply::unexpected(),
    }
}

#[derive(Serialize)]
struct KvData<'a, D: Serialize + ?Sized> {
    data: &'a D,
    metadata: VersionMeta<'a>,
}

#[derive(Deserialize, Default)]
struct WriteOptionsIn {
    #[serde(default)]
    cas: Option<u32>,
}

#[derive(Deserialize)]
struct WriteIn<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    options: Option<WriteOptionsIn>,
}

fn object_text(raw: Option<&RawValue>) -> Result<SecretBytes, Response> {
    let Some(raw) = raw else {
        return Err(reply::error(StatusCode::BAD_REQUEST, "no data provided"));
    };
    let text = raw.get();
    if !text.trim_start().starts_with('{') {
        return Err(reply::error(
            StatusCode::BAD_REQUEST,
            "data must be a JSON object",
        ));
    }
    Ok(SecretBytes::copy_from(text.as_bytes()))
}

fn written(version: Version) -> Response {
    reply::data(VersionMeta {
        created_time: Timestamp::now().to_string(),
        custom_metadata: None,
        deletion_time: String::new(),
        destroyed: false,
        version: version.get(),
    })
}

async fn write(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    let input: WriteIn<'_> = match ctx.json() {
        Ok(i) => i,
        Err(r) => return r,
    };
    let value = match object_text(input.data) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let options = WriteOptions {
        kind: Some(Kind::Kv),
        cas: input.options.and_then(|o| o.cas),
        ..WriteOptions::default()
    };
    let request = secret(ns, name, SecretOp::Set { value, options });
    match ctx.call(request).await {
        Ok(Reply::Written { version, .. }) => written(version),
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

async fn patch(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    if !merge_patch_type(ctx) {
        return reply::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH requires Content-Type: application/merge-patch+json",
        );
    }
    let input: WriteIn<'_> = match ctx.json() {
        Ok(i) => i,
        Err(r) => return r,
    };
    let patch = match object_text(input.data) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cas = input.options.and_then(|o| o.cas);
    let request = secret(ns, name, SecretOp::Patch { patch, cas });
    match ctx.call(request).await {
        Ok(Reply::Written { version, .. }) => written(version),
        Ok(_) => reply::unexpected(),
        Err(r) if r.error.code() == coffer_types::ErrorCode::NotFound => reply::not_found(),
        Err(r) => reply::refusal(&r),
    }
}

fn merge_patch_type(ctx: &Ctx<'_>) -> bool {
    ctx.headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/merge-patch+json"))
}

async fn describe(ctx: &Ctx<'_>, ns: String, name: &str, change: Describe) -> Response {
    let request = secret(ns, name, SecretOp::Describe { change });
    reply::done(ctx.call(request).await)
}

/// `{"versions":[1,"2"]}`: the bao CLI sends numbers as strings.
#[derive(Deserialize)]
struct VersionsIn {
    #[serde(default)]
    versions: Vec<serde_json::Value>,
}

fn versions(ctx: &Ctx<'_>) -> Result<Vec<Version>, Response> {
    let input: VersionsIn = ctx.json()?;
    if input.versions.is_empty() {
        return Err(reply::error(
            StatusCode::BAD_REQUEST,
            "No version number provided",
        ));
    }
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
                .ok_or_else(|| {
                    reply::error(StatusCode::BAD_REQUEST, "versions are positive integers")
                })
        })
        .collect()
}

async fn mark(ctx: &Ctx<'_>, ns: String, name: &str, delete: bool) -> Response {
    if !ctx.writes() {
        return unsupported();
    }
    let versions = match versions(ctx) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mark = if delete {
        Mark::Delete(versions)
    } else {
        Mark::Undelete(versions)
    };
    describe(
        ctx,
        ns,
        name,
        Describe {
            mark: Some(mark),
            ..Describe::default()
        },
    )
    .await
}

async fn destroy(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    if !ctx.writes() {
        return unsupported();
    }
    let versions = match versions(ctx) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let request = secret(ns, name, SecretOp::Destroy { versions });
    reply::done(ctx.call(request).await)
}

async fn metadata(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    if ctx.list {
        return list(ctx, ns, name).await;
    }
    if name.is_empty() {
        return no_route("metadata/");
    }
    if ctx.reads() {
        let request = secret(ns, name, SecretOp::Meta);
        return match ctx.call(request).await {
            Ok(Reply::Meta(meta)) => reply::data(metadata_view(&meta)),
            Ok(_) => reply::unexpected(),
            Err(r) if r.error.code() == coffer_types::ErrorCode::NotFound => reply::not_found(),
            Err(r) => reply::refusal(&r),
        };
    }
    if ctx.method == Method::DELETE {
        let request = secret(ns, name, SecretOp::Del);
        return match ctx.call(request).await {
            // Vault answers 204 whether or not there was anything to delete.
            Ok(_) => reply::no_content(),
            Err(r) if r.error.code() == coffer_types::ErrorCode::NotFound => reply::no_content(),
            Err(r) => reply::refusal(&r),
        };
    }
    if ctx.writes() || ctx.method == Method::PATCH {
        let input: MetadataIn = match ctx.json() {
            Ok(i) => i,
            Err(r) => return r,
        };
        let mut change = match input.change() {
            Ok(c) => c,
            Err(r) => return r,
        };
        if ctx.method == Method::PATCH {
            if !merge_patch_type(ctx) {
                return reply::error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "PATCH requires Content-Type: application/merge-patch+json",
                );
            }
            // Merge the custom metadata into what is there: `null` removes a key.
            if let Some(patch) = input.custom_metadata {
                let request = secret(ns.clone(), name, SecretOp::Meta);
                let mut current = match ctx.call(request).await {
                    Ok(Reply::Meta(meta)) => meta.custom_metadata,
                    Ok(_) => return reply::unexpected(),
                    Err(r) if r.error.code() == coffer_types::ErrorCode::NotFound => {
                        return reply::not_found();
                    }
                    Err(r) => return reply::refusal(&r),
                };
                for (k, v) in patch {
                    match v {
                        Some(v) => current.insert(k, v),
                        None => current.remove(&k),
                    };
                }
                if let Err(r) = check_custom(&current) {
                    return r;
                }
                change.custom_metadata = Some(current);
            }
        } else if let Some(custom) = input.custom_metadata {
            change.custom_metadata = Some(
                custom
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect(),
            );
        }
        if change.is_empty() {
            // Nothing to change: still check that the secret exists and may be changed.
            let request = secret(ns, name, SecretOp::Meta);
            return reply::done(ctx.call(request).await);
        }
        return describe(ctx, ns, name, change).await;
    }
    unsupported()
}

#[derive(Deserialize)]
struct MetadataIn {
    #[serde(default)]
    max_versions: Option<u32>,
    #[serde(default)]
    cas_required: Option<bool>,
    #[serde(default)]
    delete_version_after: Option<serde_json::Value>,
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, Option<String>>>,
}

impl MetadataIn {
    fn change(&self) -> Result<Describe, Response> {
        let after = self
            .delete_version_after
            .as_ref()
            .map(reply::parse_duration)
            .transpose()
            .map_err(|e| {
                reply::error(
                    StatusCode::BAD_REQUEST,
                    &format!("delete_version_after: {e}"),
                )
            })?;
        if let Some(custom) = &self.custom_metadata {
            let present: BTreeMap<String, String> = custom
                .iter()
                .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
                .collect();
            check_custom(&present)?;
        }
        Ok(Describe {
            max_versions: self.max_versions,
            cas_required: self.cas_required,
            delete_version_after: after,
            ..Describe::default()
        })
    }
}

fn check_custom(map: &BTreeMap<String, String>) -> Result<(), Response> {
    let refuse = |m: String| Err(reply::error(StatusCode::BAD_REQUEST, &m));
    if map.len() > MAX_CUSTOM_KEYS {
        return refuse(format!(
            "custom_metadata has {} keys; at most {MAX_CUSTOM_KEYS} are allowed",
            map.len()
        ));
    }
    for (k, v) in map {
        if k.is_empty() || k.len() > MAX_CUSTOM_KEY_LEN {
            return refuse(format!(
                "custom_metadata keys are 1 to {MAX_CUSTOM_KEY_LEN} bytes"
            ));
        }
        if v.len() > MAX_CUSTOM_VALUE_LEN {
            return refuse(format!(
                "custom_metadata values are at most {MAX_CUSTOM_VALUE_LEN} bytes"
            ));
        }
    }
    Ok(())
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
    custom_metadata: Option<&'a BTreeMap<String, String>>,
    delete_version_after: String,
    max_versions: u32,
    oldest_version: u32,
    updated_time: String,
    versions: BTreeMap<String, VersionEntry>,
    // coffer's own, beside Vault's fields.
    kind: Kind,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

fn metadata_view(meta: &SecretMeta) -> MetadataView<'_> {
    let oldest = meta.versions.first().map_or(0, |v| v.version.get());
    MetadataView {
        cas_required: meta.cas_required,
        created_time: meta.created.to_string(),
        current_version: meta.current.get(),
        custom_metadata: custom(&meta.custom_metadata),
        delete_version_after: reply::go_duration(meta.delete_version_after.unwrap_or(0)),
        max_versions: meta.max_versions.unwrap_or(0),
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
    }
}

/// LIST: the names under a folder, one level deep, folders with a trailing slash.
async fn list(ctx: &Ctx<'_>, ns: String, folder: &str) -> Response {
    let prefix = if folder.is_empty() || folder.ends_with('/') {
        folder.to_owned()
    } else {
        format!("{folder}/")
    };
    let mut keys: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let request = Request::List {
            namespace: Some(ns.clone()),
            query: ListRequest {
                prefix: (!prefix.is_empty()).then(|| prefix.clone()),
                after: after.take(),
                limit: Some(coffer_core::service::MAX_LIST_LIMIT),
                ..ListRequest::default()
            },
        };
        let page = match ctx.call(request).await {
            Ok(Reply::Names(page)) => page,
            Ok(_) => return reply::unexpected(),
            Err(r) => return reply::refusal(&r),
        };
        for name in &page.items {
            let rest = &name.as_str()[prefix.len()..];
            let key = match rest.split_once('/') {
                Some((dir, _)) => format!("{dir}/"),
                None => rest.to_owned(),
            };
            if keys.last() != Some(&key) {
                keys.push(key);
            }
        }
        match page.next {
            Some(next) => after = Some(next.as_str().to_owned()),
            None => break,
        }
    }
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return reply::not_found();
    }
    reply::data(serde_json::json!({ "keys": keys }))
}

async fn subkeys(ctx: &Ctx<'_>, ns: String, name: &str) -> Response {
    if !ctx.reads() || name.is_empty() {
        return unsupported();
    }
    let version = match parse_version(ctx) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let depth: usize = match ctx.query("depth").map(str::parse).transpose() {
        Ok(d) => d.unwrap_or(0),
        Err(_) => {
            return reply::error(StatusCode::BAD_REQUEST, "depth must be a number");
        }
    };
    let request = secret(ns, name, SecretOp::Get { version });
    let (value, kind, version, facts) = match ctx.call(request).await {
        Ok(Reply::Value {
            value,
            kind,
            version,
            facts,
        }) => (value, kind, version, facts),
        Ok(_) => return reply::unexpected(),
        Err(r) => return gone_or(&r),
    };
    let mut map = match coffer_core::kv::to_object(&value, kind) {
        Ok(m) => m,
        Err(e) => return reply::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    drop(value);
    let shape = keys_only(&map, depth, 1);
    coffer_core::kv::wipe_map(&mut map);
    reply::data(serde_json::json!({
        "subkeys": shape,
        "metadata": VersionMeta {
            created_time: facts.created.to_string(),
            custom_metadata: custom(&facts.custom_metadata),
            deletion_time: deletion_text(facts.deletion),
            destroyed: false,
            version: version.get(),
        },
    }))
}

/// The object's keys, nested objects as objects down to `depth` (0: all), leaves as null.
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

fn config(ctx: &Ctx<'_>) -> Response {
    if ctx.reads() {
        return reply::data(serde_json::json!({
            "cas_required": false,
            "delete_version_after": "0s",
            "max_versions": 0,
        }));
    }
    reply::error(
        StatusCode::BAD_REQUEST,
        "coffer keeps these settings per secret, not per mount: write them with \
         POST metadata/<path> (max_versions, cas_required, delete_version_after)",
    )
}

/// The request for `op` on `namespace/name`.
fn secret(namespace: String, name: &str, op: SecretOp) -> Request {
    Request::Secret {
        namespace: Some(namespace),
        name: name.to_owned(),
        op,
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
    max_versions: Option<u32>,
    #[serde(default)]
    value: Option<String>,
}

fn spec_of(input: &GenerateIn) -> Result<Option<GeneratorSpec>, Response> {
    let bad = |m: String| reply::error(StatusCode::BAD_REQUEST, &m);
    let encoding = input
        .encoding
        .as_deref()
        .map(str::parse::<Encoding>)
        .transpose()
        .map_err(|e| bad(e.to_string()))?;
    match (input.byte_len, encoding) {
        (None, None) => Ok(None),
        (len, enc) => GeneratorSpec::new(
            len.unwrap_or(u64::from(GeneratorSpec::DEFAULT_BYTES)),
            enc.unwrap_or_default(),
        )
        .map(Some)
        .map_err(|e| bad(e.to_string())),
    }
}

fn options_of(input: &GenerateIn) -> Result<WriteOptions, Response> {
    Ok(WriteOptions {
        kind: input
            .kind
            .as_deref()
            .map(str::parse::<Kind>)
            .transpose()
            .map_err(|e| reply::error(StatusCode::BAD_REQUEST, &e.to_string()))?,
        description: input.description.clone(),
        max_versions: input.max_versions,
        ..WriteOptions::default()
    })
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

/// coffer's own operations on one secret.
async fn coffer_op(ctx: &Ctx<'_>, ns: String, op: &str, name: &str) -> Response {
    if name.is_empty() {
        return no_route(op);
    }
    let bad = |m: String| reply::error(StatusCode::BAD_REQUEST, &m);
    let secret_op = match (op, ctx.reads()) {
        ("versions", true) => SecretOp::Versions,
        ("versions", false) => return unsupported(),
        (_, true) => return unsupported(),
        ("revoke", _) => SecretOp::Revoke,
        ("generate" | "rotate" | "describe", _) => {
            let input: GenerateIn = match ctx.json() {
                Ok(i) => i,
                Err(r) => return r,
            };
            let spec = match spec_of(&input) {
                Ok(s) => s,
                Err(r) => return r,
            };
            let options = match options_of(&input) {
                Ok(o) => o,
                Err(r) => return r,
            };
            match op {
                "generate" => SecretOp::Generate {
                    spec: spec.unwrap_or_default(),
                    options,
                },
                "rotate" => SecretOp::Rotate {
                    value: input
                        .value
                        .as_deref()
                        .map(|v| SecretBytes::copy_from(v.as_bytes())),
                    spec,
                    options,
                },
                _ => {
                    let change = Describe {
                        description: input.description,
                        max_versions: input.max_versions,
                        ..Describe::default()
                    };
                    if change.is_empty() {
                        return bad("describe needs a description or max_versions".to_owned());
                    }
                    SecretOp::Describe { change }
                }
            }
        }
        ("hmac", _) => {
            let input: HmacIn = match ctx.json() {
                Ok(i) => i,
                Err(r) => return r,
            };
            let algorithm = match input.algorithm.as_deref().map(str::parse::<HmacAlgorithm>) {
                None => HmacAlgorithm::default(),
                Some(Ok(a)) => a,
                Some(Err(e)) => return bad(e.to_string()),
            };
            let encoding = match input.encoding.as_deref().map(str::parse::<DigestEncoding>) {
                None => DigestEncoding::default(),
                Some(Ok(e)) => e,
                Some(Err(e)) => return bad(e.to_string()),
            };
            SecretOp::Hmac {
                algorithm,
                data: input.data.into_bytes(),
                encoding,
            }
        }
        ("basic-auth", _) => {
            let input: BasicAuthIn = match ctx.json() {
                Ok(i) => i,
                Err(r) => return r,
            };
            SecretOp::BasicAuth { user: input.user }
        }
        _ => return no_route(op),
    };
    let request = secret(ns, name, secret_op);
    match ctx.call(request).await {
        Ok(Reply::Minted { value, version, .. }) => {
            let Some(text) = value.expose_str() else {
                return reply::unexpected();
            };
            reply::data(serde_json::json!({ "value": text, "version": version.get() }))
        }
        Ok(Reply::Written { version, .. }) => {
            reply::data(serde_json::json!({ "version": version.get() }))
        }
        Ok(Reply::Versions(versions)) => reply::data(serde_json::json!({ "versions": versions })),
        Ok(Reply::Digest(digest)) => reply::data(serde_json::json!({ "digest": digest })),
        Ok(Reply::Header(header)) => match header.expose_str() {
            Some(h) => reply::data(serde_json::json!({ "header": h })),
            None => reply::unexpected(),
        },
        Ok(Reply::Done) => reply::no_content(),
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::parse(s).unwrap()
    }

    #[test]
    fn the_longest_namespace_is_the_mount() {
        let all = [ns("default"), ns("acme"), ns("acme/prod")];
        let all = |c: &str| all.iter().find(|n| n.as_str() == c).cloned();
        let m = mount("acme/prod/data/db", all).unwrap();
        assert_eq!((m.path.as_str(), m.rest), ("acme/prod/", "data/db"));
        let m = mount("acme/data/x", all).unwrap();
        assert_eq!((m.namespace.as_str(), m.rest), ("acme", "data/x"));
        let m = mount("secret/data/a/b", all).unwrap();
        assert_eq!((m.namespace.as_str(), m.rest), ("default", "data/a/b"));
        assert!(mount("acmeish/data/x", all).is_none());
        assert!(mount("nothing", all).is_none());
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
