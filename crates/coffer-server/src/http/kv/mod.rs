//! KV v2 on every namespace (`/v1/<namespace>/...`, and `default` at `/v1/secret/...`), and
//! coffer's own secret operations beside it (`generate`, `rotate`, `revoke`, `describe`,
//! `versions`, `hmac`, `basic-auth`, `yescrypt`).
//!
//! The one mount resolver: a path becomes its candidate readings (`mount`), each with its
//! route (what it asks, from the word and the method) and a closure that makes its core
//! operation from the body (`input`). The core's namespace gate, after the caller's
//! identity, picks the first reading whose namespace exists and only then has it built, so
//! a bad token learns nothing about which namespaces exist and a body is parsed once, for
//! the mount it belongs to. `view` holds KV v2's answer shapes.

mod input;
pub(crate) mod mount;
mod view;

use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use coffer_core::{Candidate, CoreError, Gate, Operation, Refusal, Reply};
use coffer_store::StoreError;

use self::input::{KvRequest, Route, Shape, build};
use super::envelope;
use super::error::{ApiError, ApiResult, is_missing};
use super::extract::{Body, Query, Who};
use super::metrics::RouteLabel;
use super::state::Shared;

/// Every path under `/v1/` that no `sys/` or `auth/` route took.
pub(crate) async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    query: Query,
    headers: HeaderMap,
    Who(caller): Who,
    body: Body,
) -> Response {
    let req = Arc::new(KvRequest {
        method,
        query,
        headers,
        body,
        rejected: std::sync::Mutex::new(None),
    });
    let (label, result) = kv(&state, &uri, req, caller).await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(RouteLabel(label));
    response
}

async fn kv(
    state: &Shared,
    uri: &Uri,
    req: Arc<KvRequest>,
    caller: coffer_core::Caller,
) -> (&'static str, ApiResult) {
    let Some(path) = uri.path().strip_prefix("/v1/") else {
        return (
            "other",
            Err(ApiError::Edge(
                axum::http::StatusCode::NOT_FOUND,
                "paths start with /v1/".to_owned(),
            )),
        );
    };
    let Ok(path) = percent_encoding::percent_decode_str(path).decode_utf8() else {
        return ("other", Err(ApiError::bad("the path is not valid UTF-8")));
    };
    let readings = mount::candidates(&path);
    let Some(first) = readings.first() else {
        // No reading names a mount: still the caller's identity comes first (a bad token
        // is refused whatever the path names), then the route is not found.
        let none = Operation::Mount {
            candidates: Vec::new(),
        };
        return match state.service.call(caller, none).await {
            Err(r) if r.gate == Gate::Namespace => ("other", Err(ApiError::no_route(&path))),
            Err(r) => ("other", Err(r.into())),
            Ok(_) => ("other", Err(ApiError::no_route(&path))),
        };
    };
    let label = label(first.word);
    let routes: Vec<Route> = readings
        .iter()
        .map(|c| Route::of(c.word, c.rest(), &req))
        .collect();
    let candidates = readings
        .iter()
        .zip(&routes)
        .map(|(c, &route)| {
            let (req, reading) = (req.clone(), c.clone());
            let (text, name_at) = c.shared();
            Candidate {
                namespace: c.namespace.clone(),
                text,
                name_at,
                action: route.action(),
                build: Box::new(move || {
                    build(&req, &reading, route).map_err(|e| {
                        let rejection = e.rejection();
                        *req.rejected.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                        rejection
                    })
                }),
            }
        })
        .collect();
    let (chosen, result) = state.service.call_mounted(caller, candidates).await;
    let i = chosen.unwrap_or(0);
    if let Err(r) = &result
        && matches!(r.error, CoreError::Rejected { .. })
        && let Some(e) = req
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    {
        // The chosen reading's own shape was refused (once the gates before validation
        // passed): answer it as building it said (a 415 is not a 400).
        return (label, Err(e));
    }
    (label, render(routes[i].shape(&req.query), result, &path))
}

