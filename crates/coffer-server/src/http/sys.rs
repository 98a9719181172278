//! `sys/`: health and seal state (unauthenticated and not audited, as in Vault), seal and
//! unseal, mounts, metrics, and coffer's own daemon operations
//! (`sys/coffer/...`). Each route turns its request into one core operation.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use coffer_core::{Operation, Reply, SealState, StatusReport};
use coffer_crypto::SecretBytes;
use coffer_types::wire::UnsealWith;
use coffer_types::{Namespace, Timestamp};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use super::envelope::{self, Envelope};
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Query, Who};
use super::kv::mount;
use super::state::Shared;

/// The status `sys/health` answers: the caller's override when it is a final status
/// (200-599; hyper answers 1xx itself), else `default`.
fn code_from(query: &Query, key: &str, default: u16) -> StatusCode {
    query
        .get(key)
        .and_then(|v| v.parse::<u16>().ok())
        .filter(|c| (200..600).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::from_u16(default).unwrap_or(StatusCode::OK))
}

fn cluster_name(report: &StatusReport) -> String {
    match &report.store_id {
        Some(id) => format!("coffer-{}", &id[..id.len().min(8)]),
        None => "coffer".to_owned(),
    }
}

/// `sys/health`: 200 unsealed, 503 sealed, 501 not initialized, each overridable by
/// `activecode`, `sealedcode`, `uninitcode`. HEAD answers the code alone. The reason and
/// the store's id only for a token granted `read` on `sys/health` (the core decides).
pub(crate) async fn health(
    State(state): State<Shared>,
    method: Method,
    query: Query,
    Who(caller): Who,
) -> Response {
    let report = state.service.health(&caller).await;
    // Every hub of a shared store serves reads and writes: none is a standby.
    let view = state.service.cluster().view();
    let initialized = report.initialized.is_some();
    let sealed = report.state != SealState::Unsealed;
    let status = if !initialized {
        code_from(&query, "uninitcode", 501)
    } else if sealed {
        code_from(&query, "sealedcode", 503)
    } else {
        code_from(&query, "activecode", 200)
    };
    let body = serde_json::json!({
        "initialized": initialized,
        "sealed": sealed,
        "standby": sealed,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": Timestamp::now().as_millis() / 1000,
        "version": report.version,
        "enterprise": false,
        "cluster_name": cluster_name(&report),
        "cluster_id": report.store_id.clone().unwrap_or_default(),
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
        "coffer": {
            "state": report.state,
            "reason": report.reason,
            "backend": report.backend,
            "hub": view.as_ref().map(|v| v.hub.clone()),
            "leader": view.as_ref().and_then(|v| v.leader.as_ref().map(|l| l.hub.clone())),
        },
    });
    let mut response = envelope::json(status, &body);
    if method == Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

/// `sys/leader` (unauthenticated, as in Vault): with hubs sharing a store, the one holding
/// the singleton lease (every hub serves reads and writes; the leader runs the rotation
/// scheduler, webhook delivery and scheduled backups); alone, no HA.
pub(crate) async fn leader(State(state): State<Shared>) -> Response {
    let view = state.service.cluster().view();
    let leader = view.as_ref().and_then(|v| v.leader.clone());
    envelope::json(
        StatusCode::OK,
        &serde_json::json!({
            "ha_enabled": view.is_some(),
            "is_self": view.as_ref().is_some_and(|v| v.is_self()),
            "active_time": "0001-01-01T00:00:00Z",
            "leader_address": leader.as_ref().map(|l| l.address.clone()).unwrap_or_default(),
            "leader_cluster_address": "",
            "performance_standby": false,
            "performance_standby_last_remote_wal": 0,
            "coffer": {
                "hub": view.as_ref().map(|v| v.hub.clone()),
                "leader": leader.as_ref().map(|l| l.hub.clone()),
                "term": leader.as_ref().map(|l| l.term),
            },
        }),
    )
}

/// `sys/ha-status`: the hubs seen lately and which one leads, in Vault's shape, for a token
/// granted `read` on `sys/ha-status` (the core decides).
pub(crate) async fn ha_status(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let Some(view) = state.service.ha_status(&caller).await? else {
        return Err(ApiError::bad(
            "high availability is not enabled: this daemon shares its store with no other \
             (serve a PostgreSQL store with --store postgres)",
        ));
    };
    let leader = view.leader.as_ref().map(|l| l.hub.as_str());
    let nodes: Vec<serde_json::Value> = view
        .hubs
        .iter()
        .map(|h| {
            serde_json::json!({
                "hostname": h.name,
                "api_address": h.address,
                "cluster_address": "",
                "active_node": Some(h.name.as_str()) == leader,
                "last_echo": h.last_seen.to_string(),
                "version": env!("CARGO_PKG_VERSION"),
            })
        })
        .collect();
    Ok(envelope::json(
        StatusCode::OK,
        &serde_json::json!({ "nodes": nodes }),
    ))
}

#[derive(Serialize)]
struct SealStatus {
    #[serde(rename = "type")]
    kind: &'static str,
    initialized: bool,
    sealed: bool,
    t: usize,
    n: usize,
    progress: u32,
    nonce: &'static str,
    version: Cow<'static, str>,
    build_date: &'static str,
    commit_date: &'static str,
    migration: bool,
    recovery_seal: bool,
    storage_type: Cow<'static, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

fn seal_facts(report: &StatusReport) -> Response {
    let sealed = report.state != SealState::Unsealed;
    envelope::json(
        StatusCode::OK,
        &SealStatus {
            kind: "coffer",
            initialized: report.initialized.is_some(),
            sealed,
            // Any one slot opens the store.
            t: 1,
            n: report.slots.len(),
            progress: 0,
            nonce: "",
            version: report.version.clone(),
            build_date: "",
            // The build's commit date when the build was told it (COFFER_COMMIT_DATE),
            // else empty as Vault leaves an unknown one.
            commit_date: option_env!("COFFER_COMMIT_DATE").unwrap_or(""),
            migration: false,
            recovery_seal: false,
            storage_type: report.backend.clone(),
            cluster_name: (!sealed).then(|| cluster_name(report)),
            cluster_id: (!sealed).then(|| report.store_id.clone().unwrap_or_default()),
        },
    )
}

/// `sys/seal-status`.
pub(crate) async fn seal_status(State(state): State<Shared>) -> Response {
    seal_facts(&state.service.public_status().await)
}

/// `sys/seal`.
pub(crate) async fn seal(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    state.service.call(caller, Operation::Seal).await?;
    Ok(envelope::no_content())
}

#[derive(Deserialize)]
struct UnsealIn {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    reset: bool,
    /// coffer's own: which kind of slot the key opens (`passphrase` or `recovery`);
    /// without it a key in the recovery key's form opens the recovery slot, any other the
    /// passphrase slots.
    #[serde(default)]
    slot: Option<String>,
}

/// `sys/unseal`: the key is the caller's authority, as in Vault.
pub(crate) async fn unseal(State(state): State<Shared>, Who(caller): Who, body: Body) -> ApiResult {
    let input: UnsealIn = body.json()?;
    if let (Some(key), false) = (input.key, input.reset) {
        let key = SecretBytes::from_string(key);
        let with = match input.slot.as_deref() {
            Some(s) => s
                .parse::<UnsealWith>()
                .map_err(|e| ApiError::bad(e.to_string()))?,
            None if coffer_crypto::RecoveryKey::parse(&key).is_ok() => UnsealWith::Recovery,
            None => UnsealWith::Passphrase,
        };
        let op = Operation::Unseal {
            with,
            key: Some(key),
            by_key: true,
        };
        state.service.call(caller, op).await?;
    }
    Ok(seal_facts(&state.service.public_status().await))
}

/// `sys/mounts`: a mount per namespace, and `secret/` for `default`.
pub(crate) async fn mounts(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let Reply::Namespaces {
        all: namespaces, ..
    } = state.service.call(caller, Operation::NamespaceList).await?
    else {
        return Err(ApiError::unexpected());
    };
    let mut table = serde_json::Map::new();
    table.insert(
        "secret/".to_owned(),
        mount::entry("secret/", Namespace::DEFAULT),
    );
    for ns in &namespaces {
        let path = format!("{}/", ns.as_str());
        table.insert(path.clone(), mount::entry(&path, ns.as_str()));
    }
    // Vault answers the table both at the top level and under `data`.
    Ok(both_levels(table))
}

/// `sys/internal/ui/mounts/<path>`: which mount serves `path` (the bao and vault CLIs ask
/// before every `kv` command).
pub(crate) async fn mount_of(
    State(state): State<Shared>,
    Who(caller): Who,
    Path(path): Path<String>,
) -> ApiResult {
    let prefixes = mount::prefixes(&path);
    let op = Operation::Mount {
        candidates: prefixes.iter().map(|(_, ns)| ns.clone()).collect(),
    };
    match state.service.call(caller, op).await {
        Ok(Reply::Mount(found)) => {
            let (mount_path, _) = prefixes
                .iter()
                .find(|(_, ns)| *ns == found)
                .ok_or_else(ApiError::unexpected)?;
            Ok(envelope::data(mount::entry(mount_path, found.as_str())))
        }
        Ok(_) => Err(ApiError::unexpected()),
        Err(r) if r.gate == coffer_core::Gate::Namespace => Err(ApiError::Edge(
            StatusCode::FORBIDDEN,
            format!(
                "preflight capability check returned 403, please ensure client's policies \
                 grant access to path {path:?}"
            ),
        )),
        Err(r) => Err(r.into()),
    }
}

/// `sys/metrics?format=prometheus`, for a caller with `read` on `sys/metrics`.
pub(crate) async fn metrics(
    State(state): State<Shared>,
    Who(caller): Who,
    query: Query,
) -> ApiResult {
    state.service.call(caller, Operation::Metrics).await?;
    if query.get("format") != Some("prometheus") {
        return Err(ApiError::bad(
            "coffer serves metrics as Prometheus text: add ?format=prometheus",
        ));
    }
    let text = state.metrics.render(&state.service, state.started);
    let mut response = Response::new(axum::body::Body::from(text));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// `sys/coffer/status`.
pub(crate) async fn status(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    match state.service.call(caller, Operation::Status).await? {
        Reply::Status(report) => Ok(envelope::data(&*report)),
        _ => Err(ApiError::unexpected()),
    }
}

/// `sys/coffer/audit/verify`.
pub(crate) async fn audit_verify(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    match state.service.call(caller, Operation::AuditVerify).await? {
        Reply::AuditVerified(report) => Ok(envelope::data(&*report)),
        _ => Err(ApiError::unexpected()),
    }
}

#[derive(Deserialize)]
struct HashIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// `sys/coffer/audit/hash`: the audit log's hash of a name and/or a namespace.
pub(crate) async fn audit_hash(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let input: HashIn = body.json()?;
    let op = Operation::AuditHash {
        name: input.name,
        namespace: input.namespace,
    };
    match state.service.call(caller, op).await? {
        Reply::AuditHash { name, namespace } => Ok(envelope::data(
            serde_json::json!({ "name": name, "namespace": namespace }),
        )),
        _ => Err(ApiError::unexpected()),
    }
}

/// `sys/audit` (GET): the built-in audit log, listed as Vault lists a file device at
/// `file/`, for a caller with `sudo` on `sys/audit` (as Vault's path needs `sudo`).
/// `file_path` is the log's directory (coffer writes segments there, not one file).
pub(crate) async fn audit_list(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let Reply::AuditDevices(dir) = state.service.call(caller, Operation::AuditList).await? else {
        return Err(ApiError::unexpected());
    };
    let mut table = serde_json::Map::new();
    if let Some(dir) = dir {
        table.insert(
            "file/".to_owned(),
            serde_json::json!({
                "type": "file",
                "description": "",
                "options": { "file_path": dir },
                "local": false,
                "path": "file/",
            }),
        );
    }
    Ok(both_levels(table))
}

/// A table Vault answers both at the top level and under `data`.
fn both_levels(table: serde_json::Map<String, serde_json::Value>) -> Response {
    let id = envelope::request_id();
    let mut body = serde_json::to_value(Envelope::data(&id, &table)).unwrap_or_default();
    if let serde_json::Value::Object(b) = &mut body {
        for (k, v) in table {
            b.insert(k, v);
        }
    }
    envelope::json(StatusCode::OK, &body)
}

/// `sys/audit/<path>` (PUT, POST, DELETE): enabling and disabling devices over the API is
/// refused (the built-in log is always on; OpenBao 2.x refuses API-enabled devices too).
pub(crate) async fn audit_device(Path(path): Path<String>) -> Response {
    ApiError::bad(format!(
        "audit device {path:?}: coffer's audit log is built in and always on, so it is          neither enabled nor disabled over the API; it is listed at sys/audit as file/, and          its directory is set with the daemon's --audit-dir (see docs/audit.md)"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct AuditHashIn {
    input: String,
}

/// `sys/audit-hash/file`: Vault's shape over `sys/coffer/audit/hash` (the same operation
/// and grant): the hash the audit log records for `input`.
pub(crate) async fn audit_hash_file(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let input: AuditHashIn = body.json()?;
    let op = Operation::AuditHash {
        name: Some(input.input),
        namespace: None,
    };
    match state.service.call(caller, op).await? {
        Reply::AuditHash { name, .. } => Ok(envelope::data(
            serde_json::json!({ "hash": name.unwrap_or_default() }),
        )),
        _ => Err(ApiError::unexpected()),
    }
}

/// A path under `sys/` or `auth/` that nothing serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> Response {
    let path = uri.path().strip_prefix("/v1/").unwrap_or(uri.path());
    ApiError::no_route(path).into_response()
}

/// A method the route does not take.
pub(crate) async fn unsupported() -> Response {
    ApiError::unsupported().into_response()
}
