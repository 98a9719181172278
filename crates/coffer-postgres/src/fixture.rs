//! A private PostgreSQL server for tests (feature `fixture`):
//! Debian's `postgresql` binaries, `initdb` in a temporary directory owned by an unprivileged
//! user (PostgreSQL refuses to run as root), listening only on a Unix socket in that
//! directory (no TCP port), trust authentication for the superuser `coffer`. Stopped, and
//! its directory removed, when dropped. `scripts/test` installs `postgresql` when missing.
//!
//! Test code compiled into the library (behind the feature) so other crates' tests can start
//! a server: each `unwrap`, `expect` and `assert` here is the test failing, with the reason,
//! when the server cannot be set up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The uid and gid the server runs as when the test runs as root (`nobody`).
const UNPRIVILEGED: u32 = 65534;

/// A running server; stopped when dropped.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    as_root: bool,
    /// The loopback TCP port, once [`Postgres::with_tls`] turned TLS on.
    tcp_port: Option<u16>,
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
        let pg = Self {
            bin,
            dir,
            as_root,
            tcp_port: None,
        };
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

    /// Turns TLS on: a CA and a certificate for `localhost` made with `openssl`, a listener
    /// on a free loopback port that takes TLS connections only (`hostssl`), the Unix socket
    /// kept. Answers the CA's certificate (PEM), for `sslrootcert`.
    pub fn with_tls(&mut self) -> PathBuf {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("openssl runs (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=coffer test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        );
        std::fs::write(dir.join("san.cnf"), "subjectAltName=DNS:localhost\n").unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
        let data = self.data();
        for f in ["server.pem", "server.key"] {
            let to = data.join(f);
            std::fs::copy(dir.join(f), &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if self.as_root {
                std::os::unix::fs::chown(&to, Some(UNPRIVILEGED), Some(UNPRIVILEGED)).unwrap();
            }
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(
            &mut conf,
            b"ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n",
        )
        .unwrap();
        // The socket as before; over TCP, TLS only.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        self.tcp_port = Some(port);
        self.kill();
        self.restart();
        dir.join("ca.pem")
    }

    /// Makes a login role `user` whose connections over the socket must give `password`
    /// (SCRAM), and reloads the server's rules.
    pub fn require_password(&self, user: &str, password: &str) {
        self.psql(&format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}'; \
             GRANT ALL ON DATABASE postgres TO {user}; GRANT CREATE ON SCHEMA public TO {user}"
        ));
        let hba = self.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("local all {user} scram-sha-256\n{rules}")).unwrap();
        self.psql("SELECT pg_reload_conf()");
    }

    /// The loopback TCP port, after [`Postgres::with_tls`].
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp_port
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
        self.url_for("postgres")
    }

    /// A connection URL for the database `db` as the superuser `coffer`.
    pub fn url_for(&self, db: &str) -> String {
        format!(
            "postgresql://coffer@/{db}?host={}&port={}",
            self.socket_dir().display(),
            self.port()
        )
    }

    /// The server's port (the Unix socket's name carries it too).
    fn port(&self) -> u16 {
        self.tcp_port.unwrap_or(5432)
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
            .args(["-p", &self.port().to_string()])
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

    /// Kills the server with SIGKILL: the postmaster and every process it started, as a
    /// power cut or the OOM killer would, with no chance to flush or checkpoint. Restart it
    /// with [`Postgres::restart`] (crash recovery replays the WAL).
    pub fn kill9(&self) {
        let pm: i32 = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut pids = vec![pm];
        pids.extend(children_of(pm));
        // A child that ended meanwhile makes `kill` complain; the wait below is the check.
        let _ = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(ToString::to_string))
            .output()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) {
            assert!(
                std::time::Instant::now() < deadline,
                "the server outlived kill -9"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // This machine's PID 1 may never reap them, and their zombies would keep the lock
        // files looking owned; a real init reaps them, and the next server takes over.
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        let _ = std::fs::remove_file(
            self.socket_dir()
                .join(format!(".s.PGSQL.{}.lock", self.port())),
        );
    }

    /// Everything database `db` holds, as `pg_dump` writes it (plain SQL, the data included).
    pub fn dump(&self, db: &str) -> String {
        let out = Command::new(self.bin.join("pg_dump"))
            .args(["-h", self.socket_dir().to_str().unwrap()])
            .args(["-p", &self.port().to_string(), "-U", "coffer", db])
            .stdin(Stdio::null())
            .output()
            .expect("pg_dump runs (apt-get install postgresql)");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
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
        let listen = match self.tcp_port {
            Some(port) => format!("-c listen_addresses='127.0.0.1' -c port={port}"),
            None => "-c listen_addresses=''".to_owned(),
        };
        let options = format!(
            "{listen} -c unix_socket_directories='{}' -c fsync=on",
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

/// The processes whose parent is `pid` (from `/proc`).
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Whether `pid` runs (a zombie, dead and waiting to be reaped, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