fn label(word: &str) -> &'static str {
    match word {
        "data" => "kv.data",
        "metadata" => "kv.metadata",
        "subkeys" => "kv.subkeys",
        "config" => "kv.config",
        "delete" | "undelete" | "destroy" => "kv.delete",
        "revoked" => "coffer.revoked",
        _ => "coffer.secret",
    }
}

/// The answer in `shape`, or the refusal as KV v2 shows it.
fn render(shape: Shape, result: Result<Reply, Refusal>, path: &str) -> ApiResult {
    let reply = match result {
        Ok(reply) => reply,
        Err(r) => return Err(refusal(shape, r, path)),
    };
    Ok(match (shape, reply) {
        (
            Shape::Value,
            Reply::Value {
                value,
                version,
                kind,
                facts,
            },
        ) => view::value(&value, kind, version, &facts),
        (
            Shape::Subkeys(depth),
            Reply::Value {
                value,
                version,
                kind,
                facts,
            },
        ) => view::subkeys(&value, kind, version, &facts, depth)?,
        (Shape::Written, Reply::Written { version, .. }) => {
            envelope::data(view::VersionMeta::written(version))
        }
        (Shape::Metadata, Reply::Meta(meta)) => view::metadata(&meta),
        (Shape::Keys, Reply::Keys(keys)) if keys.is_empty() => return Err(ApiError::Missing),
        (Shape::Keys, Reply::Keys(keys)) => envelope::data(serde_json::json!({ "keys": keys })),
        (Shape::Revoked, Reply::Revoked(page)) => envelope::data(serde_json::json!({
            "revoked": page.items,
            "next": page.next,
        })),
        (Shape::NoContent | Shape::Deleted, _) => envelope::no_content(),
        (Shape::Config, Reply::Mount(_)) => envelope::data(serde_json::json!({
            "cas_required": false,
            "delete_version_after": "0s",
            "max_versions": 0,
        })),
        // Values are serialized from borrowed text straight into a wiped buffer.
        (Shape::Coffer, Reply::Minted { value, version, .. }) => match value.expose_str() {
            Some(value) => envelope::data(view::Minted {
                value,
                version: version.get(),
            }),
            None => return Err(ApiError::internal("a minted value is not text")),
        },
        (Shape::Coffer, Reply::Written { version, .. }) => {
            envelope::data(serde_json::json!({ "version": version.get() }))
        }
        (Shape::Coffer, Reply::Versions(versions)) => {
            envelope::data(serde_json::json!({ "versions": versions }))
        }
        (Shape::Coffer, Reply::Digest(digest)) => {
            envelope::data(serde_json::json!({ "digest": digest }))
        }
        (Shape::Coffer, Reply::PasswordHash(hash)) => {
            envelope::data(serde_json::json!({ "hash": hash }))
        }
        (Shape::Coffer, Reply::Header(header)) => match header.expose_str() {
            Some(header) => envelope::data(view::Header { header }),
            None => return Err(ApiError::internal("a header is not text")),
        },
        (Shape::Coffer, Reply::Done) => envelope::no_content(),
        _ => return Err(ApiError::unexpected()),
    })
}

/// A refusal as KV v2 shows it: a missing mount is a missing route; a missing secret or
/// version answers 404 with no message (a gone version with its metadata); a missing
/// secret's metadata deletes as if it had been there.
fn refusal(shape: Shape, r: Refusal, path: &str) -> ApiError {
    if r.gate == Gate::Namespace && matches!(r.error, CoreError::NoNamespace(_)) {
        return ApiError::no_route(path);
    }
    if let CoreError::Store(StoreError::Gone(gone)) = &r.error {
        return ApiError::Answer(Box::new(view::gone(gone)));
    }
    match shape {
        Shape::Deleted if is_missing(&r) => ApiError::Answer(Box::new(envelope::no_content())),
        Shape::Value | Shape::Subkeys(_) | Shape::Metadata | Shape::Written | Shape::Keys
            if is_missing(&r) =>
        {
            ApiError::Missing
        }
        _ => ApiError::Refused(r),
    }
}
