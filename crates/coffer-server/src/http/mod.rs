//! The Vault-compatible HTTP API (DESIGN.md, HTTP API): axum behind hyper, on plain TCP
//! (loopback only) or rustls.
//!
//! The source follows a request: [`serve_http`] accepts and limits connections (a cap on
//! how many at once, a TLS handshake timeout, hyper's header timeout), `entry` reads the
//! body within the size and time limits, takes the token, and hands the path to `route`,
//! which sends `sys/` and `auth/` to `sys` and every other mount to `kv`. Both build core
//! [`Request`](coffer_core::Request)s and answer through the same `Service` as the socket,
//! so every request walks the same gates and leaves the same audit record. `reply` holds
//! Vault's envelope and error shapes, `metrics` the Prometheus counters.
//!
//! Parsing helpers return the finished error `Response` as their `Err`: it is built once, on
//! the refusal path only, so its size does not matter.
#![allow(clippy::result_large_err)]

mod body;
mod kv;
mod metrics;
mod reply;
mod route;
mod sys;
pub mod tls;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use coffer_core::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::listener::Limits;

pub use metrics::Metrics;

/// Where and how the HTTP API listens.
pub struct HttpConfig {
    /// The address.
    pub addr: SocketAddr,
    /// TLS; `None` serves plain HTTP, which only a loopback address may.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Connection and request limits (shared with the socket's settings).
    pub limits: Limits,
}

/// Why an HTTP configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum HttpConfigError {
    /// Plain HTTP on an address other hosts can reach.
    #[error(
        "--http {0}: plain HTTP (--no-tls) is served on loopback addresses only; drop \
         --no-tls to serve TLS with a certificate coffer issues itself, or give --tls-cert \
         and --tls-key"
    )]
    PlainOffLoopback(SocketAddr),
}

impl HttpConfig {
    /// Checks that plain HTTP is asked for on loopback only.
    pub fn check(&self) -> Result<(), HttpConfigError> {
        if self.tls.is_none() && !self.addr.ip().is_loopback() {
            return Err(HttpConfigError::PlainOffLoopback(self.addr));
        }
        Ok(())
    }
}

/// What every request handler shares.
pub(crate) struct Shared {
    pub service: Arc<Service>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub started: Instant,
}

/// Binds `config.addr`; errors name the address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves the HTTP API on `listener` until `shutdown` turns true. Refuses plain HTTP off
/// loopback before serving anything.
pub async fn serve_http(
    service: Arc<Service>,
    listener: TcpListener,
    config: HttpConfig,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    config
        .check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let shared = Arc::new(Shared {
        service,
        metrics: Metrics::new(),
        limits: config.limits,
        started: Instant::now(),
    });
    let app: Router = Router::new().fallback(entry).with_state(shared);
    let acceptor = config.tls.map(TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(config.limits.max_connections));
    tracing::info!(
        addr = %config.addr,
        tls = acceptor.is_some(),
        "HTTP API listening"
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.limits.request_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(config.limits.idle_timeout))
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Over the connection limit: closing at once is the clearest answer a client
            // that has not sent a request yet can get.
            tracing::warn!(peer = %peer, "HTTP connection refused: too many connections");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let limits = config.limits;
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = connection(stream, peer, app, acceptor, &builder, limits) => {}
                _ = stop.changed() => {}
            }
        });
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    builder: &auto::Builder<TokioExecutor>,
    limits: Limits,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            use tower::Service as _;
            app.call(request.map(axum::body::Body::new)).await
        }
    });
    let served = match acceptor {
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
        Some(acceptor) => {
            match tokio::time::timeout(limits.request_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => builder.serve_connection(TokioIo::new(tls), service).await,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        tracing::debug!(peer = %peer, error = %e, "HTTP connection ended with an error");
    }
}

/// Every request: limits, the token, the route, the metrics.
async fn entry(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let (route, response) = route::handle(&shared, peer, parts, body).await;
    shared
        .metrics
        .observe(route, response.status().as_u16(), started.elapsed());
    response
}
