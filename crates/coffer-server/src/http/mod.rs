//! The Vault-compatible HTTP API (DESIGN.md, HTTP API): an axum [`app`] behind hyper, on
//! plain TCP (loopback only) or rustls.
//!
//! The source follows a request: [`serve_http`] accepts and limits connections (a cap on
//! how many at once, a TLS handshake timeout, hyper's header timeout, a graceful end at
//! shutdown); [`app`] routes `sys/` and `auth/token/` to typed handlers (`sys`, `token`) and
//! every other path to the one KV mount resolver (`kv`). Handlers only translate: each turns
//! its request into core operations (`extract` takes the caller, the body and the query),
//! calls `coffer_core::Service::call`, and shapes the answer (`envelope`); `error` maps a
//! refusal to Vault's status and message exactly once. `metrics` counts what was answered.

mod approle;
mod backup;
mod capabilities;
mod envelope;
mod error;
mod events;
mod extract;
mod keys;
mod kv;
mod metrics;
mod namespaces;
mod policy;
mod state;
mod sys;
pub mod tls;
mod token;
mod token_roles;
mod webhooks;
mod wrapping;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::{any, delete, get, post};
use coffer_core::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::handler::Limits;
use crate::slots::Slots;

pub use error::CODE_HEADER;
pub use metrics::Metrics;
pub use state::AppState;

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

/// The HTTP API as a router over `state`: typed routes for `sys/` and `auth/token/`, the
/// KV mount resolver for every other path. Tests drive it with `tower::ServiceExt::oneshot`.
pub fn app(state: Arc<AppState>) -> Router {
    let both = |router: Router<state::Shared>,
                path: &str,
                route: axum::routing::MethodRouter<state::Shared>| {
        router
            .route(path, route.clone())
            .route(&format!("{path}/"), route)
    };
    let mut router = Router::new()
        .route("/v1/sys/health", get(sys::health).head(sys::health))
        .route("/v1/sys/seal-status", get(sys::seal_status))
        .route("/v1/sys/leader", get(sys::leader))
        .route("/v1/sys/ha-status", get(sys::ha_status))
        .route("/v1/sys/seal", post(sys::seal).put(sys::seal))
        .route("/v1/sys/unseal", post(sys::unseal).put(sys::unseal))
        .route("/v1/sys/mounts", get(sys::mounts))
        .route("/v1/sys/metrics", get(sys::metrics))
        .route("/v1/sys/policies/acl/{name}", any(policy::policy))
        .route("/v1/sys/policy/{name}", any(policy::policy))
        .route("/v1/sys/coffer/status", get(sys::status))
        .route("/v1/sys/coffer/backup", post(backup::backup))
        .route(
            "/v1/sys/coffer/namespaces/rotate-key",
            post(keys::rotate_key),
        )
        .route("/v1/sys/coffer/rotate-master", post(keys::rotate_master))
        .route(
            "/v1/sys/coffer/audit/verify",
            get(sys::audit_verify)
                .post(sys::audit_verify)
                .put(sys::audit_verify),
        )
        .route(
            "/v1/sys/coffer/audit/hash",
            post(sys::audit_hash).put(sys::audit_hash),
        )
        .route(
            "/v1/sys/coffer/webhooks",
            get(webhooks::list).post(webhooks::add).put(webhooks::add),
        )
        .route("/v1/sys/coffer/webhooks/status", get(webhooks::status))
        .route("/v1/sys/coffer/webhooks/{id}", delete(webhooks::remove))
        .route("/v1/sys/coffer/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/sys/internal/ui/mounts/{*path}", get(sys::mount_of))
        .route("/v1/sys/audit", get(sys::audit_list))
        .route("/v1/sys/audit/{*path}", any(sys::audit_device))
        .route(
            "/v1/sys/audit-hash/file",
            post(sys::audit_hash_file).put(sys::audit_hash_file),
        )
        .route(
            "/v1/sys/events/subscribe/{*event_type}",
            get(events::subscribe),
        )
        .route("/v1/sys/coffer/events", get(events::sse))
        .route("/v1/sys/coffer/namespaces", get(namespaces::list))
        .route("/v1/sys/coffer/namespaces/{*rest}", post(namespaces::post))
        .route(
            "/v1/sys/capabilities-self",
            post(capabilities::own).put(capabilities::own),
        )
        .route(
            "/v1/sys/capabilities",
            post(capabilities::of_token).put(capabilities::of_token),
        )
        .route(
            "/v1/sys/capabilities-accessor",
            post(capabilities::of_accessor).put(capabilities::of_accessor),
        )
        .route(
            "/v1/sys/wrapping/wrap",
            post(wrapping::wrap_data).put(wrapping::wrap_data),
        )
        .route(
            "/v1/sys/wrapping/unwrap",
            post(wrapping::unwrap).put(wrapping::unwrap),
        )
        .route(
            "/v1/sys/wrapping/lookup",
            post(wrapping::lookup).put(wrapping::lookup),
        )
        .route(
            "/v1/sys/wrapping/rewrap",
            post(wrapping::rewrap).put(wrapping::rewrap),
        )
        .route("/v1/sys/{*rest}", any(sys::no_route))
        .route(
            "/v1/auth/token/create",
            post(token::create).put(token::create),
        )
        .route(
            "/v1/auth/token/create-orphan",
            post(token::create_orphan).put(token::create_orphan),
        )
        .route(
            "/v1/auth/token/lookup-self",
            get(token::lookup_self).post(token::lookup_self),
        )
        .route(
            "/v1/auth/token/lookup-accessor",
            post(token::lookup_accessor).put(token::lookup_accessor),
        )
        .route(
            "/v1/auth/token/revoke-self",
            post(token::revoke_self).put(token::revoke_self),
        )
        .route(
            "/v1/auth/token/revoke-accessor",
            post(token::revoke_accessor).put(token::revoke_accessor),
        )
        .route(
            "/v1/auth/token/renew-self",
            post(token::renew_self).put(token::renew_self),
        )
        .route(
            "/v1/auth/token/lookup",
            get(token::lookup).post(token::lookup).put(token::lookup),
        )
        .route(
            "/v1/auth/token/revoke",
            post(token::revoke).put(token::revoke),
        )
        .route(
            "/v1/auth/token/revoke-orphan",
            post(token::revoke_orphan).put(token::revoke_orphan),
        )
        .route("/v1/auth/token/renew", post(token::renew).put(token::renew))
        .route(
            "/v1/auth/token/create/{role}",
            post(token::create_with_role).put(token::create_with_role),
        )
        .route("/v1/auth/token/roles/{name}", any(token_roles::role))
        .route(
            "/v1/auth/token/renew-accessor",
            post(token::renew_accessor).put(token::renew_accessor),
        )
        .route(
            "/v1/auth/approle/login",
            post(approle::login).put(approle::login),
        )
        .route("/v1/auth/approle/role/{name}", any(approle::role))
        .route(
            "/v1/auth/approle/role/{name}/role-id",
            any(approle::role_id),
        )
        .route(
            "/v1/auth/approle/role/{name}/secret-id",
            any(approle::secret_id),
        )
        .route(
            "/v1/auth/approle/role/{name}/{kind}/{verb}",
            any(approle::secret_id_action),
        )
        .route("/v1/auth/{*rest}", any(sys::no_route));
    router = both(router, "/v1/auth/approle/role", any(approle::roles));
    router = both(router, "/v1/auth/token/roles", any(token_roles::roles));
    router = both(router, "/v1/sys/policies/acl", any(policy::policy_list));
    router = both(router, "/v1/sys/policy", any(policy::policy_list));
    router
        .fallback(kv::handle)
        .method_not_allowed_fallback(sys::unsupported)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            wrapping::wrap_responses,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), vouch))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// A request with a body is let through to its handler (which reads the body) only when
