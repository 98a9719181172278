//! `coffer serve`: turn flags, variables and the configuration file into a
//! [`DaemonConfig`], run the [`Daemon`], and stop it gracefully on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use coffer_audit::AuditConfig;
use coffer_server::Daemon;
use coffer_server::daemon::{DaemonConfig, StoreKind};
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{self, AuditChoice, FileConfig, ServeConfig, ServeFlags};

/// The audit log's default place: `DATA_DIR/audit`.
pub fn dir_default(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("audit")
}

/// Options of `coffer serve`; each also has a `COFFER_*` variable and a key in the file.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML configuration file [default: /etc/coffer/coffer.toml when it exists]
    #[arg(
        long,
        env = "COFFER_CONFIG",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Where the store lives [default: /var/lib/coffer as root, $XDG_DATA_HOME/coffer otherwise]
    #[arg(
        long,
        env = "COFFER_DATA_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub data_dir: Option<PathBuf>,
    /// A second socket with the same protocol, for apps written against the device daemon
    /// (e.g. /run/tpmd.sock)
    #[arg(
        long,
        env = "COFFER_COMPAT_SOCKET",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub compat_socket: Option<PathBuf>,
    /// How long a decrypted value stays cached, e.g. 300, 5m; 0 turns the cache off [default: 300s]
    #[arg(long, env = "COFFER_SECRET_TTL", hide_env_values = true, value_name = "DURATION", value_parser = config::parse_duration)]
    pub ttl: Option<Duration>,
    /// The key file of the store's file slot [default: the path recorded in the slot; DATA_DIR/coffer.key for a new store]
    #[arg(
        long,
        env = "COFFER_KEY_FILE",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub key_file: Option<PathBuf>,
    /// Largest secret value in bytes [default: 1048576]
    #[arg(
        long,
        env = "COFFER_MAX_VALUE_BYTES",
        hide_env_values = true,
        value_name = "BYTES"
    )]
    pub max_value_bytes: Option<usize>,
    /// Connections served at once [default: 1024]
    #[arg(
        long,
        env = "COFFER_MAX_CONNECTIONS",
        hide_env_values = true,
        value_name = "N"
    )]
    pub max_connections: Option<usize>,
    /// Connections one peer (a uid on the socket, an address over HTTP) may hold; root and the daemon's user are exempt on the socket [default: a quarter of --max-connections]
    #[arg(
        long,
        env = "COFFER_MAX_CONNECTIONS_PER_PEER",
        hide_env_values = true,
        value_name = "N"
    )]
    pub max_connections_per_peer: Option<usize>,
    /// Time allowed to send a whole request [default: 10s]
    #[arg(long, env = "COFFER_REQUEST_TIMEOUT", hide_env_values = true, value_name = "DURATION", value_parser = config::parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Time a keep-alive connection may stay idle [default: 60s]
    #[arg(long, env = "COFFER_IDLE_TIMEOUT", hide_env_values = true, value_name = "DURATION", value_parser = config::parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// The TPM's TCTI, e.g. swtpm:host=127.0.0.1,port=2321; `none` runs without one [default: device:/dev/tpmrm0 when it exists]
    #[arg(
        long,
        env = "COFFER_TPM_TCTI",
        hide_env_values = true,
        value_name = "TCTI"
    )]
    pub tpm_tcti: Option<String>,
    /// Where secrets are kept: sqlite in the data directory, tpm-nv in the TPM's NV indices, or postgres (--database-url), which several hubs may serve at once [default: sqlite]
    #[arg(
        long,
        env = "COFFER_STORE",
        hide_env_values = true,
        value_enum,
        value_name = "STORE"
    )]
    pub store: Option<config::StoreKind>,
    #[command(flatten)]
    pub database: crate::database::DatabaseArgs,
    #[command(flatten)]
    pub fleet: crate::fleet_args::FleetArgs,
    /// PCR policy a new store's TPM slot is sealed to, e.g. sha256:0,2,7 [default: sha256:7]
    #[arg(long, value_name = "BANK:PCRS", value_parser = config::parse_pcrs)]
    pub pcrs: Option<coffer_tpm::PcrPolicy>,
    /// TOML file of policies and their subjects; refused at start, with its line, when invalid
    #[arg(
        long,
        env = "COFFER_POLICY_FILE",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub policy_file: Option<PathBuf>,
    /// Where the audit log is written [default: DATA_DIR/audit]
    #[arg(
        long,
        env = "COFFER_AUDIT_DIR",
        hide_env_values = true,
        value_name = "DIR"
    )]
    pub audit_dir: Option<PathBuf>,
    /// Start a new audit file once the current one reaches BYTES [default: 64 MiB]
    #[arg(long, value_name = "BYTES")]
    pub audit_max_file_bytes: Option<u64>,
    /// Keep at most N audit files; older ones are removed at rotation [default: 0, no limit]
    #[arg(long, value_name = "N")]
    pub audit_keep_files: Option<usize>,
    /// Keep at most BYTES of audit files; older ones are removed at rotation [default: 0]
    #[arg(long, value_name = "BYTES")]
    pub audit_max_total_bytes: Option<u64>,
    /// Refuse requests (audit_unavailable) when the audit directory's file system has less
    /// than BYTES free [default: 64 MiB]
    #[arg(long, value_name = "BYTES")]
    pub audit_reserve_bytes: Option<u64>,
    /// Run without an audit log: no request is recorded (for measurements, never production)
    #[arg(long, conflicts_with = "audit_dir")]
    pub danger_no_audit: bool,
    /// Serve the Vault-compatible HTTP API on ADDR [default when given alone: 127.0.0.1:8200];
    /// plain HTTP on loopback, TLS on any other address
    #[arg(
        long,
        env = "COFFER_HTTP",
        hide_env_values = true,
        value_name = "ADDR",
        num_args = 0..=1,
        default_missing_value = config::DEFAULT_HTTP_ADDR
    )]
    pub http: Option<String>,
    /// PEM certificate chain for the HTTP API [default: a certificate coffer issues itself, in DATA_DIR/tls, for a non-loopback address]
    #[arg(
        long,
        env = "COFFER_TLS_CERT",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(
        long,
        env = "COFFER_TLS_KEY",
        hide_env_values = true,
        value_name = "FILE"
    )]
    pub tls_key: Option<PathBuf>,
    /// Another DNS name or IP address coffer's own certificate covers (repeatable)
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// Serve plain HTTP, as on loopback by default; refused for any other address
    #[arg(long)]
    pub no_tls: bool,
    /// Serve systemd's LoadCredential=ID:PATH on this socket (e.g.
    /// /run/coffer/credentials.sock): a unit gets the secret ID as the policy subject
    /// unit:NAME (docs/credentials.md)
    #[arg(
        long,
        env = "COFFER_CREDENTIALS_SOCKET",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub credentials_socket: Option<PathBuf>,
}

