//! `sys/` and `auth/token/`: health and seal state (unauthenticated and not audited, as in
//! Vault), seal and unseal, mounts, ACL policies, metrics, coffer's own daemon operations
//! (`sys/coffer/...`), and the token routes.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::Response;
use coffer_core::access::{PolicyText, TokenRecord};
use coffer_core::{Reply, Request, SealState, StatusReport};
use coffer_crypto::SecretBytes;
use coffer_types::Timestamp;
use coffer_types::wire::UnsealWith;
use serde::{Deserialize, Serialize};

use super::kv;
use super::reply::{self, Envelope};
use super::route::{Ctx, no_route, unsupported};

/// The time to live of a token made without one (Vault's default, 32 days).
const DEFAULT_TOKEN_TTL: u64 = 768 * 3600;

/// Handles `sys/<rest>`.
pub(crate) async fn handle(ctx: &Ctx<'_>, rest: &str) -> (&'static str, Response) {
    let rest = rest.trim_end_matches('/');
    match rest {
        "health" => ("sys.health", health(ctx).await),
        "seal-status" => ("sys.seal-status", seal_status(ctx).await),
        "leader" => (
            "sys.leader",
            reply::json(
                StatusCode::OK,
                &serde_json::json!({
                    "ha_enabled": false,
                    "is_self": false,
                    "active_time": "0001-01-01T00:00:00Z",
                    "leader_address": "",
                    "leader_cluster_address": "",
                    "performance_standby": false,
                    "performance_standby_last_remote_wal": 0,
                }),
            ),
        ),
        "seal" => ("sys.seal", seal(ctx).await),
        "unseal" => ("sys.unseal", unseal(ctx).await),
        "mounts" => ("sys.mounts", mounts(ctx).await),
        "metrics" => ("sys.metrics", metrics(ctx).await),
        "policies/acl" | "policy" => ("sys.policies", policy_list(ctx).await),
        "coffer/status" => ("coffer.status", status(ctx).await),
        "coffer/audit/verify" => ("coffer.audit", audit_verify(ctx).await),
        "coffer/audit/hash" => ("coffer.audit", audit_hash(ctx).await),
        _ => {
            if let Some(path) = rest.strip_prefix("internal/ui/mounts/") {
                return ("sys.mounts", mount_of(ctx, path).await);
            }
            if let Some(name) = rest
                .strip_prefix("policies/acl/")
                .or_else(|| rest.strip_prefix("policy/"))
            {
                return ("sys.policies", policy(ctx, name).await);
            }
            ("other", no_route(&format!("sys/{rest}")))
        }
    }
}

fn code_from(ctx: &Ctx<'_>, key: &str, default: u16) -> StatusCode {
    ctx.query(key)
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::from_u16(default).unwrap_or(StatusCode::OK))
}

/// `sys/health`: 200 unsealed, 503 sealed, 501 not initialized, each overridable by
/// `activecode`, `sealedcode`, `uninitcode`. HEAD answers the code alone.
async fn health(ctx: &Ctx<'_>) -> Response {
    if !ctx.reads() {
        return unsupported();
    }
    let report = ctx.shared.service.public_status().await;
    let initialized = report.initialized.is_some();
    let sealed = report.state != SealState::Unsealed;
    let status = if !initialized {
        code_from(ctx, "uninitcode", 501)
    } else if sealed {
        code_from(ctx, "sealedcode", 503)
    } else {
        code_from(ctx, "activecode", 200)
    };
    let now = Timestamp::now().as_millis() / 1000;
    let body = serde_json::json!({
        "initialized": initialized,
        "sealed": sealed,
        "standby": sealed,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": now,
        "version": report.version,
        "enterprise": false,
        "cluster_name": cluster_name(&report),
        "cluster_id": report.store_id.clone().unwrap_or_default(),
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
        "coffer": { "state": report.state, "reason": report.reason, "backend": report.backend },
    });
    let mut response = reply::json(status, &body);
    if ctx.method == Method::HEAD {
        *response.body_mut() = axum::body::Body::empty();
    }
    response
}

fn cluster_name(report: &StatusReport) -> String {
    match &report.store_id {
        Some(id) => format!("coffer-{}", &id[..id.len().min(8)]),
        None => "coffer".to_owned(),
    }
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
    version: &'static str,
    build_date: &'static str,
    migration: bool,
    recovery_seal: bool,
    storage_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
}

