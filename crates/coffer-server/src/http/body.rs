//! Request bodies in, response bodies out, with the plaintext they may carry wiped.
//!
//! A request body is read whole, within the size limit and the request timeout; once parsed,
//! the buffer is zeroed when nothing else holds it. A response body that carries a value is
//! a [`Wiped`] buffer, zeroed when hyper drops it. (hyper may copy small bodies into its own
//! write buffer first; that copy is out of coffer's reach.)

use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body_util::BodyExt as _;
use zeroize::Zeroize;

/// A response buffer zeroed on drop.
pub(crate) struct Wiped(pub Vec<u8>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Wiped {
    /// As a response body.
    pub fn into_body(self) -> Body {
        Body::from(Bytes::from_owner(self))
    }
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    /// Larger than the limit.
    TooLarge(usize),
    /// Not all of it arrived in time.
    Timeout,
    /// The connection failed.
    Broken,
}

/// Reads a whole body of at most `max` bytes within `timeout`.
pub(crate) async fn read(body: Body, max: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let limited = http_body_util::Limited::new(body, max);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(max)),
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// Zeroes a request body once it has been parsed, when this is its only holder.
pub(crate) fn wipe(body: Bytes) {
    if let Ok(mut owned) = body.try_into_mut() {
        owned.as_mut().zeroize();
    }
}
