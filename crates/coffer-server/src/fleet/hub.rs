//! A hub's fleet listener (`--fleet-listen`): TLS 1.3 under the fleet's CA. A connection
//! without a client certificate may only enroll (its join token, or its pre-authorized
//! key, is its credential, checked by the core's `fleet_enroll`); a sync stream needs a
//! certificate whose fingerprint an enabled node's record holds. A connection must say what
//! it wants within [`FIRST_MESSAGE`]; handshakes in progress are bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use coffer_core::op::FleetOp;
use coffer_core::{Caller, Identity, Operation, Reply, Service};
use coffer_crypto::SecretBytes;
use coffer_fleet::wire::{self, ToHub, ToNode};
use coffer_fleet::{Binding, NodePublic};
use tokio::io::{AsyncWriteExt, split};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use super::fanout::{Command, Fanout, QUEUE, Registry, Stream, held_map};

/// How long a connection has for its handshake and its first message.
const FIRST_MESSAGE: Duration = Duration::from_secs(10);

/// Handshakes and first messages in progress at once; more connections wait (each within
/// its [`FIRST_MESSAGE`] from being accepted).
const HANDSHAKES: usize = 256;

/// Connections accepted and not yet past their first message; more are closed at once
/// (a node tries again after its backoff).
const PENDING: usize = 4096;

/// The refusal code of a hub not ready yet: the node tries again soon, not as after a
/// refusal of itself.
pub(crate) const UNAVAILABLE: &str = "store_unavailable";

/// A stream whose node sends nothing is still alive: the node only reads. A stream whose
/// messages cannot be written for this long is closed.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the fleet listener until the daemon stops.
pub(crate) async fn serve(
    service: Arc<Service>,
    listener: TcpListener,
    hub: String,
    ca_out: std::path::PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let tls = loop {
        match tls_config(&service, &hub, &ca_out).await {
            Ok(t) => break t,
            Err(e) => {
                tracing::warn!(error = %e, "the fleet listener waits for the store");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = super::settings::until_stopped(&mut stopped) => return,
                }
            }
        }
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (commands, inbox) = mpsc::channel(1024);
    let fanout = Fanout::new(service.clone(), registry.clone());
    let fanout = tokio::spawn(fanout.run(inbox, stopped.clone()));
    let handshakes = Arc::new(Semaphore::new(HANDSHAKES));
    let pending = Arc::new(AtomicUsize::new(0));
    let conns = Arc::new(AtomicU64::new(0));
    service.fleet_facts(|f| {
        f.role = "hub".to_owned();
        f.listen = listener.local_addr().ok().map(|a| a.to_string());
    });
    loop {
        let (socket, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "the fleet listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = super::settings::until_stopped(&mut stopped) => break,
        };
        let _ = socket.set_nodelay(true);
        let conn = Conn {
            service: service.clone(),
            registry: registry.clone(),
            commands: commands.clone(),
            id: conns.fetch_add(1, Ordering::Relaxed),
            addr,
            stopped: stopped.clone(),
        };
        if pending.fetch_add(1, Ordering::Relaxed) >= PENDING {
            pending.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!(peer = %addr, "too many fleet connections pending; one is closed");
            continue;
        }
        let slot = PendingSlot(pending.clone());
        let (acceptor, handshakes) = (acceptor.clone(), handshakes.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + FIRST_MESSAGE;
            let permit = tokio::time::timeout_at(deadline, handshakes.acquire_owned()).await;
            if let Ok(Ok(permit)) = permit {
                conn.run(acceptor, socket, deadline, permit, slot).await;
            }
        });
    }
    drop(commands);
    let _ = fanout.await;
}

async fn tls_config(
    service: &Service,
    hub: &str,
    ca_out: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let (ca, cert, key) = service
        .fleet_hub_tls(hub)
        .await
        .map_err(|e| e.to_string())?;
    let key = key.expose_str().unwrap_or_default().to_owned();
    let config = coffer_fleet::pki::hub_config(&ca, &cert, &zeroize::Zeroizing::new(key))
        .map_err(|e| e.to_string())?;
    if let Some(dir) = ca_out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(ca_out, ca).map_err(|e| format!("{}: {e}", ca_out.display()))?;
    tracing::info!(ca = %ca_out.display(), "the fleet's CA certificate (give it to nodes as --hub-ca)");
    Ok(config)
}

