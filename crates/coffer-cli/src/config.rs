//! Configuration, resolved in one place: a flag wins over its `COFFER_*` variable (clap does
//! that), which wins over the TOML file (`--config`, or `/etc/coffer/coffer.toml` when it
//! exists), which wins over the embedded defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use coffer_core::ServiceConfig;
use coffer_core::access::policy::parse_policy_file;
use coffer_core::access::{AccessConfig, PolicySet, RateLimits};
use coffer_core::bounds::PeerLimits;
use coffer_core::cache::CacheLimits;
use coffer_crypto::kdf::Argon2Params;
use coffer_server::Limits;
use coffer_server::daemon::{HttpListen, HttpTls, TpmChoice};
use coffer_tpm::PcrPolicy;

/// The system-wide configuration file, read when it exists and `--config` is not given.
pub const SYSTEM_CONFIG: &str = "/etc/coffer/coffer.toml";

/// A duration in the file: whole seconds (`300`) or text (`"5m"`, `"300s"`).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(#[serde(deserialize_with = "text_duration")] Duration),
}

fn text_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

use serde::Deserialize as _;

impl DurationText {
    fn get(self) -> Duration {
        match self {
            Self::Seconds(s) => Duration::from_secs(s),
            Self::Text(d) => d,
        }
    }
}

/// Parses `300` (seconds), `300s`, `5m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 300, 300s or 5m)"))
}

/// The configuration file's keys. Unknown keys are refused, so a typo is not ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    socket: Option<PathBuf>,
    compat_socket: Option<PathBuf>,
    key_file: Option<PathBuf>,
    ttl: Option<DurationText>,
    max_value_bytes: Option<usize>,
    max_connections: Option<usize>,
    max_connections_per_peer: Option<usize>,
    reserved_connections: Option<usize>,
    max_buffered_bytes: Option<usize>,
    http2_max_streams: Option<u32>,
    peer_limit: Option<PeerLimitText>,
    request_timeout: Option<DurationText>,
    idle_timeout: Option<DurationText>,
    cache_max_entries: Option<usize>,
    cache_max_bytes: Option<usize>,
    argon2: Option<Argon2Params>,
    tpm_tcti: Option<String>,
    store: Option<StoreKind>,
    database_url: Option<String>,
    database_password_file: Option<PathBuf>,
    hub_name: Option<String>,
    pcrs: Option<String>,
    max_versions: Option<u32>,
    policy_file: Option<PathBuf>,
    audit_dir: Option<PathBuf>,
    audit_plain_names: Option<bool>,
    audit_max_file_bytes: Option<u64>,
    audit_keep_files: Option<usize>,
    audit_max_total_bytes: Option<u64>,
    audit_reserve_bytes: Option<u64>,
    rate_limit: Option<RateLimitText>,
    http: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_names: Option<Vec<String>>,
    no_tls: Option<bool>,
    webhook_retry_schedule: Option<String>,
    webhooks: Option<Vec<coffer_core::webhook::FileWebhook>>,
    events: Option<EventsText>,
    credentials: Option<coffer_server::credentials::CredentialsText>,
    backup: Option<BackupText>,
    log_format: Option<crate::logging::LogFormat>,
}

/// `[events]` in the file: how long change events are kept for consumers to resume.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsText {
    /// Events older than this are dropped (default 7 days).
    keep: Option<DurationText>,
    /// At most this many events are kept (default 1,000,000).
    max_events: Option<u64>,
}

impl EventsText {
    fn resolve(self) -> coffer_store::Retention {
        let default = coffer_store::Retention::default();
        coffer_store::Retention {
            max_age_ms: self.keep.map_or(default.max_age_ms, |d| {
                u64::try_from(d.get().as_millis()).unwrap_or(u64::MAX)
            }),
            max_events: self.max_events.unwrap_or(default.max_events),
        }
    }
}

