//! The `sql` import: statements on databases the manifest grants, by name.
//!
//! A connector names a grant and never sees a path, a host or a password.
//! SQLite files are opened lazily, one connection per grant and instance
//! ([`sqlite`]); PostgreSQL databases are reached through pools that live in
//! the runtime and outlast instances ([`postgres`]). Every statement is
//! stopped after the system's `sql_timeout_secs`, and a query may return at
//! most `sql_max_rows` rows.

mod pg_values;
mod postgres;
mod sqlite;

use super::bindings::weir::connector::sql::{Dialect, Host, Rows, SqlError, Statement, Value};
use super::HostState;
use crate::manifest::{Database, PgGrant, System};
use deadpool_postgres::Pool;
use rusqlite::Connection;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub(super) use postgres::Pools;

/// The databases of one instance: its grants, the SQLite connections it
/// opened, and the runtime's PostgreSQL pools.
pub(super) struct Connections {
    system: String,
    grants: BTreeMap<String, Database>,
    sqlite: HashMap<String, Connection>,
    pools: Pools,
    timeout: Duration,
    max_rows: u32,
}

impl Connections {
    pub(super) fn new(system: &System, pools: Pools) -> Self {
        Connections {
            system: system.name.clone(),
            grants: system.databases.clone(),
            sqlite: HashMap::new(),
            pools,
            timeout: system.limits.sql_timeout,
            max_rows: system.limits.sql_max_rows,
        }
    }

    /// The open SQLite connection of grant `db`, with its deadline armed.
    fn sqlite(
        &mut self,
        db: &str,
        path: &std::path::Path,
        create: bool,
    ) -> Result<&mut Connection, SqlError> {
        if !self.sqlite.contains_key(db) {
            let conn = sqlite::connect(db, path, create)?;
            self.sqlite.insert(db.to_string(), conn);
        }
        let conn = self.sqlite.get_mut(db).expect("opened above");
        sqlite::arm(conn, self.timeout);
        Ok(conn)
    }

    /// The runtime's pool of PostgreSQL grant `db`.
    fn pool(&self, db: &str, grant: &Arc<PgGrant>) -> Result<Pool, SqlError> {
        self.pools.get(&self.system, db, grant, self.timeout)
    }
}

impl Host for HostState {
    async fn dialect_of(&mut self, db: String) -> wasmtime::Result<Result<Dialect, SqlError>> {
        Ok(match self.sql.grants.get(&db) {
            Some(Database::Sqlite { .. }) => Ok(Dialect::Sqlite),
            Some(Database::Postgres(_)) => Ok(Dialect::Postgres),
            None => Err(self.denied_db(&db)),
        })
    }

    async fn query(
        &mut self,
        db: String,
        statement: Statement,
    ) -> wasmtime::Result<Result<Rows, SqlError>> {
        let sql = &mut self.sql;
        let (max_rows, timeout) = (sql.max_rows, sql.timeout);
        let reached = &mut self.reached;
        Ok(match sql.grants.get(&db).cloned() {
            Some(Database::Sqlite { path, create }) => {
                sql.sqlite(&db, &path, create).and_then(|conn| {
                    *reached = true;
                    sqlite::run(conn, &statement, max_rows)
                })
            }
            Some(Database::Postgres(grant)) => match sql.pool(&db, &grant) {
                Ok(pool) => {
                    postgres::query(&pool, &db, &statement, max_rows, timeout, reached).await
                }
                Err(e) => Err(e),
            },
            None => Err(self.denied_db(&db)),
        })
    }

    async fn batch(
        &mut self,
        db: String,
        statements: Vec<Statement>,
    ) -> wasmtime::Result<Result<Vec<Result<Rows, String>>, SqlError>> {
        let sql = &mut self.sql;
        let (max_rows, timeout) = (sql.max_rows, sql.timeout);
        let reached = &mut self.reached;
        Ok(match sql.grants.get(&db).cloned() {
            Some(Database::Sqlite { path, create }) => {
                sql.sqlite(&db, &path, create).and_then(|conn| {
                    *reached = true;
                    sqlite::run_batch(conn, &statements, max_rows)
                })
            }
            Some(Database::Postgres(grant)) => match sql.pool(&db, &grant) {
                Ok(pool) => {
                    postgres::batch(&pool, &db, &statements, max_rows, timeout, reached).await
                }
                Err(e) => Err(e),
            },
            None => Err(self.denied_db(&db)),
        })
    }

    async fn copy_in(
        &mut self,
        db: String,
        copy: String,
        rows: Vec<Vec<Value>>,
    ) -> wasmtime::Result<Result<u64, SqlError>> {
        let sql = &mut self.sql;
        let timeout = sql.timeout;
        let reached = &mut self.reached;
        Ok(match sql.grants.get(&db).cloned() {
            Some(Database::Sqlite { .. }) => Err(SqlError::Failed(format!(
                "database '{db}' is SQLite, and COPY is PostgreSQL's: write its rows with batch"
            ))),
            Some(Database::Postgres(grant)) => match sql.pool(&db, &grant) {
                Ok(pool) => postgres::copy_in(&pool, &db, &copy, &rows, timeout, reached).await,
                Err(e) => Err(e),
            },
            None => Err(self.denied_db(&db)),
        })
    }
}

impl HostState {
    fn denied_db(&mut self, db: &str) -> SqlError {
        let message = format!(
            "database '{db}' is not granted to system '{}' (grant it under [systems.{}.databases])",
            self.system.name, self.system.name
        );
        SqlError::Denied(self.deny(message))
    }
}
