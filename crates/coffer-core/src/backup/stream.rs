//! A backup streamed to a listener: made on a blocking thread, its age bytes handed over in
//! chunks through a small channel (a slow client slows the backup, never buffers it whole).

use std::io::{self, Write};

use tokio::sync::mpsc;

use super::format::Manifest;
use crate::CoreError;

/// Bytes a chunk carries at most.
pub const CHUNK: usize = 48 * 1024;
/// Chunks waiting for the listener at most.
const QUEUE: usize = 8;

/// What a backup stream yields.
#[derive(Debug)]
pub enum Chunk {
    /// The next bytes of the age file.
    Data(Vec<u8>),
    /// The backup is complete: its size and manifest.
    Done {
        /// Bytes streamed.
        bytes: u64,
        /// The manifest.
        manifest: Box<Manifest>,
    },
    /// The backup failed; what was streamed is not a backup.
    Failed(CoreError),
}

/// A backup being made.
#[derive(Debug)]
pub struct BackupStream {
    rx: mpsc::Receiver<Chunk>,
}

struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: Vec<u8>,
    sent: u64,
}

impl ChannelWriter {
    fn ship(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.sent += chunk.len() as u64;
        self.tx
            .blocking_send(Chunk::Data(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.ship()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.ship()
    }
}

impl BackupStream {
    /// Runs `make` on a blocking thread, streaming what it writes.
    pub fn start<F>(make: F) -> Self
    where
        F: FnOnce(&mut dyn Write) -> Result<(&mut dyn Write, Manifest), CoreError> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::task::spawn_blocking(move || {
            let mut out = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
                sent: 0,
            };
            let made = make(&mut out)
                .map(|(_, manifest)| manifest)
                .and_then(|m| out.ship().map(|()| m).map_err(super::format::write_err));
            let last = match made {
                Ok(manifest) => {
                    tracing::info!(
                        bytes = out.sent,
                        secrets = manifest.counts.secrets,
                        versions = manifest.counts.versions,
                        "backup streamed"
                    );
                    Chunk::Done {
                        bytes: out.sent,
                        manifest: Box::new(manifest),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "a streamed backup failed");
                    Chunk::Failed(e)
                }
            };
            // A client that went away hears nothing more.
            let _ = tx.blocking_send(last);
        });
        Self { rx }
    }

    /// The next chunk; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Chunk> {
        self.rx.recv().await
    }
}
