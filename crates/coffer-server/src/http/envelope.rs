//! Vault's response shapes: the envelope around `data` or `auth`, JSON bodies in buffers
//! wiped when hyper is done with them, and 204 for writes that answer nothing.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use zeroize::Zeroize;

/// A response buffer zeroed on drop: answers may carry values. (hyper may copy small bodies
/// into its own write buffer first; that copy is out of coffer's reach.)
pub(crate) struct Wiped(pub Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        #[cfg(test)]
        WIPED.with(|w| w.set(w.get() + self.0.len()));
        self.0.zeroize();
    }
}

#[cfg(test)]
thread_local! {
    /// Bytes of answers zeroized on this thread (tests only).
    pub(crate) static WIPED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// A buffer for an answer that may hold a value, as `io::Write`: when it must grow, the old
/// allocation is zeroized before it is freed, so no copy of a value is left in freed
/// memory (serde_json starts small and grows as it writes).
pub(crate) struct Growing(Vec<u8>);

impl Growing {
    /// An empty buffer.
    pub fn new() -> Self {
        Self(Vec::with_capacity(512))
    }

    /// The bytes, to be sent in a [`Wiped`] body.
    pub fn into_wiped(mut self) -> Wiped {
        Wiped(std::mem::take(&mut self.0))
    }
}

impl std::io::Write for Growing {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.capacity() - self.0.len() < bytes.len() {
            let want = (self.0.capacity() * 2).max(self.0.len() + bytes.len());
            let mut bigger = Vec::with_capacity(want);
            bigger.extend_from_slice(&self.0);
            self.0.zeroize();
            self.0 = bigger;
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Growing {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Encodes `value` as JSON into a buffer that leaves no copy behind as it grows.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Wiped> {
    let mut out = Growing::new();
    serde_json::to_writer(&mut out, value)?;
    Ok(out.into_wiped())
}

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

/// An already encoded JSON answer.
pub(crate) fn raw(status: StatusCode, body: Wiped) -> Response {
    let mut response = Response::new(Body::from(Bytes::from_owner(body)));
    *response.status_mut() = status;
    with_headers(response)
}

/// A JSON answer with `status`, in a wiped buffer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => raw(status, bytes),
        Err(e) => {
            tracing::error!(error = %e, "an HTTP answer could not be encoded");
            errors(StatusCode::INTERNAL_SERVER_ERROR, &["internal error"])
        }
    }
}

/// 200 with `data` in the envelope.
pub(crate) fn data<D: Serialize>(data: D) -> Response {
    let id = request_id();
    json(StatusCode::OK, &Envelope::data(&id, data))
}

/// 200 with `auth` in the envelope.
pub(crate) fn auth<A: Serialize>(auth: A) -> Response {
    let id = request_id();
    json(StatusCode::OK, &Envelope::auth(&id, auth))
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

/// `{"errors":[...]}` with `status`.
pub(crate) fn errors(status: StatusCode, messages: &[&str]) -> Response {
    match serde_json::to_vec(&Errors { errors: messages }) {
        Ok(bytes) => raw(status, Wiped(bytes)),
        Err(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = status;
            response
        }
    }
}
