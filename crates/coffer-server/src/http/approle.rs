//! `auth/approle/`: AppRole roles, role-ids, secret-ids and the login, in Vault's shapes.
//! The rules (who may, limits, use counts, expiry) are the core's (`AppRoleOp`); here the
//! request is read (the `bao` CLI sends every field as a string) and the answer shaped.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::Method;
use coffer_core::access::approle::{Role, SecretIdRecord};
use coffer_core::{AppRoleOp, AppRoleReply, Operation, Reply, RoleInput, SecretIdInput};
use coffer_crypto::SecretBytes;
use coffer_types::duration;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::envelope;
use super::error::{ApiError, ApiResult, is_missing};
use super::extract::{Body, Query, Who, lists, reads, writes};
use super::state::Shared;

pub(super) type Fields = Map<String, Value>;

/// The body's fields; `bao write -f` sends `null`, as no fields.
pub(super) fn fields(body: &Body) -> Result<Fields, ApiError> {
    match body.json::<Value>()? {
        Value::Null => Ok(Fields::new()),
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad("failed to parse JSON input: not an object")),
    }
}

/// A duration as Vault takes it: seconds, or a string such as `"30m"` or `"3600"`.
pub(super) fn seconds(f: &Fields, key: &str) -> Result<Option<u64>, ApiError> {
    f.get(key)
        .map(|v| match v {
            Value::Number(n) => n.as_u64().ok_or(duration::DurationError),
            Value::String(s) => duration::parse_seconds(s),
            _ => Err(duration::DurationError),
        })
        .transpose()
        .map_err(|e| ApiError::bad(format!("{key}: {e}")))
}

pub(super) fn number(f: &Fields, key: &str) -> Result<Option<u64>, ApiError> {
    f.get(key)
        .map(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .map(|n| n.ok_or_else(|| ApiError::bad(format!("{key}: not a whole number"))))
        .transpose()
}

pub(super) fn boolean(f: &Fields, key: &str) -> Result<Option<bool>, ApiError> {
    f.get(key)
        .map(|v| match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .map(|b| b.ok_or_else(|| ApiError::bad(format!("{key}: not true or false"))))
        .transpose()
}

pub(super) fn text(f: &Fields, key: &str) -> Result<Option<String>, ApiError> {
    f.get(key)
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(ApiError::bad(format!("{key}: not a string"))),
        })
        .transpose()
}

/// A list as Vault takes it: an array, or a comma-separated string.
pub(super) fn list(f: &Fields, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    f.get(key)
        .map(|v| match v {
            Value::String(s) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| ApiError::bad(format!("{key}: not a list of strings"))),
            _ => Err(ApiError::bad(format!("{key}: not a list of strings"))),
        })
        .transpose()
}

/// A secret field (a secret-id): kept in `SecretBytes`, the body's copy wiped with it.
fn secret(f: &Fields, key: &str) -> Result<SecretBytes, ApiError> {
    match f.get(key) {
        Some(Value::String(s)) => Ok(SecretBytes::copy_from(s.as_bytes())),
        _ => Err(ApiError::bad(format!("missing {key}"))),
    }
}

fn metadata(f: &Fields) -> Result<BTreeMap<String, String>, ApiError> {
    let bad = || ApiError::bad("metadata: a JSON object of strings");
    let map: Map<String, Value> = match f.get("metadata") {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(s)) if s.is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| bad())?,
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(bad()),
    };
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(bad()),
        })
        .collect()
}

async fn call(state: &Shared, who: Who, op: AppRoleOp) -> Result<AppRoleReply, ApiError> {
    match state.service.call(who.0, Operation::AppRole(op)).await {
        Ok(Reply::AppRole(r)) => Ok(*r),
        Ok(_) => Err(ApiError::unexpected()),
        Err(r) if is_missing(&r) => Err(ApiError::Missing),
        Err(r) => Err(r.into()),
    }
}

fn keys(reply: AppRoleReply) -> ApiResult {
    match reply {
        AppRoleReply::Keys(keys) => Ok(envelope::data(json!({ "keys": keys }))),
        _ => Err(ApiError::unexpected()),
    }
}

