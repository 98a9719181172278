//! Following the daemon's change events from a client that must keep going: `coffer agent`
//! and `coffer run --watch`.
//!
//! One thread per namespace holds a socket `watch` open and forwards what it reads over a
//! channel. Changes are pushed by the daemon; nothing here polls. When the connection ends
//! (the daemon restarted, was sealed, or went away) the thread says so ([`Followed::Down`])
//! and reconnects with a growing pause, resuming after the last revision it forwarded, so no
//! event is missed across a daemon restart. When the daemon no longer holds that revision
//! (`resync`), the thread says so ([`Followed::Resync`]) and starts again from the present:
//! the consumer must then re-read everything it follows.

use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::Duration;

use coffer_client::{Client, ClientError, WatchFrom};
use coffer_types::{ChangeEvent, ErrorCode, WatchLine};

/// The first pause before reconnecting; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// The longest pause between attempts to reconnect.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// How long a watch may be silent before it counts as lost: the daemon sends a heartbeat
/// every 15 s, so three missed ones mean it is gone (a host that vanished without closing).
const SILENCE: Duration = Duration::from_secs(45);

/// What a follower reports.
#[derive(Debug)]
pub enum Followed {
    /// The watch on `namespace` is open and starts after `revision`.
    Up {
        /// The namespace.
        namespace: String,
        /// Where the stream starts (events after it follow).
        revision: u64,
        /// Whether this resumed an earlier stream without missing anything.
        resumed: bool,
    },
    /// A change.
    Event(ChangeEvent),
    /// Events on `namespace` were missed (the daemon no longer holds the revision to resume
    /// from): re-read everything followed there.
    Resync {
        /// The namespace.
        namespace: String,
    },
    /// The watch on `namespace` ended or could not start; the follower retries by itself.
    Down {
        /// The namespace.
        namespace: String,
        /// Why, for a log line (never a value: the daemon's messages hold none).
        error: String,
        /// The daemon's stable code, when it refused.
        code: Option<ErrorCode>,
    },
}

/// Starts one follower thread per namespace, each resuming after `since` when given (the
/// last revision the caller saw, say from a state file) or starting from the present.
///
/// The threads end when the receiving side of `tx` is dropped and they next have something
/// to send.
pub fn spawn(
    client: &Client,
    namespaces: impl IntoIterator<Item = String>,
    since: Option<u64>,
    tx: &Sender<Followed>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    namespaces
        .into_iter()
        .map(|namespace| {
            let client = client.clone();
            let tx = tx.clone();
            std::thread::Builder::new()
                .name(format!("follow {namespace}"))
                .spawn(move || follow(&client, &namespace, since, &tx))
        })
        .collect()
}

/// Follows one namespace until the receiver goes away.
fn follow(client: &Client, namespace: &str, mut since: Option<u64>, tx: &Sender<Followed>) {
    let mut pause = FIRST_PAUSE;
    loop {
        let ended = match watch_once(client, namespace, &mut since, tx) {
            Ok(Flow::Stop) => return,
            Ok(Flow::Ended { delivered }) => {
                if delivered {
                    pause = FIRST_PAUSE;
                }
                Followed::Down {
                    namespace: namespace.to_owned(),
                    error: "the daemon ended the watch".into(),
                    code: None,
                }
            }
            Err(e) => {
                let code = refusal_code(&e);
                if code == Some(ErrorCode::Resync) {
                    since = None;
                    if tx
                        .send(Followed::Resync {
                            namespace: namespace.to_owned(),
                        })
                        .is_err()
                    {
                        return;
                    }
                    // Start again from the present at once.
                    continue;
                }
                Followed::Down {
                    namespace: namespace.to_owned(),
                    error: error_chain(&e),
                    code,
                }
            }
        };
        if tx.send(ended).is_err() {
            return;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

enum Flow {
    /// The receiver is gone.
    Stop,
    /// The stream ended; `delivered` when it had opened.
    Ended { delivered: bool },
}

/// One watch: from open to end. `since` advances with every event forwarded.
fn watch_once(
    client: &Client,
    namespace: &str,
    since: &mut Option<u64>,
    tx: &Sender<Followed>,
) -> Result<Flow, ClientError> {
    let lines = client.watch(&WatchFrom {
        namespace: Some(namespace),
        prefix: None,
        since: *since,
    })?;
    lines.set_read_timeout(Some(SILENCE))?;
    let mut opened = false;
    for line in lines {
        let sent = match line? {
            WatchLine::Started { revision, .. } => {
                opened = true;
                let resumed = since.is_some();
                if since.is_none() {
                    *since = Some(revision);
                }
                tx.send(Followed::Up {
                    namespace: namespace.to_owned(),
                    revision,
                    resumed,
                })
            }
            WatchLine::Event { event, .. } => {
                *since = Some(event.revision);
                tx.send(Followed::Event(event))
            }
            WatchLine::Heartbeat { .. } => Ok(()),
        };
        if sent.is_err() {
            return Ok(Flow::Stop);
        }
    }
    Ok(Flow::Ended { delivered: opened })
}

/// Whether a refusal to open a watch is for good (a token or a configuration to fix), not an
/// outage to wait out.
pub fn refused_for_good(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Denied
            | ErrorCode::Unauthenticated
            | ErrorCode::NotFound
            | ErrorCode::InvalidRequest
    )
}

fn refusal_code(e: &ClientError) -> Option<ErrorCode> {
    match e {
        ClientError::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

/// The error and its causes on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