/// `[backup]` in the file: scheduled backups (docs/operations.md, "Scheduled backups").
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupText {
    /// How often (`6h`, `1d`).
    every: DurationText,
    /// Where the backups are written (absolute).
    dir: PathBuf,
    /// age X25519 recipients (`age1...`).
    #[serde(default)]
    recipients: Vec<String>,
    /// A file of recipients, one a line (as `age -R`).
    recipients_file: Option<PathBuf>,
    /// Backups kept (default 14).
    keep: Option<usize>,
}

impl BackupText {
    fn resolve(self) -> anyhow::Result<coffer_core::backup::Schedule> {
        let mut recipients = self.recipients;
        if let Some(file) = &self.recipients_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("[backup] recipients_file {}: {e}", file.display()))?;
            recipients.extend(coffer_core::backup::Recipients::lines(&text));
        }
        let keep = self
            .keep
            .unwrap_or(coffer_core::backup::schedule::DEFAULT_KEEP);
        coffer_core::backup::Schedule::new(self.every.get(), self.dir, &recipients, keep)
            .map_err(|e| anyhow::anyhow!("the configuration file's [backup]: {e}"))
    }
}

/// `[rate_limit]` in the file.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitText {
    per_second: Option<u32>,
    burst: Option<u32>,
    exempt_root: Option<bool>,
}

/// `[peer_limit]` in the file: gate 0, what one peer (a uid, an address) may cost.
#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerLimitText {
    per_second: Option<u32>,
    burst: Option<u32>,
    failure_burst: Option<u32>,
    failure_period: Option<DurationText>,
    unseal_burst: Option<u32>,
    unseal_period: Option<DurationText>,
    unseal_global_burst: Option<u32>,
    unseal_global_period: Option<DurationText>,
    refusals_recorded: Option<u32>,
    refusal_window: Option<DurationText>,
}

impl PeerLimitText {
    fn resolve(self) -> anyhow::Result<PeerLimits> {
        let d = PeerLimits::default();
        let period = |what: &str, t: Option<DurationText>, default: Duration| {
            let t = t.map_or(default, DurationText::get);
            if t.is_zero() || t > Duration::from_secs(24 * 3600) {
                bail!("peer_limit.{what} must be more than 0 and at most 24h");
            }
            Ok(t)
        };
        Ok(PeerLimits {
            per_second: self.per_second.unwrap_or(d.per_second),
            burst: self.burst.unwrap_or(d.burst),
            failure_burst: self.failure_burst.unwrap_or(d.failure_burst),
            failure_period: period("failure_period", self.failure_period, d.failure_period)?,
            unseal_burst: self.unseal_burst.unwrap_or(d.unseal_burst),
            unseal_period: period("unseal_period", self.unseal_period, d.unseal_period)?,
            unseal_global_burst: self.unseal_global_burst.unwrap_or(d.unseal_global_burst),
            unseal_global_period: period(
                "unseal_global_period",
                self.unseal_global_period,
                d.unseal_global_period,
            )?,
            refusals_recorded: self.refusals_recorded.unwrap_or(d.refusals_recorded),
            refusal_window: period("refusal_window", self.refusal_window, d.refusal_window)?,
        })
    }
}

/// Where secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// SQLite in the data directory (the embedded default).
    #[default]
    Sqlite,
    /// TPM NV indices: nothing about secrets on the filesystem; small (the TPM's NV space).
    TpmNv,
    /// A PostgreSQL database (--database-url) that several hubs may serve at once.
    Postgres,
}

/// How many versions a new secret keeps in the TPM NV store unless told otherwise.
pub const NV_DEFAULT_MAX_VERSIONS: u32 = 2;

/// `none` turns TPM use off, whatever is discovered.
pub const NO_TPM: &str = "none";

/// The TCTI to use: the flag (or `COFFER_TPM_TCTI`), the file, else the kernel device when it
/// exists; `none` anywhere in that order means no TPM.
pub fn resolve_tcti(flag: Option<String>, file: Option<String>) -> TpmChoice {
    match flag.or(file).filter(|t| !t.is_empty()) {
        Some(t) if t == NO_TPM => TpmChoice::Off,
        Some(t) => TpmChoice::Required(t),
        None => match coffer_tpm::discover() {
            Some(t) => TpmChoice::Optional(t),
            None => TpmChoice::Off,
        },
    }
}

