//! Who is asking: the kernel's word for a socket peer, later strengthened by a token.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// User id (from SO_PEERCRED on the socket).
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id, when the kernel gave one.
    pub pid: Option<i32>,
    /// The executable behind the pid, read from `/proc/<pid>/exe` the first time something
    /// asks (a log line, an audit record), so connections nobody inspects pay nothing.
    exe: OnceLock<Option<PathBuf>>,
    /// The client's address, for a request over the network (HTTP): such a caller has no
    /// credentials of its own and acts only through a token.
    pub remote: Option<SocketAddr>,
    /// The systemd unit a root peer asked for a credential on behalf of (the credentials
    /// socket, docs/credentials.md): the request then acts as the policy subject
    /// `unit:NAME` only, never with the peer's own (root's) grants.
    pub unit: Option<String>,
}

impl Identity {
    /// A peer known by its credentials; the executable is looked up when needed.
    pub fn peer(uid: u32, gid: u32, pid: Option<i32>) -> Self {
        Self {
            uid,
            gid,
            pid,
            exe: OnceLock::new(),
            remote: None,
            unit: None,
        }
    }

    /// A root peer (the service manager) asking on behalf of the systemd unit `unit`, whose
    /// name the listener checked: the request acts as `unit:NAME` alone.
    pub fn for_unit(uid: u32, gid: u32, pid: Option<i32>, unit: String) -> Self {
        Self {
            unit: Some(unit),
            ..Self::peer(uid, gid, pid)
        }
    }

    /// A client over the network: no uid, gid or process; a token is its only identity.
    pub fn remote(addr: SocketAddr) -> Self {
        let me = Self {
            uid: u32::MAX,
            gid: u32::MAX,
            pid: None,
            exe: OnceLock::new(),
            remote: Some(addr),
            unit: None,
        };
        let _ = me.exe.set(None);
        me
    }

    /// The process itself (for operations the daemon performs on its own behalf).
    pub fn current_process() -> Self {
        let me = Self::peer(
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
            i32::try_from(std::process::id()).ok(),
        );
        let _ = me.exe.set(std::env::current_exe().ok());
        me
    }

    /// The peer's executable, when the kernel lets the daemon read it.
    pub fn exe(&self) -> Option<&Path> {
        self.exe
            .get_or_init(|| {
                self.pid
                    .and_then(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
            })
            .as_deref()
    }

    /// How the identity is recorded on what it writes: `uid:0`.
    pub fn actor(&self) -> String {
        format!("uid:{}", self.uid)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(addr) = self.remote {
            return write!(f, "remote:{addr}");
        }
        write!(f, "uid:{} gid:{}", self.uid, self.gid)?;
        if let Some(pid) = self.pid {
            write!(f, " pid:{pid}")?;
        }
        if let Some(exe) = self.exe() {
            write!(f, " exe:{}", exe.display())?;
        }
        if let Some(unit) = &self.unit {
            write!(f, " unit:{unit}")?;
        }
        Ok(())
    }
}

/// Who asks, as a listener knows it: the peer, and the token the request carries if any.
/// The peer is shared: every request of a connection is the same peer, and what is learnt
/// about it once (its executable) is not looked up again.
#[derive(Debug)]
pub struct Caller {
    /// The peer.
    pub identity: std::sync::Arc<Identity>,
    /// The token (socket: the `token` field; HTTP: `X-Vault-Token` or a bearer token).
    pub token: Option<coffer_crypto::SecretBytes>,
}

impl Caller {
    /// A caller with no token.
    pub fn peer(identity: impl Into<std::sync::Arc<Identity>>) -> Self {
        Self {
            identity: identity.into(),
            token: None,
        }
    }

    /// A caller with a token (when `token` is `Some`).
    pub fn with_token(
        identity: impl Into<std::sync::Arc<Identity>>,
        token: Option<coffer_crypto::SecretBytes>,
    ) -> Self {
        Self {
            identity: identity.into(),
            token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_read_on_demand() {
        let me = Identity::peer(0, 0, i32::try_from(std::process::id()).ok());
        assert_eq!(me.exe(), std::env::current_exe().ok().as_deref());
        let ghost = Identity::peer(0, 0, None);
        assert_eq!(ghost.exe(), None);
        assert!(!ghost.to_string().contains("exe:"));
    }
}
