//! One connection: frame a request, answer it, then close, or, after `"keep_alive": true`,
//! keep answering newline-delimited requests in order.
//!
//! Every wait has a deadline (a whole request within `request_timeout` of its first byte, an
//! idle keep-alive connection within `idle_timeout` of its last reply, which blank lines do
//! not extend), every request a size limit, all buffers together a byte budget, and the
//! buffers that held requests and replies are zeroized before they are freed or reused.

use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, timeout, timeout_at};
use zeroize::{Zeroize, Zeroizing};

use coffer_core::Identity;
use coffer_types::ErrorCode;

use crate::framing::{ObjectScanner, Scan, next_line};
use crate::handler::{Handler, Limits, Replies};
use crate::protocol::write::error as error_reply;

/// Initial read buffer; most requests fit.
const INITIAL: usize = 4 << 10;
/// Buffer a connection may grow to outside the listener's budget (16 MiB for 1,024
/// connections).
const UNBUDGETED: usize = 16 << 10;
/// Longest wait for a client to close after the last reply.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// What framing found.
enum Framed {
    /// A request in `buf[start..end]`; the next one starts at `next`.
    Request {
        start: usize,
        end: usize,
        next: usize,
    },
    /// Nothing more will come.
    Closed,
    /// The connection cannot go on; answer this and close.
    Fatal(ErrorCode, &'static str),
}

struct Conn<'a> {
    stream: UnixStream,
    limits: &'a Limits,
    /// The listener's budget of buffered request bytes (permits of 1 KiB).
    budget: &'a Arc<Semaphore>,
    /// What this connection's buffer holds of the budget (beyond its first `INITIAL`).
    held: Option<OwnedSemaphorePermit>,
    buf: Zeroizing<Vec<u8>>,
    keep_alive: bool,
    /// Turns true when the daemon stops: no new request is taken after the one in hand.
    stop: watch::Receiver<bool>,
}

/// Runs a connection to its end (or, once `stop` turns true, to the end of the request in
/// hand).
pub(crate) async fn run<H: Handler>(
    stream: UnixStream,
    handler: &H,
    limits: &Limits,
    budget: &Arc<Semaphore>,
    peer: Identity,
    stop: watch::Receiver<bool>,
) {
    let mut conn = Conn {
        stream,
        limits,
        budget,
        held: None,
        buf: Zeroizing::new(Vec::with_capacity(INITIAL)),
        keep_alive: false,
        stop,
    };
    let peer = std::sync::Arc::new(peer);
    let mut out = Zeroizing::new(Vec::with_capacity(256));
    loop {
        let (start, end, next) = match conn.frame().await {
            Framed::Request { start, end, next } => (start, end, next),
            Framed::Closed => return,
            Framed::Fatal(code, message) => {
                out.clear();
                error_reply(&mut out, code, message, code.implied_rc(), None);
                conn.send_and_close(&out).await;
                return;
            }
        };
        out.zeroize();
        out.clear();
        let flow = {
            let request = &conn.buf[start..end];
            let mut replies = Replies::new(
                &mut out,
                Some(&mut conn.stream),
                conn.limits.request_timeout,
            );
            handler.handle(&peer, request, &mut replies).await
        };
        conn.consume(next);
        conn.shrink();
        if !conn.keep_alive && !flow.keep_alive {
            conn.send_and_close(&out).await;
            return;
        }
        conn.keep_alive = true;
        if !conn.send(&out).await {
            return;
        }
        if *conn.stop.borrow() {
            conn.send_and_close(&[]).await;
            return;
        }
    }
}

