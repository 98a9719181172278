//! `coffer serve`: reach the TPM, open the store, listen, and stop cleanly on SIGTERM or
//! SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use coffer_core::datadir::DataDir;
use coffer_core::{FirstBoot, Service, Vault, VaultOptions};
use coffer_server::protocol::CofferHandler;
use coffer_store::{Backend, SqliteBackend, StoreHeader};
use coffer_tpm::Tpm;
use coffer_tpm::nv::NvBackend;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::ServeArgs;
use crate::config::{self, AuditChoice, FileConfig, ServeFlags, StoreKind, Tcti};
use coffer_audit::{AuditConfig, AuditLog};

/// The audit log's default place: `DATA_DIR/audit`.
pub fn dir_default(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("audit")
}

/// Connects to the TPM: an operator-named TPM that does not answer is an error, a discovered
/// one a warning (the daemon runs on its other slots).
pub fn reach_tpm(tcti: &Tcti) -> anyhow::Result<Option<Arc<Tpm>>> {
    let opened = match tcti {
        Tcti::Off => return Ok(None),
        Tcti::Configured(t) | Tcti::Discovered(t) => Tpm::open(t),
    };
    match (opened, tcti) {
        (Ok(tpm), _) => {
            tracing::info!(tcti = tpm.tcti(), "TPM reachable");
            Ok(Some(Arc::new(tpm)))
        }
        (Err(e), Tcti::Configured(_)) => Err(e).context(
            "the configured TPM does not answer (check --tpm-tcti or COFFER_TPM_TCTI; \
             `none` runs without a TPM)",
        ),
        (Err(e), _) => {
            tracing::warn!(error = %e, "a TPM was found but does not answer; TPM slots cannot open");
            Ok(None)
        }
    }
}

/// Opens the backend `kind`. With `guard`, refuses the mix-up of serving one kind while the
/// store was made in the other (which would silently start a new, empty store).
pub fn open_backend(
    kind: StoreKind,
    dir: &DataDir,
    tpm: Option<&Arc<Tpm>>,
    guard: bool,
) -> anyhow::Result<Arc<dyn Backend>> {
    let sqlite = || -> anyhow::Result<SqliteBackend> {
        SqliteBackend::open(&dir.database())
            .with_context(|| format!("cannot open the store in {}", dir.root().display()))
    };
    let nv = |tpm: &Arc<Tpm>| -> anyhow::Result<NvBackend> {
        NvBackend::open(tpm.clone()).context("cannot open the store in the TPM's NV")
    };
    let backend: Arc<dyn Backend> = match kind {
        StoreKind::Sqlite => {
            let backend = sqlite()?;
            if guard
                && StoreHeader::load(&backend)?.is_none()
                && let Some(tpm) = tpm
                && StoreHeader::load(&nv(tpm)?)?.is_some()
            {
                bail!(
                    "{} holds no store, but the TPM's NV holds one (made with --store tpm-nv); \
                     serve it with --store tpm-nv",
                    dir.root().display()
                );
            }
            Arc::new(backend)
        }
        StoreKind::TpmNv => {
            let Some(tpm) = tpm else {
                bail!(
                    "--store tpm-nv needs a TPM and none is reachable (set --tpm-tcti or \
                     COFFER_TPM_TCTI, or check {})",
                    coffer_tpm::DEVICE
                );
            };
            let backend = nv(tpm)?;
            if guard
                && StoreHeader::load(&backend)?.is_none()
                && dir.database().exists()
                && StoreHeader::load(&sqlite()?)?.is_some()
            {
                bail!(
                    "the TPM's NV holds no store, but {} holds one; serve it with --store \
                     sqlite (the default)",
                    dir.root().display()
                );
            }
            Arc::new(backend)
        }
    };
    Ok(backend)
}

/// The HTTP API's TLS configuration (`None`: plain HTTP), issuing coffer's own
/// certificate in `DATA_DIR/tls` when it needs one.
fn http_tls(
    http: &config::HttpSettings,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    use coffer_server::http::tls;
    Ok(match &http.tls {
        config::HttpTls::Plain => None,
        config::HttpTls::Files { cert, key } => {
            Some(tls::from_files(cert, key).context("cannot use the HTTP API's certificate")?)
        }
        config::HttpTls::SelfIssued(extra) => {
            let dir = data_dir.join("tls");
            let names = tls::names_for(http.addr.ip(), extra);
            let config = tls::self_issued(&dir, &names)
                .context("cannot issue the HTTP API's certificate")?;
            tracing::info!(ca = %dir.join("ca.pem").display(), "HTTP API serves TLS with coffer's own certificate");
            Some(config)
        }
    })
}

