//! What handlers take from a request: the caller ([`Who`]: the client's address and its
//! token), the body within its size and time limits ([`Body`], wiped when dropped), the
//! query ([`Query`]), and whether a request lists (Vault's `LIST` method, or `GET` with
//! `list=true`).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use coffer_core::{Caller, Identity};
use coffer_crypto::SecretBytes;
use http_body_util::BodyExt as _;
use zeroize::Zeroize;

use super::error::ApiError;
use super::state::Shared;

/// The caller: a remote client, known by its address, acting through the token it sent
/// (`X-Vault-Token`, or `Authorization: Bearer`). A request without a token is refused by
/// the core's identity gate, like one with a bad token.
pub(crate) struct Who(pub Caller);

/// The caller of a request: its address (from the accept loop; a router driven without one,
/// in tests, is a client from nowhere) and the token its headers carry.
pub(crate) fn caller(extensions: &axum::http::Extensions, headers: &HeaderMap) -> Caller {
    let addr = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
    Caller::with_token(Identity::remote(addr), token(headers))
}

fn token(headers: &HeaderMap) -> Option<SecretBytes> {
    if let Some(t) = headers.get("x-vault-token") {
        return Some(SecretBytes::copy_from(t.as_bytes()));
    }
    let auth = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes();
    let bearer = auth
        .strip_prefix(b"Bearer ")
        .or_else(|| auth.strip_prefix(b"bearer "))?;
    Some(SecretBytes::copy_from(bearer))
}

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Who(caller(&parts.extensions, &parts.headers)))
    }
}

