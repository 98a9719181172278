//! The floor server: the same listener and framing as coffer, answering a fixed body and doing
//! no other work. `coffer bench` measures it beside coffer so the ratio between the two is
//! coffer's own cost, on the same machine, in the same run.

use coffer_core::Identity;

use crate::handler::{Flow, Handler, Replies};

/// The body the floor answers, shaped like a small `get` reply.
pub const FLOOR_BODY: &[u8] = b"{\"ok\":true,\"value\":\"floor-value-0123456789\"}\n";

/// Answers every request with [`FLOOR_BODY`].
#[derive(Debug, Default, Clone, Copy)]
pub struct FloorHandler;

impl Handler for FloorHandler {
    async fn handle(
        &self,
        _peer: &std::sync::Arc<Identity>,
        request: &[u8],
        replies: &mut Replies<'_>,
    ) -> Flow {
        replies.buf().extend_from_slice(FLOOR_BODY);
        // Keep-alive is the only thing the floor reads, so the bench can drive both modes.
        let keep_alive = request
            .windows(b"\"keep_alive\":true".len())
            .any(|w| w == b"\"keep_alive\":true");
        Flow { keep_alive }
    }
}