pub fn run(socket: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    let file = FileConfig::load(args.config.as_deref())?;
    let cfg = config::resolve_serve(
        ServeFlags {
            data_dir: args.data_dir,
            socket,
            compat_socket: args.compat_socket,
            key_file: args.key_file,
            ttl: args.ttl,
            max_value_bytes: args.max_value_bytes,
            max_connections: args.max_connections,
            request_timeout: args.request_timeout,
            idle_timeout: args.idle_timeout,
            tpm_tcti: args.tpm_tcti,
            store: args.store,
            pcrs: args.pcrs,
            policy_file: args.policy_file,
            audit_dir: args.audit_dir,
            no_audit: args.danger_no_audit,
            http: args.http,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_names: args.tls_names,
            no_tls: args.no_tls,
        },
        file,
    )?;
    let dir = DataDir::lock(&cfg.data_dir)?;
    let dir_root = dir.root().to_owned();
    let http_tls = match &cfg.http {
        None => None,
        Some(http) => Some(http_tls(http, &dir_root)?),
    };
    let tpm = reach_tpm(&cfg.tcti)?;
    let started = std::time::Instant::now();
    let backend = open_backend(cfg.store, &dir, tpm.as_ref(), true)?;
    tracing::info!(
        store = cfg.store.as_str(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "store opened"
    );
    // A new store is sealed to the TPM when there is one, else opened by a minted key file.
    let first_boot = match &tpm {
        Some(_) => FirstBoot::Tpm(cfg.pcrs.clone()),
        None => FirstBoot::KeyFile(dir.default_key_file()),
    };
    let started = std::time::Instant::now();
    let vault = Vault::start(
        backend,
        VaultOptions {
            key_file: cfg.key_file.clone(),
            tpm,
            first_boot: Some(first_boot),
        },
    );
    tracing::info!(
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "vault opened"
    );
    let mut service = Service::new(vault, cfg.service).with_access(cfg.access.clone());
    match &cfg.audit {
        AuditChoice::Dir(dir) => {
            let dir = dir.clone().unwrap_or_else(|| dir_default(&dir_root));
            let audit = AuditLog::open(AuditConfig {
                dir: dir.clone(),
                max_file_bytes: cfg.audit_max_file_bytes,
                plain_names: cfg.audit_plain_names,
                ..AuditConfig::default()
            })
            .with_context(|| format!("cannot open the audit log in {}", dir.display()))?;
            tracing::info!(dir = %dir.display(), plain_names = cfg.audit_plain_names, "audit log open");
            service = service.with_audit(Arc::new(audit));
        }
        AuditChoice::Off => tracing::warn!(
            "running without an audit log (--danger-no-audit): no request is recorded"
        ),
    }
    let service = Arc::new(service);
    let mut sockets = vec![cfg.socket.clone()];
    sockets.extend(cfg.compat_socket.clone());
    tracing::info!(
        data_dir = %dir.root().display(),
        store = cfg.store.as_str(),
        tpm = cfg.tcti.name().unwrap_or("none"),
        ttl_seconds = service.ttl().as_secs(),
        "coffer {} starting",
        env!("CARGO_PKG_VERSION")
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("cannot start the async runtime")?;
    let handler = Arc::new(CofferHandler::new(service.clone()));
    let served = runtime.block_on(async {
        let (stop, stopped) = watch::channel(false);
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("stopping");
            let _ = stop.send(true);
        });
        let http = match (&cfg.http, http_tls) {
            (Some(settings), Some(tls)) => {
                let listener = coffer_server::http::bind(settings.addr).await?;
                Some(tokio::spawn(coffer_server::http::serve_http(
                    service.clone(),
                    listener,
                    coffer_server::http::HttpConfig {
                        addr: settings.addr,
                        tls,
                        limits: cfg.limits,
                    },
                    stopped.clone(),
                )))
            }
            _ => None,
        };
        coffer_server::serve_sockets(handler, &sockets, cfg.limits, stopped).await?;
        if let Some(http) = http {
            match http.await {
                Ok(served) => served?,
                Err(e) => tracing::error!(error = %e, "the HTTP API task failed"),
            }
        }
        anyhow::Ok(())
    });
    service.shutdown();
    drop(dir);
    served?;
    tracing::info!("stopped");
    Ok(())
}
