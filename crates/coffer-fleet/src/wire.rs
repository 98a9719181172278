//! The fleet's wire: JSON messages, each after its length (4 bytes, big-endian), over the
//! mutual TLS of [`crate::pki`]. A node sends [`ToHub::Enroll`] once (no client
//! certificate yet) or [`ToHub::Sync`] (with one), then only reads: the hub pushes
//! [`ToNode`] messages for as long as the stream lives.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::FleetError;

/// The largest message either side accepts: a secret of 1 MiB, sealed and in base64, with
/// room to spare; a node's inventory of many secrets.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A secret version a node holds, as the hub numbered it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Held {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The hub's version the node holds.
    pub version: u32,
}

/// What a node says to a hub.
#[derive(Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToHub {
    /// Join the fleet: with a join token, or none when the node's key was pre-authorized.
    Enroll {
        /// The join token (`cft_...`), when the node has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The node's X25519 public key (base64url).
        key: String,
        /// The node's TLS public key to certify (base64url of a P-256 point).
        tls_key: String,
        /// The node's host name, as the operator will see it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hostname: Option<String>,
    },
    /// The answer to [`ToNode::Challenge`]: the nonce, opened with the node's key
    /// (base64url), proving the node holds the private half of the key it enrolls.
    Prove {
        /// The nonce.
        nonce: String,
    },
    /// Open the sync stream (with the node's client certificate): the last revision the
    /// node applied, and what it holds.
    Sync {
        /// The hub revision the node last caught up to.
        since: u64,
        /// What it holds.
        held: Vec<Held>,
    },
}

impl std::fmt::Debug for ToHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the join token, nor a challenge's answer.
        match self {
            Self::Enroll { hostname, .. } => f
                .debug_struct("Enroll")
                .field("hostname", hostname)
                .finish_non_exhaustive(),
            Self::Prove { .. } => f.debug_struct("Prove").finish_non_exhaustive(),
            Self::Sync { since, held } => f
                .debug_struct("Sync")
                .field("since", since)
                .field("held", &held.len())
                .finish(),
        }
    }
}

/// What a hub says to a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToNode {
    /// The node joined: its id and certificate.
    Enrolled {
        /// Its node id.
        node: String,
        /// Its client certificate (DER, base64).
        cert: String,
        /// Its tags.
        tags: Vec<String>,
    },
    /// A secret version for the node, sealed to its key ([`crate::seal`]).
    Put {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The hub's version.
        version: u32,
        /// Its kind.
        kind: String,
        /// The sealed value (base64).
        sealed: String,
    },
    /// A secret the node must no longer hold.
    Remove {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The node holds everything assigned to it as of `revision`.
    Synced {
        /// The hub's revision.
        revision: u64,
    },
    /// Nothing changed for a while; the stream is alive.
    Heartbeat {
        /// The hub's revision.
        revision: u64,
    },
    /// Before an enrollment is taken: a nonce sealed to the key the node enrolls (for
    /// [`crate::seal::Binding::enrollment`]), to be sent back opened ([`ToHub::Prove`]).
    Challenge {
        /// The sealed nonce (base64).
        sealed: String,
    },
    /// The hub refuses, and closes the stream.
    Refused {
        /// A stable code (`unauthenticated`, `denied`, `invalid_request`, ...).
        code: String,
        /// Why, for the operator.
        message: String,
    },
}

/// Writes one message.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    out: &mut W,
    message: &T,
) -> Result<(), FleetError> {
    let body = serde_json::to_vec(message).map_err(|e| FleetError::Wire(e.to_string()))?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|&n| n as usize <= MAX_MESSAGE)
        .ok_or(FleetError::Wire("a message over the size limit".to_owned()))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    zeroize::Zeroize::zeroize(&mut { body });
    out.write_all(&frame).await?;
    zeroize::Zeroize::zeroize(&mut frame);
    out.flush().await?;
    Ok(())
}

/// The largest first message from a connection without a client certificate (an
/// enrollment: a token, two public keys, a host name).
pub const MAX_ENROLL: usize = 64 << 10;

/// Reads one message of at most [`MAX_MESSAGE`] bytes; `None` at a clean end of the stream.
pub async fn read<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    input: &mut R,
) -> Result<Option<T>, FleetError> {
    read_limited(input, MAX_MESSAGE).await
}

/// Reads one message of at most `max` bytes (checked before anything is allocated).
pub async fn read_limited<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    input: &mut R,
    max: usize,
) -> Result<Option<T>, FleetError> {
    let mut len = [0u8; 4];
    match input.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max.min(MAX_MESSAGE) {
        return Err(FleetError::Wire(format!(
            "a message of {len} bytes is over the limit of {}",
            max.min(MAX_MESSAGE)
        )));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).await?;
    let parsed = serde_json::from_slice(&body).map_err(|e| {
        // Only where and what kind: serde's own text may quote the input.
        FleetError::Wire(format!(
            "a malformed message ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    });
    zeroize::Zeroize::zeroize(&mut body);
    parsed.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_round_trip_and_oversized_or_malformed_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write(&mut a, &ToNode::Synced { revision: 9 })
            .await
            .unwrap();
        let back: ToNode = read(&mut b).await.unwrap().unwrap();
        assert!(matches!(back, ToNode::Synced { revision: 9 }));
        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(read::<_, ToNode>(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(1024);
        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(b"{x}").await.unwrap();
        assert!(read::<_, ToHub>(&mut b).await.is_err());
        drop(a);
        assert!(read::<_, ToHub>(&mut b).await.unwrap().is_none());
    }
}
