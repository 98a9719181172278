//! [`Daemon`]: coffer assembled from a [`DaemonConfig`] (the data directory, the TPM, the
//! store, the vault, the service with its policies and audit log, the socket listeners and
//! the HTTP API), running until [`Daemon::shutdown`]. `coffer serve` only turns its flags,
//! variables and configuration file into the config; the tests, the agent and the hub embed
//! the same daemon.
//!
//! Shutdown is graceful: the listeners stop taking connections and let requests in flight
//! finish, the requests still running detached from their connections are waited for, then
//! the store is sealed and the audit log closed.

mod assemble;
mod config;
mod counter;
mod hub;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_audit::AuditLog;
use coffer_core::datadir::DataDir;
use coffer_core::{FirstBoot, Service, Vault, VaultOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use assemble::{DaemonError, http_tls, open_backend, reach_tpm};
pub use config::{DaemonConfig, Database, HttpListen, HttpTls, StoreKind, TpmChoice};

use crate::http::{HttpConfig, serve_http};
use crate::protocol::CofferHandler;

/// A running daemon. Stop it with [`Daemon::shutdown`]; dropping it instead stops its
/// listeners at once (requests in flight are cut, though work that passed the gates still
/// completes with its record) and releases the data directory.
pub struct Daemon {
    service: Arc<Service>,
    stop: watch::Sender<bool>,
    sockets: Option<JoinHandle<()>>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    http_addr: Option<SocketAddr>,
    dir: Option<DataDir>,
    /// The lease keeper, for a hub sharing its store.
    hub: Option<JoinHandle<()>>,
    /// The webhook delivery worker.
    webhooks: Option<JoinHandle<()>>,
    /// The systemd credentials socket's listener, when served.
    credentials: Option<JoinHandle<()>>,
    /// The fleet's tasks: a hub's listener, a node's sync.
    fleet: Vec<JoinHandle<()>>,
    /// Where the fleet listener is bound, on a hub.
    fleet_addr: Option<SocketAddr>,
}

/// What the blocking part of starting makes.
struct Assembled {
    dir: DataDir,
    service: Service,
    tls: Option<Arc<rustls::ServerConfig>>,
}

fn assemble(config: &DaemonConfig) -> Result<Assembled, DaemonError> {
    let dir = DataDir::lock(&config.data_dir)?;
    let tls = match &config.http {
        Some(http) => http_tls(http, dir.root())?,
        None => None,
    };
    let tpm = reach_tpm(&config.tpm, dir.root())?;
    let started = Instant::now();
    let backend = open_backend(
        config.store,
        &dir,
        tpm.as_ref(),
        true,
        config.database.as_ref(),
    )?;
    tracing::info!(
        store = config.store.as_str(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "store opened"
    );
    // A new store is sealed to the TPM when there is one, else opened by a minted key file.
    let first_boot = match &tpm {
        Some(_) => FirstBoot::Tpm(config.pcrs.clone()),
        None => FirstBoot::KeyFile(dir.default_key_file()),
    };
    let started = Instant::now();
    let store_backend = backend.clone();
    let vault = Vault::start(
        backend,
        VaultOptions {
            key_file: config.key_file.clone(),
            tpm: tpm.clone(),
            first_boot: Some(first_boot),
        },
    );
    tracing::info!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "vault opened"
    );
    let vault_tpm = tpm;
    let mut service = Service::new(vault, config.service).with_access(config.access.clone());
    service.set_data_dir(dir.root().to_owned());
    match &config.audit {
        Some(audit) => {
            let mut audit = audit.clone();
            if let Some(db) = &config.database {
                audit.hub.get_or_insert_with(|| db.hub.clone());
            }
            audit.counter = audit.counter.or_else(|| {
                counter::audit_counter(vault_tpm.as_ref(), config.store, &*store_backend)
            });
            let log = AuditLog::open(audit.clone()).map_err(|source| DaemonError::Audit {
                dir: audit.dir.clone(),
                source,
            })?;
            tracing::info!(dir = %audit.dir.display(), plain_names = audit.plain_names, "audit log open");
            service = service.with_audit(Arc::new(log));
            // Unsealed at start (a key file or the TPM): check the log against its newest
            // checkpoint now, so a gap is reported at start, not at the first request.
            service.check_audit();
        }
        None => tracing::warn!(
            "running without an audit log (--danger-no-audit): no request is recorded"
        ),
    }
    Ok(Assembled { dir, service, tls })
}

impl Daemon {
    /// Assembles the daemon and starts serving; answers once every listener is bound.
    /// Runs inside a multi-threaded tokio runtime.
    pub async fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        // Before anything is made (a default data directory may share the socket's): a
        // socket directory another user controls is refused.
        for path in &config.sockets {
            crate::socket_dir::prepare(path)?;
        }
        if let Some(creds) = &config.credentials {
            crate::socket_dir::prepare(&creds.socket)?;
        }
        let cfg = config.clone();
        let Assembled { dir, service, tls } = tokio::task::spawn_blocking(move || assemble(&cfg))
            .await
            .map_err(|e| DaemonError::Runtime(e.to_string()))??;
        let service = Arc::new(service);
        let listeners = crate::listener::bind_sockets(&config.sockets)?;
        let credentials = config
            .credentials
            .clone()
            .map(crate::credentials::bind)
            .transpose()?;
        let (stop, stopped) = watch::channel(false);
        let (http, http_addr) = match &config.http {
            Some(settings) => {
                let listener = crate::http::bind(settings.addr).await?;
                let addr = listener.local_addr()?;
                let http = HttpConfig {
                    addr,
                    tls,
                    limits: config.limits,
                };
                http.check().map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                })?;
                let task =
                    tokio::spawn(serve_http(service.clone(), listener, http, stopped.clone()));
                (Some(task), Some(addr))
            }
            None => (None, None),
        };
        let mut shown: Vec<String> = config
            .sockets
            .iter()
            .map(|p| format!("socket {}", p.display()))
            .collect();
        if let Some(addr) = http_addr {
            let plain = matches!(
                config.http.as_ref().map(|h| &h.tls),
                Some(config::HttpTls::Plain)
            );
            shown.push(format!("{} {addr}", if plain { "http" } else { "https" }));
        }
        if let Some(creds) = &config.credentials {
            shown.push(format!("credentials {}", creds.socket.display()));
        }
        service.set_listeners(shown);
        tracing::info!(
            data_dir = %dir.root().display(),
            store = config.store.as_str(),
            tpm = config.tpm.tcti().unwrap_or("none"),
            ttl_seconds = service.ttl().as_secs(),
            "coffer {} starting",
            env!("CARGO_PKG_VERSION")
        );
        tokio::spawn(keep_events(service.clone(), stopped.clone()));
        service.start_following(stop.subscribe());
        let hub = match &config.database {
            Some(database) => {
                let address = match (http_addr, &config.http) {
                    (Some(addr), Some(h)) if matches!(h.tls, config::HttpTls::Plain) => {
                        format!("http://{addr}")
                    }
                    (Some(addr), _) => format!("https://{addr}"),
                    (None, _) => String::new(),
                };
                Some(
                    hub::spawn(service.clone(), database, address, stopped.clone())
                        .await
                        .map_err(|e| DaemonError::Store(e.to_string()))?,
                )
            }
            None => None,
        };
        let mut fleet = Vec::new();
        let mut fleet_addr = None;
        if let Some(addr) = config.fleet.listen {
            let name = config.database.as_ref().map_or_else(
                || {
                    nix::unistd::gethostname()
                        .ok()
                        .and_then(|h| h.into_string().ok())
                        .unwrap_or_else(|| "coffer".to_owned())
                },
                |d| d.hub.clone(),
            );
            let (bound, task) = crate::fleet::spawn_hub(
                service.clone(),
                addr,
                name,
                dir.root().to_owned(),
                stopped.clone(),
            )
            .await?;
            fleet.push(task);
            fleet_addr = Some(bound);
        }
        if let Some(node) = config.fleet.node.clone() {
            fleet.push(crate::fleet::spawn_node(
                service.clone(),
                node,
                dir.root().to_owned(),
                stopped.clone(),
            ));
        }
        service.start_rotations(stop.subscribe());
        if let Some(schedule) = config.backups.clone() {
            tracing::info!(
                dir = %schedule.dir.display(),
                every_seconds = schedule.every.as_secs(),
                keep = schedule.keep,
                "scheduled backups"
            );
            service.start_backups(schedule, stop.subscribe());
        }
        service.webhooks().configure(config.webhooks.file.clone());
        let webhooks =
            crate::webhook::spawn(service.clone(), config.webhooks.clone(), stopped.clone());
        let credentials = credentials.map(|(listener, settings)| {
            tokio::spawn(crate::credentials::serve(
                listener,
                Arc::new(settings),
                service.clone(),
                config.limits,
                stopped.clone(),
            ))
        });
        let handler = Arc::new(CofferHandler::new(service.clone()));
        let sockets = tokio::spawn(crate::listener::serve_listeners(
            handler,
            listeners,
            config.sockets.clone(),
            config.limits,
            stopped,
        ));
        Ok(Self {
            service,
            stop,
            sockets: Some(sockets),
            http,
            http_addr,
            dir: Some(dir),
            webhooks: Some(webhooks),
            credentials,
            hub,
            fleet,
            fleet_addr,
        })
    }

    /// The service every listener calls.
    pub fn service(&self) -> &Arc<Service> {
        &self.service
    }

    /// Where the HTTP API listens, when it does (the bound address, also for port 0).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Where the fleet listener is bound, on a hub (also for port 0).
    pub fn fleet_addr(&self) -> Option<SocketAddr> {
        self.fleet_addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir
            .as_ref()
            .map_or(std::path::Path::new(""), DataDir::root)
    }

    /// Stops gracefully: no new connections, requests in flight finish (within the request
    /// timeout), requests detached from their connections complete with their audit
    /// records, then the store is sealed and the audit log closed.
    pub async fn shutdown(mut self) -> Result<(), DaemonError> {
        let _ = self.stop.send(true);
        self.service.end_watches();
        // The lease is given up first: another hub takes the singleton work at once.
        if let Some(hub) = self.hub.take() {
            let _ = hub.await;
        }
        // A round cut short is made again after the next start (deliveries are at least once).
        if let Some(webhooks) = self.webhooks.take() {
            webhooks.abort();
        }
        for task in self.fleet.drain(..) {
            let _ = task.await;
        }
        if let Some(sockets) = self.sockets.take()
            && let Err(e) = sockets.await
        {
            tracing::error!(error = %e, "the socket listeners' task failed");
        }
        if let Some(credentials) = self.credentials.take()
            && let Err(e) = credentials.await
        {
            tracing::error!(error = %e, "the credentials socket's task failed");
        }
        let served = match self.http.take() {
            Some(http) => http
                .await
                .map_err(|e| DaemonError::Runtime(e.to_string()))
                .and_then(|r| r.map_err(DaemonError::Listen)),
            None => Ok(()),
        };
        self.service.drain().await;
        let service = self.service.clone();
        // Closing the audit log syncs it: blocking work.
        let _ = tokio::task::spawn_blocking(move || service.shutdown()).await;
        drop(self.dir.take());
        tracing::info!("stopped");
        served
    }
}

