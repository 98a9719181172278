//! The socket protocol's handler: bytes in, [`coffer_core::Service::call`] in the middle,
//! bytes out. `fields` reads a request's fields, `request` turns them into an operation,
//! `write` shapes replies.

mod backup;
mod fields;
mod request;
pub mod watch;
pub mod write;

use std::sync::Arc;

use coffer_core::{Caller, Identity, Service};

pub use fields::ParseError;
pub use request::{Parsed, parse};
pub use write::{error, reply};

use crate::handler::{Flow, Handler, Replies};

/// Answers requests with coffer's service.
pub struct CofferHandler {
    service: Arc<Service>,
}

impl CofferHandler {
    /// A handler over `service`.
    pub fn new(service: Arc<Service>) -> Self {
        Self { service }
    }
}

impl Handler for CofferHandler {
    async fn handle(
        &self,
        peer: &Arc<Identity>,
        request: &[u8],
        replies: &mut Replies<'_>,
    ) -> Flow {
        let out = replies.buf();
        let parsed = match parse(request) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(code = %e.code, peer = %peer, "request refused before the gates: {}", e.message);
                error(out, e.code, &e.message, e.code.implied_rc(), None);
                return Flow { keep_alive: false };
            }
        };
        let action = parsed.action;
        let caller = Caller::with_token(peer.clone(), parsed.token);
        match self.service.call(caller, parsed.operation).await {
            Ok(coffer_core::Reply::Watch(watcher)) => {
                watch::stream(watcher, replies).await;
                return Flow { keep_alive: false };
            }
            Ok(coffer_core::Reply::Backup(backup)) => {
                backup::stream(backup, replies).await;
                return Flow { keep_alive: false };
            }
            Ok(answer) => reply(out, action, &answer, parsed.id.as_deref()),
            Err(refusal) => {
                let code = refusal.error.code();
                tracing::debug!(%action, gate = %refusal.gate, %code, peer = %peer, "request refused");
                error(
                    out,
                    code,
                    &refusal.error.client_message(),
                    refusal.error.rc().as_deref(),
                    parsed.id.as_deref(),
                );
            }
        }
        Flow {
            keep_alive: parsed.keep_alive,
        }
    }
}
