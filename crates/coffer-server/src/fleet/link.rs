//! What every fleet client shares, the node and `coffer bench fleet`'s simulated nodes
//! alike: reaching a hub over TLS, the jittered backoff between attempts, and the
//! open-files limit a hub or a crowd of simulated nodes needs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use coffer_fleet::pki::{self, TlsKey};
use coffer_fleet::wire::{self, ToHub, ToNode};
use coffer_fleet::{Binding, NodeKey};
use tokio::net::{TcpSocket, TcpStream};

/// The longest wait between attempts to reach a hub.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long connecting (TCP and TLS) may take.
pub const CONNECT: Duration = Duration::from_secs(10);

/// A TLS stream to a hub.
pub type HubStream = tokio_rustls::client::TlsStream<TcpStream>;

/// 0.5 s doubling up to [`MAX_BACKOFF`], each with up to half again of random jitter (a
/// fleet coming back after a hub's restart does not come back all at once).
#[must_use]
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1 << attempt.min(6))
        .min(MAX_BACKOFF);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let jitter = u64::from(u16::from_le_bytes(r)) * (base.as_millis() as u64 / 2) / 65_535;
    base + Duration::from_millis(jitter)
}

/// Connects to the hub at `hub`, checked against `ca_pem`, presenting `client` (a
/// certificate in DER and its key) when given: without one, only enrollment is served.
///
/// # Errors
/// Why it failed, in words (TCP, TLS, or no answer within [`CONNECT`]).
pub async fn connect(
    hub: &str,
    ca_pem: &str,
    client: Option<(&[u8], &TlsKey)>,
) -> Result<HubStream, String> {
    connect_from(hub, ca_pem, client, None).await
}

/// [`connect`] from the local address `from` (a simulated node's own loopback address, so
/// a crowd of them are as many peers to the hub as real nodes would be).
///
/// # Errors
/// As [`connect`]'s, and the address not bindable.
pub async fn connect_from(
    hub: &str,
    ca_pem: &str,
    client: Option<(&[u8], &TlsKey)>,
    from: Option<IpAddr>,
) -> Result<HubStream, String> {
    let config = pki::node_config(ca_pem, client).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(CONNECT, async {
        let tcp = match from {
            None => TcpStream::connect(hub).await,
            Some(ip) => bound(hub, ip).await,
        }
        .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(pki::hub_name(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))
    })
    .await
    .map_err(|_| "the hub did not answer in time".to_owned())?
}

async fn bound(hub: &str, ip: IpAddr) -> std::io::Result<TcpStream> {
    let addr = tokio::net::lookup_host(hub)
        .await?
        .find(|a| a.is_ipv4() == ip.is_ipv4())
        .ok_or_else(|| std::io::Error::other("no address of the hub's family"))?;
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// Sends an enrollment (`request`, a [`ToHub::Enroll`]) and answers the hub's challenge
/// with `key`, proving the node holds it; answers the hub's last word (`Enrolled` or
/// `Refused`).
///
/// # Errors
/// Why the exchange failed, in words.
pub async fn enroll(
    stream: &mut HubStream,
    request: &ToHub,
    key: &NodeKey,
) -> Result<ToNode, String> {
    wire::write(stream, request)
        .await
        .map_err(|e| e.to_string())?;
    match answer(stream).await? {
        ToNode::Challenge { sealed } => {
            let public = key.public().to_text();
            let nonce = key
                .open_base64(&Binding::enrollment(&public), &sealed)
                .map_err(|_| "the hub's challenge does not open with this node's key")?;
            let proof = ToHub::Prove {
                nonce: data_encoding::BASE64URL_NOPAD.encode(nonce.expose_secret()),
            };
            wire::write(stream, &proof)
                .await
                .map_err(|e| e.to_string())?;
            answer(stream).await
        }
        other => Ok(other),
    }
}

async fn answer(stream: &mut HubStream) -> Result<ToNode, String> {
    tokio::time::timeout(CONNECT, wire::read::<_, ToNode>(stream))
        .await
        .map_err(|_| "the hub did not answer the enrollment".to_owned())?
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "the hub did not answer the enrollment".to_owned())
}

/// Raises this process's soft limit on open files to its hard limit (a hub holds a socket
/// per node); answers the limit now in force.
pub fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!(error = %e, soft, "the open-files limit cannot be raised");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}
