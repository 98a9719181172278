//! Streaming a `backup` on the socket: the age file in base64 chunks, one line each
//! (`{"ok":true,"data":"..."}`), then `{"ok":true,"done":true,"bytes":N,"manifest":{...}}`;
//! an error line instead ends a backup that failed (what came before it is no backup).

use coffer_core::backup::{BackupStream, Chunk};

use super::write::error;
use crate::handler::Replies;

/// Streams `backup` into `replies` until it ends or the client goes away (the backup then
/// stops: its writer finds the channel closed). The last line is left in the buffer for
/// the connection to send.
pub(super) async fn stream(mut backup: Box<BackupStream>, replies: &mut Replies<'_>) {
    while let Some(chunk) = backup.next().await {
        let out = replies.buf();
        match chunk {
            Chunk::Data(bytes) => {
                out.extend_from_slice(b"{\"ok\":true,\"data\":\"");
                out.extend_from_slice(data_encoding::BASE64.encode(&bytes).as_bytes());
                out.extend_from_slice(b"\"}\n");
            }
            Chunk::Done { bytes, manifest } => {
                let line = serde_json::json!({
                    "ok": true,
                    "done": true,
                    "bytes": bytes,
                    "store_id": manifest.store_id,
                    "counts": manifest.counts,
                });
                let _ = serde_json::to_writer(&mut *out, &line);
                out.push(b'\n');
                return;
            }
            Chunk::Failed(e) => {
                error(out, e.code(), &e.client_message(), None, None);
                return;
            }
        }
        if !replies.send().await {
            return;
        }
    }
}
