//! The central store: an SQLite file holding golden records, id links with
//! provenance hashes, cursors, runs, dead letters and connector state.
//!
//! *Architecture invariant:* this is the only module that issues SQL to the
//! central store. It opens the file in WAL mode with `synchronous=NORMAL` and
//! foreign keys on, and applies the numbered migrations in `migrations/` in
//! order, recording the version in `PRAGMA user_version`.

mod checkpoint;
mod dead_letters;
mod health;
mod schema;
use schema::{configure, MIGRATIONS};
mod identity;
mod kinds;
mod lease;
mod links;
mod ops;
mod outbox;
mod pending;
mod polling;
mod records;
mod state;

pub use dead_letters::{DeadLetter, Lettered, NewDeadLetter, Side};
pub use health::SourceHealth;
pub use identity::{Ambiguous, NewMatch};
pub use kinds::{AuditOp, Choice, CursorKind, HeldStatus, Outcome, RunStatus};
pub use lease::{holds_writer_lease, Holder, WriterLease};
pub use ops::{Activity, Gauges, OpenConflict, Problems, RecordLink, RunChange};
pub use outbox::{OutboxOp, OutboxRow};
pub use pending::Held;
pub use polling::{LastPoll, WebhookHealth};
pub use records::{parse_record, AuditEntry, Conflict, Golden, NewAudit, NewConflict, Retry};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
pub use state::StateStore;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// The number of pending deliveries: outbox rows, and the records of spans
/// (at most: a span counts every global id between its ends).
const PENDING: &str = "SELECT (SELECT count(*) FROM outbox)
    + (SELECT coalesce(sum(last_gid - first_gid + 1), 0) FROM outbox_spans)";

/// A content hash of a canonical record (128 bits of SHA-256).
pub type Hash = [u8; 16];

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("central store '{path}': {source}")]
    Sqlite {
        /// The store file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file was written by a newer weir.
    #[error("central store '{path}' has schema version {found}, newer than this weir knows ({known}); upgrade weir")]
    TooNew {
        /// The store file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A file given as a backup is not one.
    #[error("'{path}' is not a weir store backup: {reason}; give a file written by `weir backup`")]
    NotABackup {
        /// The file.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// A record's stored text is not what weir wrote there.
    #[error("central store '{path}': {what} is corrupt: {reason}; restore the store from a backup (`weir restore`)")]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Which record: `golden record 42 of contacts`, `conflict 7`.
        what: String,
        /// What is wrong with its text.
        reason: String,
    },
    /// Another live process holds the store's writer lease.
    #[error("central store '{path}' is in use by {holder}; stop that process or wait for it with `--wait` (a process that died gives the store up when its lease runs out)")]
    Leased {
        /// The store file.
        path: PathBuf,
        /// Who holds it.
        holder: lease::Holder,
    },
    /// This process's writer lease was taken over (it was paused, or cut
    /// off from the store, past its expiry): it may write no more.
    #[error("central store '{path}': this process no longer holds its writer lease ({}); nothing more is written, run again", holder.as_ref().map_or("nobody holds it".to_string(), |h| format!("now held by {h}")))]
    LeaseLost {
        /// The store file.
        path: PathBuf,
        /// Who holds it now, if anyone.
        holder: Option<lease::Holder>,
    },
    /// Reading or writing a file failed.
    #[error("'{path}': {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A link between a golden record and one system's copy of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The golden record.
    pub global_id: i64,
    /// The record's id in the system.
    pub local_id: String,
    /// Hash of the canonical record as last read from the system.
    pub hash_seen: Option<Hash>,
    /// Hash of the canonical record as last written to the system.
    pub hash_written: Option<Hash>,
}

/// Figures of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunCounts {
    /// Records read from sources.
    pub read: u64,
    /// Records written to destinations.
    pub written: u64,
    /// Records that changed nothing: read with content weir already had, or
    /// not written because the destination already holds it (printed as
    /// "unchanged").
    pub skipped: u64,
    /// Writes that failed (dead letters).
    pub failed: u64,
    /// Deletes delivered to destinations.
    pub deleted: u64,
    /// Changes recognised as weir's own writes coming back, and dropped.
    pub echoes: u64,
    /// Concurrent edits detected and resolved.
    pub conflicts: u64,
}

impl std::fmt::Display for RunCounts {
    /// `R read, W written, D deleted, U unchanged, E echoes, C conflicts, F failed`,
    /// as every run line prints them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} read, {} written, {} deleted, {} unchanged, {} echoes, {} conflicts, {} failed",
            self.read,
            self.written,
            self.deleted,
            self.skipped,
            self.echoes,
            self.conflicts,
            self.failed
        )
    }
}