/// Parses a PCR policy such as `sha256:0,2,7`.
pub fn parse_pcrs(text: &str) -> Result<PcrPolicy, String> {
    text.parse::<PcrPolicy>().map_err(|e| e.to_string())
}

impl FileConfig {
    /// The file's database settings.
    pub fn database_file(&self) -> crate::database::FromFile<'_> {
        crate::database::FromFile {
            url: self.database_url.as_deref(),
            password_file: self.database_password_file.as_deref(),
            hub: self.hub_name.as_deref(),
        }
    }

    /// The file's `log_format`, if it sets one.
    pub fn log_format(&self) -> Option<crate::logging::LogFormat> {
        self.log_format
    }

    /// Reads `explicit`, or the system file when it exists, or nothing.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = match explicit {
            Some(p) => p.to_owned(),
            None if Path::new(SYSTEM_CONFIG).exists() => PathBuf::from(SYSTEM_CONFIG),
            None => return Ok(Self::default()),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        toml::from_str(&text)
            .with_context(|| format!("configuration file {} is invalid", path.display()))
    }
}

/// Command-line values for `serve` (already merged with their variables by clap).
#[derive(Debug, Default, Clone)]
pub struct ServeFlags {
    pub data_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub compat_socket: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ttl: Option<Duration>,
    pub max_value_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub tpm_tcti: Option<String>,
    pub store: Option<StoreKind>,
    pub database: crate::database::DatabaseArgs,
    pub pcrs: Option<PcrPolicy>,
    pub policy_file: Option<PathBuf>,
    pub audit_dir: Option<PathBuf>,
    pub no_audit: bool,
    pub audit_max_file_bytes: Option<u64>,
    pub audit_keep_files: Option<usize>,
    pub audit_max_total_bytes: Option<u64>,
    pub audit_reserve_bytes: Option<u64>,
    pub http: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_names: Vec<String>,
    pub no_tls: bool,
    pub credentials_socket: Option<PathBuf>,
}

/// The HTTP API's address when `--http` is given without one.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8200";

fn http_settings(flags: &ServeFlags, file: &FileConfig) -> anyhow::Result<Option<HttpListen>> {
    let Some(addr) = flags.http.clone().or(file.http.clone()) else {
        if flags.tls_cert.is_some() || flags.tls_key.is_some() || flags.no_tls {
            bail!("--tls-cert, --tls-key and --no-tls apply to the HTTP API: add --http [ADDR]");
        }
        return Ok(None);
    };
    let addr: std::net::SocketAddr = addr.parse().with_context(|| {
        format!("--http {addr:?} is not an address such as {DEFAULT_HTTP_ADDR} or [::1]:8200")
    })?;
    let cert = flags.tls_cert.clone().or(file.tls_cert.clone());
    let key = flags.tls_key.clone().or(file.tls_key.clone());
    let no_tls = flags.no_tls || file.no_tls.unwrap_or(false);
    let tls = match (cert, key, no_tls) {
        (Some(_), _, true) | (_, Some(_), true) => {
            bail!("--no-tls cannot be combined with --tls-cert or --tls-key")
        }
        (Some(cert), Some(key), false) => HttpTls::Files { cert, key },
        (Some(_), None, _) | (None, Some(_), _) => {
            bail!("--tls-cert and --tls-key go together: give both, or neither")
        }
        (None, None, true) => HttpTls::Plain,
        (None, None, false) if addr.ip().is_loopback() => HttpTls::Plain,
        (None, None, false) => {
            let mut names = flags.tls_names.clone();
            names.extend(file.tls_names.clone().unwrap_or_default());
            HttpTls::SelfIssued(names)
        }
    };
    if tls == HttpTls::Plain && !addr.ip().is_loopback() {
        bail!(
            "--http {addr}: plain HTTP (--no-tls) is served on loopback addresses only; drop \
             --no-tls to serve TLS with a certificate coffer issues itself, or give --tls-cert \
             and --tls-key"
        );
    }
    Ok(Some(HttpListen { addr, tls }))
}

