//! [`DaemonConfig`]: everything a daemon is assembled from. `coffer serve` fills it from
//! flags, variables and the configuration file; tests and other embedders fill it directly.

use std::net::SocketAddr;
use std::path::PathBuf;

use coffer_audit::AuditConfig;
use coffer_core::ServiceConfig;
use coffer_core::access::AccessConfig;
use coffer_tpm::PcrPolicy;

use crate::handler::Limits;

/// Where secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StoreKind {
    /// SQLite in the data directory (the embedded default).
    #[default]
    Sqlite,
    /// TPM NV indices: nothing about secrets on the filesystem; small (the TPM's NV space).
    TpmNv,
    /// A PostgreSQL database several hubs may serve at once ([`DaemonConfig::database`]).
    Postgres,
}

impl StoreKind {
    /// The name used in flags, the file and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::TpmNv => "tpm-nv",
            Self::Postgres => "postgres",
        }
    }
}

/// A PostgreSQL store and this daemon's place among the hubs serving it.
#[derive(Debug, Clone, Default)]
pub struct Database {
    /// How to reach the database.
    pub options: coffer_postgres::PgOptions,
    /// This hub's name: unique among the hubs of the database (leases and audit records
    /// name it).
    pub hub: String,
}

/// How the TPM is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TpmChoice {
    /// Named by the operator: failing to reach it is an error.
    Required(String),
    /// Found on the machine: failing to reach it is a warning (TPM slots cannot open).
    Optional(String),
    /// No TPM.
    Off,
}

impl TpmChoice {
    /// The TCTI, if any.
    pub fn tcti(&self) -> Option<&str> {
        match self {
            Self::Required(t) | Self::Optional(t) => Some(t),
            Self::Off => None,
        }
    }
}

/// How the HTTP API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpTls {
    /// Plain HTTP (loopback only; checked at start).
    Plain,
    /// The operator's certificate chain and key.
    Files {
        /// PEM certificate chain.
        cert: PathBuf,
        /// PEM private key.
        key: PathBuf,
    },
    /// A certificate coffer issues itself (in `DATA_DIR/tls`) for these extra names.
    SelfIssued(Vec<String>),
}

/// The HTTP API's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListen {
    /// Where it listens (port 0: any free port, see [`super::Daemon::http_addr`]).
    pub addr: SocketAddr,
    /// How.
    pub tls: HttpTls,
}

/// Everything a daemon is made of.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The data directory (locked while the daemon runs).
    pub data_dir: PathBuf,
    /// The sockets to serve the local protocol on: the main one, then any compat socket.
    pub sockets: Vec<PathBuf>,
    /// Overrides the key file recorded in file slots.
    pub key_file: Option<PathBuf>,
    /// The service's limits and tunables.
    pub service: ServiceConfig,
    /// Connection and request limits, for the socket and HTTP alike.
    pub limits: Limits,
    /// The TPM.
    pub tpm: TpmChoice,
    /// The store.
    pub store: StoreKind,
    /// The database and this hub's name, for [`StoreKind::Postgres`].
    pub database: Option<Database>,
    /// The PCR policy a new store's TPM slot is sealed to.
    pub pcrs: PcrPolicy,
    /// Policies and rate limits.
    pub access: AccessConfig,
    /// The audit log; `None` runs without one (`--danger-no-audit`).
    pub audit: Option<AuditConfig>,
    /// The HTTP API, when served.
    pub http: Option<HttpListen>,
    /// How webhook deliveries are made (retry schedule, time limit).
    pub webhooks: coffer_core::webhook::WebhookSettings,
    /// Scheduled backups (`[backup]`), when configured.
    pub backups: Option<coffer_core::backup::Schedule>,
    /// The systemd credentials socket, when served (docs/credentials.md).
    pub credentials: Option<crate::credentials::CredentialsConfig>,
    /// Its place in a fleet: a hub's listener, a node's hubs (docs/fleet.md).
    pub fleet: crate::fleet::FleetConfig,
}

impl DaemonConfig {
    /// A daemon on `data_dir` serving the socket at `socket` with the embedded defaults:
    /// SQLite, no TPM, an audit log in `DATA_DIR/audit`, no HTTP.
    pub fn new(data_dir: PathBuf, socket: PathBuf) -> Self {
        let service = ServiceConfig::default();
        Self {
            audit: Some(AuditConfig {
                dir: data_dir.join("audit"),
                anchor: Some(data_dir.join(coffer_audit::ANCHOR_FILE)),
                ..AuditConfig::default()
            }),
            data_dir,
            sockets: vec![socket],
            key_file: None,
            limits: Limits::for_values(service.max_value_bytes),
            service,
            tpm: TpmChoice::Off,
            store: StoreKind::Sqlite,
            database: None,
            pcrs: PcrPolicy::default(),
            access: AccessConfig::default(),
            http: None,
            webhooks: coffer_core::webhook::WebhookSettings::default(),
            credentials: None,
            backups: None,
            fleet: crate::fleet::FleetConfig::default(),
        }
    }
}
