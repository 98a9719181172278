//! `sys/coffer/webhooks`: the socket's `webhook_*` actions over HTTP, through the same
//! operations (`sudo` on `sys/webhooks`, audited). The signing secret is answered once, by
//! the add.

use axum::extract::{Path, State};
use coffer_core::op::WebhookOp;
use coffer_core::{Operation, Reply};
use serde::{Deserialize, Serialize};

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

#[derive(Deserialize)]
struct AddIn {
    url: String,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Serialize)]
struct Added<'a> {
    webhook: &'a coffer_types::webhook::WebhookView,
    signing_secret: &'a str,
}

/// `GET sys/coffer/webhooks`: the webhooks, never their secrets.
pub(crate) async fn list(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let op = Operation::Webhook(WebhookOp::List);
    match state.service.call(caller, op).await? {
        Reply::Webhooks(all) => Ok(envelope::data(serde_json::json!({ "webhooks": all }))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `POST sys/coffer/webhooks`: adds one; the signing secret is in this answer only.
pub(crate) async fn add(State(state): State<Shared>, Who(caller): Who, body: Body) -> ApiResult {
    let input: AddIn = body.json()?;
    let op = Operation::Webhook(WebhookOp::Add {
        url: input.url,
        events: input.events,
        namespace: input.namespace,
        prefix: input.prefix,
    });
    match state.service.call(caller, op).await? {
        Reply::WebhookAdded { webhook, secret } => {
            let text = secret.expose_str().ok_or_else(ApiError::unexpected)?;
            Ok(envelope::data(Added {
                webhook: &webhook,
                signing_secret: text,
            }))
        }
        _ => Err(ApiError::unexpected()),
    }
}

/// `GET sys/coffer/webhooks/status`.
pub(crate) async fn status(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let op = Operation::Webhook(WebhookOp::Status);
    match state.service.call(caller, op).await? {
        Reply::WebhookStatus(all) => Ok(envelope::data(serde_json::json!({ "webhooks": all }))),
        _ => Err(ApiError::unexpected()),
    }
}

/// `DELETE sys/coffer/webhooks/{id}`.
pub(crate) async fn remove(
    State(state): State<Shared>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> ApiResult {
    let op = Operation::Webhook(WebhookOp::Remove { id });
    state.service.call(caller, op).await?;
    Ok(envelope::no_content())
}

/// `POST sys/coffer/webhooks/{id}/test`.
pub(crate) async fn test(
    State(state): State<Shared>,
    Who(caller): Who,
    Path(id): Path<String>,
) -> ApiResult {
    let op = Operation::Webhook(WebhookOp::Test { id });
    state.service.call(caller, op).await?;
    Ok(envelope::no_content())
}