/// Where the audit log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditChoice {
    /// This directory (default: DATA_DIR/audit).
    Dir(Option<PathBuf>),
    /// No audit log (`--danger-no-audit`).
    Off,
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub compat_socket: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub service: ServiceConfig,
    pub limits: Limits,
    pub tcti: TpmChoice,
    pub store: StoreKind,
    /// The database of a PostgreSQL store, and this hub's name.
    pub database: Option<coffer_server::daemon::Database>,
    /// The PCR policy of a new store's TPM slot.
    pub pcrs: PcrPolicy,
    /// Policies and rate limits.
    pub access: AccessConfig,
    /// The audit log.
    pub audit: AuditChoice,
    /// Names in clear in the audit log.
    pub audit_plain_names: bool,
    /// Audit file rotation size.
    pub audit_max_file_bytes: u64,
    /// Audit retention: files kept (0: no limit).
    pub audit_keep_files: usize,
    /// Audit retention: bytes kept (0: no limit).
    pub audit_max_total_bytes: u64,
    /// Free space the audit directory keeps (requests refused below it).
    pub audit_reserve_bytes: u64,
    /// The HTTP API, when it is served.
    pub http: Option<HttpListen>,
    /// How webhook deliveries are made.
    pub webhooks: coffer_core::webhook::WebhookSettings,
    /// The systemd credentials socket, when served.
    pub credentials: Option<coffer_server::credentials::CredentialsConfig>,
    /// Scheduled backups, when configured.
    pub backups: Option<coffer_core::backup::Schedule>,
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `/var/lib/coffer` as root, `$XDG_DATA_HOME/coffer` (or `~/.local/share/coffer`) otherwise.
pub fn default_data_dir() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/coffer");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("coffer");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/coffer"),
        None => PathBuf::from(format!("/tmp/coffer-{}/data", nix::unistd::geteuid())),
    }
}

fn user_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("coffer/coffer.sock"),
        None => PathBuf::from(format!(
            "/tmp/coffer-{}/coffer.sock",
            nix::unistd::geteuid()
        )),
    }
}

const SYSTEM_SOCKET: &str = "/run/coffer/coffer.sock";

/// Where the daemon listens by default: `/run/coffer/coffer.sock` as root, the user's runtime
/// directory otherwise.
pub fn default_serve_socket() -> PathBuf {
    if is_root() {
        PathBuf::from(SYSTEM_SOCKET)
    } else {
        user_socket()
    }
}

/// Where a client looks by default: the user's own daemon when its socket exists, else the
/// system daemon.
pub fn default_client_socket() -> PathBuf {
    let user = user_socket();
    if !is_root() && user.exists() {
        user
    } else {
        PathBuf::from(SYSTEM_SOCKET)
    }
}

/// The variable naming one more uid whose daemon a client may talk to (beside root and the
/// user's own): a number or a user name.
pub const SERVER_UID_VAR: &str = "COFFER_SERVER_UID";

/// The uid in `COFFER_SERVER_UID`, if set.
pub fn trusted_server_uid() -> anyhow::Result<Option<u32>> {
    let Some(text) = std::env::var_os(SERVER_UID_VAR).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = text.to_string_lossy();
    if let Ok(uid) = text.trim().parse::<u32>() {
        return Ok(Some(uid));
    }
    match nix::unistd::User::from_name(text.trim()) {
        Ok(Some(user)) => Ok(Some(user.uid.as_raw())),
        _ => bail!("{SERVER_UID_VAR}={text:?} is neither a uid nor a user on this machine"),
    }
}

/// The system user the packaged daemon runs as (packaging/coffer.sysusers).
pub const PACKAGED_USER: &str = "coffer";

