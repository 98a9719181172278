//! Change events over HTTP: OpenBao's `GET sys/events/subscribe/:type?json=true` as a
//! WebSocket of CloudEvents, and `GET sys/coffer/events` as Server-Sent Events.
//!
//! Both are a core watch (`Operation::Watch`): the gates and the per-event policy check are
//! the socket's. A subscription covers every namespace (OpenBao's needs `read` on
//! `sys/events/subscribe/<type>`); the SSE stream one namespace (`namespace`, default
//! `default`; `*` for all) and a `prefix`, resuming after `since` or the `Last-Event-ID`
//! header. Neither ever carries a value.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use coffer_core::op::WatchInput;
use coffer_core::watch::Watcher;
use coffer_core::{Operation, Reply};
use coffer_types::{ChangeEvent, EventAction, parse_namespace};
use serde_json::json;

use super::Streaming;
use super::error::{ApiError, ApiResult};
use super::extract::{Query, Who};
use super::state::Shared;

/// The largest message or frame a subscriber may send (it has nothing to say but a close).
const MAX_INCOMING: usize = 4 << 10;

/// Quiet time after which a stream sends a keep-alive (a WebSocket ping, an SSE comment).
const HEARTBEAT: Duration = Duration::from_secs(15);

fn since_of(query: &Query, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let text = query
        .get("since")
        .or_else(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()));
    text.map(|t| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad("since (or Last-Event-ID) must be a revision number"))
    })
    .transpose()
}

async fn watcher(state: &Shared, who: Who, input: WatchInput) -> Result<Box<Watcher>, ApiError> {
    match state.service.call(who.0, Operation::Watch(input)).await? {
        Reply::Watch(w) => Ok(w),
        _ => Err(ApiError::unexpected()),
    }
}

