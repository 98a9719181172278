//! `POST sys/coffer/backup`: the socket's `backup` over HTTP, through the same operation
//! (`sudo` on `sys/backup`, audited). The body names the recipients
//! (`{"recipients": ["age1..."]}`); the answer is the age file itself, streamed as
//! `application/octet-stream`. A backup that fails once streaming began ends the response
//! with an error (the body is cut short: a client never mistakes it for a whole backup,
//! whose age layer would not authenticate).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use coffer_core::backup::Chunk;
use coffer_core::{Operation, Reply};
use serde::Deserialize;

use super::Streaming;
use super::error::{ApiError, ApiResult};
use super::extract::{Body, Who};
use super::state::Shared;

#[derive(Deserialize)]
struct BackupIn {
    #[serde(default)]
    recipients: Vec<String>,
}

/// `POST sys/coffer/backup`.
pub(crate) async fn backup(
    State(state): State<Shared>,
    Who(caller): Who,
    streaming: Option<axum::Extension<Streaming>>,
    body: Body,
) -> ApiResult {
    let input: BackupIn = body.json()?;
    let op = Operation::Backup {
        recipients: input.recipients,
        passphrase: None,
    };
    let Reply::Backup(stream) = state.service.call(caller, op).await? else {
        return Err(ApiError::unexpected());
    };
    let busy = streaming.map(|s| Arc::new(s.0.hold()));
    let chunks = futures_util::stream::unfold(Some((stream, busy)), |held| async move {
        let (mut stream, busy) = held?;
        match stream.next().await? {
            Chunk::Data(bytes) => Some((Ok(bytes), Some((stream, busy)))),
            Chunk::Done { .. } => None,
            Chunk::Failed(e) => Some((
                Err(std::io::Error::other(format!(
                    "{}: {}",
                    e.code(),
                    e.client_message()
                ))),
                None,
            )),
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}
