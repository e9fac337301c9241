//! PostgreSQL databases of the `sql` import.
//!
//! One pool per system and grant lives in the runtime, so connections and
//! their prepared statements outlast the instance of a run. Each connection
//! is opened with the system's `sql_timeout_secs` as `statement_timeout`, and
//! every call is also bounded by a client-side timeout; a connection whose
//! call timed out is closed rather than returned to the pool. When TLS is
//! used, the server certificate is verified against the public roots (and the
//! grant's `ca_file`).
//!
//! A batch runs in one transaction with its statements pipelined on one
//! connection; if one fails, the transaction is rolled back and the batch runs
//! again with a savepoint per statement, so that only the failing ones are undone.
//!
//! A `copy-in` streams its rows as `COPY ... FROM STDIN` text, in pieces of
//! about a megabyte, in a transaction of its own that is committed only when
//! the database loaded every row.

use super::super::bindings::weir::connector::sql::{Rows, SqlError, Statement, Value};
use super::pg_values::{copy_text, decode, Param};
use crate::manifest::{PgGrant, PgTls};
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures_util::{SinkExt, TryStreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;

/// A pool and the grant it was made for, by system and grant name.
type PoolMap = HashMap<(String, String), (Arc<PgGrant>, Pool)>;

/// The PostgreSQL pools of a runtime.
#[derive(Clone, Default)]
pub(in crate::runtime) struct Pools(Arc<Mutex<PoolMap>>);

impl Pools {
    /// The pool of `system`'s grant `db`, created on first use. A grant that
    /// changed (a reloaded manifest) gets a new pool.
    pub(super) fn get(
        &self,
        system: &str,
        db: &str,
        grant: &Arc<PgGrant>,
        timeout: Duration,
    ) -> Result<Pool, SqlError> {
        let mut pools = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let key = (system.to_string(), db.to_string());
        if let Some((known, pool)) = pools.get(&key) {
            if Arc::ptr_eq(known, grant) {
                return Ok(pool.clone());
            }
        }
        let pool = new_pool(grant, timeout).map_err(|e| {
            tracing::warn!(system, database = db, "cannot set up a PostgreSQL pool: {e}");
            SqlError::Failed(format!(
                "cannot connect to database '{db}': {e}; check the grant in [systems.{system}.databases]"
            ))
        })?;
        pools.insert(key, (grant.clone(), pool.clone()));
        Ok(pool)
    }
}

/// A pool for one grant.
fn new_pool(grant: &PgGrant, timeout: Duration) -> Result<Pool, String> {
    let mut config = grant.config.clone();
    let mut options = config.get_options().map(str::to_string).unwrap_or_default();
    if !options.is_empty() {
        options.push(' ');
    }
    options.push_str(&format!("-c statement_timeout={}", timeout.as_millis()));
    config.options(&options);
    config.ssl_mode(match grant.tls {
        PgTls::Disable => SslMode::Disable,
        PgTls::Prefer => SslMode::Prefer,
        PgTls::Require => SslMode::Require,
    });
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(grant)?);
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(grant.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .build()
        .map_err(|e| e.to_string())
}

/// The TLS client settings: public roots plus the grant's CA file.
fn tls_config(grant: &PgGrant) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = &grant.ca_file {
        let certs = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read the certificates of ca_file: {e}"))?;
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("a certificate in ca_file is unusable: {e}"))?;
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// A connection from the pool; the error names the grant and the reason.
async fn connection(pool: &Pool, db: &str) -> Result<Object, SqlError> {
    pool.get().await.map_err(|e| {
        let why = match &e {
            deadpool_postgres::PoolError::Backend(e) => message(e),
            deadpool_postgres::PoolError::Timeout(_) => {
                "no connection became free in time".to_string()
            }
            other => other.to_string(),
        };
        tracing::warn!(
            database = db,
            "cannot connect to a granted PostgreSQL database: {why}"
        );
        // The code goes last, where the connector reads it: the server's own
        // (a refused password, too many clients), else that the client could
        // not connect, which passes with time.
        let (why, code) = match why.rsplit_once(" [SQLSTATE ") {
            Some((text, code)) => (text.to_string(), format!("[SQLSTATE {code}")),
            None => (why, "[SQLSTATE 08001]".to_string()),
        };
        SqlError::Failed(format!(
            "cannot connect to database '{db}': {why} (check the grant's url, password, tls and ca_file under `databases` in the manifest) {code}"
        ))
    })
}

/// The database's message of an error, with its detail and its SQLSTATE
/// (`[SQLSTATE 40P01]`: the connector tells passing errors from refusals by
/// it); never the settings.
fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!(
                "{} ({detail}) [SQLSTATE {}]",
                db.message(),
                db.code().code()
            ),
            None => format!("{} [SQLSTATE {}]", db.message(), db.code().code()),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}

