//! What the socket listener needs from whoever answers requests: [`Handler`], the [`Flow`]
//! it asks for after answering, the [`Replies`] it writes into, and the [`Limits`] every
//! connection lives within. A leaf: the listener, the connection and the protocol all use
//! it, and it uses none of them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::Identity;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use zeroize::Zeroize;

/// What a handler wants after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Keep the connection open for newline-delimited requests.
    pub keep_alive: bool,
}

/// Answers one framed request.
pub trait Handler: Send + Sync + 'static {
    /// Writes the answer to `request` from `peer`. The last (or only) reply goes into
    /// [`Replies::buf`]; a handler that streams sends each earlier one with
    /// [`Replies::send`].
    fn handle(
        &self,
        peer: &Arc<Identity>,
        request: &[u8],
        replies: &mut Replies<'_>,
    ) -> impl Future<Output = Flow> + Send;
}

/// Where a handler writes its replies: a buffer for the reply being built, sent by the
/// connection when the handler returns, or earlier by [`Replies::send`] for a stream of
/// replies to one request. The buffer is zeroized after each send: replies carry values.
pub struct Replies<'a> {
    buf: &'a mut Vec<u8>,
    stream: Option<&'a mut UnixStream>,
    timeout: Duration,
}

impl<'a> Replies<'a> {
    /// Replies written to `stream` (none: the buffer only, for tests and the floor).
    pub fn new(
        buf: &'a mut Vec<u8>,
        stream: Option<&'a mut UnixStream>,
        timeout: Duration,
    ) -> Self {
        Self {
            buf,
            stream,
            timeout,
        }
    }

    /// The reply being built.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Resolves when the client has closed its end (or the connection failed): what a
    /// stream waits on beside its next reply, so a vanished client ends it at once. Bytes
    /// the client sends meanwhile are read and dropped. Never resolves without a stream.
    pub async fn peer_closed(&mut self) {
        let Some(stream) = self.stream.as_deref_mut() else {
            return std::future::pending().await;
        };
        let mut scratch = [0u8; 256];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }

    /// Sends the reply built so far and starts the next; false when the client is gone
    /// (or too slow to take it within the request timeout).
    pub async fn send(&mut self) -> bool {
        let Some(stream) = self.stream.as_deref_mut() else {
            return false;
        };
        let sent = matches!(
            tokio::time::timeout(self.timeout, stream.write_all(self.buf)).await,
            Ok(Ok(()))
        );
        self.buf.zeroize();
        self.buf.clear();
        sent
    }
}

/// Per-connection and per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are told to retry and closed.
    pub max_connections: usize,
    /// Connections one peer (a uid on the socket, an address over HTTP) may hold at once;
    /// root and the daemon's user are not held to it on the socket.
    pub max_connections_per_peer: usize,
    /// Connections kept for root and the daemon's user: others may hold at most
    /// `max_connections - reserved_connections`.
    pub reserved_connections: usize,
    /// Time to receive a whole request once its first byte arrived (and the first request
    /// of a connection from accept), and to write a reply.
    pub request_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests: an absolute deadline
    /// from the end of its last request, which blank lines (or HTTP/2 pings) do not move.
    pub idle_timeout: Duration,
    /// Largest request, in bytes.
    pub max_request_bytes: usize,
    /// Bytes of requests (socket) or bodies (HTTP) buffered at once by each listener,
    /// beyond the first 16 KiB of each (4 KiB of a body); one that would go over waits, up to its
    /// deadline, then is refused (`rate_limited`).
    pub max_buffered_bytes: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    pub http2_max_streams: u32,
}

impl Limits {
    /// Limits for values of at most `max_value` bytes: a request may be four times that
    /// (JSON escaping, base64) plus room for the envelope.
    pub fn for_values(max_value: usize) -> Self {
        let max_request_bytes = max_value.saturating_mul(4).saturating_add(64 << 10);
        let mut limits = Self {
            max_connections: 1024,
            max_connections_per_peer: 256,
            reserved_connections: 16,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_bytes,
            max_buffered_bytes: 12 << 20,
            http2_max_streams: 16,
        };
        limits.fit_buffered();
        limits
    }

    /// Per-peer and reserved defaults for `max_connections`: a quarter of the slots per
    /// peer, and one in sixteen (at most 16, at least 1) kept for root.
    pub fn set_max_connections(&mut self, n: usize) {
        self.max_connections = n;
        self.max_connections_per_peer = (n / 4).max(1);
        self.reserved_connections = (n / 16).clamp(1, 16).min(n.saturating_sub(1));
    }

    /// Raises `max_buffered_bytes` to what the largest request needs while its buffer
    /// grows (the old and the new buffer at once).
    pub fn fit_buffered(&mut self) {
        let need = self
            .max_request_bytes
            .saturating_add(4 << 10)
            .saturating_mul(2);
        self.max_buffered_bytes = self.max_buffered_bytes.max(need);
    }

    /// `max_buffered_bytes` as semaphore permits of 1 KiB.
    pub(crate) fn buffered_permits(&self) -> usize {
        (self.max_buffered_bytes / 1024).min(tokio::sync::Semaphore::MAX_PERMITS)
    }
}
