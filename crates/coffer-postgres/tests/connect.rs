//! Reaching the database, against a real PostgreSQL:
//! - TLS, with a server that takes TLS connections only over TCP (`hostssl`):
//!   `sslmode=verify-full` with the server's CA connects, and the server sees the connections
//!   as TLS; plain TCP is refused by the server; a certificate that does not chain to the
//!   roots trusted is refused by coffer;
//! - a password (SCRAM) from `--database-password-file` or a `.pgpass` file named by
//!   `passfile=`, never from the URL; a wrong one is refused without being echoed.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use coffer_postgres::fixture::Postgres;
use coffer_postgres::{PgBackend, PgOptions};
use coffer_store::Backend;

fn open(url: String) -> Result<PgBackend, coffer_store::StoreError> {
    PgBackend::open(
        &PgOptions {
            url,
            password_file: None,
        },
        "hub-tls",
    )
}

#[test]
fn tls_to_the_database_is_used_and_its_certificate_checked() {
    let mut pg = Postgres::start();
    let ca = pg.with_tls();
    let port = pg.tcp_port().unwrap();
    pg.psql("CREATE DATABASE coffer");
    let url = |mode: &str, extra: &str| {
        format!("postgresql://coffer@localhost:{port}/coffer?sslmode={mode}{extra}")
    };

    let backend = open(url(
        "verify-full",
        &format!("&sslrootcert={}", ca.display()),
    ))
    .unwrap();
    backend.put_header(b"{\"over\":\"tls\"}").unwrap();
    assert_eq!(
        backend.header().unwrap().as_deref(),
        Some(&b"{\"over\":\"tls\"}"[..])
    );
    let tls: u32 = pg
        .psql("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE s.ssl AND a.datname = 'coffer'")
        .parse()
        .unwrap();
    assert!(
        tls >= 2,
        "the writer and the listener connect over TLS: {tls}"
    );
    drop(backend);

    // Plain TCP: the server refuses it (hostssl only).
    let err = open(url("disable", "")).unwrap_err().to_string();
    assert!(err.contains("connecting to PostgreSQL"), "{err}");
    // The public roots do not include the test CA: the certificate is refused.
    let err = open(url("require", "")).unwrap_err().to_string();
    assert!(err.contains("connecting to PostgreSQL"), "{err}");
    // A CA file that holds no certificate is refused before connecting.
    let empty = tempfile::NamedTempFile::new().unwrap();
    let err = open(url(
        "verify-full",
        &format!("&sslrootcert={}", empty.path().display()),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("holds no certificate"), "{err}");
}

fn private_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
fn the_password_comes_from_a_file_and_never_from_the_url() {
    let pg = Postgres::start();
    pg.require_password("app", "s3cret-PROBE-pw");
    let dir = tempfile::tempdir().unwrap();
    let base = pg.url_for("postgres").replace("coffer@", "app@");
    let with_file = |file: &std::path::Path| {
        PgBackend::open(
            &PgOptions {
                url: base.clone(),
                password_file: Some(file.to_owned()),
            },
            "hub-pw",
        )
    };

    let right = private_file(dir.path(), "pw", "s3cret-PROBE-pw\n");
    let backend = with_file(&right).unwrap();
    backend.put_header(b"{}").unwrap();
    drop(backend);

    let wrong = private_file(dir.path(), "wrong", "not-the-PROBE\n");
    let err = with_file(&wrong).unwrap_err().to_string();
    assert!(err.contains("connecting to PostgreSQL"), "{err}");
    assert!(
        !err.contains("PROBE"),
        "the error quotes the password: {err}"
    );

    // No password at all: the server asks for one.
    assert!(open(base.clone()).is_err());

    // libpq's .pgpass, named by the URL.
    let pgpass = private_file(
        dir.path(),
        "pgpass",
        &format!(
            "# host:port:database:user:password\nlocalhost:{}:postgres:app:s3cret-PROBE-pw\n",
            5432
        ),
    );
    let backend = open(format!("{base}&passfile={}", pgpass.display())).unwrap();
    assert!(backend.header().unwrap().is_some());
    drop(backend);

    // In the URL: refused before anything connects, and not echoed.
    let inline = pg
        .url_for("postgres")
        .replace("coffer@", "app:s3cret-PROBE-pw@");
    let err = open(inline).unwrap_err().to_string();
    assert!(err.contains("holds a password"), "{err}");
    assert!(!err.contains("PROBE"), "{err}");
}