impl Conn<'_> {
    /// Reads until a whole request is framed.
    async fn frame(&mut self) -> Framed {
        let mut scanner = ObjectScanner::default();
        let mut deadline = (!self.keep_alive).then(|| Instant::now() + self.limits.request_timeout);
        // Absolute: blank lines (or anything short of a request) do not move it.
        let idle_until = Instant::now() + self.limits.idle_timeout;
        let mut line_from = 0;
        loop {
            if self.keep_alive {
                while let Some((end, next)) = next_line(&self.buf, line_from) {
                    let line = &self.buf[..end];
                    let start = line
                        .iter()
                        .position(|b| !b.is_ascii_whitespace())
                        .unwrap_or(end);
                    if start < end {
                        return Framed::Request { start, end, next };
                    }
                    // A blank line: skip it.
                    self.consume(next);
                    line_from = 0;
                }
                line_from = self.buf.len();
            } else {
                match scanner.scan(&self.buf) {
                    Scan::Complete(end) => {
                        return Framed::Request {
                            start: 0,
                            end,
                            next: end,
                        };
                    }
                    Scan::Invalid(why) => return Framed::Fatal(ErrorCode::InvalidRequest, why),
                    Scan::Partial => {}
                }
            }
            if self.buf.len() >= self.limits.max_request_bytes {
                return Framed::Fatal(ErrorCode::TooLarge, "the request is larger than the limit");
            }
            let pending = self.buf.iter().any(|b| !b.is_ascii_whitespace());
            if pending && deadline.is_none() {
                deadline = Some(Instant::now() + self.limits.request_timeout);
            }
            let wait = deadline.unwrap_or(idle_until);
            if !self.make_room(wait).await {
                return Framed::Fatal(
                    ErrorCode::RateLimited,
                    "the daemon is receiving too many large requests at once; retry shortly",
                );
            }
            // Waiting for a request that has not begun ends when the daemon stops; one that
            // has begun may still arrive whole within its deadline.
            let stop = &mut self.stop;
            let stopping = async move {
                if pending {
                    std::future::pending::<()>().await;
                }
                let _ = stop.wait_for(|s| *s).await.map(drop);
            };
            let read = tokio::select! {
                // A request already sent when the stop comes is still read and answered.
                biased;
                read = timeout_at(wait, self.stream.read_buf(&mut *self.buf)) => read,
                () = stopping => return Framed::Closed,
            };
            match read {
                Ok(Ok(0)) => {
                    return if pending {
                        Framed::Fatal(
                            ErrorCode::InvalidRequest,
                            "the connection ended before the request did (malformed JSON)",
                        )
                    } else {
                        Framed::Closed
                    };
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return Framed::Closed,
                Err(_) if pending || !self.keep_alive => {
                    return Framed::Fatal(
                        ErrorCode::InvalidRequest,
                        "timed out waiting for a complete request",
                    );
                }
                Err(_) => return Framed::Closed,
            }
        }
    }

    /// Ensures spare capacity for a read without letting the buffer reallocate by itself:
    /// a grown buffer is copied and the old one zeroized, so no request bytes are left in
    /// freed memory. Growing past `UNBUDGETED` first takes the new size from the listener's
    /// budget (fair: first come, first served), waiting for it until `until`; false when
    /// it could not be had.
    async fn make_room(&mut self, until: Instant) -> bool {
        let room = self.buf.capacity() - self.buf.len();
        if room >= 1024 {
            return true;
        }
        // Up to `UNBUDGETED` a buffer doubles; past it, it goes straight to the largest
        // request, taking that from the budget in one piece: connections that each hold a
        // part of the budget while waiting for more could starve one another.
        let want = if self.buf.capacity() >= UNBUDGETED {
            self.limits.max_request_bytes + 1024
        } else {
            (self.buf.capacity() * 2).clamp(INITIAL, UNBUDGETED)
        }
        .max(self.buf.len() + 1024);
        let permit = if want > UNBUDGETED {
            let kib = u32::try_from(want.div_ceil(1024)).unwrap_or(u32::MAX);
            match timeout_at(until, Arc::clone(self.budget).acquire_many_owned(kib)).await {
                Ok(Ok(permit)) => Some(permit),
                _ => return false,
            }
        } else {
            None
        };
        let mut bigger = Vec::with_capacity(want);
        bigger.extend_from_slice(&self.buf);
        self.buf.zeroize();
        *self.buf = bigger;
        // The old buffer is freed: its share of the budget goes back.
        self.held = permit;
        true
    }

    /// After a request: a buffer grown for a large request goes back to its first size
    /// (and its budget to the listener) when what is left of it fits.
    fn shrink(&mut self) {
        if self.held.is_none() || self.buf.len() > INITIAL / 2 {
            return;
        }
        let mut small = Vec::with_capacity(INITIAL);
        small.extend_from_slice(&self.buf);
        self.buf.zeroize();
        *self.buf = small;
        self.held = None;
    }

    /// Drops the first `n` bytes, zeroizing what they leave behind.
    fn consume(&mut self, n: usize) {
        let len = self.buf.len();
        self.buf.copy_within(n..len, 0);
        self.buf[len - n..].zeroize();
        self.buf.truncate(len - n);
    }

    async fn send(&mut self, out: &[u8]) -> bool {
        matches!(
            timeout(self.limits.request_timeout, self.stream.write_all(out)).await,
            Ok(Ok(()))
        )
    }

    /// Sends the last reply and closes gracefully: our side first, then whatever the client
    /// still sends is read and dropped until it closes too (bounded in time and bytes).
    /// Closing a Unix socket with unread data would make the client's read fail with
    /// ECONNRESET instead of a clean end of stream, and a client still writing an oversized
    /// request would never see why it was cut off.
    async fn send_and_close(&mut self, out: &[u8]) {
        if !self.send(out).await {
            return;
        }
        if timeout(self.limits.request_timeout, self.stream.shutdown())
            .await
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + self.limits.request_timeout.min(LINGER);
        let mut budget = self.limits.max_request_bytes;
        let mut scratch = Zeroizing::new([0u8; 4096]);
        while budget > 0 {
            match timeout_at(deadline, self.stream.read(&mut scratch[..])).await {
                Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => break,
            }
        }
    }
}