/// The uid of the packaged daemon's system user, when this machine has one: clients trust a
/// daemon of that uid as they trust root's, since only root can make the account.
pub fn packaged_daemon_uid() -> Option<u32> {
    match nix::unistd::User::from_name(PACKAGED_USER) {
        Ok(Some(user)) => Some(user.uid.as_raw()),
        _ => None,
    }
}

/// Merges flags, file and defaults for `serve`.
pub fn resolve_serve(flags: ServeFlags, file: FileConfig) -> anyhow::Result<ServeConfig> {
    let http = http_settings(&flags, &file)?;
    let defaults = ServiceConfig::default();
    let max_value_bytes = flags
        .max_value_bytes
        .or(file.max_value_bytes)
        .unwrap_or(defaults.max_value_bytes);
    if max_value_bytes == 0 || max_value_bytes > 64 << 20 {
        bail!("max_value_bytes must be between 1 and 67108864 (64 MiB)");
    }
    let cache = CacheLimits {
        ttl: flags
            .ttl
            .or(file.ttl.map(DurationText::get))
            .unwrap_or(defaults.cache.ttl),
        max_entries: file.cache_max_entries.unwrap_or(defaults.cache.max_entries),
        max_bytes: file.cache_max_bytes.unwrap_or(defaults.cache.max_bytes),
    };
    let mut limits = Limits::for_values(max_value_bytes);
    if let Some(n) = flags.max_connections.or(file.max_connections) {
        if n == 0 {
            bail!("max_connections must be at least 1");
        }
        limits.set_max_connections(n);
    }
    if let Some(n) = flags
        .max_connections_per_peer
        .or(file.max_connections_per_peer)
    {
        if n == 0 || n > limits.max_connections {
            bail!("max_connections_per_peer must be between 1 and max_connections");
        }
        limits.max_connections_per_peer = n;
    }
    if let Some(n) = file.reserved_connections {
        if n >= limits.max_connections {
            bail!("reserved_connections must be less than max_connections");
        }
        limits.reserved_connections = n;
    }
    if let Some(n) = file.max_buffered_bytes {
        limits.max_buffered_bytes = n;
    }
    limits.fit_buffered();
    if let Some(n) = file.http2_max_streams {
        if n == 0 || n > 1024 {
            bail!("http2_max_streams must be between 1 and 1024");
        }
        limits.http2_max_streams = n;
    }
    // Deadlines are added to the clock on every connection: bounded here, so no setting
    // can overflow that addition.
    let bounded = |what: &str, t: Duration| -> anyhow::Result<Duration> {
        const DAY: Duration = Duration::from_secs(24 * 3600);
        if t.is_zero() || t > DAY {
            bail!("{what} must be more than 0 and at most 24h");
        }
        Ok(t)
    };
    if let Some(t) = flags
        .request_timeout
        .or(file.request_timeout.map(DurationText::get))
    {
        limits.request_timeout = bounded("request_timeout", t)?;
    }
    if let Some(t) = flags
        .idle_timeout
        .or(file.idle_timeout.map(DurationText::get))
    {
        limits.idle_timeout = bounded("idle_timeout", t)?;
    }
    if cache.ttl > Duration::from_secs(30 * 24 * 3600) {
        bail!("the cache ttl must be at most 30d (0 turns the cache off)");
    }
    let pcrs = match (flags.pcrs, &file.pcrs) {
        (Some(p), _) => p,
        (None, Some(text)) => {
            parse_pcrs(text).map_err(|e| anyhow::anyhow!("pcrs in the configuration file: {e}"))?
        }
        (None, None) => PcrPolicy::default(),
    };
    let argon2 = argon2_params(&file)?;
    let store = flags.store.or(file.store).unwrap_or_default();
    let access = access_config(
        flags.policy_file.as_deref().or(file.policy_file.as_deref()),
        file.rate_limit,
    )?;
    let audit = if flags.no_audit {
        AuditChoice::Off
    } else {
        AuditChoice::Dir(flags.audit_dir.or(file.audit_dir.clone()))
    };
    let audit_max_file_bytes = flags
        .audit_max_file_bytes
        .or(file.audit_max_file_bytes)
        .unwrap_or(64 << 20);
    if audit_max_file_bytes < 4096 {
        bail!("audit_max_file_bytes must be at least 4096");
    }
    let audit_keep_files = flags
        .audit_keep_files
        .or(file.audit_keep_files)
        .unwrap_or(0);
    if audit_keep_files == 1 {
        bail!("audit_keep_files must be 0 (no limit) or at least 2");
    }
    let audit_max_total_bytes = flags
        .audit_max_total_bytes
        .or(file.audit_max_total_bytes)
        .unwrap_or(0);
    if audit_max_total_bytes != 0 && audit_max_total_bytes < 2 * audit_max_file_bytes {
        bail!("audit_max_total_bytes must be 0 (no limit) or at least twice audit_max_file_bytes");
    }
    let audit_reserve_bytes = flags
        .audit_reserve_bytes
        .or(file.audit_reserve_bytes)
        .unwrap_or(coffer_audit::DEFAULT_RESERVE);
    let data_dir = flags
        .data_dir
        .clone()
        .or(file.data_dir.clone())
        .unwrap_or_else(default_data_dir);
    let database = crate::database::resolve(
        store == StoreKind::Postgres,
        flags.database.clone(),
        file.database_file(),
        &data_dir,
    )?;
    let key_file = flags.key_file.or(file.key_file);
    if let Some(k) = &key_file
        && k.is_dir()
    {
        bail!(
            "--key-file {} is a directory; point it at a file such as {}",
            k.display(),
            k.join("coffer.key").display()
        );
    }
    Ok(ServeConfig {
        data_dir,
        socket: flags
            .socket
            .or(file.socket.clone())
            .unwrap_or_else(default_serve_socket),
        compat_socket: flags.compat_socket.or(file.compat_socket.clone()),
        key_file,
        service: ServiceConfig {
            cache,
            max_value_bytes,
            argon2,
            default_max_versions: match (file.max_versions, store) {
                (Some(0), _) => None,
                (Some(n), _) => Some(n),
                (None, StoreKind::TpmNv) => Some(NV_DEFAULT_MAX_VERSIONS),
                (None, StoreKind::Sqlite | StoreKind::Postgres) => None,
            },
            peer: file.peer_limit.unwrap_or_default().resolve()?,
            events: file.events.unwrap_or_default().resolve(),
        },
        limits,
        tcti: resolve_tcti(flags.tpm_tcti, file.tpm_tcti),
        store,
        database,
        pcrs,
        access,
        audit,
        audit_plain_names: file.audit_plain_names.unwrap_or(false),
        audit_max_file_bytes,
        audit_keep_files,
        audit_max_total_bytes,
        audit_reserve_bytes,
        http,
        credentials: file
            .credentials
            .unwrap_or_default()
            .resolve(flags.credentials_socket)
            .map_err(|e| anyhow::anyhow!("the systemd credentials socket: {e}"))?,
        webhooks: webhook_settings(file.webhook_retry_schedule.as_deref(), file.webhooks)?,
        backups: file.backup.map(BackupText::resolve).transpose()?,
    })
}

