//! Streaming a `watch` on the socket: after the request passed its gates, one line saying
//! where the stream starts (`{"ok":true,"revision":N}`), then one line per change event the
//! caller may see, a heartbeat line (`{"heartbeat":true,"revision":N}`) after 15 s without
//! one, until the client goes away; an error line ends it (the store sealed, the token
//! revoked, the daemon stopping, the feed past the watcher: `resync`).

use std::sync::Arc;
use std::time::Duration;

use coffer_core::watch::Watcher;
use coffer_types::WatchLine;

use super::write::error;
use crate::handler::Replies;

/// Quiet time after which a heartbeat is sent (it also finds a client that went away).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Streams `watcher` into `replies` until the client or the watcher ends it. The last line
/// (an error) is left in the buffer for the connection to send.
pub(super) async fn stream(mut watcher: Box<Watcher>, replies: &mut Replies<'_>) {
    line(
        replies.buf(),
        &WatchLine::Started {
            ok: true,
            revision: watcher.revision(),
        },
    );
    if !replies.send().await {
        return;
    }
    let mut reading = true;
    loop {
        let next = if reading {
            tokio::select! {
                next = watcher.next(HEARTBEAT) => next,
                // End of the client's input: it closed (the watcher, and its place, go now,
                // not at the next heartbeat), or it only shut its writing half and still
                // reads (as a one-shot client may). A heartbeat now tells which: a send to a
                // closed socket fails at once.
                () = replies.peer_closed() => {
                    reading = false;
                    Ok(Vec::new())
                }
            }
        } else {
            watcher.next(HEARTBEAT).await
        };
        match next {
            Ok(events) if events.is_empty() => {
                line(
                    replies.buf(),
                    &WatchLine::Heartbeat {
                        ok: true,
                        heartbeat: true,
                        revision: watcher.revision(),
                    },
                );
            }
            Ok(events) => {
                for event in events {
                    let event = Arc::unwrap_or_clone(event);
                    line(replies.buf(), &WatchLine::Event { ok: true, event });
                }
            }
            Err(e) => {
                let code = e.code();
                error(replies.buf(), code, &e.client_message(), None, None);
                return;
            }
        }
        if !replies.send().await {
            return;
        }
    }
}

fn line<T: serde::Serialize>(out: &mut Vec<u8>, item: &T) {
    // An event is plain data (numbers and strings): it always serializes.
    if serde_json::to_writer(&mut *out, item).is_ok() {
        out.push(b'\n');
    }
}
