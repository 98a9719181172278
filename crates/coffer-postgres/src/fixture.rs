//! A private PostgreSQL server for tests (feature `fixture`):
//! Debian's `postgresql` binaries, `initdb` in a temporary directory owned by an unprivileged
//! user (PostgreSQL refuses to run as root), listening only on a Unix socket in that
//! directory (no TCP port), trust authentication for the superuser `coffer`. Stopped, and
//! its directory removed, when dropped. `scripts/test` installs `postgresql` when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The uid and gid the server runs as when the test runs as root (`nobody`).
const UNPRIVILEGED: u32 = 65534;

/// A running server; stopped when dropped.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_root: bool,
}

/// Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), the newest there.
fn server_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server is missing: apt-get install postgresql (scripts/test installs \
             it)"
        )
    })
}

impl Postgres {
    /// Makes a cluster and starts its server; answers once it accepts connections.
    pub fn start() -> Self {
        let bin = server_bin();
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let dir = tempfile::Builder::new()
            .prefix("coffer-pg-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        if as_root {
            for p in [dir.path().to_owned(), dir.path().join("data")] {
                std::os::unix::fs::chown(&p, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
            }
        }
        let pg = Self { bin, dir, as_root };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "coffer",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        );
        pg.server_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The directory holding the server's Unix socket (the connection's `host`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection URL for the database `postgres` as the superuser `coffer`.
    pub fn url(&self) -> String {
        format!(
            "postgresql://coffer@/postgres?host={}",
            self.socket_dir().display()
        )
    }

    /// A connection URL for the database `db` as the superuser `coffer`.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgresql://coffer@/{db}?host={}",
            self.socket_dir().display()
        )
    }

    /// Runs a server binary as the server's user; panics with its output on failure.
    fn run(&self, tool: &str, args: &[&str]) -> Output {
        let out =
            self.command(tool).args(args).output().unwrap_or_else(|e| {
                panic!("{tool} does not run ({e}): apt-get install postgresql")
            });
        assert!(
            out.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `sql` with `psql` against the database `postgres`; answers its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", self.socket_dir().to_str().unwrap()])
            .args(["-U", "coffer", "-d", "postgres", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("psql runs (apt-get install postgresql)");
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: as a crash would, no
    /// checkpoint), for tests of what survives.
    pub fn kill(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the stopped server again on the same directory.
    pub fn restart(&self) {
        self.server_start();
    }

    /// `pg_ctl start`: the socket in the server's directory, no TCP listener, waiting until
    /// it accepts connections.
    fn server_start(&self) {
        let data = self.data();
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=on",
            self.socket_dir().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// A server binary, run as the server's user.
    fn command(&self, tool: &str) -> Command {
        let mut c = if self.as_root {
            let mut c = Command::new("setpriv");
            c.args([
                &format!("--reuid={UNPRIVILEGED}"),
                &format!("--regid={UNPRIVILEGED}"),
                "--clear-groups",
                "--",
            ])
            .arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.current_dir(self.dir.path()).stdin(Stdio::null());
        c
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
