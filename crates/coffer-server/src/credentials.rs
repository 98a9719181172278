//! The systemd credentials socket (docs/credentials.md): a second Unix stream socket that
//! speaks the protocol of `LoadCredential=ID:/run/coffer/credentials.sock` (systemd.exec(5)).
//!
//! systemd's service manager connects from an abstract address
//! `\0<random hex>/unit/<unit>/<credential id>`, writes nothing, and reads the credential
//! until end of stream. The protocol has no way to say "no": coffer writes the value and
//! closes, or closes without writing.
//!
//! Trust: any process may bind any abstract name, so the address is believed only from a
//! peer the kernel says is root (SO_PEERCRED; the service manager runs as root). Anything
//! else claiming a unit is an impostor and gets nothing (a WARN in the log). A credential
//! is then read by the ordinary `get` through `Service::call`, as the policy subject
//! `unit:<unit>` alone (never with root's grants), so the gates, the rate limit, the audit
//! record and the cache apply once, as for any request.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use coffer_core::access::policy::is_unit_name;
use coffer_core::{Caller, Identity, Operation, Reply, SecretOp, Service};
use coffer_types::{Namespace, SecretRef, Target};
use nix::sys::socket::{UnixAddr, getpeername};
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::handler::Limits;
use crate::listener::{Busy, accept_until};

/// Longest abstract address a peer can have (`sun_path` is 108 bytes, one of them the
/// leading NUL).
const MAX_ADDRESS: usize = 107;
/// Longest credential id systemd allows (`credential_name_valid`: a file name).
const MAX_ID: usize = 255;

/// The credentials socket, resolved and checked.
#[derive(Debug, Clone)]
pub struct CredentialsConfig {
    /// Where it listens.
    pub socket: PathBuf,
    /// The socket file's group: with one it is 0660 (root and that group may connect),
    /// without 0600.
    pub group: Option<u32>,
    /// Where a credential id is looked up when no mapping names it.
    pub namespace: Namespace,
    /// Renamings: `(unit, id)` (no unit: any unit's `id`) to the secret served.
    pub map: BTreeMap<(Option<String>, String), (Namespace, coffer_types::SecretName)>,
}

/// `[credentials]` as written in the configuration file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsText {
    /// Where the socket listens (`--credentials-socket` wins over it).
    pub socket: Option<PathBuf>,
    /// A group (name or gid) that may connect too (the socket is then 0660).
    pub group: Option<String>,
    /// Where ids are looked up when not mapped (default: `default`).
    pub namespace: Option<String>,
    /// `"UNIT/ID"` or `"ID"` to `"NAME"` or `"coffer://NAMESPACE/NAME"`.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
}

impl CredentialsText {
    /// The checked configuration, with `socket` (the flag) winning over the file's; `None`
    /// when no socket is configured. Errors name the key and what is expected.
    pub fn resolve(self, socket: Option<PathBuf>) -> Result<Option<CredentialsConfig>, String> {
        let Some(socket) = socket.or(self.socket) else {
            if self.group.is_some() || self.namespace.is_some() || !self.map.is_empty() {
                return Err(
                    "[credentials] is given without a socket: set credentials.socket \
                            or --credentials-socket (e.g. /run/coffer/credentials.sock)"
                        .to_owned(),
                );
            }
            return Ok(None);
        };
        if !socket.is_absolute() {
            return Err(format!(
                "credentials.socket {}: expected an absolute path (systemd's LoadCredential= \
                 names it so)",
                socket.display()
            ));
        }
        let group = self.group.as_deref().map(resolve_group).transpose()?;
        let namespace = match self.namespace.as_deref() {
            None => Namespace::default_namespace(),
            Some(text) => Namespace::parse(text)
                .map_err(|e| format!("credentials.namespace: {e}; expected e.g. \"default\""))?,
        };
        let mut map = BTreeMap::new();
        for (key, value) in &self.map {
            let bad = |why: String| format!("credentials.map {key:?}: {why}");
            let (unit, id) = match key.split_once('/') {
                Some((unit, id)) => (Some(unit), id),
                None => (None, key.as_str()),
            };
            if let Some(unit) = unit
                && !is_unit_name(unit)
            {
                return Err(bad(format!(
                    "{unit:?} is not a systemd unit name; expected \"UNIT/ID\" such as \
                     \"app.service/db\", or \"ID\" for every unit"
                )));
            }
            if !is_credential_id(id) {
                return Err(bad(
                    "the credential id must be 1-255 printable ASCII characters, without \
                     ':' or '/', and not '.' or '..' (as systemd's LoadCredential= allows)"
                        .to_owned(),
                ));
            }
            let target = SecretRef::parse(value, Some(&namespace)).map_err(|e| {
                bad(format!(
                    "the secret is not NAME or coffer://NAMESPACE/NAME ({e})"
                ))
            })?;
            let ns = target.namespace.unwrap_or_else(|| namespace.clone());
            map.insert((unit.map(str::to_owned), id.to_owned()), (ns, target.name));
        }
        Ok(Some(CredentialsConfig {
            socket,
            group,
            namespace,
            map,
        }))
    }
}