/// A statement error as the connector sees it.
fn failed(e: tokio_postgres::Error) -> SqlError {
    if e.code() == Some(&SqlState::QUERY_CANCELED) {
        SqlError::Timeout
    } else {
        SqlError::Failed(message(&e))
    }
}

/// Runs one statement and collects its rows, up to `max_rows`.
async fn run<C: GenericClient>(
    client: &C,
    statement: &Statement,
    max_rows: u32,
) -> Result<Rows, SqlError> {
    let prepared = client
        .prepare_cached(&statement.sql)
        .await
        .map_err(failed)?;
    let types = prepared.params();
    if types.len() != statement.params.len() {
        return Err(SqlError::Failed(format!(
            "the statement has {} parameters but {} values were given",
            types.len(),
            statement.params.len()
        )));
    }
    let params = statement.params.iter().map(Param);
    let columns = prepared.columns();
    let names: Vec<String> = columns.iter().map(|c| c.name().to_string()).collect();
    let stream = client.query_raw(&prepared, params).await.map_err(failed)?;
    futures_util::pin_mut!(stream);
    let mut rows = Vec::new();
    while let Some(row) = stream.try_next().await.map_err(failed)? {
        if rows.len() as u32 >= max_rows {
            return Err(SqlError::TooManyRows(max_rows));
        }
        let values = columns
            .iter()
            .enumerate()
            .map(|(i, c)| decode(&row, i, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SqlError::Failed)?;
        rows.push(values);
    }
    Ok(Rows {
        columns: names,
        rows,
    })
}

/// Runs `work` on a pooled connection within `timeout`. A connection goes
/// back to the pool only when its work finished: one whose work timed out,
/// here or because the whole connector call was stopped (the future dropped),
/// is closed, since a statement may still be running on it. `reached` is
/// set once a connection is had: what fails before never reached the
/// database.
async fn bounded<T>(
    pool: &Pool,
    db: &str,
    timeout: Duration,
    reached: &mut bool,
    work: impl AsyncFnOnce(&mut Object) -> Result<T, SqlError>,
) -> Result<T, SqlError> {
    /// Closes the connection it holds when dropped, unless it was released.
    struct Closing(Option<Object>);
    impl Drop for Closing {
        fn drop(&mut self) {
            if let Some(client) = self.0.take() {
                drop(Object::take(client));
            }
        }
    }
    let mut held = Closing(Some(connection(pool, db).await?));
    *reached = true;
    let client = held.0.as_mut().expect("just set");
    if client.statement_cache.size() > MAX_CACHED_STATEMENTS {
        client.statement_cache.clear();
    }
    match tokio::time::timeout(timeout, work(client)).await {
        Ok(result) => {
            // Finished: back to the pool.
            drop(held.0.take());
            result
        }
        Err(_) => Err(SqlError::Timeout),
    }
}

/// Runs a query on the grant `db`.
pub(super) async fn query(
    pool: &Pool,
    db: &str,
    statement: &Statement,
    max_rows: u32,
    timeout: Duration,
    reached: &mut bool,
) -> Result<Rows, SqlError> {
    bounded(pool, db, timeout, reached, async |client| {
        let result = run(&*client, statement, max_rows).await;
        if let Err(SqlError::Failed(why)) = &result {
            forget_stale_plans(client, [why.as_str()]);
        }
        result
    })
    .await
}

/// The statements a connection keeps prepared before it forgets them all:
/// a bound on the cache (multi-row statements differ by their row count).
const MAX_CACHED_STATEMENTS: usize = 512;

/// Clears a connection's prepared statements when one of `errors` says a
/// table changed under them (after an `ALTER TABLE`, PostgreSQL refuses a
/// cached `SELECT *` whose columns changed): the next call prepares afresh.
fn forget_stale_plans<'a>(client: &Object, errors: impl IntoIterator<Item = &'a str>) {
    if errors
        .into_iter()
        .any(|e| e.contains("cached plan must not change result type"))
    {
        tracing::debug!("a table changed: forgetting this connection's prepared statements");
        client.statement_cache.clear();
    }
}