/// The daemon's configuration from the resolved flags and file.
fn daemon_config(cfg: ServeConfig) -> DaemonConfig {
    let mut sockets = vec![cfg.socket];
    sockets.extend(cfg.compat_socket);
    let audit = match cfg.audit {
        AuditChoice::Dir(dir) => Some(AuditConfig {
            dir: dir.unwrap_or_else(|| dir_default(&cfg.data_dir)),
            max_file_bytes: cfg.audit_max_file_bytes,
            plain_names: cfg.audit_plain_names,
            anchor: Some(cfg.data_dir.join(coffer_audit::ANCHOR_FILE)),
            keep_files: cfg.audit_keep_files,
            max_total_bytes: cfg.audit_max_total_bytes,
            reserve_bytes: cfg.audit_reserve_bytes,
            ..AuditConfig::default()
        }),
        AuditChoice::Off => None,
    };
    DaemonConfig {
        data_dir: cfg.data_dir,
        sockets,
        key_file: cfg.key_file,
        service: cfg.service,
        limits: cfg.limits,
        tpm: cfg.tcti,
        store: store_kind(cfg.store),
        database: cfg.database,
        pcrs: cfg.pcrs,
        access: cfg.access,
        audit,
        http: cfg.http,
        webhooks: cfg.webhooks,
        credentials: cfg.credentials,
        fleet: coffer_server::fleet::FleetConfig::default(),
        backups: cfg.backups,
    }
}

/// The daemon's store kind for the CLI's.
pub fn store_kind(kind: config::StoreKind) -> StoreKind {
    match kind {
        config::StoreKind::Sqlite => StoreKind::Sqlite,
        config::StoreKind::TpmNv => StoreKind::TpmNv,
        config::StoreKind::Postgres => StoreKind::Postgres,
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(socket: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    let fleet = args.fleet.resolve()?;
    let mut config = daemon_config(resolve(socket, args)?);
    config.fleet = fleet;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let daemon = Daemon::start(config).await?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("stopping");
        daemon.shutdown().await?;
        anyhow::Ok(())
    })?;
    // Whatever is still queued on the runtime (nothing the daemon waits for) ends here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The settings `serve` runs with: its flags and their `COFFER_*` variables, over the
/// configuration file, over the defaults (`coffer config check` shows them).
pub fn resolve(socket: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<ServeConfig> {
    let file = FileConfig::load(args.config.as_deref())?;
    config::resolve_serve(
        ServeFlags {
            data_dir: args.data_dir,
            socket,
            compat_socket: args.compat_socket,
            key_file: args.key_file,
            ttl: args.ttl,
            max_value_bytes: args.max_value_bytes,
            max_connections: args.max_connections,
            max_connections_per_peer: args.max_connections_per_peer,
            request_timeout: args.request_timeout,
            idle_timeout: args.idle_timeout,
            tpm_tcti: args.tpm_tcti,
            store: args.store,
            database: args.database,
            pcrs: args.pcrs,
            policy_file: args.policy_file,
            audit_dir: args.audit_dir,
            no_audit: args.danger_no_audit,
            audit_max_file_bytes: args.audit_max_file_bytes,
            audit_keep_files: args.audit_keep_files,
            audit_max_total_bytes: args.audit_max_total_bytes,
            audit_reserve_bytes: args.audit_reserve_bytes,
            http: args.http,
            tls_cert: args.tls_cert,
            tls_key: args.tls_key,
            tls_names: args.tls_names,
            no_tls: args.no_tls,
            credentials_socket: args.credentials_socket,
        },
        file,
    )
}
