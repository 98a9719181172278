//! Response wrapping in Vault's shapes: the `X-Vault-Wrap-TTL` header on any request
//! ([`wrap_responses`], a layer inside the token check), and `sys/wrapping/{wrap, unwrap,
//! lookup, rewrap}`. The rules (TTLs, sizes, single use, how many wait) are the core's
//! (`WrapOp`); here the response is taken whole and the answer shaped.

use std::borrow::Cow;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coffer_core::access::wrap::{DEFAULT_TTL, WrapRecord, check_ttl};
use coffer_core::{Caller, Operation, Reply, WrapOp, WrapReply};
use coffer_crypto::SecretBytes;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

/// The header that asks for a response to be wrapped.
const WRAP_TTL: &str = "x-vault-wrap-ttl";

/// Paths whose answers are streams or not JSON: never wrapped.
const UNWRAPPABLE: &[&str] = &[
    "/v1/sys/coffer/backup",
    "/v1/sys/coffer/events",
    "/v1/sys/events/",
    "/v1/sys/metrics",
];

/// The TTL a request's `X-Vault-Wrap-TTL` asks for (`None`: it asks for none).
fn wrap_ttl(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(WRAP_TTL) else {
        return Ok(None);
    };
    let bad = || ApiError::bad("X-Vault-Wrap-TTL: a duration such as 60s, 5m or 300");
    let text = value.to_str().map_err(|_| bad())?;
    let secs = coffer_types::duration::parse_seconds(text).map_err(|_| bad())?;
    check_ttl(secs).map_err(ApiError::bad)?;
    Ok(Some(secs))
}

#[derive(Serialize)]
struct WrapInfo<'a> {
    token: &'a str,
    accessor: &'a str,
    ttl: u64,
    creation_time: String,
    creation_path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrapped_accessor: Option<&'a str>,
}

#[derive(Serialize)]
struct Wrapped<'a> {
    request_id: &'a str,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: Option<()>,
    wrap_info: WrapInfo<'a>,
    warnings: Option<()>,
    auth: Option<()>,
}

/// The answer that carries a wrapping token instead of the response.
fn wrap_answer(
    token: &SecretBytes,
    record: &WrapRecord,
    wrapped_accessor: Option<&str>,
) -> ApiResult {
    let token = token.expose_str().ok_or_else(ApiError::unexpected)?;
    let id = envelope::request_id();
    Ok(envelope::json(
        StatusCode::OK,
        &Wrapped {
            request_id: &id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: None,
            wrap_info: WrapInfo {
                token,
                accessor: &record.accessor,
                ttl: record.ttl,
                creation_time: record.created.to_string(),
                creation_path: &record.path,
                wrapped_accessor,
            },
            warnings: None,
            auth: None,
        },
    ))
}

/// Asks the core to wrap `response` for `ttl` seconds.
async fn wrap(
    state: &Shared,
    caller: Caller,
    response: SecretBytes,
    ttl: u64,
    path: String,
) -> Result<(SecretBytes, WrapRecord), ApiError> {
    let op = WrapOp::Wrap {
        response,
        ttl,
        path,
    };
    match state.service.call(caller, Operation::Wrapping(op)).await {
        Ok(Reply::Wrapped(r)) => match *r {
            WrapReply::Token { token, record } => Ok((token, record)),
            _ => Err(ApiError::unexpected()),
        },
        Ok(_) => Err(ApiError::unexpected()),
        Err(r) => Err(r.into()),
    }
}

/// The accessor a wrapped response carries, for `wrapped_accessor`: a login's token's, or
/// a new secret-id's. (Only those two fields are read; nothing else is copied.)
fn wrapped_accessor(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Auth {
        accessor: Option<String>,
    }
    #[derive(Deserialize)]
    struct Data {
        secret_id_accessor: Option<String>,
    }
    #[derive(Deserialize)]
    struct Peek {
        auth: Option<Auth>,
        data: Option<Data>,
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    peek.auth
        .and_then(|a| a.accessor)
        .or_else(|| peek.data.and_then(|d| d.secret_id_accessor))
}

/// Wraps the answer of a request that carries `X-Vault-Wrap-TTL`: the request runs as it
/// would, then a successful JSON answer is kept by the core under a wrapping token, and the
/// client gets the token. A bad TTL is refused before the request runs.
pub(crate) async fn wrap_responses(
    State(state): State<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    if path.starts_with("/v1/sys/wrapping/") {
        // These read the header themselves (`wrap`), or must not be wrapped (an unwrap's
        // answer wrapped again would spend the token for nothing).
        return next.run(request).await;
    }
    let ttl = match wrap_ttl(request.headers()) {
        Ok(Some(ttl)) => ttl,
        Ok(None) => return next.run(request).await,
        Err(e) => return e.into_response(),
    };
    if UNWRAPPABLE.iter().any(|p| path.starts_with(p)) {
        return ApiError::bad("this path's answer is a stream and cannot be wrapped")
            .into_response();
    }
    let caller = super::extract::caller(request.extensions(), request.headers());
    if caller.token.is_none() {
        // A response is wrapped under the caller's token: without one the wrap would be
        // refused after the request ran (a login's secret-id spent for nothing).
        return ApiError::bad(
            "a wrapped response is kept under the request's token: send X-Vault-Token (or \
             drop X-Vault-Wrap-TTL)",
        )
        .into_response();
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let max = state.service.max_wrapped_bytes();
    let bytes = match axum::body::to_bytes(response.into_body(), max).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::bad(format!(
                "the answer is larger than a wrapped response may be ({max} bytes)"
            ))
            .into_response();
        }
    };
    let accessor = wrapped_accessor(&bytes);
    let body = SecretBytes::copy_from(&bytes);
    if let Ok(mut owned) = bytes.try_into_mut() {
        owned.as_mut().zeroize();
    }
    let creation_path = path.trim_start_matches("/v1/").to_owned();
    match wrap(&state, caller, body, ttl, creation_path).await {
        Ok((token, record)) => wrap_answer(&token, &record, accessor.as_deref())
            .unwrap_or_else(IntoResponse::into_response),
        Err(e) => e.into_response(),
    }
}

