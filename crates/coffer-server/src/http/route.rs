//! From a request's parts to a handler: the method (with Vault's `LIST` and `?list=true`),
//! the token, the body within its limits, and the path under `/v1/`.

use std::net::SocketAddr;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use coffer_core::{Identity, Refusal, Reply, Request};
use coffer_crypto::SecretBytes;

use super::body::{self, BodyError};
use super::{Shared, kv, reply, sys};

/// What a handler sees of a request.
pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub who: Identity,
    pub token: Option<SecretBytes>,
    pub method: Method,
    /// `LIST`, or `GET` with `list=true`.
    pub list: bool,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Ctx<'_> {
    /// A query parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sends `request` through the service's gates and audit as this caller.
    pub async fn call(&self, request: Request) -> Result<Reply, Refusal> {
        self.shared
            .service
            .handle_with_token(&self.who, self.token.clone(), request)
            .await
    }

    /// Whether the method reads (`GET`, `HEAD`), not counting lists.
    pub fn reads(&self) -> bool {
        !self.list && (self.method == Method::GET || self.method == Method::HEAD)
    }

    /// Whether the method writes (`POST` and `PUT` are the same in Vault).
    pub fn writes(&self) -> bool {
        self.method == Method::POST || self.method == Method::PUT
    }

    /// The body as JSON of type `T` (an empty body reads as `{}`).
    pub fn json<'de, T: serde::Deserialize<'de>>(&'de self) -> Result<T, Response> {
        let bytes: &[u8] = if self.body.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &self.body
        };
        serde_json::from_slice(bytes).map_err(|e| {
            // serde's message names the field and the position, never the value.
            reply::error(
                StatusCode::BAD_REQUEST,
                &format!("failed to parse JSON input: {e}"),
            )
        })
    }
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

/// Handles one request; answers the route's label for metrics and the response.
pub(crate) async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    parts: Parts,
    body: Body,
) -> (&'static str, Response) {
    let Some(path) = parts.uri.path().strip_prefix("/v1/") else {
        return (
            "other",
            reply::error(StatusCode::NOT_FOUND, "paths start with /v1/"),
        );
    };
    let path = match percent_decode(path) {
        Some(p) => p,
        None => {
            return (
                "other",
                reply::error(StatusCode::BAD_REQUEST, "the path is not valid UTF-8"),
            );
        }
    };
    let query: Vec<(String, String)> = match parts.uri.query() {
        None => Vec::new(),
        Some(q) => match serde_urlencoded::from_str(q) {
            Ok(q) => q,
            Err(_) => {
                return (
                    "other",
                    reply::error(StatusCode::BAD_REQUEST, "the query string is malformed"),
                );
            }
        },
    };
    let list_query = query
        .iter()
        .any(|(k, v)| k == "list" && (v == "true" || v == "1"));
    let list = parts.method.as_str() == "LIST" || (parts.method == Method::GET && list_query);
    let limits = shared.limits;
    let body = match body::read(body, limits.max_request_bytes, limits.request_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge(max)) => {
            return (
                "other",
                reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("the request body is larger than {max} bytes"),
                ),
            );
        }
        Err(BodyError::Timeout) => {
            return (
                "other",
                reply::error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time",
                ),
            );
        }
        Err(BodyError::Broken) => {
            return (
                "other",
                reply::error(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ),
            );
        }
    };
    let ctx = Ctx {
        shared,
        who: Identity::remote(peer),
        token: token(&parts.headers),
        method: parts.method,
        list,
        query,
        headers: parts.headers,
        body,
    };
    let path = path.trim_start_matches('/');
    let answered = if let Some(rest) = path.strip_prefix("sys/") {
        sys::handle(&ctx, rest).await
    } else if let Some(rest) = path.strip_prefix("auth/token/") {
        sys::token(&ctx, rest).await
    } else {
        kv::handle(&ctx, path).await
    };
    body::wipe(ctx.body);
    answered
}

/// Decodes `%XX` escapes in a path.
fn percent_decode(path: &str) -> Option<String> {
    if !path.contains('%') {
        return Some(path.to_owned());
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// An answer to a method the path does not take.
pub(crate) fn unsupported() -> Response {
    reply::error(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
}

/// Vault's answer for a path nothing serves.
pub(crate) fn no_route(path: &str) -> Response {
    reply::error(
        StatusCode::NOT_FOUND,
        &format!("no handler for route {path:?}. route entry not found."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%zz").as_deref(), Some("bad%zz"));
        assert_eq!(percent_decode("end%2").as_deref(), Some("end%2"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