/// How often the event feed is pruned to its retention window.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Prunes the event feed now and then, until the daemon stops.
async fn keep_events(service: Arc<Service>, mut stopped: watch::Receiver<bool>) {
    loop {
        match service.prune_events().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "old change events dropped"),
            Err(e) => tracing::warn!(error = %e, "pruning change events failed; retried later"),
        }
        if let Err(e) = service.sweep_wrapped().await {
            tracing::warn!(error = %e, "removing expired wrapped responses failed; retried later");
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_EVERY) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

impl Drop for Daemon {
    /// Not shut down: stops the listeners at once (their connections with them), then, on
    /// the runtime, lets the work already in the service end with its records before the
    /// store is sealed, the log closed and the data directory released.
    fn drop(&mut self) {
        let Some(sockets) = self.sockets.take() else {
            return;
        };
        let _ = self.stop.send(true);
        sockets.abort();
        if let Some(webhooks) = self.webhooks.take() {
            webhooks.abort();
        }
        if let Some(credentials) = self.credentials.take() {
            credentials.abort();
        }
        if let Some(http) = self.http.take() {
            http.abort();
        }
        let (service, dir) = (self.service.clone(), self.dir.take());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    service.drain().await;
                    let _ = tokio::task::spawn_blocking(move || {
                        service.shutdown();
                        drop(dir);
                    })
                    .await;
                });
            }
            // No runtime: nothing detached can still be running; the log closes when the
            // service is dropped.
            Err(_) => drop(dir),
        }
    }
}
