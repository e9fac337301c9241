//! SQLite databases of the `sql` import: one connection per grant and
//! instance, with a 5 s busy timeout and a 16 MiB page cache; statements are
//! interrupted after the system's `sql_timeout_secs`. The journal mode of a
//! user's database is left as it is.

use super::super::bindings::weir::connector::sql::{Rows, SqlError, Statement, Value};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens the granted file at `path`, creating it only when the grant says
/// `create`. The error the connector gets names the grant `db` and SQLite's
/// reason, never the host path (the log keeps it).
pub(super) fn connect(db: &str, path: &Path, create: bool) -> Result<Connection, SqlError> {
    open(path, create).map_err(|e| {
        tracing::warn!(database = db, path = %path.display(), "cannot open a granted database: {e}");
        let why = match &e {
            rusqlite::Error::SqliteFailure(code, _) => code.to_string(),
            _ => "the file cannot be opened".to_string(),
        };
        SqlError::Failed(format!(
            "cannot open database '{db}': {why}; check the file granted in `databases`"
        ))
    })
}

/// Arms the statement deadline of a connection: statements running past
/// `timeout` from now are interrupted.
pub(super) fn arm(conn: &Connection, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
}

fn open(path: &Path, create: bool) -> rusqlite::Result<Connection> {
    use rusqlite::OpenFlags as F;
    let mut flags = F::SQLITE_OPEN_READ_WRITE | F::SQLITE_OPEN_URI | F::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= F::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    // A 16 MiB page cache for this connection only (the file is not changed):
    // keyset pages and upserts on large tables stay in memory.
    conn.pragma_update(None, "cache_size", -16_384)?;
    Ok(conn)
}

fn to_sql(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn from_sql(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn failed(e: rusqlite::Error) -> SqlError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            SqlError::Timeout
        }
        other => SqlError::Failed(other.to_string()),
    }
}

/// Runs one statement and collects its rows, up to `max_rows`.
pub(super) fn run(
    conn: &Connection,
    statement: &Statement,
    max_rows: u32,
) -> Result<Rows, SqlError> {
    let mut st = conn.prepare_cached(&statement.sql).map_err(failed)?;
    let columns: Vec<String> = st.column_names().into_iter().map(String::from).collect();
    let params = statement.params.iter().map(|v| to_sql(v.clone()));
    let mut rows = st
        .query(rusqlite::params_from_iter(params))
        .map_err(failed)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        if out.len() as u32 >= max_rows {
            return Err(SqlError::TooManyRows(max_rows));
        }
        out.push(
            (0..columns.len())
                .map(|i| row.get_ref(i).map(from_sql))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(failed)?,
        );
    }
    Ok(Rows { columns, rows: out })
}

/// Runs a batch in one transaction. The fast path runs every statement
/// plainly; if one fails, the transaction is rolled back and the batch runs
/// again with a savepoint per statement, so that only the failing ones are undone.
pub(super) fn run_batch(
    conn: &mut Connection,
    statements: &[Statement],
    max_rows: u32,
) -> Result<Vec<Result<Rows, String>>, SqlError> {
    {
        let tx = conn.transaction().map_err(failed)?;
        let mut outcomes = Vec::with_capacity(statements.len());
        let mut clean = true;
        for statement in statements {
            match run(&tx, statement, max_rows) {
                Ok(rows) => outcomes.push(Ok(rows)),
                Err(SqlError::Timeout) => return Err(SqlError::Timeout),
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        }
        if clean {
            tx.commit().map_err(failed)?;
            return Ok(outcomes);
        }
    }
    let mut tx = conn.transaction().map_err(failed)?;
    let mut outcomes = Vec::with_capacity(statements.len());
    for statement in statements {
        let sp = tx.savepoint().map_err(failed)?;
        match run(&sp, statement, max_rows) {
            Ok(rows) => {
                sp.commit().map_err(failed)?;
                outcomes.push(Ok(rows));
            }
            Err(SqlError::Timeout) => return Err(SqlError::Timeout),
            Err(SqlError::Failed(m)) => outcomes.push(Err(m)),
            Err(e) => outcomes.push(Err(e.to_string())),
        }
    }
    tx.commit().map_err(failed)?;
    Ok(outcomes)
}
