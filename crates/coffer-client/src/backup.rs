//! `backup`: an encrypted backup of the whole store, streamed by the daemon (docs/protocol.md,
//! `backup`). The bytes are the age file; nothing in them is readable without both the age
//! identity and one of the store's slots.

use std::io::Write;

use coffer_crypto::SecretBytes;
use serde::Deserialize;

use crate::ClientError;
use crate::request::Client;

/// Whom the daemon encrypts a backup to.
#[derive(Debug, Clone, Copy)]
pub enum BackupTo<'a> {
    /// age X25519 recipients (`age1...`).
    Recipients(&'a [String]),
    /// A passphrase (age's scrypt recipient), the only recipient.
    Passphrase(&'a SecretBytes),
}

/// What the daemon said when the backup was complete.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupDone {
    /// Bytes of the age file.
    pub bytes: u64,
    /// The store's id.
    pub store_id: String,
    /// Rows of each kind (`headers`, `namespaces`, `secrets`, `versions`, `event_heads`).
    pub counts: serde_json::Value,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default)]
    store_id: Option<String>,
    #[serde(default)]
    counts: Option<serde_json::Value>,
}

impl Client {
    /// Has the daemon make a backup encrypted to `to` and writes its bytes to `out`;
    /// `progress` hears the bytes received so far. An error (a refusal, or a backup that
    /// failed midway) means what was written to `out` is no backup.
    pub fn backup(
        &self,
        to: BackupTo<'_>,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<BackupDone, ClientError> {
        let mut request = self.request("backup");
        request = match to {
            BackupTo::Recipients(r) => request.json("recipients", &r),
            BackupTo::Passphrase(p) => request.secret("key", p),
        };
        let mut received = 0u64;
        for line in self.stream(&request.finish())?.decoded_as::<Line>() {
            let line = line?;
            if let Some(data) = line.data {
                let bytes = data_encoding::BASE64
                    .decode(data.as_bytes())
                    .map_err(|_| ClientError::Protocol("a backup line that is not base64"))?;
                out.write_all(&bytes)?;
                received += bytes.len() as u64;
                progress(received);
            } else if line.done {
                let done = BackupDone {
                    bytes: line.bytes.unwrap_or(received),
                    store_id: line.store_id.unwrap_or_default(),
                    counts: line.counts.unwrap_or_default(),
                };
                if done.bytes != received {
                    return Err(ClientError::Protocol("a backup whose bytes went missing"));
                }
                return Ok(done);
            }
        }
        Err(ClientError::Protocol(
            "the daemon closed the connection before the backup was complete",
        ))
    }
}
