//! Unix socket listeners: binding, accepting, and the limits that keep one client from
//! starving the others (DESIGN.md, Local socket protocol, Limits).
//!
//! The socket file is made connectable by every user (mode 0666): who may do what is decided
//! per request from the peer's credentials, not by file mode. Its directory must be the
//! daemon's own and writable by nobody else (`socket_dir`). A stale socket left by a crash
//! is replaced; a live one (another daemon answering) is not.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_core::Identity;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, watch};

use crate::connection;
use crate::handler::{Handler, Limits};
use crate::peer;
use crate::slots::{Full, Slots};
use crate::socket_dir;

/// Binds a socket at `path` in a directory that passes [`socket_dir::prepare`] (created
/// when missing), replacing a stale socket file but never a live one, and opens it to every
/// user without following a link.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    bind_with(path, 0o666, None)
}

/// [`bind`], with the socket file given `mode` (and `group`, when given) instead of 0666.
pub fn bind_with(path: &Path, mode: u32, group: Option<u32>) -> io::Result<UnixListener> {
    socket_dir::prepare(path)?;
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
    socket_dir::set_access(path, mode, group)?;
    Ok(listener)
}

/// The reply to a connection refused a slot: `rate_limited` with why.
fn too_many(full: Full) -> Vec<u8> {
    format!(
        "{{\"error\":\"{}\",\"code\":\"rate_limited\"}}\n",
        full.message()
    )
    .into_bytes()
}

/// Serves `listener` with `handler` until `shutdown` turns true, then lets connections
/// finish the request in hand (up to the request timeout) and ends the ones still open.
/// Connections are held to `limits`' slots (per uid, reserved for root and the daemon's
/// user) and their request buffers to its byte budget (`budget`, shared by the daemon's
/// sockets).
pub async fn serve<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let budget = Arc::new(Semaphore::new(limits.buffered_permits()));
    serve_with(listener, handler, limits, &budget, &mut shutdown).await;
}

async fn serve_with<H: Handler>(
    listener: UnixListener,
    handler: Arc<H>,
    limits: Limits,
    budget: &Arc<Semaphore>,
    shutdown: &mut watch::Receiver<bool>,
) {
    let budget = budget.clone();
    let serve = move |stream: UnixStream, who: Identity, stop: watch::Receiver<bool>| {
        let (handler, budget) = (handler.clone(), budget.clone());
        async move {
            connection::run(stream, handler.as_ref(), &limits, &budget, who, stop).await;
        }
    };
    accept_until(listener, limits, Busy::Tell, shutdown, serve).await;
}

/// What a connection refused a slot is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// A `rate_limited` error reply (the local protocol).
    Tell,
    /// Nothing: it is closed (a protocol with no way to say why, such as systemd's
    /// credentials).
    Close,
}

/// Accepts connections on `listener` until `shutdown` turns true and runs `serve` on each
/// with its peer (from SO_PEERCRED) and the stop signal, holding each to `limits`' slots
/// (per uid, reserved for root and the daemon's user); then lets the open ones finish (up
/// to the request timeout) and ends the ones still open.
pub(crate) async fn accept_until<F, Fut>(
    listener: UnixListener,
    limits: Limits,
    busy: Busy,
    shutdown: &mut watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(UnixStream, Identity, watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let slots = Slots::new(
        limits.max_connections,
        limits.max_connections_per_peer,
        limits.reserved_connections,
    );
    let daemon_uid = nix::unistd::geteuid().as_raw();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections as we go, so the set stays as small as what is open.
        while connections.try_join_next().is_some() {}
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
        let who = match peer::identify(&stream) {
            Ok(who) => who,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the peer's credentials");
                continue;
            }
        };
        let privileged = who.uid == 0 || who.uid == daemon_uid;
        let slot = match slots.take(who.uid, privileged) {
            Ok(slot) => slot,
            Err(full) => {
                tracing::debug!(uid = who.uid, why = full.message(), "connection refused");
                if busy == Busy::Tell {
                    // Best effort and non-blocking: a full socket buffer just means a
                    // closed connection.
                    let _ = stream.try_write(&too_many(full));
                }
                continue;
            }
        };
        tracing::trace!(free = slots.free(), "accepted a connection");
        let work = serve(stream, who, shutdown.clone());
        connections.spawn(async move {
            let _slot = slot;
            work.await;
        });
    }
    drop(listener);
    let drained = tokio::time::timeout(limits.request_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // A request cut here that passed the gates still completes with its record: its
        // work runs in a task of its own (coffer_core::Service::call).
        tracing::warn!(
            open = connections.len(),
            "connections still open at shutdown were closed"
        );
        connections.shutdown().await;
    }
}

/// Binds every socket in `paths` (errors name the path), before anything is served.
pub fn bind_sockets(paths: &[PathBuf]) -> io::Result<Vec<tokio::net::UnixListener>> {
    paths
        .iter()
        .map(|path| {
            let listener = bind(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot listen on {}: {e}", path.display()),
                )
            })?;
            tracing::info!(socket = %path.display(), "listening");
            Ok(listener)
        })
        .collect()
}

/// Serves `handler` on `listeners` (bound at `paths`) until `shutdown` turns true, then
/// removes the socket files.
pub async fn serve_listeners<H: Handler>(
    handler: Arc<H>,
    listeners: Vec<tokio::net::UnixListener>,
    paths: Vec<PathBuf>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    // In a set: if this task is aborted, its listeners (and their connections) are too.
    let mut tasks = tokio::task::JoinSet::new();
    let budget = Arc::new(Semaphore::new(limits.buffered_permits()));
    for l in listeners {
        let (handler, budget, mut shutdown) = (handler.clone(), budget.clone(), shutdown.clone());
        tasks.spawn(async move {
            serve_with(l, handler, limits, &budget, &mut shutdown).await;
        });
    }
    while tasks.join_next().await.is_some() {}
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// Serves `handler` on every socket in `paths` until `shutdown` turns true, then removes the
/// socket files. Binding errors are returned before anything is served.
pub async fn serve_sockets<H: Handler>(
    handler: Arc<H>,
    paths: &[PathBuf],
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let listeners = bind_sockets(paths)?;
    serve_listeners(handler, listeners, paths.to_vec(), limits, shutdown).await;
    Ok(())
}
