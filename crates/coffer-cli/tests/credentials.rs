//! The systemd credentials socket (`coffer serve --credentials-socket`, docs/credentials.md)
//! with real sockets: clients bind the abstract address `\0<random>/unit/<unit>/<id>` the
//! way systemd's service manager does before connecting, and read until end of stream.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Daemon, assert_absent, eventually, raw};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, connect, socket};

const DB: &str = "db-credential-value-7f3a91";
const PROD: &str = "prod-credential-value-c02e55";

const POLICY: &str = r#"
[policies.app-db]
rules = [
  { path = "default/db", capabilities = ["read"] },
  { path = "default/big", capabilities = ["read"] },
  { path = "default/not-set-yet", capabilities = ["read"] },
  { path = "prod/db/password", capabilities = ["read"] },
]
[policies.other]
rules = [{ path = "default/other-thing", capabilities = ["read"] }]
[subjects]
"unit:app.service" = ["app-db"]
"unit:other.service" = ["other"]
"#;

const CONFIG: &str = r#"
[credentials]
group = "65534"
[credentials.map]
"app.service/renamed" = "coffer://prod/db/password"
"#;

/// Connects as systemd does (bound to the abstract `name`, or unbound when `None`), as
/// `uid` (and its gid) when given, through python3 (which drops to the uid itself before
/// connecting); answers what was read until end of stream.
fn fetch_as(socket: &Path, name: Option<&[u8]>, uid: Option<u32>) -> Vec<u8> {
    const SCRIPT: &str = r#"
import os, socket, sys
path, name, uid = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if uid != "-":
    os.setgroups([])
    os.setgid(int(uid))
    os.setuid(int(uid))
if name != "-":
    s.bind(b"\0" + bytes.fromhex(name))
s.settimeout(30)
s.connect(path)
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
sys.stdout.write(data.hex())
"#;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(socket)
        .arg(name.map_or("-".to_owned(), hex))
        .arg(uid.map_or("-".to_owned(), |u| u.to_string()))
        .output()
        .expect("python3 is missing: install it with `apt-get install -y python3`");
    assert!(
        out.status.success(),
        "the python3 client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn fetch(socket: &Path, name: &str) -> Vec<u8> {
    fetch_as(socket, Some(name.as_bytes()), None)
}

/// A connection bound to the abstract `name`, from this process (root), not read from.
fn connect_bound(socket: &Path, name: &str) -> UnixStream {
    let fd = socket_fd();
    bind(
        fd.as_raw_fd(),
        &UnixAddr::new_abstract(name.as_bytes()).unwrap(),
    )
    .unwrap();
    connect(fd.as_raw_fd(), &UnixAddr::new(socket).unwrap()).unwrap();
    UnixStream::from(fd)
}

fn socket_fd() -> std::os::fd::OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap()
}

fn set(daemon: &Daemon, ns: &str, name: &str, value: &str) {
    common::set_in(daemon, ns, name, value);
}

/// A daemon serving the credentials socket with the policy and mapping above.
fn daemon(extra: &[&str]) -> (Daemon, PathBuf) {
    daemon_with(POLICY, CONFIG, extra)
}

/// A daemon serving the credentials socket with `policy` and the configuration file
/// `config` (its socket given by COFFER_CREDENTIALS_SOCKET, which wins over the file's).
fn daemon_with(policy: &str, config: &str, extra: &[&str]) -> (Daemon, PathBuf) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the credentials socket trusts root peers only: run the suite as root (CI does)"
    );
    let mut d = Daemon::new(extra);
    let policy_path = d.root.path().join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let policy = policy_path;
    let config_path = d.root.path().join("coffer.toml");
    std::fs::write(&config_path, config).unwrap();
    let config = config_path;
    let creds = d.root.path().join("run/credentials.sock");
    d.env("COFFER_POLICY_FILE", policy.to_str().unwrap());
    d.env("COFFER_CONFIG", config.to_str().unwrap());
    d.env("COFFER_CREDENTIALS_SOCKET", creds.to_str().unwrap());
    d.spawn();
    assert!(
        d.cli(&["namespaces", "create", "prod"], b"")
            .status
            .success()
    );
    set(&d, "default", "db", DB);
    set(&d, "prod", "db/password", PROD);
    (d, creds)
}