fn done(reply: AppRoleReply) -> ApiResult {
    match reply {
        AppRoleReply::Done => Ok(envelope::no_content()),
        _ => Err(ApiError::unexpected()),
    }
}

/// `LIST auth/approle/role`.
pub(crate) async fn roles(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
) -> ApiResult {
    if !lists(&method, &query) {
        return Err(ApiError::unsupported());
    }
    keys(call(&state, who, AppRoleOp::RoleList).await?)
}

fn role_view(role: &Role) -> Value {
    json!({
        "bind_secret_id": true,
        "local_secret_ids": false,
        "secret_id_bound_cidrs": null,
        "secret_id_num_uses": role.secret_id_num_uses,
        "secret_id_ttl": role.secret_id_ttl,
        "token_bound_cidrs": [],
        "token_explicit_max_ttl": 0,
        "token_max_ttl": role.token_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_num_uses": 0,
        "token_period": 0,
        "token_policies": role.token_policies,
        "policies": role.token_policies,
        "token_strictly_bind_ip": false,
        "token_ttl": role.token_ttl,
        "token_type": "default",
    })
}

/// `auth/approle/role/:name`: read, write, delete.
pub(crate) async fn role(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    if reads(&method, &query) {
        return match call(&state, who, AppRoleOp::RoleGet { name }).await? {
            AppRoleReply::Role(role) => Ok(envelope::data(role_view(&role))),
            _ => Err(ApiError::unexpected()),
        };
    }
    if method == Method::DELETE {
        return done(call(&state, who, AppRoleOp::RoleDelete { name }).await?);
    }
    if !writes(&method) {
        return Err(ApiError::unsupported());
    }
    let f = fields(&body)?;
    let input = RoleInput {
        token_policies: match list(&f, "token_policies")? {
            Some(p) => Some(p),
            None => list(&f, "policies")?,
        },
        secret_id_ttl: seconds(&f, "secret_id_ttl")?,
        secret_id_num_uses: number(&f, "secret_id_num_uses")?,
        token_ttl: seconds(&f, "token_ttl")?,
        token_max_ttl: seconds(&f, "token_max_ttl")?,
        token_no_default_policy: boolean(&f, "token_no_default_policy")?,
    };
    done(call(&state, who, AppRoleOp::RolePut { name, input }).await?)
}

/// `auth/approle/role/:name/role-id`: read, or set a custom one.
pub(crate) async fn role_id(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    if reads(&method, &query) {
        return match call(&state, who, AppRoleOp::RoleIdGet { name }).await? {
            AppRoleReply::RoleId(id) => Ok(envelope::data(json!({ "role_id": id }))),
            _ => Err(ApiError::unexpected()),
        };
    }
    if !writes(&method) {
        return Err(ApiError::unsupported());
    }
    let f = fields(&body)?;
    let role_id = text(&f, "role_id")?.ok_or_else(|| ApiError::bad("missing role_id"))?;
    done(call(&state, who, AppRoleOp::RoleIdSet { name, role_id }).await?)
}

#[derive(Serialize)]
struct SecretIdOut<'a> {
    secret_id: &'a str,
    secret_id_accessor: &'a str,
    secret_id_ttl: u64,
    secret_id_num_uses: u64,
}

/// `auth/approle/role/:name/secret-id`: make one (POST) or list their accessors (LIST).
pub(crate) async fn secret_id(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    if lists(&method, &query) {
        return keys(call(&state, who, AppRoleOp::SecretIdList { name }).await?);
    }
    if !writes(&method) {
        return Err(ApiError::unsupported());
    }
    let f = fields(&body)?;
    let input = SecretIdInput {
        metadata: metadata(&f)?,
        ttl: seconds(&f, "ttl")?,
        num_uses: number(&f, "num_uses")?,
    };
    match call(&state, who, AppRoleOp::SecretIdCreate { name, input }).await? {
        AppRoleReply::SecretId { secret_id, record } => {
            let text = secret_id.expose_str().ok_or_else(ApiError::unexpected)?;
            Ok(envelope::data(SecretIdOut {
                secret_id: text,
                secret_id_accessor: &record.accessor,
                secret_id_ttl: record.ttl,
                secret_id_num_uses: record.num_uses,
            }))
        }
        _ => Err(ApiError::unexpected()),
    }
}

