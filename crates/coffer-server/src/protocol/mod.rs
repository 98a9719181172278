//! The socket protocol's handler: bytes in, [`coffer_core::Service`] in the middle, bytes out.

mod fields;
mod request;
mod write;

use std::sync::Arc;

use coffer_core::{Identity, Service};

pub use fields::ParseError;
pub use request::{Parsed, parse};
pub use write::{error, reply};

use crate::listener::{Flow, Handler};

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
    async fn handle(&self, peer: &Identity, request: &[u8], out: &mut Vec<u8>) -> Flow {
        let max_value = self.service.config().max_value_bytes;
        let parsed = match parse(request, max_value) {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(code = %e.code, peer = %peer, "request refused before the gates: {}", e.message);
                error(out, e.code, &e.message, e.code.implied_rc(), None);
                return Flow { keep_alive: false };
            }
        };
        let action = parsed.action;
        match self
            .service
            .handle_with_token(peer, parsed.token, parsed.request)
            .await
        {
            Ok(answer) => reply(out, action, &answer, parsed.id.as_deref()),
            Err(refusal) => {
                let code = refusal.error.code();
                if code == coffer_types::ErrorCode::Internal {
                    tracing::error!(%action, gate = %refusal.gate, error = %refusal.error, "request failed");
                } else {
                    tracing::debug!(%action, gate = %refusal.gate, %code, peer = %peer, "request refused");
                }
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
