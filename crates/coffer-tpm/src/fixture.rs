//! A real swtpm for tests: its own state directory and ports, killed on drop (tpm.md,
//! "Starting a TPM for a test"). Enabled by the `fixture` feature.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The TPM authorization tests use, the same on every swtpm, so a test can reopen a TPM (or
/// one restarted on its state) as the same coffer. Not for anything but tests.
pub fn auth() -> crate::TpmAuth {
    // 32 bytes: `from_bytes` cannot refuse them.
    crate::TpmAuth::from_bytes(coffer_crypto::SecretBytes::copy_from(&[0x5a; 32]))
        .unwrap_or_else(|_| unreachable!("32 bytes"))
}

/// A running swtpm.
pub struct Swtpm {
    child: Child,
    port: u16,
    state: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn free_pair() -> Option<u16> {
    // swtpm's TCTI talks to `port` and controls through `port + 1`: both must be free.
    for _ in 0..200 {
        let first = TcpListener::bind("127.0.0.1:0").ok()?;
        let port = first.local_addr().ok()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Some(port);
        }
    }
    None
}

impl Swtpm {
    /// Starts a fresh swtpm with empty state. Panics with the install step when swtpm is
    /// missing: a TPM test never passes without a TPM.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for swtpm state");
        let state = dir.path().to_owned();
        let mut s = Self::start_in(&state);
        s._dir = Some(dir);
        s
    }

    /// Starts swtpm on existing state (a TPM "rebooted", or one copied elsewhere).
    pub fn start_in(state: &Path) -> Self {
        let found = Command::new("swtpm").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "swtpm is missing: install it with `apt-get install -y swtpm swtpm-tools tpm2-tools` \
             (scripts/test does)"
        );
        for _ in 0..10 {
            let Some(port) = free_pair() else { continue };
            let child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--tpmstate"])
                .arg(format!("dir={}", state.display()))
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
                .args(["--flags", "not-need-init,startup-clear"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("swtpm starts");
            let mut swtpm = Self {
                child,
                port,
                state: state.to_owned(),
                _dir: None,
            };
            if swtpm.wait_listening() {
                return swtpm;
            }
            // Someone took the port meanwhile; try another pair.
        }
        panic!("swtpm did not start listening after 10 attempts");
    }

    fn wait_listening(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// The TCTI string for this swtpm.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// Its state directory.
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// Stops it (its state stays, for [`Swtpm::start_in`]).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.stop();
    }
}
