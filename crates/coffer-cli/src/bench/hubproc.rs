//! The hub `coffer bench fleet` measures: one it started (a child `coffer serve` with a
//! fleet listener, on a temporary SQLite store with its audit log on), which it can also
//! restart, or one already running; and the hub process's CPU time and resident memory,
//! read from `/proc`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use coffer_client::Client;

use super::child::{Spawned, spawn, wait_for};

/// The hub under measurement.
pub(super) struct HubProc {
    /// Its fleet listener.
    pub fleet: String,
    ca: PathBuf,
    socket: PathBuf,
    /// The child and its `serve` arguments, for a hub the bench started.
    own: Option<(Spawned, Vec<String>)>,
}

/// A process's CPU time (user and system) and resident memory.
pub(super) struct Usage {
    pub cpu_s: f64,
    pub rss_kib: u64,
}

impl HubProc {
    /// Starts a hub on a temporary store under `dir`.
    pub(super) fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let fleet = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        let socket = dir.join("coffer.sock");
        let args: Vec<String> = [
            "serve",
            "--data-dir",
            &data.to_string_lossy(),
            "--socket",
            &socket.to_string_lossy(),
            "--fleet-listen",
            &fleet,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let child = spawn_hub(&args, &socket)?;
        let ca = data.join("fleet").join("ca.pem");
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ca.exists() {
            if Instant::now() > deadline {
                bail!("the hub wrote no CA within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            fleet,
            ca,
            socket,
            own: Some((child, args)),
        })
    }

    /// A hub already running: its fleet listener, its CA file, its admin socket.
    pub(super) fn existing(addr: &str, ca: &Path, socket: Option<PathBuf>) -> anyhow::Result<Self> {
        Ok(Self {
            fleet: addr.to_owned(),
            ca: ca.to_owned(),
            socket: socket.unwrap_or_else(crate::config::default_client_socket),
            own: None,
        })
    }

    pub(super) fn ca(&self) -> &Path {
        &self.ca
    }

    pub(super) fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    pub(super) fn restartable(&self) -> bool {
        self.own.is_some()
    }

    /// Stops the hub (SIGTERM, as an operator's restart would) and starts it again.
    pub(super) fn restart(&mut self) -> anyhow::Result<()> {
        let (child, args) = self.own.take().context("not a hub the bench started")?;
        drop(child);
        let child = spawn_hub(&args, &self.socket)?;
        self.own = Some((child, args));
        Ok(())
    }

    /// The hub's CPU time and resident memory now (zeros where `/proc` does not say).
    pub(super) fn usage(&self) -> Usage {
        let pid = self.pid();
        let stat = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok());
        // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
        let cpu_s = stat
            .as_deref()
            .and_then(|s| s.rsplit_once(')'))
            .map_or(0.0, |(_, rest)| {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                (ticks(11) + ticks(12)) as f64 / clock_ticks()
            });
        let rss_kib = pid
            .and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0);
        Usage { cpu_s, rss_kib }
    }

    /// The hub's process id: its child's, or the peer of its socket.
    fn pid(&self) -> Option<u32> {
        if let Some((child, _)) = &self.own {
            return Some(child.id());
        }
        let stream = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        let creds =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()?;
        u32::try_from(creds.pid()).ok()
    }
}

fn spawn_hub(args: &[String], socket: &Path) -> anyhow::Result<Spawned> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = spawn(&refs)?;
    wait_for(socket)?;
    Ok(child)
}

fn clock_ticks() -> f64 {
    // Linux reports USER_HZ (100) here; 100 is also what it would be if it said nothing.
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}
