//! Issue 12, items 3 to 5, repeated against the real daemon: a flood of 4 MB names from a
//! user with no grant, a burst of wrong unseal guesses, a flood of bogus tokens over HTTP, a
//! huge body behind a bad token, an HTTP/2 connection opening streams past its cap, and one
//! user holding connections open with blank lines. Each shows the attack now does no harm.
//! The attacks from another uid run as uid 65534 through `setpriv` and Python (as root).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use coffer_crypto::SecretBytes;
use common::{Daemon, run_cli, stderr};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const NOBODY: &str = "65534";

fn need_python_and_root() {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: apt-get install -y python3 (scripts/test installs it)"
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test acts as uid 65534 with setpriv and must run as root (CI does)"
    );
}

/// `script` run by Python as uid 65534 with `args`, in the background.
fn python_as_nobody(script: &str, args: &[&str]) -> std::process::Child {
    need_python_and_root();
    Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            PYTHON,
            "-c",
            script,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv runs (apt-get install -y util-linux)")
}

/// A field of /proc/<pid>/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

/// Samples the daemon's RSS every 20 ms while `running` holds; answers the largest.
fn sample_rss(pid: u32, running: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut max = 0;
        while running.load(Ordering::SeqCst) {
            max = max.max(rss_kb(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        max.max(rss_kb(pid))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request on its own connection; answers the status and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    // A loaded machine may refuse a connection now and then (a full accept queue).
    let mut tries = 0;
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("connect: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let token = token.map_or(String::new(), |t| format!("X-Vault-Token: {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{token}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A daemon (not started yet) that will serve HTTP on a free loopback port; its address.
fn with_http() -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    (Daemon::new(&["--http", &addr]), addr)
}

/// Starts `daemon` and waits until its HTTP API answers `sys/health` (503 while sealed).
fn start_http(daemon: &mut Daemon, addr: &str, sealed: bool) {
    daemon.spawn();
    let want = if sealed { 503 } else { 200 };
    assert!(
        common::eventually(Duration::from_secs(10), || {
            http(addr, "GET", "/v1/sys/health", None, "").0 == want
        }),
        "the HTTP API did not answer:\n{}",
        daemon.log()
    );
}

/// A started daemon serving HTTP, and its address.
fn http_daemon() -> (Daemon, String) {
    let (mut daemon, addr) = with_http();
    start_http(&mut daemon, &addr, false);
    (daemon, addr)
}

fn root_token(daemon: &Daemon) -> String {
    let out = daemon.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const NAME_FLOOD: &str = r#"
import socket, sys, json, threading
from collections import Counter
path, n = sys.argv[1], int(sys.argv[2])
filler = b"a" * 4_000_000
out = Counter()
lock = threading.Lock()
def one(i):
    try:
        s = socket.socket(socket.AF_UNIX); s.connect(path)
        s.sendall(b'{"action":"get","name":"%04d' % i + filler + b'"}')
        r = b""
        while True:
            c = s.recv(65536)
            if not c: break
            r += c
        code = json.loads(r).get("code", "ok")
    except Exception as e:
        code = type(e).__name__
    with lock:
        out[code] += 1
ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"#;

/// Item 3: 300 `get`s with distinct 4 MB names from uid 65534, which holds no grant, all at
/// once. The daemon's RSS stays within 50 MB of where it started, during the flood and
/// after; nothing of the names is kept or recorded; root is served throughout.
#[test]
fn a_flood_of_4mb_names_from_nobody_leaves_rss_flat() {
    let daemon = Daemon::start(&[]);
    daemon
        .client()
        .set(None, "canary", &SecretBytes::copy_from(b"still here"), None)
        .unwrap();
    let pid = daemon.pid().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let start = rss_kb(pid);
    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_rss(pid, running.clone());
    let flood = python_as_nobody(NAME_FLOOD, &[daemon.socket.to_str().unwrap(), "300"]);
    let out = flood.wait_with_output().unwrap();
    running.store(false, Ordering::SeqCst);
    let max = sampler.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let codes: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("RSS start {start} kB, max {max} kB; replies {codes}");
    assert!(codes.get("ok").is_none(), "{codes}");
    assert!(
        max <= start + 50 * 1024,
        "RSS grew from {start} kB to {max} kB under the flood"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert!(rss_kb(pid) <= start + 50 * 1024, "and it stays there");
    let v = daemon.client().get(None, "canary", None).unwrap();
    assert_eq!(v.expose_secret(), b"still here");
    // Once the flood is over, such requests reach the gates again (and are refused there).
    let after = python_as_nobody(NAME_FLOOD, &[daemon.socket.to_str().unwrap(), "2"])
        .wait_with_output()
        .unwrap();
    let codes: Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(codes["denied"], 2, "{codes}");
    assert!(rss_kb(pid) <= start + 50 * 1024);
    let mut marked = 0;
    for record in daemon.audit() {
        assert!(record.to_string().len() < 2048, "{record}");
        if record["action"] == "get" && record["actor"]["uid"] == 65534 {
            // The name is never kept: a fixed marker (no `name`) and the length given.
            assert!(record["name"].is_null(), "{record}");
            if record.get("repeated").is_none() {
                assert_eq!(record["name_invalid"], 4_000_004, "{record}");
                marked += 1;
            }
        }
    }
    assert!(marked > 0, "the flood's records carry the names' length");
}

const UNSEAL_BURST: &str = "wrong guess";
const PASSPHRASE: &str = "correct horse battery staple";

fn unseal(addr: &str, key: &str) -> (u16, String) {
    http(
        addr,
        "PUT",
        "/v1/sys/unseal",
        None,
        &serde_json::json!({ "key": key }).to_string(),
    )
}

/// Items 3 and 4: a sealed passphrase store (Argon2id as shipped, 64 MiB a derivation) gets
/// 32 wrong guesses at once over HTTP. One derivation runs at a time, so RSS stays within
/// 50 MB of what one guess costs; guesses past the budget are answered 429, and the right
/// passphrase opens the store once the back-off has passed.
#[test]
fn unseal_guesses_run_one_at_a_time_and_past_the_budget_get_429() {
    let (mut daemon, addr) = with_http();
    let out = run_cli(
        &[
            "init",
            "--data-dir",
            daemon.data.to_str().unwrap(),
            "--slot",
            "passphrase",
        ],
        format!("{PASSPHRASE}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    start_http(&mut daemon, &addr, true);
    let pid = daemon.pid().unwrap();
    // What one guess costs (one Argon2id derivation) is the baseline.
    let (status, body) = unseal(&addr, UNSEAL_BURST);
    assert!(status == 400 || status == 403, "{status} {body}");
    let base = status_kb(pid, "VmHWM:");

    let running = Arc::new(AtomicBool::new(true));
    let sampler = sample_rss(pid, running.clone());
    let burst: Vec<_> = (0..32)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || unseal(&addr, UNSEAL_BURST).0)
        })
        .collect();
    let statuses: Vec<u16> = burst.into_iter().map(|t| t.join().unwrap()).collect();
    running.store(false, Ordering::SeqCst);
    let max = sampler.join().unwrap();
    eprintln!("baseline {base} kB, max {max} kB, statuses {statuses:?}");
    assert!(
        max <= base + 50 * 1024,
        "RSS went from {base} kB to {max} kB during the burst"
    );
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert!(limited >= 27, "at most 4 more guesses pass: {statuses:?}");
    assert!(statuses.iter().all(|s| [400, 403, 429].contains(s)));
    // Still guessing: refused at gate 0, before any derivation.
    assert_eq!(unseal(&addr, UNSEAL_BURST).0, 429);
    // Nor does the right passphrase get through before the back-off...
    assert_eq!(unseal(&addr, PASSPHRASE).0, 429);
    // ...but after it, it opens the store.
    std::thread::sleep(Duration::from_millis(2500));
    let (status, body) = unseal(&addr, PASSPHRASE);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""sealed":false"#), "{body}");
}

/// Item 4: 5,000 requests carrying `X-Vault-Token: x` are answered 429 once the peer has
/// spent its refusals, and leave a bounded number of audit records, the rest counted in
/// summary records.
#[test]
fn a_bogus_token_flood_gets_429_and_a_bounded_number_of_records() {
    let (mut daemon, addr) = http_daemon();
    let before = daemon.audit().len();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                (0..625)
                    .map(|_| http(&addr, "GET", "/v1/secret/data/app/db", Some("x"), "").0)
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let refused = statuses.iter().filter(|&&s| s == 403).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    eprintln!("403: {refused}, 429: {limited}");
    assert_eq!(refused + limited, 5000, "{statuses:?}");
    assert!(limited >= 4500, "{refused} answered 403, {limited} 429");
    // Stopping writes the summary of the open window.
    daemon.stop();
    let added: Vec<Value> = daemon.audit().into_iter().skip(before).collect();
    assert!(
        added.len() <= 100,
        "{} records for the flood: {:?}",
        added.len(),
        &added[..5]
    );
    let accounted: u64 = added
        .iter()
        .filter(|r| {
            r["actor"]["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1"))
        })
        .map(|r| r["repeated"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(accounted, 5000, "every request is accounted for: {added:?}");
    assert!(
        added
            .iter()
            .any(|r| r["repeated"].as_u64().is_some_and(|n| n > 1000))
    );
}

/// Item 3: a request with a bad (or no) token and a 1 GB body is refused at once, without
/// the body being read; a good token with a body over the limit is refused before it is
/// read too.
#[test]
fn a_huge_body_behind_a_bad_token_is_refused_unread() {
    let (daemon, addr) = http_daemon();
    let root = root_token(&daemon);
    for (token, expected) in [
        (Some("bogus"), 403),
        (None, 403),
        (Some(root.as_str()), 413),
    ] {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let token = token.map_or(String::new(), |t| format!("X-Vault-Token: {t}\r\n"));
        let started = Instant::now();
        write!(
            s,
            "PUT /v1/secret/data/app/x HTTP/1.1\r\nHost: {addr}\r\n{token}Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{{\"data\":{{\"v\":\""
        )
        .unwrap();
        let mut head = [0u8; 64];
        let n = s.read(&mut head).unwrap();
        let line = String::from_utf8_lossy(&head[..n]).into_owned();
        assert!(
            line.starts_with(&format!("HTTP/1.1 {expected}")),
            "{line:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    assert!(common::eventually(Duration::from_secs(5), || http(
        &addr,
        "GET",
        "/v1/sys/health",
        None,
        ""
    )
    .0 == 200));
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: a literal header field without indexing, with a new name.
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    block.push(u8::try_from(name.len()).unwrap());
    block.extend_from_slice(name.as_bytes());
    block.push(u8::try_from(value.len()).unwrap());
    block.extend_from_slice(value.as_bytes());
}

fn read_frame(s: &mut TcpStream) -> Option<(u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[3], stream, payload))
}

/// Item 3: an HTTP/2 connection is told it may open 16 streams, and the streams it opens
/// past that (each a write waiting for its body) are refused.
#[test]
fn an_http2_connection_cannot_open_more_streams_than_its_cap() {
    let (daemon, addr) = http_daemon();
    let root = root_token(&daemon);
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(4, 0, 0, &[])).unwrap();
    let mut cap = None;
    while cap.is_none() {
        let (kind, _, payload) = read_frame(&mut s).expect("the server's SETTINGS");
        if kind == 4 {
            for setting in payload.chunks(6) {
                if setting[..2] == [0, 3] {
                    cap = Some(u32::from_be_bytes([
                        setting[2], setting[3], setting[4], setting[5],
                    ]));
                }
            }
            s.write_all(&frame(4, 1, 0, &[])).unwrap();
        }
    }
    assert_eq!(cap, Some(16));
    std::thread::sleep(Duration::from_millis(200));
    let opened = 24u32;
    for i in 0..opened {
        let mut block = Vec::new();
        literal(&mut block, ":method", "PUT");
        literal(&mut block, ":scheme", "http");
        literal(&mut block, ":path", "/v1/secret/data/h2");
        literal(&mut block, ":authority", "127.0.0.1");
        literal(&mut block, "x-vault-token", &root);
        literal(&mut block, "content-length", "20");
        // HEADERS with END_HEADERS, not END_STREAM: each stream waits for its body.
        s.write_all(&frame(1, 4, 2 * i + 1, &block)).unwrap();
    }
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && refused < opened - 16 {
        match read_frame(&mut s) {
            // RST_STREAM with REFUSED_STREAM (7).
            Some((3, _, payload)) if payload == [0, 0, 0, 7] => refused += 1,
            Some((7, _, payload)) => panic!("GOAWAY {payload:?}"),
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(refused, opened - 16, "streams past the cap are refused");
}

const HOLD_SLOTS: &str = r#"
import socket, sys, json, time
path, n = sys.argv[1], int(sys.argv[2])
held, refused = [], []
for i in range(n):
    s = socket.socket(socket.AF_UNIX); s.connect(path)
    try:
        s.sendall(b'{"action":"status","keep_alive":true}\n')
    except OSError:
        pass
    try:
        r = s.recv(65536)
    except OSError:
        r = b""
    if not r:
        refused.append("closed without a word"); s.close(); continue
    if b'"code":"rate_limited"' in r:
        refused.append(json.loads(r)["error"]); s.close()
    else:
        held.append([s, time.monotonic(), None])
# Blank lines every 2 s, until every held connection is closed (or 20 s).
end = time.monotonic() + 20
while time.monotonic() < end and any(h[2] is None for h in held):
    for h in held:
        if h[2] is not None: continue
        try:
            h[0].sendall(b"\n")
            h[0].settimeout(0.01)
            try:
                if h[0].recv(65536) == b"": h[2] = time.monotonic() - h[1]
            except socket.timeout:
                pass
        except OSError:
            h[2] = time.monotonic() - h[1]
    time.sleep(2) if all(h[2] is None for h in held) else time.sleep(0.2)
print(json.dumps({"held": [h[2] for h in held], "refused": refused}))
"#;

/// Item 5: with `--max-connections 16`, uid 65534 holds every connection it may (its cap of
/// 4), sending a blank line every 2 s; its fifth and later are refused with a clear error,
/// root's `coffer status` is served meanwhile, and the held connections are closed at the
/// idle deadline, which the blank lines do not move.
#[test]
fn root_is_served_while_nobody_holds_every_slot_it_may() {
    let daemon = Daemon::start(&["--max-connections", "16", "--idle-timeout", "5s"]);
    let holder = python_as_nobody(HOLD_SLOTS, &[daemon.socket.to_str().unwrap(), "16"]);
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let out = daemon.cli(&["status"], b"");
        assert!(out.status.success(), "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = holder.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let held = report["held"].as_array().unwrap();
    let refused = report["refused"].as_array().unwrap();
    assert_eq!(held.len(), 4, "{report}");
    assert_eq!(refused.len(), 12, "{report}");
    assert!(
        refused
            .iter()
            .all(|m| m.as_str().unwrap().contains("from this peer"))
    );
    for closed_after in held {
        let secs = closed_after.as_f64().expect("closed by the daemon");
        assert!(
            (4.5..8.0).contains(&secs),
            "closed after {secs} s: {report}"
        );
    }
}