/// The request body, read whole within the size limit and the request timeout, and
/// zeroed when dropped (when nothing else holds it). It holds its size of the listener's
/// budget of bodies in flight until then.
pub(crate) struct Body {
    bytes: Bytes,
    /// The frames `bytes` was joined from, when there were several (slices of hyper's read
    /// buffer, zeroed with it).
    frames: Vec<Bytes>,
    /// Its share of the budget, given back when the body is dropped.
    _budget: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Body {
    /// Whether the body is empty (or only white space).
    pub fn is_empty(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as JSON of type `T` (an empty body reads as `{}`). Errors never quote the
    /// body: serde's type errors do (`invalid type: string "..."`), so only its syntax
    /// errors (positions) and missing-field errors (our field names) are passed on.
    pub fn json<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T, ApiError> {
        let bytes: &[u8] = if self.bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.bytes
        };
        serde_json::from_slice(bytes).map_err(|e| {
            use serde_json::error::Category;
            let text = e.to_string();
            ApiError::bad(match e.classify() {
                Category::Data if text.starts_with("missing field") => {
                    format!("failed to parse JSON input: {text}")
                }
                Category::Data => format!(
                    "failed to parse JSON input: a field has the wrong type or shape (line {}, \
                     column {})",
                    e.line(),
                    e.column()
                ),
                _ => format!("failed to parse JSON input: {text}"),
            })
        })
    }
}

/// Zeroes `bytes` when nothing else holds its allocation; answers it back otherwise.
fn wipe(bytes: Bytes) -> Option<Bytes> {
    match bytes.try_into_mut() {
        Ok(mut owned) => {
            owned.as_mut().zeroize();
            None
        }
        Err(shared) => Some(shared),
    }
}

/// Most bodies kept waiting to be zeroed (each keeps a connection's read buffer alive).
const MAX_PENDING_WIPES: usize = 256;

/// Bodies that could not be zeroed when dropped: a body of one frame is a slice of hyper's
/// read buffer, which the connection still holds then (so it was left in memory, a copy of
/// every value written over HTTP, found by the test that reads the daemon's memory). Each is
/// kept here, holding its allocation, and zeroed at a later body's drop once hyper has let
/// go of the buffer (the connection ended, or hyper moved to a new buffer).
static PENDING_WIPES: std::sync::Mutex<Vec<Bytes>> = std::sync::Mutex::new(Vec::new());

/// Zeroes `bytes` now or once hyper lets go of it, and retries the bodies waiting.
fn wipe_later(bytes: impl IntoIterator<Item = Bytes>) {
    let mut pending = PENDING_WIPES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let waiting = std::mem::take(&mut *pending);
    pending.extend(waiting.into_iter().chain(bytes).filter_map(wipe));
    if pending.len() > MAX_PENDING_WIPES {
        // The oldest are let go unzeroed rather than keeping buffers without bound.
        let excess = pending.len() - MAX_PENDING_WIPES;
        pending.drain(..excess);
    }
}

/// Zeroes what bodies are still waiting (their connections have ended since).
pub(crate) fn wipe_pending() {
    wipe_later(std::iter::empty());
}

impl Drop for Body {
    fn drop(&mut self) {
        let frames = std::mem::take(&mut self.frames);
        wipe_later(std::iter::once(std::mem::take(&mut self.bytes)).chain(frames));
    }
}

impl FromRequest<Shared> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, ApiError> {
        let (max, timeout) = (state.limits.max_request_bytes, state.limits.request_timeout);
        let too_large = || {
            ApiError::Edge(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {max} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            return Err(too_large());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        // Bodies in flight share a budget: a body takes its declared size (or the limit,
        // when it declares none) before a byte of it is read.
        let size = declared.map_or(max, |n| usize::try_from(n).unwrap_or(max));
        let permit = if size > 4 << 10 {
            let kib = u32::try_from(size.div_ceil(1024)).unwrap_or(u32::MAX);
            let budget = std::sync::Arc::clone(&state.bodies);
            match tokio::time::timeout_at(deadline, budget.acquire_many_owned(kib)).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Err(ApiError::Edge(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many request bodies are being received at once; retry shortly"
                            .to_owned(),
                    ));
                }
            }
        } else {
            None
        };
        let mut limited = http_body_util::Limited::new(request.into_body(), max);
        // Frames are kept (not joined and dropped) so each is zeroed with the body.
        let mut frames: Vec<Bytes> = Vec::new();
        let read = async {
            while let Some(frame) = limited.frame().await {
                if let Ok(data) = frame?.into_data() {
                    frames.push(data);
                }
            }
            Ok::<(), axum::BoxError>(())
        };
        let outcome = tokio::time::timeout_at(deadline, read).await;
        let failed = |frames: Vec<Bytes>, e: ApiError| {
            wipe_later(frames);
            Err(e)
        };
        match outcome {
            Err(_) => failed(
                frames,
                ApiError::Edge(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time".to_owned(),
                ),
            ),
            Ok(Ok(())) if frames.len() <= 1 => Ok(Body {
                bytes: frames.pop().unwrap_or_default(),
                frames,
                _budget: permit,
            }),
            Ok(Ok(())) => {
                let mut joined = Vec::with_capacity(frames.iter().map(Bytes::len).sum());
                for f in &frames {
                    joined.extend_from_slice(f);
                }
                Ok(Body {
                    bytes: Bytes::from(joined),
                    frames,
                    _budget: permit,
                })
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => failed(frames, too_large()),
            Ok(Err(_)) => failed(frames, ApiError::bad("the request body could not be read")),
        }
    }
}

/// The query string's parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// A parameter.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.uri.query() {
            None => Ok(Query(Vec::new())),
            Some(q) => serde_urlencoded::from_str(q)
                .map(Query)
                .map_err(|_| ApiError::bad("the query string is malformed")),
        }
    }
}

/// Whether the request lists: `LIST`, or `GET` with `list=true`.
pub(crate) fn lists(method: &Method, query: &Query) -> bool {
    method.as_str() == "LIST"
        || (method == Method::GET && matches!(query.get("list"), Some("true" | "1")))
}

/// Whether the method reads (`GET`, `HEAD`), not counting lists.
pub(crate) fn reads(method: &Method, query: &Query) -> bool {
    !lists(method, query) && (method == Method::GET || method == Method::HEAD)
}

/// Whether the method writes (`POST` and `PUT` are the same in Vault).
pub(crate) fn writes(method: &Method) -> bool {
    method == Method::POST || method == Method::PUT
}
