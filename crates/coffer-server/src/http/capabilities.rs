//! `sys/capabilities`, `sys/capabilities-self` and `sys/capabilities-accessor`: Vault's
//! capabilities of a token on paths, in Vault's shape (each path's list at the top level and
//! under `data`, and `capabilities` for the first). What a token may do is the core's
//! (`Operation::Capabilities`, which reads coffer's policies and HCL policies alike).

use std::borrow::Cow;

use axum::extract::State;
use axum::http::StatusCode;
use coffer_core::{CapabilitiesOf, Operation, Reply};
use coffer_crypto::SecretBytes;
use serde::Deserialize;
use serde_json::{Map, Value};
use zeroize::Zeroize;

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

/// Vault's paths: a list, or one comma-separated string (`paths`, or the older `path`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Paths {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Input<'a> {
    paths: Option<Paths>,
    path: Option<Paths>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    accessor: Option<String>,
}

fn paths(input: &mut Input<'_>) -> Vec<String> {
    match input.paths.take().or_else(|| input.path.take()) {
        Some(Paths::One(s)) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        Some(Paths::Many(v)) => v,
        None => Vec::new(),
    }
}

async fn answer(state: &Shared, who: Who, of: CapabilitiesOf, paths: Vec<String>) -> ApiResult {
    let found = match state
        .service
        .call(who.0, Operation::Capabilities { of, paths })
        .await
    {
        Ok(Reply::Capabilities(found)) => found,
        Ok(_) => return Err(ApiError::unexpected()),
        Err(r) => return Err(r.into()),
    };
    let mut data = Map::new();
    if let Some((_, first)) = found.first() {
        data.insert("capabilities".into(), first.clone().into());
    }
    for (path, caps) in found {
        data.insert(path, caps.into());
    }
    let id = envelope::request_id();
    let mut body = Map::new();
    body.extend(data.clone());
    body.insert("request_id".into(), id.into());
    body.insert("lease_id".into(), "".into());
    body.insert("renewable".into(), false.into());
    body.insert("lease_duration".into(), 0.into());
    body.insert("data".into(), Value::Object(data));
    body.insert("wrap_info".into(), Value::Null);
    body.insert("warnings".into(), Value::Null);
    body.insert("auth".into(), Value::Null);
    Ok(envelope::json(StatusCode::OK, &body))
}

/// `sys/capabilities-self`: the caller's own.
pub(crate) async fn own(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    let mut input: Input<'_> = body.json()?;
    let paths = paths(&mut input);
    answer(&state, who, CapabilitiesOf::Caller, paths).await
}

/// `sys/capabilities`: the body's token's (`sudo` on `sys/token`).
pub(crate) async fn of_token(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    let mut input: Input<'_> = body.json()?;
    let paths = paths(&mut input);
    let token = match input.token.take() {
        Some(Cow::Borrowed(t)) => SecretBytes::copy_from(t.as_bytes()),
        Some(Cow::Owned(mut t)) => {
            let token = SecretBytes::copy_from(t.as_bytes());
            t.zeroize();
            token
        }
        None => return Err(ApiError::bad("missing token")),
    };
    answer(&state, who, CapabilitiesOf::Token(token), paths).await
}

/// `sys/capabilities-accessor`: the token's with this accessor (`sudo` on `sys/token`).
pub(crate) async fn of_accessor(State(state): State<Shared>, who: Who, body: Body) -> ApiResult {
    let mut input: Input<'_> = body.json()?;
    let paths = paths(&mut input);
    let accessor = input
        .accessor
        .take()
        .ok_or_else(|| ApiError::bad("missing accessor"))?;
    answer(&state, who, CapabilitiesOf::Accessor(accessor), paths).await
}