/// `GET sys/events/subscribe/:event_type?json=true`: a WebSocket of CloudEvents JSON for
/// the events whose OpenBao type matches `event_type` (`*` matches any run of characters).
pub(crate) async fn subscribe(
    State(state): State<Shared>,
    who: Who,
    Path(event_type): Path<String>,
    query: Query,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult {
    if query.get("json") != Some("true") {
        return Err(ApiError::bad(
            "coffer sends events as JSON only: add ?json=true",
        ));
    }
    let since = since_of(&query, &headers)?;
    let w = watcher(
        &state,
        who,
        WatchInput {
            namespace: None,
            prefix: None,
            since,
            subscription: Some(event_type.clone()),
        },
    )
    .await?;
    let Ok(upgrade) = upgrade else {
        return Err(ApiError::bad(
            "sys/events/subscribe is a WebSocket: connect with an Upgrade: websocket request",
        ));
    };
    // The client has nothing to send but pings and a close: small frames only.
    Ok(upgrade
        .max_message_size(MAX_INCOMING)
        .max_frame_size(MAX_INCOMING)
        .on_upgrade(move |socket| send_cloudevents(socket, w, event_type)))
}

/// The watcher's next answer, the watcher handed back with it: one future that lives across
/// the loop's turns, so a frame from the client never cancels a read in progress (a read
/// behind the ring runs on the blocking pool and would be started again and again).
async fn next_of(
    mut w: Box<Watcher>,
) -> (
    Box<Watcher>,
    Result<Vec<Arc<ChangeEvent>>, coffer_core::CoreError>,
) {
    let next = w.next(HEARTBEAT).await;
    (w, next)
}

async fn send_cloudevents(mut socket: WebSocket, w: Box<Watcher>, pattern: String) {
    let mut pending = Box::pin(next_of(w));
    loop {
        let (w, next) = tokio::select! {
            answer = &mut pending => answer,
            // The client closed (a close, an error, the end); anything else it sends is
            // dropped.
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
        };
        pending = Box::pin(next_of(w));
        let sent = match next {
            Ok(events) if events.is_empty() => {
                send(&mut socket, Message::Ping(Vec::new().into())).await
            }
            Ok(events) => {
                let mut result = Ok(());
                for e in events {
                    let kind = openbao_type(&e);
                    if !matches(&pattern, &kind) {
                        continue;
                    }
                    let text = cloudevent(&e, &kind).to_string();
                    result = send(&mut socket, Message::Text(text.into())).await;
                    if result.is_err() {
                        break;
                    }
                }
                result
            }
            Err(e) => {
                let reason = format!("{}: {}", e.code(), e.client_message());
                let _ = socket
                    .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                        code: 1011,
                        reason: reason.chars().take(120).collect::<String>().into(),
                    })))
                    .await;
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// Sends one message, within [`HEARTBEAT`]: a subscriber that does not read ends its
/// subscription rather than holding a watcher for ever.
async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(HEARTBEAT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// OpenBao's event type for a change: KV v2's for what a KV path does, `coffer/<action>`
/// for the rest.
pub(crate) fn openbao_type(e: &ChangeEvent) -> String {
    let kv = match e.action {
        EventAction::Written | EventAction::Generated | EventAction::Rotated => "data-write",
        EventAction::Patched => "data-patch",
        // KV v2's DELETE on a data path soft-deletes the newest version; POST delete/ names them.
        EventAction::Deleted if e.versions.is_empty() => "data-delete",
        EventAction::Deleted => "delete",
        EventAction::Undeleted => "undelete",
        EventAction::Destroyed => "destroy",
        EventAction::Described => "metadata-write",
        EventAction::Removed | EventAction::Revoked => "metadata-delete",
        other => return format!("coffer/{other}"),
    };
    format!("kv-v2/{kv}")
}

/// Whether `kind` matches `pattern`, where `*` stands for any run of characters.
pub(crate) fn matches(pattern: &str, kind: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return true;
    };
    let Some(mut rest) = kind.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// The CloudEvents form OpenBao sends: the mount is the namespace, the data path
/// `<namespace>/data/<name>`.
fn cloudevent(e: &ChangeEvent, kind: &str) -> serde_json::Value {
    let name = e.name.as_deref().unwrap_or("");
    let data_path = format!("{}/data/{name}", e.namespace);
    let id = format!("coffer-{}", e.revision);
    json!({
        "id": id,
        "source": "coffer",
        "specversion": "1.0",
        "type": "*",
        "datacontentype": "application/cloudevents",
        "time": e.time,
        "data": {
            "event": {
                "id": id,
                "metadata": {
                    "path": data_path,
                    "data_path": data_path,
                    "current_version": e.version.map(|v| v.to_string()),
                    "oldest_version": "0",
                    "modified": "true",
                    "operation": kind.rsplit('/').next().unwrap_or(kind),
                    "revision": e.revision,
                    "actor": e.actor,
                    "versions": e.versions,
                }
            },
            "event_type": kind,
            "plugin_info": {
                "mount_path": format!("{}/", e.namespace),
                "mount_class": "secret",
                "plugin": "kv",
                "version": "2",
            }
        }
    })
}

/// `GET sys/coffer/events?namespace=&prefix=&since=`: Server-Sent Events, one per change
/// (`id` the revision, `event` the action, `data` the event's JSON), a comment every 15 s;
/// an `error` event ends the stream. `curl -N` and a browser's `EventSource` read it, and
/// an `EventSource` resumes by itself with `Last-Event-ID`.
pub(crate) async fn sse(
    State(state): State<Shared>,
    who: Who,
    query: Query,
    headers: HeaderMap,
    streaming: Option<axum::Extension<Streaming>>,
) -> ApiResult {
    let since = since_of(&query, &headers)?;
    let namespace = match query.get("namespace").unwrap_or("default") {
        "*" => None,
        ns => Some(parse_namespace(Some(ns))),
    };
    let w = watcher(
        &state,
        who,
        WatchInput {
            namespace,
            prefix: query.get("prefix").map(str::to_owned),
            since,
            subscription: None,
        },
    )
    .await?;
    let busy = streaming.map(|s| Arc::new(s.0.hold()));
    let stream = futures_util::stream::unfold(
        (Some(w), std::collections::VecDeque::<Event>::new(), busy),
        |(w, mut queued, busy)| async move {
            let mut w = w?;
            loop {
                if let Some(event) = queued.pop_front() {
                    return Some((Ok::<_, Infallible>(event), (Some(w), queued, busy)));
                }
                match w.next(HEARTBEAT).await {
                    Ok(events) => queued.extend(events.iter().map(|e| sse_event(e))),
                    Err(e) => {
                        let data = json!({"code": e.code(), "error": e.client_message()});
                        let last = Event::default().event("error").data(data.to_string());
                        // The stream ends after this one.
                        return Some((Ok(last), (None, queued, busy)));
                    }
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
        .into_response())
}

fn sse_event(e: &ChangeEvent) -> Event {
    Event::default()
        .id(e.revision.to_string())
        .event(e.action.as_str())
        .data(serde_json::to_string(e).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_openbao_types() {
        assert!(matches("*", "kv-v2/data-write"));
        assert!(matches("kv-v2/data-*", "kv-v2/data-write"));
        assert!(matches("kv-v2/*", "kv-v2/destroy"));
        assert!(!matches("kv-v2/data-*", "kv-v2/destroy"));
        assert!(matches("kv-v2/data-write", "kv-v2/data-write"));
        assert!(!matches("kv-v2/data-write", "kv-v2/data-writes"));
        assert!(matches("*/data-*", "kv-v2/data-patch"));
        assert!(!matches("coffer/*", "kv-v2/data-patch"));
    }
}
