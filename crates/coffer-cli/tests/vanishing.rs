//! Clients that go away mid-request, and a daemon stopped mid-request, cannot separate a
//! change the store committed from its audit record. The real daemon, on a real TCP port:
//! 50 concurrent HTTP writes whose clients half-close 0-5 ms after sending, 50 that reset
//! the connection, and a stream of writes on both protocols cut by SIGTERM. Afterwards every
//! secret that exists has its `set` record, no request has two, and `coffer audit verify`
//! passes.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Daemon, eventually, stderr, stdout};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon with the HTTP API and plain names in its audit log (so the test can match
/// records to secrets), and a root token.
fn daemon() -> (Daemon, String, String, tempfile::TempDir) {
    let addr = format!("127.0.0.1:{}", free_port());
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("coffer.toml");
    std::fs::write(&file, "audit_plain_names = true\n").unwrap();
    let d = Daemon::start(&["--http", &addr, "--config", file.to_str().unwrap()]);
    assert!(
        eventually(Duration::from_secs(10), || TcpStream::connect(&addr)
            .is_ok()),
        "the HTTP API did not listen:\n{}",
        d.log()
    );
    let out = d.cli(&["token", "create", "--policy", "root", "--ttl", "1h"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_owned();
    (d, addr, token, conf)
}

fn write_request(token: &str, name: &str) -> Vec<u8> {
    let body = format!(r#"{{"data":{{"v":"value-of-{name}"}}}}"#);
    format!(
        "POST /v1/secret/data/{name} HTTP/1.1\r\nHost: coffer\r\nX-Vault-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends a write and goes away after `delay`: half-closing its side, or resetting.
fn vanish(addr: &str, token: &str, name: &str, delay: Duration, reset: bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&write_request(token, name)).unwrap();
    std::thread::sleep(delay);
    if reset {
        // SO_LINGER 0: close sends RST instead of FIN.
        nix::sys::socket::setsockopt(
            &s,
            nix::sys::socket::sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        )
        .unwrap();
        drop(s);
    } else {
        s.shutdown(Shutdown::Write).unwrap();
        drop(s);
    }
}

/// Every live secret of `default` whose name starts with `prefix`.
fn existing(daemon: &Daemon, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = serde_json::json!({"action": "list", "prefix": prefix, "limit": 10000});
        if let Some(a) = &after {
            request["after"] = a.clone().into();
        }
        let reply = common::raw(&daemon.socket, request.to_string().as_bytes());
        assert_eq!(reply["ok"], true, "{reply}");
        for n in reply["names"].as_array().unwrap() {
            names.insert(n.as_str().unwrap().to_owned());
        }
        match reply["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => return names,
        }
    }
}

/// `set` records with outcome `ok` per name (plain names), and the request ids seen twice.
fn set_records(daemon: &Daemon) -> (BTreeMap<String, usize>, Vec<String>) {
    let mut sets = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut twice = Vec::new();
    for r in daemon.audit() {
        if let Some(id) = r["request_id"].as_str()
            && !ids.insert(id.to_owned())
        {
            twice.push(id.to_owned());
        }
        if r["action"] == "set" && r["outcome"] == "ok" {
            *sets
                .entry(r["name"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    (sets, twice)
}

/// Waits until the audit log stops growing: work detached from vanished clients finishes.
fn settle(daemon: &Daemon) {
    let mut last = usize::MAX;
    for _ in 0..50 {
        let now = daemon.audit().len();
        if now == last {
            return;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn assert_every_secret_recorded(daemon: &Daemon, prefix: &str) -> usize {
    let names = existing(daemon, prefix);
    let (sets, twice) = set_records(daemon);
    let missing: Vec<&String> = names.iter().filter(|n| !sets.contains_key(*n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} secrets exist with no `set` record: {missing:?}",
        missing.len(),
        names.len()
    );
    assert!(twice.is_empty(), "request ids recorded twice: {twice:?}");
    let out = daemon.cli(&["audit", "verify"], b"");
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
    names.len()
}

#[test]
fn clients_that_half_close_or_reset_never_leave_a_write_without_its_record() {
    let (daemon, addr, token, _conf) = daemon();
    for round in 0..3 {
        let mut threads = Vec::new();
        for i in 0..100 {
            let (addr, token) = (addr.clone(), token.clone());
            let reset = i >= 50;
            let name = format!("vanish-{round}-{}-{i}", if reset { "rst" } else { "fin" });
            let delay = Duration::from_micros((i as u64 * 997) % 5000);
            threads.push(std::thread::spawn(move || {
                vanish(&addr, &token, &name, delay, reset);
            }));
        }
        for t in threads {
            t.join().unwrap();
        }
    }
    settle(&daemon);
    let n = assert_every_secret_recorded(&daemon, "vanish-");
    // The attack is only telling if some of the writes went through.
    assert!(n > 0, "no write landed at all:\n{}", daemon.log());
}

#[test]
fn a_write_stream_cut_by_sigterm_leaves_every_committed_write_recorded() {
    let (mut daemon, addr, token, _conf) = daemon();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..8 {
        let (addr, token, stop) = (addr.clone(), token.clone(), stop.clone());
        let socket = daemon.socket.clone();
        threads.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("term-{t}-{i}");
                i += 1;
                let ok = if t % 2 == 0 {
                    http_write(&addr, &token, &name)
                } else {
                    socket_write(&socket, &name)
                };
                match ok {
                    Some(true) => acked.push(name),
                    Some(false) => {}
                    None => break,
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(400));
    daemon.stop();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    daemon.spawn();
    let names = existing(&daemon, "term-");
    for name in &acked {
        assert!(
            names.contains(name),
            "an acknowledged write is gone: {name}"
        );
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before SIGTERM"
    );
    assert_every_secret_recorded(&daemon, "term-");
}

#[test]
fn keep_alive_writers_cut_by_sigterm_leave_every_committed_write_recorded() {
    let (mut daemon, _addr, _token, _conf) = daemon();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..16 {
        let (socket, stop) = (daemon.socket.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            use std::io::{BufRead, BufReader};
            let mut acked = Vec::new();
            let Ok(s) = UnixStream::connect(&socket) else {
                return acked;
            };
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut writer = s.try_clone().unwrap();
            let mut reader = BufReader::new(s);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("ka-{t}-{i}");
                i += 1;
                let request = serde_json::json!({
                    "action": "set", "name": name, "value": "v", "keep_alive": true
                });
                if writer.write_all(format!("{request}\n").as_bytes()).is_err() {
                    break;
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(n) if n > 0 => {
                        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
                        if reply["ok"] == true {
                            acked.push(name);
                        }
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    std::thread::sleep(Duration::from_millis(400));
    daemon.stop();
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    daemon.spawn();
    let names = existing(&daemon, "ka-");
    for name in &acked {
        assert!(
            names.contains(name),
            "an acknowledged write is gone: {name}"
        );
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged before SIGTERM"
    );
    assert_every_secret_recorded(&daemon, "ka-");
}

/// One HTTP write on its own connection: `Some(true)` when acknowledged with 200,
/// `Some(false)` when answered otherwise, `None` when the daemon is gone.
fn http_write(addr: &str, token: &str, name: &str) -> Option<bool> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(&write_request(token, name)).ok()?;
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match std::io::Read::read(&mut s, &mut buf[got..]) {
            Ok(0) | Err(_) => return if got == 0 { None } else { Some(false) },
            Ok(n) => got += n,
        }
    }
    Some(buf.starts_with(b"HTTP/1.1 200"))
}

/// One socket write: as [`http_write`].
fn socket_write(socket: &std::path::Path, name: &str) -> Option<bool> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let request = serde_json::json!({"action": "set", "name": name, "value": "v"});
    s.write_all(request.to_string().as_bytes()).ok()?;
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut reply).ok()?;
    if reply.is_empty() {
        return None;
    }
    let reply: serde_json::Value = serde_json::from_slice(&reply).ok()?;
    Some(reply["ok"] == true)
}
