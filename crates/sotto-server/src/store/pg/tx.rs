//! Connections that prepare each statement once. The `postgres` client
//! parses and plans a statement given as text on every call (an extra
//! round trip and the planner's work each time); here each connection
//! keeps what it prepared, keyed by the SQL, so the store's queries are
//! written as text and run prepared.

use std::collections::HashMap;

use ::postgres::types::ToSql;
use ::postgres::{Client, NoTls, Row, Statement, Transaction};
use r2d2_postgres::PostgresConnectionManager;

/// A pooled connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    cache: HashMap<String, Statement>,
}

/// Makes [`Conn`]s for the pool (the `postgres` manager underneath).
pub(super) struct Manager(pub(super) PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = ::postgres::Error;

    fn connect(&self) -> Result<Conn, Self::Error> {
        Ok(Conn { client: self.0.connect()?, cache: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut Conn) -> Result<(), Self::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

impl Conn {
    /// The plain client (migrations).
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Begins a transaction whose statements run prepared.
    pub(super) fn transaction(&mut self) -> Result<Tx<'_>, ::postgres::Error> {
        Ok(Tx { tx: self.client.transaction()?, cache: &mut self.cache })
    }
}

/// Begins a transaction on a client that is not pooled (the writer's own),
/// with its own statement cache.
pub(super) fn begin<'a>(
    client: &'a mut Client,
    cache: &'a mut HashMap<String, Statement>,
) -> Result<Tx<'a>, ::postgres::Error> {
    Ok(Tx { tx: client.transaction()?, cache })
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

/// A transaction that prepares each statement once per connection.
pub(super) struct Tx<'a> {
    /// The transaction, for statements prepared elsewhere.
    pub(super) tx: Transaction<'a>,
    cache: &'a mut HashMap<String, Statement>,
}

impl Tx<'_> {
    fn statement(&mut self, sql: &str) -> Result<Statement, ::postgres::Error> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.cache.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) fn query(&mut self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, ::postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query(&s, params)
    }

    pub(super) fn query_opt(&mut self, sql: &str, params: Params<'_>) -> Result<Option<Row>, ::postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query_opt(&s, params)
    }

    pub(super) fn query_one(&mut self, sql: &str, params: Params<'_>) -> Result<Row, ::postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query_one(&s, params)
    }

    pub(super) fn execute(&mut self, sql: &str, params: Params<'_>) -> Result<u64, ::postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.execute(&s, params)
    }

    pub(super) fn commit(self) -> Result<(), ::postgres::Error> {
        self.tx.commit()
    }
}
