//! `coffer serve`: open the store, listen, and stop cleanly on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use coffer_core::datadir::DataDir;
use coffer_core::{KeyFiles, Service, Vault};
use coffer_server::protocol::CofferHandler;
use coffer_store::{Backend, SqliteBackend};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::ServeArgs;
use crate::config::{self, FileConfig, ServeFlags};

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
        },
        file,
    )?;
    let dir = DataDir::lock(&cfg.data_dir)?;
    let backend: Arc<dyn Backend> = Arc::new(
        SqliteBackend::open(&dir.database())
            .with_context(|| format!("cannot open the store in {}", dir.root().display()))?,
    );
    let first_boot = cfg
        .key_file
        .clone()
        .unwrap_or_else(|| dir.default_key_file());
    let vault = Vault::start(
        backend,
        KeyFiles {
            path_override: cfg.key_file.clone(),
            first_boot: Some(first_boot),
        },
    );
    let service = Arc::new(Service::new(vault, cfg.service));
    let mut sockets = vec![cfg.socket.clone()];
    sockets.extend(cfg.compat_socket.clone());
    tracing::info!(
        data_dir = %dir.root().display(),
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
        coffer_server::serve_sockets(handler, &sockets, cfg.limits, stopped).await?;
        anyhow::Ok(())
    });
    service.shutdown();
    drop(dir);
    served?;
    tracing::info!("stopped");
    Ok(())
}