/// `sys/wrapping/wrap`: wraps the body's fields (any token may).
pub(crate) async fn wrap_data(
    State(state): State<Shared>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let ttl = wrap_ttl(&headers)?.unwrap_or(DEFAULT_TTL);
    let mut fields = body.json::<serde_json::Value>()?;
    if !fields.is_object() {
        wipe(&mut fields);
        return Err(ApiError::bad("failed to parse JSON input: not an object"));
    }
    let id = envelope::request_id();
    let encoded = envelope::encode(&envelope::Envelope::data(&id, &fields));
    wipe(&mut fields);
    let encoded =
        encoded.map_err(|_| ApiError::internal("a wrapped response could not be encoded"))?;
    let response = SecretBytes::copy_from(encoded.as_ref());
    drop(encoded);
    let (token, record) = wrap(&state, who.0, response, ttl, "sys/wrapping/wrap".into()).await?;
    wrap_answer(&token, &record, None)
}

/// Zeroes every string in `value` (the fields to wrap are values a client keeps secret).
fn wipe(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe),
        serde_json::Value::Object(map) => map.values_mut().for_each(wipe),
        _ => {}
    }
}

/// The wrapping token a request names: the body's `token`, else the request's own token
/// (Vault's two ways; `bao unwrap` sends `null` and the wrapping token as its token).
fn wrapping_token(who: &mut Who, body: &Body) -> Result<SecretBytes, ApiError> {
    #[derive(Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        token: Option<Cow<'a, str>>,
    }
    let named: Option<Named<'_>> = body.json()?;
    match named.and_then(|n| n.token) {
        Some(Cow::Borrowed(t)) => Ok(SecretBytes::copy_from(t.as_bytes())),
        Some(Cow::Owned(mut t)) => {
            let token = SecretBytes::copy_from(t.as_bytes());
            t.zeroize();
            Ok(token)
        }
        None => who.0.token.take().ok_or_else(|| {
            ApiError::bad(
                "name the wrapping token: the body's \"token\", or as the request's token",
            )
        }),
    }
}

async fn by_token(
    state: &Shared,
    mut who: Who,
    body: &Body,
    make: fn(SecretBytes) -> WrapOp,
) -> Result<WrapReply, ApiError> {
    let token = wrapping_token(&mut who, body)?;
    match state
        .service
        .call(who.0, Operation::Wrapping(make(token)))
        .await
    {
        Ok(Reply::Wrapped(r)) => Ok(*r),
        Ok(_) => Err(ApiError::unexpected()),
        Err(r) => Err(r.into()),
    }
}

/// `sys/wrapping/unwrap`: the wrapped answer, as it was; the wrapping token is spent.
pub(crate) async fn unwrap(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    match by_token(&state, who, &body, |token| WrapOp::Unwrap { token }).await? {
        WrapReply::Response { response, .. } => Ok(envelope::raw(
            StatusCode::OK,
            envelope::Wiped(response.expose_secret().to_vec()),
        )),
        _ => Err(ApiError::unexpected()),
    }
}

/// `sys/wrapping/lookup`: the wrapping token's record, never its response.
pub(crate) async fn lookup(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    match by_token(&state, who, &body, |token| WrapOp::Lookup { token }).await? {
        WrapReply::Record(r) => Ok(envelope::data(serde_json::json!({
            "creation_path": r.path,
            "creation_time": r.created.to_string(),
            "creation_ttl": r.ttl,
        }))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `sys/wrapping/rewrap`: the same response under a new wrapping token.
pub(crate) async fn rewrap(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    match by_token(&state, who, &body, |token| WrapOp::Rewrap { token }).await? {
        WrapReply::Token { token, record } => wrap_answer(&token, &record, None),
        _ => Err(ApiError::unexpected()),
    }
}