/// The central store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Taken around every write transaction of this process to this store.
    gate: Arc<Mutex<()>>,
    /// Checkpoints the write-ahead log off the writer's thread (none for a
    /// read-only store).
    checkpoints: Option<checkpoint::Checkpoints>,
}

/// The write gate of the store at `path`, shared by every connection this
/// process opens to it. Writers of one process queue here, woken the moment
/// the lock is free, instead of in SQLite's busy handler, which polls with
/// sleeps of up to 100 ms (the service's request handlers and its pass write
/// concurrently). Other processes still meet at SQLite's lock.
fn gate(path: &Path) -> Arc<Mutex<()>> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    GATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// The current UTC time as RFC 3339 with milliseconds.
pub fn now() -> String {
    format!("{:.3}", jiff::Timestamp::now())
}

/// Now plus `later`, as the store writes times; now when that does not fit.
pub fn now_plus(later: std::time::Duration) -> String {
    let now = jiff::Timestamp::now();
    let at = jiff::SignedDuration::try_from(later)
        .ok()
        .and_then(|d| now.checked_add(d).ok())
        .unwrap_or(now);
    format!("{at:.3}")
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates it.
    pub fn open(path: &Path) -> Result<Store> {
        let err = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let mut conn = Connection::open(path).map_err(err)?;
        configure(&conn).map_err(err)?;
        schema::migrate(&mut conn, path)?;
        let checkpoints = Some(checkpoint::Checkpoints::new(path, &conn));
        Ok(Store {
            conn,
            gate: gate(path),
            path: path.to_path_buf(),
            checkpoints,
        })
    }

    /// Opens an existing store read-only, without migrating it (dry runs
    /// compare against it).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Sqlite {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Store {
            conn,
            gate: gate(path),
            path: path.to_path_buf(),
            checkpoints: None,
        })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.err())
    }

    /// Runs one write behind the write gate: autocommit, or, in a process
    /// that holds the store's writer lease, in a transaction that checks
    /// the lease first.
    fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let out = match lease::token_for(&self.path) {
            None => f(&self.conn).map_err(self.err()),
            Some(token) => {
                let tx = Transaction::new_unchecked(
                    &self.conn,
                    rusqlite::TransactionBehavior::Immediate,
                )
                .map_err(self.err())?;
                lease::check(&tx, &self.path, token)?;
                let out = f(&tx).map_err(self.err())?;
                tx.commit().map_err(self.err())?;
                Ok(out)
            }
        };
        self.committed();
        out
    }

    /// After a commit: hands the log's checkpoint to the checkpoint thread
    /// when it is due.
    fn committed(&self) {
        if let Some(c) = &self.checkpoints {
            c.committed();
        }
    }

    /// Starts a run and returns its id.
    pub fn begin_run(&self) -> Result<i64> {
        self.write(|conn| {
            conn.execute("INSERT INTO runs (started_at) VALUES (?1)", [now()])?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// Ends a run with its figures and status.
    pub fn finish_run(
        &self,
        id: i64,
        status: RunStatus,
        counts: RunCounts,
        error: Option<&str>,
    ) -> Result<()> {
        let c = counts;
        self.write(|conn| {
            conn.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, records_read = ?4, records_written = ?5,
                 records_skipped = ?6, records_failed = ?7, error = ?8, records_deleted = ?9, echoes = ?10,
                 conflicts = ?11 WHERE id = ?1",
                params![
                    id,
                    now(),
                    status,
                    c.read as i64,
                    c.written as i64,
                    c.skipped as i64,
                    c.failed as i64,
                    error,
                    c.deleted as i64,
                    c.echoes as i64,
                    c.conflicts as i64
                ],
            )
        })?;
        Ok(())
    }

    /// Runs `f` in one transaction; it commits only if `f` succeeds. The
    /// transaction takes the write lock at once (`BEGIN IMMEDIATE`), so that
    /// the service's request handlers and its pass wait for each other instead
    /// of failing to upgrade a read to a write.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let gate = self.gate.clone();
        let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        if let Some(token) = lease::token_for(&path) {
            lease::check(&tx, &path, token)?;
        }
        let out = {
            let mut t = Tx {
                tx,
                path: &path,
                now: now(),
            };
            let out = f(&mut t)?;
            t.tx.commit().map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
            out
        };
        self.committed();
        Ok(out)
    }

    /// A stored cursor.
    pub fn cursor(&self, system: &str, entity: &str, kind: CursorKind) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT cursor FROM cursors WHERE system = ?1 AND entity = ?2 AND kind = ?3",
                params![system, entity, kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    /// Number of links of an entity in a system.
    pub fn count_links(&self, entity: &str, system: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM links WHERE entity = ?1 AND system = ?2",
                params![entity, system],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// The latest runs, newest first.
    pub fn runs(&self, limit: u32) -> Result<Vec<Run>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, started_at, finished_at, status, records_read, records_written, records_skipped, records_failed, error,
                        records_deleted, echoes, conflicts
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([limit], |r| {
                Ok(Run {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    finished_at: r.get(2)?,
                    status: r.get(3)?,
                    counts: RunCounts {
                        read: r.get::<_, i64>(4)? as u64,
                        written: r.get::<_, i64>(5)? as u64,
                        skipped: r.get::<_, i64>(6)? as u64,
                        failed: r.get::<_, i64>(7)? as u64,
                        deleted: r.get::<_, i64>(9)? as u64,
                        echoes: r.get::<_, i64>(10)? as u64,
                        conflicts: r.get::<_, i64>(11)? as u64,
                    },
                    error: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }
}

/// A recorded run.
#[derive(Debug, Clone)]
pub struct Run {
    /// Its id.
    pub id: i64,
    /// When it started.
    pub started_at: String,
    /// When it ended, if it did.
    pub finished_at: Option<String>,
    /// `running`, `ok` or `partial` (see `RunStatus`).
    pub status: String,
    /// Its figures.
    pub counts: RunCounts,
    /// The first error, if any.
    pub error: Option<String>,
}

pub(crate) fn link_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Link> {
    Ok(Link {
        global_id: r.get(0)?,
        local_id: r.get(1)?,
        hash_seen: hash_col(r, 2)?,
        hash_written: hash_col(r, 3)?,
    })
}

pub(crate) fn hash_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<Hash>> {
    Ok(r.get::<_, Option<Vec<u8>>>(i)?
        .and_then(|v| v.try_into().ok()))
}

/// A transaction on the store.
pub struct Tx<'a> {
    tx: Transaction<'a>,
    path: &'a Path,
    /// The transaction's time (RFC 3339), stamped on the rows it writes.
    now: String,
}

impl<'a> Tx<'a> {
    pub(crate) fn conn(&self) -> &Connection {
        &self.tx
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        self.path
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.to_path_buf(),
            source,
        }
    }

    /// Creates a golden record and returns its global id.
    pub fn create_golden(
        &mut self,
        entity: &str,
        data: &str,
        hash: &Hash,
        origin: &str,
        match_key: Option<&str>,
    ) -> Result<i64> {
        self.tx
            .prepare_cached("INSERT INTO golden (entity, data, hash, updated_at, origin, match_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut st| st.execute(params![entity, data, &hash[..], &self.now, origin, match_key]))
            .map_err(self.err())?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Stores a cursor.
    pub fn set_cursor(
        &mut self,
        system: &str,
        entity: &str,
        kind: CursorKind,
        cursor: &str,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO cursors (system, entity, kind, cursor, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (system, entity, kind) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )
            .and_then(|mut st| st.execute(params![system, entity, kind, cursor, &self.now]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a cursor.
    pub fn clear_cursor(&mut self, system: &str, entity: &str, kind: CursorKind) -> Result<()> {
        self.tx
            .prepare_cached("DELETE FROM cursors WHERE system = ?1 AND entity = ?2 AND kind = ?3")
            .and_then(|mut st| st.execute(params![system, entity, kind]))
            .map_err(self.err())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_links_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        let h = [7u8; 16];
        let gid = store
            .transaction(|tx| {
                let gid = tx.create_golden("contacts", "{}", &h, "a", None)?;
                tx.record_seen("contacts", "a", "1", gid, &h, None)?;
                tx.record_written("contacts", "b", "99", gid, &h, None, false)?;
                Ok(gid)
            })
            .unwrap();
        drop(store);
        let mut store = Store::open(&path).unwrap();
        store
            .transaction(|tx| {
                let a = tx.link_by_local("contacts", "a", "1").unwrap().unwrap();
                assert_eq!(
                    (a.global_id, a.hash_seen, a.hash_written),
                    (gid, Some(h), None)
                );
                let b = tx.link_by_global("b", gid).unwrap().unwrap();
                assert_eq!(
                    (b.local_id.as_str(), b.hash_seen, b.hash_written),
                    ("99", None, Some(h))
                );
                assert!(tx.link_by_local("contacts", "a", "2").unwrap().is_none());
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_write_recorded_as_an_update_sets_the_link_it_finds_or_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let (old, new) = ([1u8; 16], [2u8; 16]);
        store
            .transaction(|tx| {
                let first = tx.create_golden("contacts", "{}", &old, "a", None)?;
                let second = tx.create_golden("contacts", "{}", &old, "a", None)?;
                tx.record_written("contacts", "b", "7", first, &old, None, false)?;
                tx.record_seen("contacts", "b", "7", first, &old, None)?;
                // The link as planned: its hashes change.
                tx.record_written("contacts", "b", "7", first, &new, None, true)?;
                let l = tx.link_by_local("contacts", "b", "7")?.unwrap();
                assert_eq!(
                    (l.global_id, l.hash_seen, l.hash_written),
                    (first, None, Some(new))
                );
                // The system answered with an id linked to another record, or
                // with one never linked: the link is made as for a create.
                tx.record_written("contacts", "b", "7", second, &old, None, true)?;
                let l = tx.link_by_local("contacts", "b", "7")?.unwrap();
                assert_eq!((l.global_id, l.hash_written), (second, Some(old)));
                assert!(tx.link_by_global("b", first)?.is_none());
                tx.record_written("contacts", "b", "8", first, &new, None, true)?;
                assert_eq!(tx.link_by_global("b", first)?.unwrap().local_id, "8");
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn later_changes_name_what_changed_a_runs_records_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store.db")).unwrap();
        store
            .conn
            .execute_batch(
                "INSERT INTO audit (at, run_id, system, entity, global_id, operation, outcome) VALUES
                   ('t', 4, 'a', 'contacts', 3, 'read:update', 'ok'),
                   ('t', 5, 'a', 'contacts', 1, 'read:update', 'ok'),
                   ('t', 5, 'a', 'contacts', 2, 'read:update', 'conflict'),
                   ('t', 5, 'b', 'contacts', 1, 'write:update', 'ok'),
                   ('t', 6, 'a', 'contacts', 3, 'read:update', 'ok'),
                   ('t', 7, 'b', 'contacts', 1, 'read:update', 'echo'),
                   ('t', 8, 'a', 'contacts', 2, 'read:delete', 'ok'),
                   ('t', NULL, 'a', 'contacts', 1, 'review:theirs', 'ok'),
                   ('t', 9, 'b', 'contacts', 1, 'write:update', 'ok');",
            )
            .unwrap();
        // Run 6 changed another record, run 7 read an echo, run 9 wrote.
        assert_eq!(
            store.later_changes(5).unwrap(),
            ["a conflict decision", "run 8"]
        );
        assert!(store.later_changes(8).unwrap().is_empty());
        assert!(store.later_changes(6).unwrap().is_empty());
        assert_eq!(store.later_changes(4).unwrap(), ["run 6"]);
    }

    #[test]
    fn a_span_left_over_becomes_outbox_rows_for_its_records_still_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("store.db")).unwrap();
        let h = [1u8; 16];
        let (first, last) = store
            .transaction(|tx| {
                tx.create_golden("contacts", "{}", &h, "a", None)?;
                let gids: Vec<i64> = (0..4)
                    .map(|_| tx.create_golden("contacts", "{}", &h, "a", None))
                    .collect::<Result<_>>()?;
                let (first, last) = (gids[0], gids[3]);
                tx.add_span("b", "contacts", first, last)?;
                let done = tx.add_span("c", "contacts", first, last)?;
                tx.span_done(done)?;
                // Changed since (a row of its own, backed off) and deleted since.
                tx.enqueue_failed(
                    "b",
                    "contacts",
                    gids[1],
                    "2999-01-01T00:00:00Z",
                    "slow down",
                )?;
                tx.delete_golden(gids[2], "a")?;
                Ok((first, last))
            })
            .unwrap();
        assert_eq!(
            store.outbox_pending().unwrap(),
            1 + 4,
            "a row and a span of 4"
        );
        let expanded = store.transaction(|tx| tx.expand_spans(true)).unwrap();
        assert_eq!(expanded, 1, "the span done is gone");
        let rows: Vec<(String, i64, i64, String)> = store
            .conn
            .prepare("SELECT target, global_id, attempts, next_attempt_at FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let gids: Vec<i64> = rows.iter().map(|r| r.1).collect();
        assert_eq!(gids, [first + 1, first, last], "{rows:?}");
        assert!(rows.iter().all(|r| r.0 == "b"), "{rows:?}");
        assert_eq!(
            (rows[0].2, rows[0].3.as_str()),
            (1, "2999-01-01T00:00:00Z"),
            "kept as it was"
        );
        assert_eq!(rows[1].2, 0, "{rows:?}");
        assert!(rows[1].3.as_str() < "2999", "due: {rows:?}");
        assert_eq!(store.outbox_pending().unwrap(), 3);
        assert_eq!(store.transaction(|tx| tx.expand_spans(true)).unwrap(), 0);
    }
}
