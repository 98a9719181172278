//! `auth/token/`: making, looking up, renewing and revoking tokens, in Vault's shapes.

use axum::extract::State;
use coffer_core::access::token::MAX_TOKEN_TTL;
use coffer_core::{Operation, Reply, TokenInput};
use coffer_crypto::SecretBytes;
use coffer_types::Timestamp;
use coffer_types::duration;
use coffer_types::reply::TokenRecord;
use serde::{Deserialize, Serialize};

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

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
    // Just made or just renewed: the whole time to live is left, unless the max TTL cut it.
    let lease = match record.ttl {
        Some(ttl) if record.max_expires != Some(record.expires) => ttl,
        _ => remaining(record),
    };
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
        orphan: record.orphan(),
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
    /// Fixed now: no renewal goes past it.
    #[serde(default)]
    explicit_max_ttl: Option<serde_json::Value>,
    /// Make an orphan (Vault: only for a caller with `sudo`).
    #[serde(default)]
    no_parent: bool,
    /// Leave Vault's `default` policy out.
    #[serde(default)]
    no_default_policy: bool,
}

/// A duration as Vault takes it: seconds, or a string such as `"30m"` or `"3600"`.
fn seconds(field: &str, value: Option<&serde_json::Value>) -> Result<Option<u64>, ApiError> {
    value
        .map(|v| match v {
            serde_json::Value::Number(n) => n.as_u64().ok_or(duration::DurationError),
            serde_json::Value::String(s) => duration::parse_seconds(s),
            _ => Err(duration::DurationError),
        })
        .transpose()
        .map_err(|e| ApiError::bad(format!("{field}: {e}")))
}

/// `auth/token/create`: a child of the calling token (an orphan with `"no_parent": true`).
pub(crate) async fn create(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    make(state, who, body, false, None).await
}

/// `auth/token/create/:role`: a token made through a token role.
pub(crate) async fn create_with_role(
    State(state): State<Shared>,
    who: Who,
    axum::extract::Path(role): axum::extract::Path<String>,
    body: Body,
) -> ApiResult {
    make(state, who, body, false, Some(role)).await
}

/// `auth/token/create-orphan`: a token without a parent.
pub(crate) async fn create_orphan(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    make(state, who, body, true, None).await
}

/// Translates the request; the rules (which policies, which namespace, who may make an
/// orphan, the TTLs) are the operation's, in coffer-core.
async fn make(
    state: Shared,
    Who(caller): Who,
    body: Body,
    orphan: bool,
    role: Option<String>,
) -> ApiResult {
    let input: CreateIn = body.json()?;
    let ttl = seconds("ttl", input.ttl.as_ref())?;
    let max_ttl = seconds("explicit_max_ttl", input.explicit_max_ttl.as_ref())?;
    let op = Operation::TokenCreate(TokenInput {
        policies: input.policies,
        ttl,
        namespace: input.namespace,
        display_name: input.display_name,
        max_ttl,
        orphan: orphan || input.no_parent,
        default_policy: !input.no_default_policy,
        role,
    });
    match state.service.call(caller, op).await? {
        Reply::TokenCreated { token, record } => {
            let text = token.expose_str().ok_or_else(ApiError::unexpected)?;
            Ok(envelope::auth(auth_of(&record, text)))
        }
        _ => Err(ApiError::unexpected()),
    }
}

/// `{"accessor": "..."}` (`increment` is taken and ignored on renew-accessor).
#[derive(Deserialize)]
struct AccessorIn {
    accessor: String,
    #[serde(default, rename = "increment")]
    _increment: Option<serde_json::Value>,
}

/// `{"token": "..."}` (`increment` is taken and ignored on renew: a renewal restores the
/// token's own time to live, never past its max).
#[derive(Deserialize)]
struct TokenIn {
    token: String,
    #[serde(default, rename = "increment")]
    _increment: Option<serde_json::Value>,
}

/// The token a body names, and the accessor the operation will name it by: the token
/// stays here (in locked memory) and never reaches the operation, its record or a
/// message. A token that is not live gets an accessor that matches nothing, so the
/// request still goes through the gates (a caller without the grant is refused, and
/// recorded, the same whether the token exists or not) and then answers `not_found`.
fn named_token(state: &Shared, body: Body) -> Result<(SecretBytes, String), ApiError> {
    let input: TokenIn = body.json()?;
    let token = SecretBytes::from_string(input.token);
    let accessor = state.service.token_accessor(&token).unwrap_or_default();
    Ok((token, accessor))
}

/// `auth/token/lookup-self`.
pub(crate) async fn lookup_self(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    // Vault shows a token its own id on lookup-self; the caller sent it, so it learns
    // nothing new.
    let own = caller
        .token
        .as_ref()
        .and_then(|t| t.expose_str().map(str::to_owned))
        .map(zeroize::Zeroizing::new);
    let reply = state
        .service
        .call(caller, Operation::TokenLookup { accessor: None })
        .await?;
    lookup_answer(reply, own.as_deref().map_or("", String::as_str))
}

