//! The parts a daemon is assembled from: the TPM, the storage backend, TLS for the HTTP API.
//! `coffer init` and the offline tools use the same functions.

use std::path::Path;
use std::sync::Arc;

use coffer_core::datadir::DataDir;
use coffer_store::{Backend, SqliteBackend, StoreHeader};
use coffer_tpm::Tpm;
use coffer_tpm::nv::NvBackend;

use super::config::{Database, HttpListen, HttpTls, StoreKind, TpmChoice};
use crate::http::tls;

/// Why a daemon could not be assembled. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The data directory cannot be used (or another daemon holds it).
    #[error(transparent)]
    DataDir(#[from] coffer_core::datadir::DataDirError),
    /// The TPM the operator named does not answer.
    #[error(
        "the configured TPM does not answer (check --tpm-tcti or COFFER_TPM_TCTI; `none` runs \
         without a TPM): {0}"
    )]
    Tpm(#[source] coffer_tpm::TpmError),
    /// The store cannot be opened, or is not the kind asked for.
    #[error("{0}")]
    Store(String),
    /// The audit log cannot be opened.
    #[error("cannot open the audit log in {dir}: {source}")]
    Audit {
        /// Its directory.
        dir: std::path::PathBuf,
        /// Why.
        source: coffer_audit::AuditError,
    },
    /// TLS for the HTTP API cannot be set up.
    #[error("cannot set up TLS for the HTTP API: {0}")]
    Tls(#[from] tls::TlsError),
    /// A listener cannot be bound, or the HTTP settings are refused.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// The async runtime failed.
    #[error("{0}")]
    Runtime(String),
}

/// Connects to the TPM with coffer's TPM authorization from `data_dir` (made there on first
/// use): an operator-named TPM that does not answer is an error, a discovered one a warning
/// (the daemon runs on its other slots).
pub fn reach_tpm(
    choice: &TpmChoice,
    data_dir: &std::path::Path,
) -> Result<Option<Arc<Tpm>>, DaemonError> {
    let Some(tcti) = choice.tcti() else {
        return Ok(None);
    };
    let opened =
        coffer_tpm::TpmAuth::load_or_create(&data_dir.join(coffer_core::datadir::TPM_AUTH))
            .and_then(|auth| Tpm::open(tcti, auth));
    match (opened, choice) {
        (Ok(tpm), _) => {
            tracing::info!(tcti = tpm.tcti(), "TPM reachable");
            Ok(Some(Arc::new(tpm)))
        }
        (Err(e), TpmChoice::Required(_)) => Err(DaemonError::Tpm(e)),
        (Err(e), _) => {
            tracing::warn!(error = %e, "a TPM was found but does not answer; TPM slots cannot open");
            Ok(None)
        }
    }
}

/// Opens the backend `kind` (`database` for PostgreSQL). With `guard`, refuses the mix-up of
/// serving one kind while the store was made in the other (which would silently start a
/// new, empty store).
pub fn open_backend(
    kind: StoreKind,
    dir: &DataDir,
    tpm: Option<&Arc<Tpm>>,
    guard: bool,
    database: Option<&Database>,
) -> Result<Arc<dyn Backend>, DaemonError> {
    let store = |e: coffer_store::StoreError| DaemonError::Store(e.to_string());
    let sqlite = || {
        SqliteBackend::open(&dir.database()).map_err(|e| {
            DaemonError::Store(format!(
                "cannot open the store in {}: {e}",
                dir.root().display()
            ))
        })
    };
    let nv = |tpm: &Arc<Tpm>| {
        NvBackend::open(tpm.clone())
            .map_err(|e| DaemonError::Store(format!("cannot open the store in the TPM's NV: {e}")))
    };
    Ok(match kind {
        StoreKind::Postgres => {
            let Some(db) = database else {
                return Err(DaemonError::Store(
                    "--store postgres needs a database: --database-url, COFFER_DATABASE_URL or \
                     database_url in the file"
                        .into(),
                ));
            };
            let backend = coffer_postgres::PgBackend::open(&db.options, &db.hub).map_err(|e| {
                DaemonError::Store(format!("cannot open the PostgreSQL store: {e}"))
            })?;
            Arc::new(backend)
        }
        StoreKind::Sqlite => {
            let backend = sqlite()?;
            if guard
                && StoreHeader::load(&backend).map_err(store)?.is_none()
                && let Some(tpm) = tpm
                && NvBackend::present(tpm).map_err(store)?
            {
                return Err(DaemonError::Store(format!(
                    "{} holds no store, but the TPM's NV holds one (made with --store tpm-nv); \
                     serve it with --store tpm-nv",
                    dir.root().display()
                )));
            }
            Arc::new(backend)
        }
        StoreKind::TpmNv => {
            let Some(tpm) = tpm else {
                return Err(DaemonError::Store(format!(
                    "--store tpm-nv needs a TPM and none is reachable (set --tpm-tcti or \
                     COFFER_TPM_TCTI, or check {})",
                    coffer_tpm::DEVICE
                )));
            };
            let backend = nv(tpm)?;
            if guard
                && StoreHeader::load(&backend).map_err(store)?.is_none()
                && dir.database().exists()
                && StoreHeader::load(&sqlite()?).map_err(store)?.is_some()
            {
                return Err(DaemonError::Store(format!(
                    "the TPM's NV holds no store, but {} holds one; serve it with --store \
                     sqlite (the default)",
                    dir.root().display()
                )));
            }
            Arc::new(backend)
        }
    })
}

/// The HTTP API's TLS configuration (`None`: plain HTTP), issuing coffer's own certificate
/// in `DATA_DIR/tls` when it needs one.
pub fn http_tls(
    http: &HttpListen,
    data_dir: &Path,
) -> Result<Option<Arc<rustls::ServerConfig>>, DaemonError> {
    Ok(match &http.tls {
        HttpTls::Plain => None,
        HttpTls::Files { cert, key } => Some(tls::from_files(cert, key)?),
        HttpTls::SelfIssued(extra) => {
            let dir = data_dir.join("tls");
            let names = tls::names_for(http.addr.ip(), extra);
            let config = tls::self_issued(&dir, &names)?;
            tracing::info!(ca = %dir.join("ca.pem").display(), "HTTP API serves TLS with coffer's own certificate");
            Some(config)
        }
    })
}