/// Says why to a connection that is not served, and closes it.
async fn refuse(mut tls: tokio_rustls::server::TlsStream<TcpStream>, code: &str, why: &str) {
    let refused = ToNode::Refused {
        code: code.to_owned(),
        message: why.to_owned(),
    };
    let _ = wire::write(&mut tls, &refused).await;
    let _ = tls.shutdown().await;
}

/// A connection not yet past its first message (and, for an enrollment, its proof): one
/// of the [`PENDING`], given back when dropped.
struct PendingSlot(Arc<AtomicUsize>);

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Conn {
    service: Arc<Service>,
    registry: Arc<Mutex<Registry>>,
    commands: mpsc::Sender<Command>,
    id: u64,
    addr: SocketAddr,
    stopped: watch::Receiver<bool>,
}

impl Conn {
    async fn run(
        self,
        acceptor: tokio_rustls::TlsAcceptor,
        socket: TcpStream,
        deadline: tokio::time::Instant,
        permit: tokio::sync::OwnedSemaphorePermit,
        slot: PendingSlot,
    ) {
        let first = tokio::time::timeout_at(deadline, async {
            let mut tls = acceptor.accept(socket).await?;
            // Without a certificate, only an enrollment may come: a small message.
            let certified = tls.get_ref().1.peer_certificates().is_some();
            let max = if certified {
                wire::MAX_MESSAGE
            } else {
                wire::MAX_ENROLL
            };
            let message: Option<ToHub> = wire::read_limited(&mut tls, max)
                .await
                .map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((tls, message))
        })
        .await;
        drop(permit);
        let (mut tls, message) = match first {
            Ok(Ok((tls, Some(m)))) => (tls, m),
            Ok(Ok((_, None))) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, peer = %self.addr, "a fleet connection failed before its request");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %self.addr, "a fleet connection said nothing in time");
                return;
            }
        };
        let fingerprint = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| coffer_fleet::pki::fingerprint(c));
        match message {
            ToHub::Enroll {
                token,
                key,
                tls_key,
                hostname,
            } => {
                let proven = self.challenge(&mut tls, &key, deadline).await;
                drop(slot);
                let reply = match proven {
                    Ok(()) => self.enroll(token, key, tls_key, hostname).await,
                    Err(refused) => refused,
                };
                let _ = wire::write(&mut tls, &reply).await;
                let _ = tls.shutdown().await;
            }
            ToHub::Sync { since, held } => {
                drop(slot);
                let (ready, node) = {
                    let reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
                    let node = fingerprint.and_then(|fp| reg.node_for(&fp).map(|n| n.id.clone()));
                    (reg.ready, node)
                };
                if !ready {
                    // Still reading its registry and catalog (a large store takes seconds):
                    // the node tries again after its backoff.
                    let why = "the hub is loading its registry; try again";
                    return refuse(tls, UNAVAILABLE, why).await;
                }
                let Some(node) = node else {
                    tracing::info!(peer = %self.addr, "a fleet stream without a known node's certificate is refused");
                    let why = "no enrolled, enabled node holds this certificate";
                    return refuse(tls, "unauthenticated", why).await;
                };
                tracing::info!(node = %node, since, peer = %self.addr, "a node's stream opened");
                self.stream(tls, node, held).await;
            }
            // A proof answers a challenge; it never opens a conversation.
            ToHub::Prove { .. } => {
                let _ = tls.shutdown().await;
            }
        }
    }

    /// Has the node prove it holds the private half of `key`: a nonce sealed to the key
    /// must come back opened, by `deadline`. Someone who only knows a node's public key (it
    /// is no secret) cannot take its enrollment.
    async fn challenge(
        &self,
        tls: &mut tokio_rustls::server::TlsStream<TcpStream>,
        key: &str,
        deadline: tokio::time::Instant,
    ) -> Result<(), ToNode> {
        let refused = |code: &str, message: &str| ToNode::Refused {
            code: code.to_owned(),
            message: message.to_owned(),
        };
        let public = NodePublic::from_text(key)
            .map_err(|_| refused("invalid_request", "key is not an X25519 public key"))?;
        let nonce = SecretBytes::random(32).map_err(|_| refused("internal", "no randomness"))?;
        let canonical = public.to_text();
        let sealed = public
            .seal(&Binding::enrollment(&canonical), nonce.expose_secret())
            .map_err(|_| refused("internal", "the challenge cannot be sealed"))?;
        let challenge = ToNode::Challenge {
            sealed: data_encoding::BASE64.encode(&sealed),
        };
        let unproven = || refused("unauthenticated", "the node did not prove it holds its key");
        wire::write(tls, &challenge).await.map_err(|_| unproven())?;
        // Within the connection's first deadline, from its accept.
        let answer =
            tokio::time::timeout_at(deadline, wire::read_limited(tls, wire::MAX_ENROLL)).await;
        let Ok(Ok(Some(ToHub::Prove { nonce: proof }))) = answer else {
            return Err(unproven());
        };
        let proof = data_encoding::BASE64URL_NOPAD
            .decode(proof.as_bytes())
            .map(SecretBytes::from_vec)
            .map_err(|_| unproven())?;
        if !proof.ct_eq(&nonce) {
            tracing::info!(peer = %self.addr, "an enrollment without proof of its key is refused");
            return Err(unproven());
        }
        Ok(())
    }

    async fn enroll(
        &self,
        token: Option<String>,
        key: String,
        tls_key: String,
        hostname: Option<String>,
    ) -> ToNode {
        let refused = |code: &str, message: String| ToNode::Refused {
            code: code.to_owned(),
            message,
        };
        let Ok(tls_key) = data_encoding::BASE64URL_NOPAD.decode(tls_key.as_bytes()) else {
            return refused("invalid_request", "tls_key is not base64url".to_owned());
        };
        let op = FleetOp::Enroll {
            token: token.map(SecretBytes::from_string),
            key,
            tls_key,
            hostname,
        };
        let caller = Caller::peer(Identity::remote(self.addr));
        match self.service.call(caller, Operation::Fleet(op)).await {
            Ok(Reply::Fleet(v)) => {
                let node = v["node"].as_str().unwrap_or_default().to_owned();
                tracing::info!(node = %node, peer = %self.addr, "a node enrolled");
                ToNode::Enrolled {
                    node,
                    cert: v["cert"].as_str().unwrap_or_default().to_owned(),
                    tags: v["tags"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|t| t.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            }
            Ok(_) => refused("internal", "an unexpected answer".to_owned()),
            Err(refusal) => refused(refusal.error.code().as_str(), refusal.error.to_string()),
        }
    }

    async fn stream(
        self,
        tls: tokio_rustls::server::TlsStream<TcpStream>,
        node: String,
        held: Vec<coffer_fleet::wire::Held>,
    ) {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        let (close, mut closed) = watch::channel(false);
        let (done, opened) = oneshot::channel();
        let open = Command::Open {
            node: node.clone(),
            stream: Stream {
                conn: self.id,
                tx,
                close,
                held: held_map(held),
            },
            done,
        };
        if self.commands.send(open).await.is_err() || opened.await.is_err() {
            return;
        }
        let (mut reader, mut writer) = split(tls);
        let mut stopped = self.stopped.clone();
        // The node sends nothing more: a read ends when it goes away.
        let mut gone = tokio::spawn(async move {
            let mut sink = [0u8; 64];
            loop {
                match tokio::io::AsyncReadExt::read(&mut reader, &mut sink).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { break };
                    let last = matches!(message, ToNode::Refused { .. });
                    match tokio::time::timeout(WRITE_TIMEOUT, wire::write(&mut writer, &message)).await {
                        Ok(Ok(())) if !last => {}
                        _ => break,
                    }
                }
                () = super::settings::until_stopped(&mut closed) => {
                    // Whatever was queued before the close (a refusal) goes first.
                    while let Ok(message) = rx.try_recv() {
                        if wire::write(&mut writer, &message).await.is_err() {
                            break;
                        }
                    }
                    break;
                }
                _ = &mut gone => break,
                () = super::settings::until_stopped(&mut stopped) => break,
            }
        }
        gone.abort();
        let _ = writer.shutdown().await;
        tracing::info!(node = %node, "a node's stream closed");
        let _ = self
            .commands
            .send(Command::Closed {
                node,
                conn: self.id,
            })
            .await;
    }
}
