//! `auth/token/roles/:name`: token roles in Vault's shapes (read, write, list, delete). The
//! rules (names, limits, what a role allows) are the core's (`TokenRoleOp`, and
//! `TokenInput::role` for `auth/token/create/:role`).

use axum::extract::{Path, State};
use axum::http::Method;
use coffer_core::access::token_role::TokenRole;
use coffer_core::{Operation, Reply, TokenRoleInput, TokenRoleOp};
use serde_json::json;

use super::approle::{boolean, fields, list, seconds};
use super::envelope;
use super::error::{ApiError, ApiResult, is_missing};
use super::extract::{Body, Query, Who, lists, reads, writes};
use super::state::Shared;

async fn call(state: &Shared, who: Who, op: TokenRoleOp) -> Result<Reply, ApiError> {
    match state.service.call(who.0, Operation::TokenRole(op)).await {
        Ok(r) => Ok(r),
        Err(r) if is_missing(&r) => Err(ApiError::Missing),
        Err(r) => Err(r.into()),
    }
}

fn view(role: &TokenRole) -> serde_json::Value {
    json!({
        "allowed_entity_aliases": null,
        "allowed_policies": role.allowed_policies,
        "allowed_policies_glob": [],
        "disallowed_policies": role.disallowed_policies,
        "disallowed_policies_glob": [],
        "explicit_max_ttl": role.token_explicit_max_ttl,
        "name": role.name,
        "orphan": role.orphan,
        "path_suffix": "",
        "period": 0,
        "renewable": true,
        "token_bound_cidrs": [],
        "token_explicit_max_ttl": role.token_explicit_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_period": 0,
        "token_ttl": role.token_ttl,
        "token_type": "default-service",
    })
}

/// `LIST auth/token/roles`.
pub(crate) async fn roles(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
) -> ApiResult {
    if !lists(&method, &query) {
        return Err(ApiError::unsupported());
    }
    match call(&state, who, TokenRoleOp::List).await? {
        Reply::Keys(keys) => Ok(envelope::data(json!({ "keys": keys }))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `auth/token/roles/:name`: read, write, delete.
pub(crate) async fn role(
    State(state): State<Shared>,
    who: Who,
    method: Method,
    query: Query,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    if reads(&method, &query) {
        return match call(&state, who, TokenRoleOp::Get { name }).await? {
            Reply::TokenRole(role) => Ok(envelope::data(view(&role))),
            _ => Err(ApiError::unexpected()),
        };
    }
    if method == Method::DELETE {
        call(&state, who, TokenRoleOp::Delete { name }).await?;
        return Ok(envelope::no_content());
    }
    if !writes(&method) {
        return Err(ApiError::unsupported());
    }
    let f = fields(&body)?;
    let input = TokenRoleInput {
        allowed_policies: list(&f, "allowed_policies")?,
        disallowed_policies: list(&f, "disallowed_policies")?,
        orphan: boolean(&f, "orphan")?,
        token_ttl: match seconds(&f, "token_ttl")? {
            Some(t) => Some(t),
            None => seconds(&f, "ttl")?,
        },
        token_explicit_max_ttl: match seconds(&f, "token_explicit_max_ttl")? {
            Some(t) => Some(t),
            None => seconds(&f, "explicit_max_ttl")?,
        },
        token_no_default_policy: boolean(&f, "token_no_default_policy")?,
    };
    call(&state, who, TokenRoleOp::Put { name, input }).await?;
    Ok(envelope::no_content())
}