/// `auth/token/lookup-accessor`: never shows the token.
pub(crate) async fn lookup_accessor(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let AccessorIn { accessor, .. } = body.json()?;
    let op = Operation::TokenLookup {
        accessor: Some(accessor),
    };
    lookup_answer(state.service.call(caller, op).await?, "")
}

fn lookup_answer(reply: Reply, own: &str) -> ApiResult {
    let Reply::TokenInfo(record) = reply else {
        return Err(ApiError::unexpected());
    };
    let created_secs = record.created.as_millis() / 1000;
    let ttl = record.ttl.unwrap_or_else(|| remaining(&record));
    Ok(envelope::data(serde_json::json!({
        "accessor": record.accessor,
        "creation_time": created_secs,
        "creation_ttl": ttl,
        "display_name": record.display_name.clone().unwrap_or_else(|| "token".to_owned()),
        "entity_id": "",
        "expire_time": record.expires.to_string(),
        // Vault shows 0 for a token made without one (here: the ten-year system max, or a
        // few seconds less when inherited from a parent made without one).
        "explicit_max_ttl": record
            .explicit_max_ttl()
            .filter(|&s| s < MAX_TOKEN_TTL.as_secs().saturating_sub(86_400))
            .unwrap_or(0),
        "id": own,
        "issue_time": record.created.to_string(),
        "meta": null,
        "num_uses": 0,
        "orphan": record.orphan(),
        "path": "auth/token/create",
        "policies": record.policies,
        "renewable": true,
        "ttl": remaining(&record),
        "type": "service",
        "namespace": record.namespace,
        "creator": record.creator,
        "parent": record.parent,
    })))
}

/// `auth/token/revoke-self`.
pub(crate) async fn revoke_self(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    state
        .service
        .call(caller, Operation::TokenRevokeSelf)
        .await?;
    Ok(envelope::no_content())
}

/// `auth/token/revoke-accessor`.
pub(crate) async fn revoke_accessor(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let AccessorIn { accessor, .. } = body.json()?;
    state
        .service
        .call(caller, Operation::TokenRevoke { accessor })
        .await?;
    Ok(envelope::no_content())
}

/// `auth/token/lookup` (POST, or GET with no body: the caller's own, as lookup-self):
/// the token named in the body, for a caller with `sudo` on `sys/token`.
pub(crate) async fn lookup(state: State<Shared>, who: Who, body: Body) -> ApiResult {
    if body.is_empty() {
        return lookup_self(state, who).await;
    }
    let (State(state), Who(caller)) = (state, who);
    let (token, accessor) = named_token(&state, body)?;
    let op = Operation::TokenLookup {
        accessor: Some(accessor),
    };
    let reply = state.service.call(caller, op).await?;
    // Vault shows the id of a token looked up by it: the caller sent it.
    lookup_answer(reply, token.expose_str().unwrap_or(""))
}

/// `auth/token/revoke`: the token named in the body and its descendants (Vault's tree
/// revocation), for a caller with `sudo` on `sys/token`.
pub(crate) async fn revoke(State(state): State<Shared>, Who(caller): Who, body: Body) -> ApiResult {
    let (_token, accessor) = named_token(&state, body)?;
    state
        .service
        .call(caller, Operation::TokenRevoke { accessor })
        .await?;
    Ok(envelope::no_content())
}

/// `auth/token/revoke-orphan`: the token named in the body; its children become orphans.
/// Needs `sudo` on `sys/token`, as Vault needs `sudo` on this path.
pub(crate) async fn revoke_orphan(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let (_token, accessor) = named_token(&state, body)?;
    state
        .service
        .call(caller, Operation::TokenRevokeOrphan { accessor })
        .await?;
    Ok(envelope::no_content())
}

/// `auth/token/renew`: the token named in the body, for a caller with `sudo` on
/// `sys/token`.
pub(crate) async fn renew(State(state): State<Shared>, Who(caller): Who, body: Body) -> ApiResult {
    let (token, accessor) = named_token(&state, body)?;
    match state
        .service
        .call(caller, Operation::TokenRenew { accessor })
        .await?
    {
        Reply::TokenInfo(record) => Ok(envelope::auth(auth_of(
            &record,
            token.expose_str().unwrap_or(""),
        ))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `auth/token/renew-accessor`: never shows the token.
pub(crate) async fn renew_accessor(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let AccessorIn { accessor, .. } = body.json()?;
    match state
        .service
        .call(caller, Operation::TokenRenew { accessor })
        .await?
    {
        Reply::TokenInfo(record) => Ok(envelope::auth(auth_of(&record, ""))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `auth/token/renew-self`.
pub(crate) async fn renew_self(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    match state
        .service
        .call(caller, Operation::TokenRenewSelf)
        .await?
    {
        Reply::TokenInfo(record) => Ok(envelope::auth(auth_of(&record, ""))),
        _ => Err(ApiError::unexpected()),
    }
}