fn seal_facts(report: &StatusReport) -> SealStatus {
    let sealed = report.state != SealState::Unsealed;
    SealStatus {
        kind: "coffer",
        initialized: report.initialized.is_some(),
        sealed,
        // Any one slot opens the store.
        t: 1,
        n: report.slots.len(),
        progress: 0,
        nonce: "",
        version: report.version,
        build_date: "",
        migration: false,
        recovery_seal: false,
        storage_type: report.backend,
        cluster_name: (!sealed).then(|| cluster_name(report)),
        cluster_id: (!sealed).then(|| report.store_id.clone().unwrap_or_default()),
    }
}

async fn seal_status(ctx: &Ctx<'_>) -> Response {
    if !ctx.reads() {
        return unsupported();
    }
    let report = ctx.shared.service.public_status().await;
    reply::json(StatusCode::OK, &seal_facts(&report))
}

async fn seal(ctx: &Ctx<'_>) -> Response {
    if !ctx.writes() {
        return unsupported();
    }
    if ctx.token.is_none() {
        return reply::error(StatusCode::FORBIDDEN, "permission denied");
    }
    reply::done(ctx.call(Request::Seal).await)
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

async fn unseal(ctx: &Ctx<'_>) -> Response {
    if !ctx.writes() {
        return unsupported();
    }
    let input: UnsealIn = match ctx.json() {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let (Some(key), false) = (input.key, input.reset) {
        let key = SecretBytes::from_string(key);
        let with = match input.slot.as_deref() {
            Some(s) => match s.parse::<UnsealWith>() {
                Ok(w @ (UnsealWith::Passphrase | UnsealWith::Recovery)) => w,
                Ok(_) => {
                    return reply::error(
                        StatusCode::BAD_REQUEST,
                        "over HTTP a key opens a passphrase or recovery slot; file and tpm \
                         slots are opened by the daemon itself",
                    );
                }
                Err(e) => return reply::error(StatusCode::BAD_REQUEST, &e.to_string()),
            },
            None if coffer_crypto::RecoveryKey::parse(&key).is_ok() => UnsealWith::Recovery,
            None => UnsealWith::Passphrase,
        };
        if let Err(r) = ctx.call(Request::UnsealByKey { with, key }).await {
            return reply::refusal(&r);
        }
    }
    let report = ctx.shared.service.public_status().await;
    reply::json(StatusCode::OK, &seal_facts(&report))
}

async fn mounts(ctx: &Ctx<'_>) -> Response {
    if !ctx.reads() {
        return unsupported();
    }
    if ctx.token.is_none() {
        return reply::error(StatusCode::FORBIDDEN, "permission denied");
    }
    let namespaces = match ctx.call(Request::ListNamespaces).await {
        Ok(Reply::Namespaces(n)) => n,
        Ok(_) => return reply::unexpected(),
        Err(r) => return reply::refusal(&r),
    };
    let mut table = serde_json::Map::new();
    table.insert(
        "secret/".to_owned(),
        kv::mount_entry("secret/", coffer_types::Namespace::DEFAULT),
    );
    for ns in &namespaces {
        let path = format!("{}/", ns.as_str());
        table.insert(path.clone(), kv::mount_entry(&path, ns.as_str()));
    }
    // Vault answers the table both at the top level and under `data`.
    let id = reply::request_id();
    let mut body = serde_json::to_value(Envelope::data(&id, &table)).unwrap_or_default();
    if let serde_json::Value::Object(b) = &mut body {
        for (k, v) in table {
            b.insert(k, v);
        }
    }
    reply::json(StatusCode::OK, &body)
}

/// `sys/internal/ui/mounts/<path>`: which mount serves `path` (the bao and vault CLIs ask
/// before every `kv` command). Needs a live token.
async fn mount_of(ctx: &Ctx<'_>, path: &str) -> Response {
    let Some(token) = &ctx.token else {
        return reply::error(StatusCode::FORBIDDEN, "permission denied");
    };
    if ctx.shared.service.sealed() {
        return reply::error(StatusCode::SERVICE_UNAVAILABLE, reply::SEALED);
    }
    if !ctx.shared.service.token_is_live(token).await {
        return reply::error(StatusCode::FORBIDDEN, "permission denied");
    }
    match kv::resolve(ctx, path.trim_matches('/')) {
        Some((mount, ns)) => reply::data(kv::mount_entry(&mount, ns.as_str())),
        None => reply::error(
            StatusCode::FORBIDDEN,
            &format!(
                "preflight capability check returned 403, please ensure client's policies \
                 grant access to path {path:?}"
            ),
        ),
    }
}

async fn metrics(ctx: &Ctx<'_>) -> Response {
    if !ctx.reads() {
        return unsupported();
    }
    if ctx.token.is_none() {
        return reply::error(StatusCode::FORBIDDEN, "permission denied");
    }
    if let Err(r) = ctx.call(Request::Metrics).await {
        return reply::refusal(&r);
    }
    match ctx.query("format") {
        Some("prometheus") => {}
        _ => {
            return reply::error(
                StatusCode::BAD_REQUEST,
                "coffer serves metrics as Prometheus text: add ?format=prometheus",
            );
        }
    }
    let text = ctx
        .shared
        .metrics
        .render(&ctx.shared.service, ctx.shared.started);
    let mut response = axum::response::Response::new(axum::body::Body::from(text));
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn policy_list(ctx: &Ctx<'_>) -> Response {
    if !(ctx.list || ctx.reads()) {
        return unsupported();
    }
    match ctx.call(Request::PolicyList).await {
        Ok(Reply::Policies(listing)) => {
            let mut names: Vec<&str> = listing.policies.iter().map(|p| p.name.as_str()).collect();
            names.extend(["root", "default"]);
            names.sort_unstable();
            names.dedup();
            reply::data(serde_json::json!({ "keys": names, "policies": names }))
        }
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

#[derive(Deserialize)]
struct PolicyIn {
    policy: String,
}

async fn policy(ctx: &Ctx<'_>, name: &str) -> Response {
    if ctx.reads() {
        return match ctx
            .call(Request::PolicyGet {
                name: name.to_owned(),
            })
            .await
        {
            Ok(Reply::Policy(view)) => {
                let text = serde_json::to_string_pretty(&view.rules).unwrap_or_default();
                reply::data(serde_json::json!({
                    "name": view.name,
                    "policy": text,
                    "rules": view.rules,
                    "source": view.source,
                }))
            }
            Ok(_) => reply::unexpected(),
            Err(r) if r.error.code() == coffer_types::ErrorCode::NotFound => reply::not_found(),
            Err(r) => reply::refusal(&r),
        };
    }
    if ctx.method == Method::DELETE {
        let name = name.to_owned();
        return reply::done(ctx.call(Request::PolicyDelete { name }).await);
    }
    if ctx.writes() {
        let input: PolicyIn = match ctx.json() {
            Ok(i) => i,
            Err(r) => return r,
        };
        let rules: PolicyText = match serde_json::from_str(&input.policy) {
            Ok(r) => r,
            Err(e) => {
                return reply::error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "the policy is coffer's JSON form ({{\"rules\":[{{\"path\":\"app/*\",\
                         \"capabilities\":[\"read\"]}}]}}), which this is not: {e}"
                    ),
                );
            }
        };
        let name = name.to_owned();
        return reply::done(ctx.call(Request::PolicyPut { name, rules }).await);
    }
    unsupported()
}

async fn status(ctx: &Ctx<'_>) -> Response {
    if !ctx.reads() {
        return unsupported();
    }
    match ctx.call(Request::Status).await {
        Ok(Reply::Status(report)) => reply::data(&*report),
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

async fn audit_verify(ctx: &Ctx<'_>) -> Response {
    if !(ctx.writes() || ctx.reads()) {
        return unsupported();
    }
    match ctx.call(Request::AuditVerify).await {
        Ok(Reply::AuditVerified(report)) => reply::data(&*report),
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

#[derive(Deserialize)]
struct HashIn {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

async fn audit_hash(ctx: &Ctx<'_>) -> Response {
    if !ctx.writes() {
        return unsupported();
    }
    let input: HashIn = match ctx.json() {
        Ok(i) => i,
        Err(r) => return r,
    };
    match ctx
        .call(Request::AuditHash {
            name: input.name,
            namespace: input.namespace,
        })
        .await
    {
        Ok(Reply::AuditHash { name, namespace }) => {
            reply::data(serde_json::json!({ "name": name, "namespace": namespace }))
        }
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

/// `{"accessor": "..."}`.
#[derive(Deserialize)]
struct AccessorIn {
    accessor: String,
}

/// Handles `auth/token/<rest>`.
pub(crate) async fn token(ctx: &Ctx<'_>, rest: &str) -> (&'static str, Response) {
    if ctx.token.is_none() {
        return (
            "auth.token",
            reply::error(StatusCode::FORBIDDEN, "permission denied"),
        );
    }
    let response = match rest.trim_end_matches('/') {
        "create" | "create-orphan" if ctx.writes() => create(ctx).await,
        "lookup-self" if ctx.reads() || ctx.writes() => lookup(ctx, None).await,
        "lookup-accessor" if ctx.writes() => match ctx.json::<AccessorIn>() {
            Ok(i) => lookup(ctx, Some(i.accessor)).await,
            Err(r) => r,
        },
        "revoke-self" if ctx.writes() => reply::done(ctx.call(Request::TokenRevokeSelf).await),
        "revoke-accessor" if ctx.writes() => match ctx.json::<AccessorIn>() {
            Ok(AccessorIn { accessor }) => {
                reply::done(ctx.call(Request::TokenRevoke { accessor }).await)
            }
            Err(r) => r,
        },
        "renew-self" if ctx.writes() => match ctx.call(Request::TokenRenewSelf).await {
            Ok(Reply::TokenInfo(record)) => {
                let id = reply::request_id();
                reply::json(StatusCode::OK, &Envelope::auth(&id, auth_of(&record, "")))
            }
            Ok(_) => reply::unexpected(),
            Err(r) => reply::refusal(&r),
        },
        "create" | "create-orphan" | "lookup-self" | "lookup-accessor" | "revoke-self"
        | "revoke-accessor" | "renew-self" => unsupported(),
        other => no_route(&format!("auth/token/{other}")),
    };
    ("auth.token", response)
}

#[derive(Serialize)]
struct Auth<'a> {
    client_token: &'a str,
    accessor: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    metadata: Option<()>,
    lease_duration: u64,
    renewable: bool,
    entity_id: &'static str,
    token_type: &'static str,
    orphan: bool,
    mfa_requirement: Option<()>,
    num_uses: u32,
}

fn remaining(record: &TokenRecord) -> u64 {
    let left = record.expires.as_millis() - Timestamp::now().as_millis();
    u64::try_from(left.max(0) / 1000).unwrap_or(0)
}

fn auth_of<'a>(record: &'a TokenRecord, token: &'a str) -> Auth<'a> {
    // Just made or just renewed: the whole time to live is left.
    let lease = record.ttl.unwrap_or_else(|| remaining(record));
    Auth {
        client_token: token,
        accessor: &record.accessor,
        policies: &record.policies,
        token_policies: &record.policies,
        metadata: None,
        lease_duration: lease,
        renewable: true,
        entity_id: "",
        token_type: "service",
        orphan: false,
        mfa_requirement: None,
        num_uses: 0,
    }
}

#[derive(Deserialize)]
struct CreateIn {
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    ttl: Option<serde_json::Value>,
    #[serde(default)]
    display_name: Option<String>,
    /// coffer's own: confine the token to a namespace.
    #[serde(default)]
    namespace: Option<String>,
}

async fn create(ctx: &Ctx<'_>) -> Response {
    let input: CreateIn = match ctx.json() {
        Ok(i) => i,
        Err(r) => return r,
    };
    let ttl = match input.ttl.as_ref().map(reply::parse_duration).transpose() {
        Ok(t) => t.filter(|t| *t > 0).unwrap_or(DEFAULT_TOKEN_TTL),
        Err(e) => return reply::error(StatusCode::BAD_REQUEST, &format!("ttl: {e}")),
    };
    let policies = if input.policies.is_empty() {
        vec![coffer_core::access::DEFAULT_POLICY.to_owned()]
    } else {
        input.policies
    };
    let request = Request::TokenCreate {
        policies,
        ttl: Duration::from_secs(ttl),
        namespace: input.namespace,
        display_name: input.display_name,
    };
    match ctx.call(request).await {
        Ok(Reply::TokenCreated { token, record }) => {
            let Some(text) = token.expose_str() else {
                return reply::unexpected();
            };
            let id = reply::request_id();
            reply::json(StatusCode::OK, &Envelope::auth(&id, auth_of(&record, text)))
        }
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}

async fn lookup(ctx: &Ctx<'_>, accessor: Option<String>) -> Response {
    // Vault shows a token its own id on lookup-self; the caller sent it, so it learns
    // nothing new. A lookup by accessor never shows the token.
    let own = if accessor.is_none() {
        ctx.token
            .as_ref()
            .and_then(|t| t.expose_str())
            .unwrap_or("")
    } else {
        ""
    };
    match ctx.call(Request::TokenLookup { accessor }).await {
        Ok(Reply::TokenInfo(record)) => {
            let created_secs = record.created.as_millis() / 1000;
            let ttl = record.ttl.unwrap_or_else(|| remaining(&record));
            reply::data(serde_json::json!({
                "accessor": record.accessor,
                "creation_time": created_secs,
                "creation_ttl": ttl,
                "display_name": record.display_name.clone().unwrap_or_else(|| "token".to_owned()),
                "entity_id": "",
                "expire_time": record.expires.to_string(),
                "explicit_max_ttl": 0,
                "id": own,
                "issue_time": record.created.to_string(),
                "meta": null,
                "num_uses": 0,
                "orphan": false,
                "path": "auth/token/create",
                "policies": record.policies,
                "renewable": true,
                "ttl": remaining(&record),
                "type": "service",
                "namespace": record.namespace,
                "creator": record.creator,
            }))
        }
        Ok(_) => reply::unexpected(),
        Err(r) => reply::refusal(&r),
    }
}
