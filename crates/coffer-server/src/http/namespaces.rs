//! `sys/coffer/namespaces`: the namespaces with their lock state, and locking, unlocking,
//! creating a namespace (optionally with a passphrase) and setting its passphrase. Each is
//! one core operation (`sudo` on `sys/namespaces`, checked there).
//!
//! A namespace's path holds slashes, so the verb is the path's last segment:
//! `POST sys/coffer/namespaces/acme/prod/lock`, `.../unlock` with `{"passphrase": "..."}`,
//! `.../passphrase` with `{"passphrase": "..."}`, and `POST sys/coffer/namespaces/acme/prod`
//! (optionally with a passphrase) to create one. The passphrase is never logged.

use axum::extract::{Path, State};
use coffer_core::{Operation, Reply};
use coffer_crypto::SecretBytes;
use coffer_types::parse_namespace;
use serde::Deserialize;

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

#[derive(Deserialize)]
struct PassphraseIn {
    #[serde(default)]
    passphrase: Option<String>,
}

/// The passphrase of the body, moved into locked memory.
fn passphrase(body: &Body) -> Result<Option<SecretBytes>, ApiError> {
    let input: PassphraseIn = body.json()?;
    Ok(input.passphrase.map(SecretBytes::from_string))
}

fn needs(p: Option<SecretBytes>) -> Result<SecretBytes, ApiError> {
    p.ok_or_else(|| ApiError::bad("the body needs the field `passphrase`"))
}

/// `GET sys/coffer/namespaces`: every namespace and those locked.
pub(crate) async fn list(State(state): State<Shared>, Who(caller): Who) -> ApiResult {
    let Reply::Namespaces { all, locked } =
        state.service.call(caller, Operation::NamespaceList).await?
    else {
        return Err(ApiError::unexpected());
    };
    Ok(envelope::data(
        serde_json::json!({ "namespaces": all, "locked": locked }),
    ))
}

/// `POST sys/coffer/namespaces/<ns>[/lock|/unlock|/passphrase]`.
pub(crate) async fn post(
    State(state): State<Shared>,
    Who(caller): Who,
    Path(rest): Path<String>,
    body: Body,
) -> ApiResult {
    let (path, verb) = match rest.rsplit_once('/') {
        Some((ns, verb @ ("lock" | "unlock" | "passphrase"))) => (ns, Some(verb)),
        _ => (rest.as_str(), None),
    };
    let namespace = parse_namespace(Some(path));
    let op = match verb {
        Some("lock") => Operation::NamespaceLock { namespace },
        Some("unlock") => Operation::NamespaceUnlock {
            namespace,
            passphrase: needs(passphrase(&body)?)?,
        },
        Some(_) => Operation::NamespacePassphrase {
            namespace,
            passphrase: needs(passphrase(&body)?)?,
        },
        None => Operation::NamespaceCreate {
            namespace,
            passphrase: passphrase(&body)?,
        },
    };
    state.service.call(caller, op).await?;
    Ok(envelope::no_content())
}
