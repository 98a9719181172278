//! Unix socket listeners: binding, accepting, and the limits that keep one client from
//! starving the others (DESIGN.md, Local socket protocol, Limits).
//!
//! The socket file is made connectable by every user (mode 0666): who may do what is decided
//! per request from the peer's credentials, not by file mode. A stale socket left by a crash
//! is replaced; a live one (another daemon answering) is not.

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_core::Identity;
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, watch};

use crate::connection;
use crate::peer;

/// What a handler wants after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// Keep the connection open for newline-delimited requests.
    pub keep_alive: bool,
}

/// Answers one framed request.
pub trait Handler: Send + Sync + 'static {
    /// Writes the reply for `request` from `peer` into `out`.
    fn handle(
        &self,
        peer: &Identity,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> impl Future<Output = Flow> + Send;
}

/// Per-connection and per-listener limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are told to retry and closed.
    pub max_connections: usize,
    /// Time to receive a whole request once its first byte arrived (and the first request
    /// of a connection from accept), and to write a reply.
    pub request_timeout: Duration,
    /// Time a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Largest request, in bytes.
    pub max_request_bytes: usize,
}

impl Limits {
    /// Limits for values of at most `max_value` bytes: a request may be four times that
    /// (JSON escaping, base64) plus room for the envelope.
    pub fn for_values(max_value: usize) -> Self {
        Self {
            max_connections: 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_bytes: max_value.saturating_mul(4).saturating_add(64 << 10),
        }
    }
}

/// Binds a socket at `path` (creating its directory, 0755, when missing), replacing a stale
/// socket file but never a live one, and opens it to every user.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another process is serving on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                ),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

const TOO_MANY: &[u8] =
    b"{\"error\":\"too many connections to coffer; retry shortly\",\"code\":\"rate_limited\"}\n";

/// Serves `listener` with `handler` until `shutdown` turns true, then waits (up to the
/// request timeout) for connections in flight to finish.
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Best effort and non-blocking: a full socket buffer just means a closed connection.
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        tracing::trace!(free = permits.available_permits(), "accepted a connection");
        let handler = handler.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match peer::identify(&stream) {
                Ok(who) => connection::run(stream, handler.as_ref(), &limits, who).await,
                Err(e) => tracing::warn!(error = %e, "could not read the peer's credentials"),
            }
        });
    }
    let drained = tokio::time::timeout(
        limits.request_timeout,
        permits.acquire_many(u32::try_from(limits.max_connections).unwrap_or(u32::MAX)),
    )
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open at shutdown were dropped");
    }
}