/// Runs a batch in one transaction on the grant `db`.
pub(super) async fn batch(
    pool: &Pool,
    db: &str,
    statements: &[Statement],
    max_rows: u32,
    timeout: Duration,
    reached: &mut bool,
) -> Result<Vec<Result<Rows, String>>, SqlError> {
    bounded(pool, db, timeout, reached, async |client| {
        let outcomes = batch_on(client, db, statements, max_rows).await;
        if let Ok(outcomes) = &outcomes {
            forget_stale_plans(
                client,
                outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().err())
                    .map(String::as_str),
            );
        }
        outcomes
    })
    .await
}

/// Runs a batch in one transaction on a connection: pipelined, or statement
/// by statement in savepoints when one fails.
async fn batch_on(
    client: &mut Object,
    db: &str,
    statements: &[Statement],
    max_rows: u32,
) -> Result<Vec<Result<Rows, String>>, SqlError> {
    // Prepare each distinct text once, then pipeline the statements.
    let mut seen = std::collections::HashSet::new();
    for st in statements {
        if seen.insert(st.sql.as_str()) {
            if let Err(e) = client.prepare_cached(&st.sql).await {
                // Reported per statement by the slow path below.
                tracing::debug!(database = db, "statement does not prepare: {}", message(&e));
                break;
            }
        }
    }
    {
        let tx = client.transaction().await.map_err(failed)?;
        let outcomes =
            futures_util::future::join_all(statements.iter().map(|st| run(&tx, st, max_rows)))
                .await;
        if outcomes.iter().all(Result::is_ok) {
            tx.commit().await.map_err(failed)?;
            return Ok(outcomes
                .into_iter()
                .map(|o| o.map_err(|e| e.to_string()))
                .collect());
        }
        if outcomes.iter().any(|o| matches!(o, Err(SqlError::Timeout))) {
            return Err(SqlError::Timeout);
        }
        tx.rollback().await.map_err(failed)?;
    }
    let mut tx = client.transaction().await.map_err(failed)?;
    let mut outcomes = Vec::with_capacity(statements.len());
    for st in statements {
        let sp = tx.savepoint("weir_item").await.map_err(failed)?;
        match run(&sp, st, max_rows).await {
            Ok(rows) => {
                sp.commit().await.map_err(failed)?;
                outcomes.push(Ok(rows));
            }
            Err(SqlError::Timeout) => return Err(SqlError::Timeout),
            Err(e) => {
                sp.rollback().await.map_err(failed)?;
                outcomes.push(Err(match e {
                    SqlError::Failed(m) => m,
                    other => other.to_string(),
                }));
            }
        }
    }
    tx.commit().await.map_err(failed)?;
    Ok(outcomes)
}

/// The bytes of COPY data sent at a time.
const COPY_PIECE: usize = 1 << 20;

/// Loads `rows` with `copy` (a `COPY ... FROM STDIN` statement, text
/// format) on the grant `db`: all of them, or none.
pub(super) async fn copy_in(
    pool: &Pool,
    db: &str,
    copy: &str,
    rows: &[Vec<Value>],
    timeout: Duration,
    reached: &mut bool,
) -> Result<u64, SqlError> {
    bounded(pool, db, timeout, reached, async |client| {
        let tx = client.transaction().await.map_err(failed)?;
        let sink = tx.copy_in(copy).await.map_err(failed)?;
        futures_util::pin_mut!(sink);
        let mut piece = bytes::BytesMut::with_capacity(COPY_PIECE);
        for row in rows {
            for (i, value) in row.iter().enumerate() {
                if i > 0 {
                    piece.extend_from_slice(b"\t");
                }
                copy_text(value, &mut piece);
            }
            piece.extend_from_slice(b"\n");
            if piece.len() >= COPY_PIECE {
                sink.send(piece.split().freeze()).await.map_err(failed)?;
            }
        }
        if !piece.is_empty() {
            sink.send(piece.freeze()).await.map_err(failed)?;
        }
        let loaded = sink.as_mut().finish().await.map_err(failed)?;
        if loaded != rows.len() as u64 {
            tx.rollback().await.map_err(failed)?;
            return Err(SqlError::Failed(format!(
                "COPY loaded {loaded} of {} rows (a trigger skipped some?); none were kept",
                rows.len()
            )));
        }
        tx.commit().await.map_err(failed)?;
        Ok(loaded)
    })
    .await
}