fn secret_id_view(r: &SecretIdRecord) -> Value {
    json!({
        "cidr_list": [],
        "creation_time": r.created.to_string(),
        "expiration_time": r.expires.map_or_else(
            || "0001-01-01T00:00:00Z".to_owned(),
            |e| e.to_string(),
        ),
        "last_updated_time": r.created.to_string(),
        "metadata": r.metadata,
        "secret_id_accessor": r.accessor,
        "secret_id_num_uses": r.num_uses,
        "secret_id_ttl": r.ttl,
        "token_bound_cidrs": [],
    })
}

/// `auth/approle/role/:name/secret-id/{lookup,destroy}` and
/// `.../secret-id-accessor/{lookup,destroy}`.
pub(crate) async fn secret_id_action(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    Path((name, kind, verb)): Path<(String, String, String)>,
    body: Body,
) -> ApiResult {
    if !(writes(&method) || method == Method::DELETE) {
        return Err(ApiError::unsupported());
    }
    let f = fields(&body)?;
    let op = match (kind.as_str(), verb.as_str()) {
        ("secret-id", "lookup") => AppRoleOp::SecretIdLookup {
            name,
            secret_id: secret(&f, "secret_id")?,
        },
        ("secret-id", "destroy") => AppRoleOp::SecretIdDestroy {
            name,
            secret_id: secret(&f, "secret_id")?,
        },
        ("secret-id-accessor", "lookup") => AppRoleOp::AccessorLookup {
            name,
            accessor: text(&f, "secret_id_accessor")?
                .ok_or_else(|| ApiError::bad("missing secret_id_accessor"))?,
        },
        ("secret-id-accessor", "destroy") => AppRoleOp::AccessorDestroy {
            name,
            accessor: text(&f, "secret_id_accessor")?
                .ok_or_else(|| ApiError::bad("missing secret_id_accessor"))?,
        },
        _ => return Err(ApiError::unsupported()),
    };
    match call(&state, who, op).await? {
        AppRoleReply::SecretIdInfo(r) => Ok(envelope::data(secret_id_view(&r))),
        AppRoleReply::Done => Ok(envelope::no_content()),
        _ => Err(ApiError::unexpected()),
    }
}

#[derive(Serialize)]
struct LoginAuth<'a> {
    client_token: &'a str,
    accessor: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    metadata: BTreeMap<&'static str, &'a str>,
    lease_duration: u64,
    renewable: bool,
    entity_id: &'static str,
    token_type: &'static str,
    orphan: bool,
    mfa_requirement: Option<()>,
    num_uses: u32,
}

/// `auth/approle/login`: no token needed; the role-id and secret-id are the credential.
pub(crate) async fn login(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    let f = fields(&body)?;
    let role_id = text(&f, "role_id")?.ok_or_else(|| ApiError::bad("missing role_id"))?;
    let secret_id = secret(&f, "secret_id")?;
    drop(f);
    match call(&state, who, AppRoleOp::Login { role_id, secret_id }).await? {
        AppRoleReply::Login {
            token,
            record,
            role,
        } => {
            let text = token.expose_str().ok_or_else(ApiError::unexpected)?;
            Ok(envelope::auth(LoginAuth {
                client_token: text,
                accessor: &record.accessor,
                policies: &record.policies,
                token_policies: &record.policies,
                metadata: BTreeMap::from([("role_name", role.as_str())]),
                lease_duration: record.ttl.unwrap_or(0),
                renewable: true,
                entity_id: "",
                token_type: "service",
                orphan: true,
                mfa_requirement: None,
                num_uses: 0,
            }))
        }
        _ => Err(ApiError::unexpected()),
    }
}