/// The webhook settings: the retry schedule from `COFFER_WEBHOOK_RETRY_SCHEDULE`, else the
/// file's `webhook_retry_schedule`, else Standard Webhooks' (a test and operator knob); the
/// file's `[[webhooks]]`, checked.
fn webhook_settings(
    file: Option<&str>,
    hooks: Option<Vec<coffer_core::webhook::FileWebhook>>,
) -> anyhow::Result<coffer_core::webhook::WebhookSettings> {
    let settings = coffer_core::webhook::WebhookSettings {
        file: hooks.unwrap_or_default(),
        ..Default::default()
    };
    for hook in &settings.file {
        hook.check()
            .map_err(|e| anyhow::anyhow!("the configuration file's [[webhooks]]: {e}"))?;
    }
    let var = std::env::var(coffer_core::webhook::RETRY_SCHEDULE_VAR)
        .ok()
        .filter(|v| !v.is_empty());
    match var.as_deref().or(file) {
        Some(text) => settings.with_schedule(text).map_err(anyhow::Error::msg),
        None => Ok(settings),
    }
}

/// Reads the policy file (refusing it with its line and reason) and the rate limits.
fn access_config(
    policy_file: Option<&Path>,
    rate: Option<RateLimitText>,
) -> anyhow::Result<AccessConfig> {
    let file = match policy_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the policy file {}", path.display()))?;
            parse_policy_file(&text)
                .map_err(|e| anyhow::anyhow!("policy file {}, {e}", path.display()))?
        }
        None => PolicySet::default(),
    };
    let defaults = RateLimits::default();
    let rate = rate.unwrap_or_default();
    Ok(AccessConfig {
        file,
        rate: RateLimits {
            per_second: rate.per_second.unwrap_or(defaults.per_second),
            burst: rate.burst.unwrap_or(defaults.burst),
            exempt_root: rate.exempt_root.unwrap_or(defaults.exempt_root),
        },
    })
}