/// the core vouches for its caller (gates 0 and 2: the peer is not backed off, the token is
/// good): a caller with a bad or no token is refused before a byte of its body is read, and
/// the connection is closed. (The core lets an unseal through: its body is the credential,
/// and its attempts have a budget of their own.)
async fn vouch(
    axum::extract::State(state): axum::extract::State<state::Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::body::HttpBody as _;
    use axum::response::IntoResponse as _;
    let path = request.uri().path();
    if request.body().size_hint().exact() == Some(0) {
        return next.run(request).await;
    }
    let action = at_most(path);
    let caller = extract::caller(request.extensions(), request.headers());
    match state.service.vouch(&caller, action).await {
        Ok(()) => {
            drop(caller);
            next.run(request).await
        }
        Err(refusal) => {
            let mut response = error::ApiError::from(refusal).into_response();
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

/// The most a request with a body to `path` could do, for the record of a refusal made
/// before it was read.
fn at_most(path: &str) -> coffer_types::Action {
    use coffer_types::Action;
    let rest = path.trim_start_matches("/v1/");
    let exact = rest.trim_end_matches('/');
    if exact == "auth/approle/login" {
        Action::ApproleLogin
    } else if exact == "sys/wrapping/unwrap" {
        Action::Unwrap
    } else if exact == "sys/wrapping/lookup" {
        Action::WrapLookup
    } else if exact == "sys/wrapping/rewrap" {
        Action::Rewrap
    } else if exact == "sys/wrapping/wrap" {
        Action::Wrap
    } else if rest.starts_with("sys/capabilities") {
        Action::Capabilities
    } else if rest.starts_with("auth/approle/") {
        Action::Approle
    } else if rest.starts_with("auth/token/") {
        Action::TokenCreate
    } else if rest.trim_end_matches('/') == "sys/unseal" {
        Action::Unseal
    } else if rest.starts_with("sys/polic") {
        Action::PolicyPut
    } else if rest.starts_with("sys/seal") {
        Action::Seal
    } else if rest.starts_with("sys/") {
        Action::Status
    } else {
        Action::Set
    }
}

/// Binds `addr`; errors name the address.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// Serves the HTTP API on `listener` until `shutdown` turns true, then lets the requests in
/// flight finish (up to the request timeout). Refuses plain HTTP off loopback before
/// serving anything.
pub async fn serve_http(
    service: Arc<Service>,
    listener: TcpListener,
    config: HttpConfig,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    config
        .check()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let app = app(AppState::new(service, config.limits));
    let acceptor = config.tls.map(TlsAcceptor::from);
    let slots = Slots::new(
        config.limits.max_connections,
        config.limits.max_connections_per_peer,
        0,
    );
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
        .max_concurrent_streams(config.limits.http2_max_streams);
    let builder = Arc::new(builder);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = stopped(&mut shutdown) => break,
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
        let permit = match slots.take(peer.ip(), false) {
            Ok(slot) => slot,
            Err(full) => {
                // Over a connection limit: closing at once is the clearest answer a client
                // that has not sent a request yet can get.
                tracing::warn!(peer = %peer, why = full.message(), "HTTP connection refused");
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (app, acceptor, builder) = (app.clone(), acceptor.clone(), builder.clone());
        let (limits, stop) = (config.limits, shutdown.clone());
        connections.spawn(async move {
            let _permit = permit;
            connection(stream, peer, app, acceptor, &builder, limits, stop).await;
            // hyper has let go of the connection's read buffer: the bodies that were slices
            // of it can be zeroed now.
            extract::wipe_pending();
        });
    }
    drop(listener);
    // Each connection ends gracefully (the request in flight finishes) within the request
    // timeout; what is left after twice that is closed.
    let drained = tokio::time::timeout(config.limits.request_timeout.saturating_mul(2), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "HTTP connections still open at shutdown were closed"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` answers is not `Send`: drop it before anything else awaits.
    let _ = stop.wait_for(|s| *s).await.map(drop);
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    builder: &auto::Builder<TokioExecutor>,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let served = match acceptor {
        None => serve(TokioIo::new(stream), peer, app, builder, limits, stop).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.request_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve(TokioIo::new(tls), peer, app, builder, limits, stop).await,
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

/// Serves one connection; at shutdown, lets the request in flight finish (hyper's graceful
/// shutdown), then closes.
async fn serve<I>(
    io: TokioIo<I>,
    peer: SocketAddr,
    app: Router,
    builder: &auto::Builder<TokioExecutor>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let watched = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
            .extensions_mut()
            .insert(Streaming(Arc::clone(&watched)));
        let mut app = app.clone();
        let busy = watched.begin();
        async move {
            use tower::Service as _;
            let answer = app.call(request.map(axum::body::Body::new)).await;
            drop(busy);
            answer
        }
    });
    // With upgrades: an event subscription becomes a WebSocket.
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => served,
        () = activity.idle(limits.idle_timeout) => {
            // Idle past the deadline (HTTP/1 keep-alive, or HTTP/2 with no stream open,
            // pings or not): closed gracefully.
            tracing::debug!(peer = %peer, "idle HTTP connection closed");
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.request_timeout, conn).await {
                Ok(served) => served,
                Err(_) => Ok(()),
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.request_timeout, conn).await {
                Ok(served) => served,
                Err(_) => Ok(()),
            }
        }
    }
}

/// Requests in progress on one connection, and when the last one ended: what its idle
/// deadline is measured from (bytes that are not requests, such as pings, do not count).
struct Activity {
    busy: std::sync::atomic::AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

/// One request in progress; its end is the connection's last activity.
pub(crate) struct Busy(Arc<Activity>);

/// A handle on the connection's activity, for a response that streams after its handler
/// returned (an SSE stream): holding [`Streaming::hold`]'s guard keeps the connection busy,
/// so its idle deadline does not close it mid-stream.
#[derive(Clone)]
pub(crate) struct Streaming(Arc<Activity>);

impl Streaming {
    /// Busy until the guard is dropped.
    pub(crate) fn hold(&self) -> Busy {
        self.0.begin()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
        self.0
            .busy
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Activity {
    fn new() -> Self {
        Self {
            busy: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Resolves once no request has been in progress for `limit`.
    async fn idle(&self, limit: Duration) {
        loop {
            let since = *self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let deadline = since + limit;
            if self.busy.load(std::sync::atomic::Ordering::SeqCst) == 0
                && tokio::time::Instant::now() >= deadline
            {
                return;
            }
            let next = deadline.max(tokio::time::Instant::now() + limit / 8);
            tokio::time::sleep_until(next.min(tokio::time::Instant::now() + limit)).await;
        }
    }
}
