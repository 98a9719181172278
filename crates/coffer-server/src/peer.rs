//! The peer of a Unix socket connection, as the kernel reports it.

use coffer_core::Identity;
use tokio::net::UnixStream;

/// The identity of the process at the other end: uid, gid and pid from SO_PEERCRED (taken at
/// connect time by the kernel, so the client cannot forge them). The executable is read from
/// `/proc/<pid>/exe` when first asked for.
pub fn identify(stream: &UnixStream) -> std::io::Result<Identity> {
    let cred = stream.peer_cred()?;
    Ok(Identity::peer(cred.uid(), cred.gid(), cred.pid()))
}
