//! The bench's child processes: a daemon or a floor server started from this same binary,
//! stopped when dropped, and the wait for its socket.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A child process killed when dropped.
pub(super) struct Spawned(Child);

impl Spawned {
    /// The child's process id.
    pub(super) fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        // SIGTERM first so the daemon removes its socket; then make sure.
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn spawn(args: &[&str]) -> anyhow::Result<Spawned> {
    let exe = std::env::current_exe().context("cannot find the coffer binary")?;
    let child = Command::new(exe)
        .args(args)
        .env("COFFER_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start a child process")?;
    Ok(Spawned(child))
}

pub(super) fn wait_for(socket: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing answered at {} within 15 s", socket.display())
}