/// Argon2id parameters for new passphrase slots, from the file or the defaults.
pub fn argon2_params(file: &FileConfig) -> anyhow::Result<Argon2Params> {
    let params = file.argon2.unwrap_or_default();
    params
        .validate()
        .context("the [argon2] parameters in the configuration file are invalid")?;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_is_flag_then_file_then_default() {
        let file: FileConfig = toml::from_str(
            r#"
            ttl = "5m"
            max_value_bytes = 2048
            request_timeout = 3
            socket = "/tmp/from-file.sock"
            "#,
        )
        .unwrap();
        let flags = ServeFlags {
            ttl: Some(Duration::from_secs(7)),
            ..Default::default()
        };
        let c = resolve_serve(flags, file).unwrap();
        assert_eq!(c.service.cache.ttl, Duration::from_secs(7));
        assert_eq!(c.service.max_value_bytes, 2048);
        assert_eq!(c.limits.request_timeout, Duration::from_secs(3));
        assert_eq!(c.socket, PathBuf::from("/tmp/from-file.sock"));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn the_nv_store_keeps_few_versions_unless_told() {
        let nv = |file: &str| {
            let flags = ServeFlags {
                store: Some(StoreKind::TpmNv),
                ..Default::default()
            };
            resolve_serve(flags, toml::from_str(file).unwrap())
                .unwrap()
                .service
                .default_max_versions
        };
        assert_eq!(nv(""), Some(NV_DEFAULT_MAX_VERSIONS));
        assert_eq!(nv("max_versions = 5"), Some(5));
        assert_eq!(nv("max_versions = 0"), None);
        let sqlite = resolve_serve(ServeFlags::default(), FileConfig::default()).unwrap();
        assert_eq!(sqlite.service.default_max_versions, None);
        assert_eq!(sqlite.store, StoreKind::Sqlite);
        let file: FileConfig = toml::from_str(
            r#"
            store = "tpm-nv"
            tpm_tcti = "none"
            pcrs = "sha256:0,7"
            "#,
        )
        .unwrap();
        let c = resolve_serve(ServeFlags::default(), file).unwrap();
        assert_eq!((c.store, c.tcti), (StoreKind::TpmNv, TpmChoice::Off));
        assert_eq!(c.pcrs.to_string(), "sha256:0,7");
        let bad: FileConfig = toml::from_str(r#"pcrs = "sha256:99""#).unwrap();
        assert!(resolve_serve(ServeFlags::default(), bad).is_err());
    }

    #[test]
    fn typos_in_the_file_are_refused() {
        let err = toml::from_str::<FileConfig>("tll = 5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("soon").unwrap_err().contains("300s"));
    }
}