#[test]
fn a_unit_gets_what_its_policy_allows_and_nothing_else() {
    let (mut d, creds) = daemon(&[]);
    let meta = std::fs::metadata(&creds).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660, "a group is configured");
    assert_eq!(meta.gid(), 65534);
    assert_eq!(
        std::fs::metadata(creds.parent().unwrap()).unwrap().mode() & 0o022,
        0
    );

    assert_eq!(
        fetch(&creds, "8c1f9a3e0b2d4c5f/unit/app.service/db"),
        DB.as_bytes()
    );
    // A mapping renames the id to another namespace and name.
    assert_eq!(fetch(&creds, "1/unit/app.service/renamed"), PROD.as_bytes());
    // Another unit, a missing id, malformed addresses, an unbound client: nothing.
    for name in [
        "2/unit/other.service/db",
        "3/unit/app.service/nope",
        "3/unit/app.service/not-set-yet",
        "4/units/app.service/db",
        "5/unit/app/db",
        "xyz/unit/app.service/db",
        "6/unit/app.service/../db",
    ] {
        assert!(fetch(&creds, name).is_empty(), "{name}");
    }
    assert!(fetch_as(&creds, Some(b"7/unit/app.service/\xff"), None).is_empty());
    assert!(fetch_as(&creds, None, None).is_empty(), "an unbound client");
    // The same allowed address from a process that is not root: an impostor.
    assert!(
        fetch_as(&creds, Some(b"8/unit/app.service/db"), Some(65534)).is_empty(),
        "a non-root peer claiming a unit"
    );
    let log = d.log();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains("not root") && l.contains("app.service")),
        "{log}"
    );

    // Each served credential was a `get` recorded as the unit (and the refusals too).
    let gets: Vec<_> = d
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "get" && !r["actor"]["unit"].is_null())
        .collect();
    let served: Vec<_> = gets.iter().filter(|r| r["outcome"] == "ok").collect();
    assert_eq!(served.len(), 2, "{gets:?}");
    assert!(served.iter().all(|r| r["actor"]["unit"] == "app.service"));
    assert!(gets.iter().any(|r| r["actor"]["unit"] == "other.service"
        && r["outcome"] == "denied"
        && r["code"] == "denied"));
    assert!(
        gets.iter()
            .any(|r| r["actor"]["unit"] == "app.service" && r["code"] == "not_found")
    );
    // One record per request that reached the service, each naming its unit.
    assert_eq!(gets.len(), 5, "{gets:?}");

    d.stop();
    assert!(!creds.exists(), "the socket file is removed at shutdown");
    assert_absent("the daemon log", d.log().as_bytes(), &[DB, PROD]);
}

#[test]
fn the_shipped_example_unit_policy_and_config_work_together() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples");
    let read = |f: &str| std::fs::read_to_string(docs.join(f)).unwrap();
    let unit = read("app.service");
    assert!(unit.contains("LoadCredential=db:/run/coffer/credentials.sock"));
    assert!(unit.contains("${CREDENTIALS_DIRECTORY}/db"));
    let config = read("coffer-credentials.toml");
    assert!(config.contains("socket = \"/run/coffer/credentials.sock\""));
    let (d, creds) = daemon_with(&read("credentials-policy.toml"), &config, &[]);
    set(&d, "prod", "app/api-key", "example-api-key-value-9d1c");
    let meta = std::fs::metadata(&creds).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "no group is configured");
    assert_eq!(meta.uid(), 0);
    assert_eq!(fetch(&creds, "a1/unit/app.service/db"), DB.as_bytes());
    assert_eq!(
        fetch(&creds, "a2/unit/app.service/api-key"),
        b"example-api-key-value-9d1c"
    );
    assert!(fetch(&creds, "a3/unit/other.service/db").is_empty());
}

