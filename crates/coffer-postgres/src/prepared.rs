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

thread_local! {
    static WRITER: RefCell<Option<HashMap<String, Statement>>> = const { RefCell::new(None) };
}

/// Starts this thread's map afresh (the writer, on each new connection).
pub(crate) fn reset() {
    WRITER.with(|m| *m.borrow_mut() = Some(HashMap::new()));
}

fn statement(tx: &mut Transaction<'_>, sql: &str) -> Result<Statement, postgres::Error> {
    if let Some(found) = WRITER.with(|m| m.borrow().as_ref().and_then(|m| m.get(sql).cloned())) {
        return Ok(found);
    }
    let made = tx.prepare(sql)?;
    WRITER.with(|m| {
        if let Some(m) = m.borrow_mut().as_mut() {
            m.insert(sql.to_owned(), made.clone());
        }
    });
    Ok(made)
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
    prepared: HashMap<String, Statement>,
}

impl Reader {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            prepared: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(found) = self.prepared.get(sql) {
            return Ok(found.clone());
        }
        let made = self.client.prepare(sql)?;
        self.prepared.insert(sql.to_owned(), made.clone());
        Ok(made)
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