/// A group by name or number.
fn resolve_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(text) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(format!(
            "credentials.group {text:?}: no such group on this machine; expected a group name \
             or gid"
        )),
    }
}

/// Whether `id` is a credential name as systemd allows one (`credential_name_valid`): a
/// file name (1-255 bytes, no `/`, not `.` or `..`) of printable ASCII without `:`.
pub fn is_credential_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b':' && b != b'/')
}

/// What systemd asks for, read from the peer's abstract address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// The unit, e.g. `app.service`.
    pub unit: String,
    /// The credential id, e.g. `db`.
    pub id: String,
}

/// Parses an abstract address (without its leading NUL) of the form
/// `<random hex>/unit/<unit>/<id>`, as systemd binds it (`@%x/unit/%s/%s`); anything else
/// (other shapes, bad unit names or ids, bytes that are not UTF-8, NULs, over-long
/// addresses) is `None`.
pub fn parse_address(address: &[u8]) -> Option<Requested> {
    if address.len() > MAX_ADDRESS {
        return None;
    }
    let text = std::str::from_utf8(address).ok()?;
    let (random, rest) = text.split_once('/')?;
    let ok_random = (1..=16).contains(&random.len())
        && random
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok_random {
        return None;
    }
    let (unit, id) = rest.strip_prefix("unit/")?.split_once('/')?;
    (is_unit_name(unit) && is_credential_id(id)).then(|| Requested {
        unit: unit.to_owned(),
        id: id.to_owned(),
    })
}

impl CredentialsConfig {
    /// The secret served for `id` to `unit`: a mapping for the unit, else one for every
    /// unit, else `id` itself in the configured namespace (an id that is no valid secret
    /// name is refused by the request's own validation, which records its length only).
    pub fn target(&self, unit: &str, id: &str) -> Target {
        let mapped = self
            .map
            .get(&(Some(unit.to_owned()), id.to_owned()))
            .or_else(|| self.map.get(&(None, id.to_owned())));
        match mapped {
            Some((ns, name)) => Target::new(ns.clone(), name.clone()),
            None => Target::parse(Some(self.namespace.as_str()), id),
        }
    }
}

/// Binds the socket `settings` name (its directory checked as the main socket's is): 0600,
/// or 0660 with the configured group. Errors name the path.
pub fn bind(settings: CredentialsConfig) -> std::io::Result<(UnixListener, CredentialsConfig)> {
    let (mode, group) = match settings.group {
        Some(gid) => (0o660, Some(gid)),
        None => (0o600, None),
    };
    let listener = crate::listener::bind_with(&settings.socket, mode, group).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "cannot listen for systemd credentials on {}: {e}",
                settings.socket.display()
            ),
        )
    })?;
    tracing::info!(socket = %settings.socket.display(), mode = format_args!("{mode:04o}"), "listening for systemd credentials");
    Ok((listener, settings))
}

/// Serves `listener` (bound at `settings.socket`) until `shutdown` turns true, then removes
/// the socket file. Connections are held to `limits` (their own slots; a connection
/// refused one is closed) and each to the request timeout.
pub async fn serve(
    listener: UnixListener,
    settings: Arc<CredentialsConfig>,
    service: Arc<Service>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let path = settings.socket.clone();
    let serve = move |stream: UnixStream, peer: Identity, _stop: watch::Receiver<bool>| {
        let (settings, service) = (settings.clone(), service.clone());
        async move {
            let deadline = limits.request_timeout;
            let served = tokio::time::timeout(deadline, answer(stream, peer, &settings, &service));
            if served.await.is_err() {
                tracing::warn!(
                    "a credential request took longer than the request timeout; closed without \
                     the value"
                );
            }
        }
    };
    accept_until(listener, limits, Busy::Close, &mut shutdown, serve).await;
    let _ = std::fs::remove_file(path);
}