#[test]
fn a_unit_holds_no_grant_of_root() {
    // Root may read everything; a unit bound to nothing may read nothing, even though
    // the peer that connects for it is root.
    let (d, creds) = daemon(&[]);
    set(&d, "default", "other-thing", "other-thing-value-41ab");
    assert!(fetch(&creds, "1/unit/unbound.service/db").is_empty());
    assert!(fetch(&creds, "2/unit/other.service/db").is_empty());
    assert_eq!(
        fetch(&creds, "3/unit/other.service/other-thing"),
        b"other-thing-value-41ab"
    );
    let refused = d
        .audit()
        .into_iter()
        .filter(|r| r["actor"]["unit"] == "unbound.service")
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0]["code"], "denied");
    // A binding made at run time grants it.
    let bound = d.cli(
        &[
            "policy",
            "bind",
            "unit:unbound.service",
            "--policy",
            "app-db",
        ],
        b"",
    );
    assert!(bound.status.success(), "{}", common::stderr(&bound));
    assert_eq!(fetch(&creds, "4/unit/unbound.service/db"), DB.as_bytes());
    let bad = d.cli(
        &["policy", "bind", "unit:unbound", "--policy", "app-db"],
        b"",
    );
    assert!(!bad.status.success());
    assert!(
        common::stderr(&bad).contains("unit name"),
        "{}",
        common::stderr(&bad)
    );
}

#[test]
fn a_flood_and_peers_that_never_read_do_not_stop_the_main_socket() {
    let (mut d, creds) = daemon(&["--request-timeout", "3s"]);
    // Larger than a socket's buffer: writing it waits on a reader that never comes.
    let big = "b".repeat(900 << 10);
    set(&d, "default", "big", &big);
    let stalled: Vec<UnixStream> = (0..40)
        .map(|i| connect_bound(&creds, &format!("{i:x}/unit/app.service/big")))
        .collect();
    let stalled_since = std::time::Instant::now();
    let flood: Vec<UnixStream> = (0..300)
        .map(|i| connect_bound(&creds, &format!("{:x}/unit/app.service/nope", i + 100)))
        .collect();
    // The main socket still answers, and so does the credentials socket.
    for _ in 0..20 {
        let r = raw(&d.socket, br#"{"action":"get","name":"db"}"#);
        assert_eq!(r["value"], DB, "{r}");
    }
    assert_eq!(fetch(&creds, "abc/unit/app.service/db"), DB.as_bytes());
    // A stalled reader is cut off at the request timeout (its connection ends), never
    // given the rest. Read only once that timeout has passed: a reader that starts earlier
    // drains the socket in time and is rightly given everything.
    let past_timeout = Duration::from_millis(4500);
    std::thread::sleep(past_timeout.saturating_sub(stalled_since.elapsed()));
    let mut first = stalled.into_iter().next().unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut got = Vec::new();
    let ended = first.read_to_end(&mut got);
    assert!(
        ended.is_ok(),
        "the stalled connection was not ended: {ended:?}"
    );
    assert!(got.len() < big.len(), "a reader that stalled got it all");
    drop(flood);
    assert!(eventually(Duration::from_secs(20), || {
        fetch(&creds, "def/unit/app.service/db") == DB.as_bytes()
    }));
    assert!(d.running());
    d.stop();
    assert_absent("the daemon log", d.log().as_bytes(), &[DB, PROD]);
}

#[test]
fn bad_credentials_settings_are_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for (config, expected) in [
        (
            "[credentials]\nsocket = \"/run/x.sock\"\n[credentials.map]\n\"app/db\" = \"db\"\n",
            "credentials.map \"app/db\"",
        ),
        (
            "[credentials]\nsocket = \"/run/x.sock\"\n[credentials.map]\n\"db\" = \"coffer://x\"\n",
            "credentials.map \"db\"",
        ),
        (
            "[credentials]\nsocket = \"/run/x.sock\"\ngroup = \"no-such-group-here\"\n",
            "credentials.group",
        ),
        ("[credentials]\nsokcet = \"/run/x.sock\"\n", "unknown field"),
    ] {
        let path = dir.path().join("coffer.toml");
        std::fs::write(&path, config).unwrap();
        let out = common::run_cli(
            &[
                "serve",
                "--config",
                path.to_str().unwrap(),
                "--data-dir",
                dir.path().join("data").to_str().unwrap(),
                "--socket",
                dir.path().join("run/coffer.sock").to_str().unwrap(),
            ],
            b"",
        );
        assert!(!out.status.success());
        let err = common::stderr(&out);
        assert!(err.contains(expected), "{config}: {err}");
    }
}
