//! The private PostgreSQL server tests run against (issue 18): it starts as an unprivileged
//! user on a Unix socket only, keeps a committed row across a crash (`pg_ctl stop -m
//! immediate`) and a restart, and leaves nothing behind. `scripts/test` installs
//! `postgresql` when missing.
#![allow(clippy::unwrap_used)]

use coffer_postgres::fixture::Postgres;

#[test]
fn a_private_server_keeps_a_committed_row_across_a_crash() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("SELECT 1"), "1");
    // Only the socket: no TCP listener.
    assert_eq!(pg.psql("SHOW listen_addresses"), "");
    assert!(pg.url().contains(pg.socket_dir().to_str().unwrap()));
    pg.psql("CREATE TABLE t (v text); INSERT INTO t VALUES ('acknowledged')");
    pg.kill();
    pg.restart();
    assert_eq!(pg.psql("SELECT v FROM t"), "acknowledged");
    // And across kill -9 of every server process.
    pg.psql("INSERT INTO t VALUES ('after')");
    pg.kill9();
    pg.restart();
    assert_eq!(pg.psql("SELECT count(*) FROM t"), "2");
    let dir = pg.socket_dir().to_owned();
    drop(pg);
    assert!(!dir.exists(), "the server's directory was left behind");
}
