//! coffer's own key operations over HTTP: `sys/coffer/namespaces/rotate-key` (start a
//! namespace key rotation; its progress is in `sys/coffer/status`) and
//! `sys/coffer/rotate-master` (a new master key; the answer carries the new recovery key).

use axum::extract::State;
use coffer_core::{Operation, Reply};
use coffer_crypto::SecretBytes;
use serde::{Deserialize, Serialize};

use super::envelope;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

#[derive(Deserialize)]
struct RotateKeyIn {
    namespace: String,
}

/// `POST sys/coffer/namespaces/rotate-key`.
pub(crate) async fn rotate_key(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let input: RotateKeyIn = body.json()?;
    let op = Operation::NamespaceRotateKey {
        namespace: coffer_types::parse_namespace(Some(&input.namespace)),
    };
    state.service.call(caller, op).await?;
    Ok(envelope::no_content())
}

#[derive(Deserialize)]
struct RotateMasterIn {
    #[serde(default)]
    passphrases: Vec<String>,
    #[serde(default)]
    drop_passphrase_slots: bool,
}

#[derive(Serialize)]
struct RotateMasterOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_key: Option<String>,
    dropped_slots: Vec<u32>,
}

/// `POST sys/coffer/rotate-master`.
pub(crate) async fn rotate_master(
    State(state): State<Shared>,
    Who(caller): Who,
    body: Body,
) -> ApiResult {
    let mut input: RotateMasterIn = body.json()?;
    let joined = SecretBytes::from_string(input.passphrases.join("\n"));
    // The passphrases live on only in `joined` (locked, zeroized when dropped).
    input
        .passphrases
        .iter_mut()
        .for_each(zeroize::Zeroize::zeroize);
    let op = Operation::RotateMaster {
        passphrases: (!input.passphrases.is_empty()).then_some(joined),
        drop_passphrase_slots: input.drop_passphrase_slots,
    };
    match state.service.call(caller, op).await? {
        Reply::MasterRotated { recovery, dropped } => Ok(envelope::data(RotateMasterOut {
            recovery_key: recovery.map(|k| String::from_utf8_lossy(k.expose_secret()).into_owned()),
            dropped_slots: dropped,
        })),
        _ => Err(ApiError::unexpected()),
    }
}
