//! Statements prepared once per connection: a statement given as text costs the client a
//! round trip to prepare it before each execution, so the hot paths (every write's
//! statements on the writer's connection, the reads on pooled connections) keep theirs.
//!
//! The writer thread keeps its statements in a thread-local map it empties whenever it
//! connects again ([`reset`]); other threads (an import, a snapshot) have none and prepare
//! each time. A pooled reader keeps its own ([`Reader`]). Prepared statements belong to the
//! session, not to a transaction: a rolled-back savepoint leaves them usable.

use std::cell::RefCell;
use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Row, Statement, Transaction};

/// The statements prepared on one connection, by their text.
#[derive(Default)]
struct Statements(HashMap<String, Statement>);

impl Statements {
    /// The statement for `sql`, prepared by `prepare` the first time.
    fn get(
        &mut self,
        sql: &str,
        prepare: impl FnOnce(&str) -> Result<Statement, postgres::Error>,
    ) -> Result<Statement, postgres::Error> {
        if let Some(found) = self.0.get(sql) {
            return Ok(found.clone());
        }
        let made = prepare(sql)?;
        self.0.insert(sql.to_owned(), made.clone());
        Ok(made)
    }
}

thread_local! {
    static WRITER: RefCell<Option<Statements>> = const { RefCell::new(None) };
}

/// Starts this thread's map afresh (the writer, on each new connection).
pub(crate) fn reset() {
    WRITER.with(|m| *m.borrow_mut() = Some(Statements::default()));
}

fn statement(tx: &mut Transaction<'_>, sql: &str) -> Result<Statement, postgres::Error> {
    WRITER.with(|m| match m.borrow_mut().as_mut() {
        Some(statements) => statements.get(sql, |sql| tx.prepare(sql)),
        None => tx.prepare(sql),
    })
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// `tx.execute`, with this thread's prepared statement.
pub(crate) fn execute(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<u64, postgres::Error> {
    let st = statement(tx, sql)?;
    tx.execute(&st, params)
}

/// `tx.query_opt`, with this thread's prepared statement.
pub(crate) fn query_opt(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Option<Row>, postgres::Error> {
    let st = statement(tx, sql)?;
    tx.query_opt(&st, params)
}

/// `tx.query_one`, with this thread's prepared statement.
pub(crate) fn query_one(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Row, postgres::Error> {
    let st = statement(tx, sql)?;
    tx.query_one(&st, params)
}

/// `tx.query`, with this thread's prepared statement.
pub(crate) fn query(
    tx: &mut Transaction<'_>,
    sql: &str,
    params: Params<'_>,
) -> Result<Vec<Row>, postgres::Error> {
    let st = statement(tx, sql)?;
    tx.query(&st, params)
}

/// A pooled reader connection and the statements prepared on it.
pub(crate) struct Reader {
    /// The connection.
    pub(crate) client: Client,
    prepared: Statements,
}

impl Reader {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            prepared: Statements::default(),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        let client = &mut self.client;
        self.prepared.get(sql, |sql| client.prepare(sql))
    }

    /// `query`, with this connection's prepared statement.
    pub(crate) fn query(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query(&st, params)
    }

    /// `query_opt`, with this connection's prepared statement.
    pub(crate) fn query_opt(
        &mut self,
        sql: &str,
        params: Params<'_>,
    ) -> Result<Option<Row>, postgres::Error> {
        let st = self.statement(sql)?;
        self.client.query_opt(&st, params)
    }
}