/// One connection: who asks for what, the `get`, the value written and the stream closed.
/// Every refusal closes without writing.
async fn answer(
    mut stream: UnixStream,
    peer: Identity,
    settings: &CredentialsConfig,
    service: &Arc<Service>,
) {
    let address = getpeername::<UnixAddr>(stream.as_raw_fd());
    let requested = address
        .as_ref()
        .ok()
        .and_then(UnixAddr::as_abstract)
        .and_then(parse_address);
    let Some(Requested { unit, id }) = requested else {
        tracing::debug!(
            uid = peer.uid,
            "a credentials connection without a systemd unit's address; closed"
        );
        return;
    };
    if peer.uid != 0 {
        // Anyone can bind any abstract name: only the service manager (root) is believed.
        tracing::warn!(
            uid = peer.uid,
            pid = peer.pid,
            unit = %unit,
            "a process that is not root asked for a unit's credential; nothing was sent"
        );
        return;
    }
    let target = settings.target(&unit, &id);
    let caller = Caller::peer(Identity::for_unit(
        peer.uid,
        peer.gid,
        peer.pid,
        unit.clone(),
    ));
    let get = Operation::Secret {
        target,
        op: SecretOp::Get { version: None },
    };
    match service.call(caller, get).await {
        Ok(Reply::Value { value, .. }) => {
            let sent = stream.write_all(value.expose_secret()).await;
            drop(value);
            match sent.and(stream.shutdown().await) {
                Ok(()) => tracing::info!(unit = %unit, id = %id, "credential served"),
                Err(e) => {
                    tracing::warn!(unit = %unit, id = %id, error = %e, "the credential could not be sent")
                }
            }
        }
        Ok(_) => tracing::error!(unit = %unit, id = %id, "a get answered no value; nothing sent"),
        Err(refusal) => tracing::warn!(
            unit = %unit,
            id = %id,
            code = %refusal.error.code(),
            gate = %refusal.gate,
            "credential refused; nothing sent"
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parsed(text: &[u8]) -> Option<(String, String)> {
        parse_address(text).map(|r| (r.unit, r.id))
    }

    #[test]
    fn systemds_addresses_parse() {
        assert_eq!(
            parsed(b"8c1f9a3e0b2d4c5f/unit/app.service/db"),
            Some(("app.service".into(), "db".into()))
        );
        assert_eq!(
            parsed(b"0/unit/getty@tty1.service/a.b-c_d e"),
            Some(("getty@tty1.service".into(), "a.b-c_d e".into()))
        );
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let long_id = format!("1/unit/app.service/{}", "x".repeat(MAX_ADDRESS));
        let huge = vec![b'a'; 1 << 20];
        let cases: Vec<&[u8]> = vec![
            b"",
            b"/",
            b"abc",
            b"abc/app.service/db",
            b"abc/units/app.service/db",
            b"/unit/app.service/db",
            b"xyz/unit/app.service/db",
            b"ABC/unit/app.service/db",
            b"12345678901234567/unit/app.service/db",
            b"1/unit//db",
            b"1/unit/app.service/",
            b"1/unit/app.service",
            b"1/unit/app/db",
            b"1/unit/app.service/..",
            b"1/unit/app.service/.",
            b"1/unit/../db",
            b"1/unit/app.service/../x",
            b"1/unit/app.service/d/b",
            b"1/unit/app.service/d:b",
            b"1/unit/app.service/d\0b",
            b"1/unit/app\0.service/db",
            b"\x001/unit/app.service/db",
            b"1/unit/app.service/db\n",
            b"1/unit/app.service/\xff\xfe",
            b"1/unit/\xc3\xa9.service/db",
            long_id.as_bytes(),
            &huge,
        ];
        for case in cases {
            assert_eq!(
                parse_address(case),
                None,
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn ids_and_mappings() {
        assert!(is_credential_id("db"));
        assert!(!is_credential_id(&"x".repeat(256)));
        let text = CredentialsText {
            socket: Some("/run/coffer/credentials.sock".into()),
            map: [
                ("app.service/db", "coffer://prod/db/password"),
                ("api", "api/key"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..CredentialsText::default()
        };
        let config = text.resolve(None).unwrap().unwrap();
        let t = config.target("app.service", "db");
        assert_eq!(t.namespace.valid().unwrap().as_str(), "prod");
        assert_eq!(t.name.valid().unwrap().as_str(), "db/password");
        let t = config.target("other.service", "db");
        assert_eq!(t.namespace.valid().unwrap().as_str(), "default");
        assert_eq!(t.name.valid().unwrap().as_str(), "db");
        let t = config.target("other.service", "api");
        assert_eq!(t.name.valid().unwrap().as_str(), "api/key");
        let t = config.target("x.service", "with space");
        assert!(t.name.valid().is_err());

        let refused = |key: &str, value: &str| {
            let text = CredentialsText {
                socket: Some("/run/c.sock".into()),
                map: [(key.to_owned(), value.to_owned())].into_iter().collect(),
                ..CredentialsText::default()
            };
            text.resolve(None).unwrap_err()
        };
        let e = refused("app/db", "x");
        assert!(
            e.contains("credentials.map \"app/db\"") && e.contains("unit name"),
            "{e}"
        );
        let e = refused("app.service/a:b", "x");
        assert!(e.contains("credential id"), "{e}");
        let e = refused("db", "coffer://only");
        assert!(
            e.contains("credentials.map \"db\"") && e.contains("NAMESPACE"),
            "{e}"
        );
        let e = refused("db", "bad name");
        assert!(e.contains("credentials.map \"db\""), "{e}");
        let none = CredentialsText::default().resolve(None).unwrap();
        assert!(none.is_none());
        let e = CredentialsText {
            group: Some("0".into()),
            ..CredentialsText::default()
        }
        .resolve(None)
        .unwrap_err();
        assert!(e.contains("without a socket"), "{e}");
        let e = CredentialsText::default()
            .resolve(Some("relative.sock".into()))
            .unwrap_err();
        assert!(e.contains("absolute"), "{e}");
    }
}
