//! Vault's response shapes: the envelope around `data` or `auth`, `{"errors":[...]}` with
//! Vault's status codes, and 204 for writes that answer nothing.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use coffer_core::Refusal;
use coffer_types::ErrorCode;
use serde::Serialize;

use super::body::Wiped;

/// Vault's envelope around a successful answer.
#[derive(Serialize)]
pub(crate) struct Envelope<'a, D: Serialize, A: Serialize = ()> {
    pub request_id: &'a str,
    pub lease_id: &'static str,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<D>,
    pub wrap_info: Option<()>,
    pub warnings: Option<()>,
    pub auth: Option<A>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_type: Option<&'a str>,
}

impl<'a, D: Serialize> Envelope<'a, D> {
    /// An envelope around `data`.
    pub fn data(request_id: &'a str, data: D) -> Self {
        Self {
            request_id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: Some(data),
            wrap_info: None,
            warnings: None,
            auth: None,
            mount_type: None,
        }
    }
}

impl<'a, A: Serialize> Envelope<'a, (), A> {
    /// An envelope around `auth`.
    pub fn auth(request_id: &'a str, auth: A) -> Self {
        Self {
            request_id,
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: None,
            wrap_info: None,
            warnings: None,
            auth: Some(auth),
            mount_type: None,
        }
    }
}

/// A fresh request id in Vault's UUID form.
pub(crate) fn request_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // Request ids only correlate lines; a clock-based one is fine when the random
        // source fails (which would fail far more important things first).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        b = t.to_le_bytes();
    }
    let h = data_encoding::HEXLOWER.encode(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn with_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A JSON answer with `status`. The buffer is wiped when sent: answers may carry values.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => raw(status, Wiped(bytes)),
        Err(e) => {
            tracing::error!(error = %e, "an HTTP answer could not be encoded");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// An already encoded JSON answer.
pub(crate) fn raw(status: StatusCode, body: Wiped) -> Response {
    let mut response = Response::new(body.into_body());
    *response.status_mut() = status;
    with_headers(response)
}

/// 200 with `data` in the envelope.
pub(crate) fn data<D: Serialize>(data: D) -> Response {
    let id = request_id();
    json(StatusCode::OK, &Envelope::data(&id, data))
}

/// 204, no body.
pub(crate) fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    with_headers(response)
}

#[derive(Serialize)]
struct Errors<'a> {
    errors: &'a [&'a str],
}

/// `{"errors":[message]}` with `status`.
pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    json(status, &Errors { errors: &[message] })
}

/// `{"errors":[]}` with 404: Vault's answer for a missing secret or an empty list.
pub(crate) fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, &Errors { errors: &[] })
}

/// 204 when the core carried the request out, its refusal otherwise.
pub(crate) fn done<T>(result: Result<T, Refusal>) -> Response {
    match result {
        Ok(_) => no_content(),
        Err(r) => refusal(&r),
    }
}

/// An answer the core should not give for the request it was sent.
pub(crate) fn unexpected() -> Response {
    tracing::error!("the core answered an HTTP request with an unexpected reply");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
}

/// Vault's message when the store is sealed (clients match on it).
pub(crate) const SEALED: &str = "Vault is sealed";

/// The status a refusal's code answers with.
pub(crate) fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Sealed | ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unauthenticated | ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InvalidName | ErrorCode::InvalidRequest | ErrorCode::Conflict => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
        // audit_unavailable, tpm, nv_full, internal, and codes added later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A core refusal as Vault would answer it. The message is the core's own (it names the
/// principal and the path, never a value) prefixed the way Vault's clients expect.
pub(crate) fn refusal(r: &Refusal) -> Response {
    let code = r.error.code();
    let status = status_of(code);
    let message = match code {
        ErrorCode::Sealed => format!("{SEALED}: {}", r.error),
        ErrorCode::Unauthenticated => format!("permission denied: {}", r.error),
        ErrorCode::Denied => format!("1 error occurred:\n\t* permission denied: {}\n\n", r.error),
        _ => r.error.to_string(),
    };
    error(status, &message)
}

/// Go's duration text (`3h25m19s`, `0s`), which Vault's clients parse.
pub(crate) fn go_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Parses a duration as Vault takes it: a number of seconds, or text such as `3h25m19s`,
/// `90s`, `768h`, `30d`.
pub(crate) fn parse_duration(value: &serde_json::Value) -> Result<u64, String> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("{n} is not a number of seconds")),
        serde_json::Value::String(s) if s.trim().is_empty() => Ok(0),
        serde_json::Value::String(s) => {
            if let Ok(n) = s.trim().parse::<u64>() {
                return Ok(n);
            }
            humantime::parse_duration(s.trim())
                .map(|d| d.as_secs())
                .map_err(|e| format!("{s:?} is not a duration: {e}"))
        }
        other => Err(format!("{other} is not a duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_write_as_go_does() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(12_319), "3h25m19s");
        assert_eq!(go_duration(90), "1m30s");
        assert_eq!(go_duration(3600), "1h0m0s");
        let s = |t: &str| parse_duration(&serde_json::Value::String(t.to_owned()));
        assert_eq!(s("3h25m19s"), Ok(12_319));
        assert_eq!(s("768h"), Ok(768 * 3600));
        assert_eq!(s("30"), Ok(30));
        assert_eq!(parse_duration(&serde_json::json!(45)), Ok(45));
        assert!(s("soon").is_err());
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_ne!(id, request_id());
    }
}
