//! Opening the store file: the pragmas of every connection and the
//! numbered migrations that bring its schema up to date.

use super::{Result, StoreError};
use rusqlite::Connection;
use std::path::Path;

/// The migrations, in order; migration `i` brings the schema to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_outbox_audit_conflicts.sql"),
    include_str!("migrations/0003_inbox.sql"),
    include_str!("migrations/0004_deliveries.sql"),
    include_str!("migrations/0005_polling.sql"),
    include_str!("migrations/0006_operations.sql"),
    include_str!("migrations/0007_outbox_order.sql"),
    include_str!("migrations/0008_audit_unindexed_by_record.sql"),
    include_str!("migrations/0009_outbox_spans.sql"),
    include_str!("migrations/0010_leases.sql"),
    include_str!("migrations/0011_identity.sql"),
    include_str!("migrations/0012_sent_and_base.sql"),
    include_str!("migrations/0013_dead_letters_once.sql"),
    include_str!("migrations/0014_outbox_seen_raw.sql"),
    include_str!("migrations/0015_outbox_failing_since.sql"),
    include_str!("migrations/0016_source_health.sql"),
];

/// Switches the store to WAL. Two processes opening a new file at the same
/// moment both try to take the lock that needs; SQLite refuses one of them
/// at once (waiting could deadlock), without its busy handler, so the
/// refused one tries again until the other is done (within 10 s).
fn wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Sets the pragmas every connection to the store uses.
pub(super) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    wal(conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A 16 MiB page cache holds the inner pages of every tree of a store of
    // millions of records. Their leaves are looked up at random across the
    // file, so a larger cache bought nothing measurable (a million records,
    // full load and 1% changed, same times with 8 to 64 MiB) but memory.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Room for every statement of a pass, so none is parsed again.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the store's schema up to date, in one transaction that takes the
/// write lock first, so that processes opening a new store together
/// migrate it once: the others wait, then find it migrated.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let known = MIGRATIONS.len() as i64;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if version == known {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(err)?;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.pragma_update(None, "user_version", known).map_err(err)?;
    tx.commit().map_err(err)
}
