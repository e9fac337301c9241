//! Operating the store: online backups and restores, audit retention and
//! export, and the master-data view of one record.

use super::records::audit_from_row;
use super::AuditEntry;
use super::{Choice, Result, Store, StoreError, Tx, MIGRATIONS};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// One system's copy of a golden record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLink {
    /// The system.
    pub system: String,
    /// The record's id there.
    pub local_id: String,
    /// When the link last changed.
    pub updated_at: String,
}

impl Store {
    /// Copies the store to a new file `to` with SQLite's online backup, in
    /// one step: a consistent snapshot, taken while other connections keep
    /// writing (WAL). The copy is written next to `to` and renamed into place,
    /// so `to` never holds a partial backup. Returns its size in bytes.
    pub fn backup_to(&self, to: &Path) -> Result<u64> {
        let err = |source| StoreError::Sqlite {
            path: to.to_path_buf(),
            source,
        };
        let partial = to.with_extension("partial");
        let _ = std::fs::remove_file(&partial);
        {
            let mut dst = Connection::open(&partial).map_err(err)?;
            let backup = rusqlite::backup::Backup::new(&self.conn, &mut dst).map_err(err)?;
            copy_all(&backup).map_err(err)?;
        }
        std::fs::rename(&partial, to).map_err(|e| StoreError::Io {
            path: to.to_path_buf(),
            source: e,
        })?;
        let len = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
        Ok(len)
    }

    /// Replaces the store's whole content with the backup at `from`, after
    /// checking that it is an intact weir store this version can read.
    /// Returns the backup's schema version (migrated on the next open).
    pub fn restore_from(&mut self, from: &Path) -> Result<i64> {
        let err = |source: rusqlite::Error| StoreError::NotABackup {
            path: from.to_path_buf(),
            reason: source.to_string(),
        };
        let src =
            Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(err)?;
        let check: String = src
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(err)?;
        let is_weir: bool = src
            .query_row(
                "SELECT count(*) = 3 FROM sqlite_master WHERE type = 'table' AND name IN ('golden', 'links', 'runs')",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        let version: i64 = src
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if check != "ok" || !is_weir {
            return Err(StoreError::NotABackup {
                path: from.to_path_buf(),
                reason: if check != "ok" {
                    format!("it fails SQLite's integrity check ({check})")
                } else {
                    "it has no golden, links and runs tables".into()
                },
            });
        }
        if version > MIGRATIONS.len() as i64 {
            return Err(StoreError::TooNew {
                path: from.to_path_buf(),
                found: version,
                known: MIGRATIONS.len() as i64,
            });
        }
        let gate = self.gate.clone();
        let _gate = gate.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path.clone();
        let into = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let backup = rusqlite::backup::Backup::new(&src, &mut self.conn).map_err(into)?;
        copy_all(&backup).map_err(into)?;
        Ok(version)
    }

    /// Deletes the audit rows written before `cutoff` (RFC 3339). Rows are
    /// appended in time order, so the scan walks from the oldest row and
    /// stops at the first one inside the window: a pass with nothing to
    /// delete reads one row. Returns how many were deleted.
    pub fn prune_audit(&self, cutoff: &str) -> Result<u64> {
        self.write(|conn| {
            let first_kept: Option<i64> = conn
                .query_row(
                    "SELECT id FROM audit WHERE at >= ?1 ORDER BY id LIMIT 1",
                    [cutoff],
                    |r| r.get(0),
                )
                .optional()?;
            let n = match first_kept {
                Some(id) => conn.execute(
                    "DELETE FROM audit WHERE id < ?1 AND at < ?2",
                    params![id, cutoff],
                )?,
                None => conn.execute("DELETE FROM audit WHERE at < ?1", [cutoff])?,
            };
            Ok(n as u64)
        })
    }

    /// Calls `each` with every audit row matching the filters, oldest first,
    /// reading in pages (memory stays flat however long the log). Returns
    /// how many rows it passed.
    pub fn each_audit(
        &self,
        entity: Option<&str>,
        system: Option<&str>,
        since: Option<&str>,
        mut each: impl FnMut(&AuditEntry) -> std::io::Result<()>,
    ) -> Result<u64> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, at, run_id, system, entity, global_id, local_id, actor, operation, before, after, outcome
                 FROM audit
                 WHERE id > ?1 AND (?2 IS NULL OR entity = ?2) AND (?3 IS NULL OR system = ?3)
                   AND (?4 IS NULL OR at >= ?4)
                 ORDER BY id LIMIT 1000",
            )
            .map_err(self.err())?;
        let mut after = 0i64;
        let mut total = 0u64;
        loop {
            let rows = st
                .query_map(params![after, entity, system, since], audit_from_row)
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(self.err())?;
            let Some(last) = rows.last() else {
                return Ok(total);
            };
            after = last.id;
            for row in &rows {
                each(row).map_err(|source| StoreError::Io {
                    path: self.path.clone(),
                    source,
                })?;
                total += 1;
            }
        }
    }

    /// Every system's copy of golden record `global_id`.
    pub fn links_of(&self, global_id: i64) -> Result<Vec<RecordLink>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT system, local_id, updated_at FROM links WHERE global_id = ?1 ORDER BY system",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([global_id], |r| {
                Ok(RecordLink {
                    system: r.get(0)?,
                    local_id: r.get(1)?,
                    updated_at: r.get(2)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// The golden record id of `system`'s record `local_id` of `entity`.
    pub fn global_id_of(&self, entity: &str, system: &str, local_id: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT global_id FROM links WHERE entity = ?1 AND system = ?2 AND local_id = ?3",
                params![entity, system, local_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }
}

/// Runs a backup in one step (every page at once: a consistent snapshot),
/// retrying while the source is locked by a writer of another process.
fn copy_all(backup: &rusqlite::backup::Backup<'_, '_>) -> rusqlite::Result<()> {
    use rusqlite::backup::StepResult;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::Busy | StepResult::Locked => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => {}
        }
    }
}

/// What a run changed in one golden record, as the audit log says: its
/// first accepted change in the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunChange {
    /// The golden record.
    pub global_id: i64,
    /// Its entity.
    pub entity: String,
    /// The system whose change the run accepted.
    pub system: String,
    /// That system's id of the record.
    pub local_id: Option<String>,
    /// `ReadCreate`, `ReadUpdate` or `ReadDelete`.
    pub operation: super::AuditOp,
    /// The golden record before the run (none when the run created it).
    pub before: Option<String>,
}

impl Store {
    /// The golden records run `run_id` changed, each with its state before
    /// the run, in the order the run first changed them.
    pub fn run_changes(&self, run_id: i64) -> Result<Vec<RunChange>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT a.global_id, a.entity, a.system, a.local_id, a.operation, a.before
                 FROM audit a
                 JOIN (SELECT global_id, min(id) AS first FROM audit
                       WHERE run_id = ?1 AND outcome IN ('ok', 'conflict') AND global_id IS NOT NULL
                         AND (operation LIKE 'read:%' OR operation IN ('merge:update', 'merge:delete'))
                       GROUP BY global_id) f ON a.id = f.first
                 ORDER BY a.id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([run_id], |r| {
                Ok(RunChange {
                    global_id: r.get(0)?,
                    entity: r.get(1)?,
                    system: r.get(2)?,
                    local_id: r.get(3)?,
                    operation: r.get(4)?,
                    before: r.get(5)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// What changed the records of run `run_id` (those of
    /// [`Store::run_changes`]) after it: later runs (accepted changes,
    /// rollbacks) by id, and `a conflict decision` for a decision made on the
    /// dashboard. One query for the whole run: the audit rows after the run
    /// are read once.
    pub fn later_changes(&self, run_id: i64) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare(
                "WITH changed AS (
                     SELECT DISTINCT global_id FROM audit
                     WHERE run_id = ?1 AND outcome IN ('ok', 'conflict') AND global_id IS NOT NULL
                       AND (operation LIKE 'read:%' OR operation IN ('merge:update', 'merge:delete')))
                 SELECT DISTINCT coalesce('run ' || run_id, 'a conflict decision') FROM audit
                 WHERE id > (SELECT max(id) FROM audit WHERE run_id = ?1)
                   AND global_id IN changed
                   AND (operation LIKE 'read:%' OR operation LIKE 'rollback:%' OR operation LIKE 'review:%'
                        OR operation LIKE 'merge:%')
                   AND outcome IN ('ok', 'conflict')
                 ORDER BY 1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([run_id], |r| r.get(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<String>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// The systems' records a merge (run `run_id`) linked to its survivor:
    /// (entity, system, local id, the golden record they were linked to).
    pub fn run_relinks(&self, run_id: i64) -> Result<Vec<(String, String, String, i64)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT entity, system, local_id, global_id FROM audit
                 WHERE run_id = ?1 AND operation = 'merge:relink' ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([run_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Whether run `run_id` exists.
    pub fn run_exists(&self, run_id: i64) -> Result<bool> {
        self.conn
            .query_row("SELECT count(*) FROM runs WHERE id = ?1", [run_id], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(self.err())
    }
}

/// The store's state as `/metrics` shows it.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Deliveries waiting in the outbox.
    pub outbox: u64,
    /// Records in the dead letters.
    pub dead_letters: u64,
    /// Conflicts nobody decided on.
    pub open_conflicts: u64,
    /// Each source's last poll without failure: system, entity, time.
    pub polls: Vec<(String, String, String)>,
}

impl Store {
    /// The figures of [`Gauges`], read now.
    pub fn gauges(&self) -> Result<Gauges> {
        let count = |sql: &str, p: &[&dyn rusqlite::ToSql]| -> Result<u64> {
            self.conn
                .query_row(sql, p, |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(self.err())
        };
        let mut st = self
            .conn
            .prepare("SELECT system, entity, last_poll_at FROM polls WHERE failed = 0 ORDER BY system, entity")
            .map_err(self.err())?;
        let polls = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(Gauges {
            outbox: count(super::PENDING, &[])?,
            dead_letters: count("SELECT count(*) FROM dead_letters", &[])?,
            open_conflicts: count("SELECT count(*) FROM conflicts WHERE decision IS NULL", &[])?,
            polls,
        })
    }
}

/// One source or target of the dashboard: figures of a system's entity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Activity {
    /// Records read from it and written to it in the last hour.
    pub last_hour: u64,
    /// The same in the last day.
    pub last_day: u64,
    /// When weir last read or wrote a record of it.
    pub last_at: Option<String>,
    /// Records it refused (dead letters).
    pub dead_letters: u64,
    /// Its changes held for review.
    pub held: u64,
    /// Writes to it that failed for a while and wait for a retry.
    pub retrying: u64,
    /// The last error of those writes.
    pub last_error: Option<String>,
    /// Since when the oldest of them has been failing.
    pub failing_since: Option<String>,
}

impl Store {
    /// The activity of `system`'s `entity`.
    pub fn activity(&self, system: &str, entity: &str) -> Result<Activity> {
        let ago = |hours: i64| {
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_hours(hours))
                .map(|t| format!("{t:.3}"))
                .unwrap_or_default()
        };
        let (hour, day) = (ago(1), ago(24));
        let (last_hour, last_day, last_at): (i64, i64, Option<String>) = self
            .conn
            .query_row(
                "SELECT count(*) FILTER (WHERE at >= ?3), count(*), max(at) FROM audit
                 WHERE system = ?1 AND entity = ?2 AND at >= ?4 AND outcome = 'ok'
                   AND (operation LIKE 'read:%' OR operation LIKE 'write:%')",
                params![system, entity, hour, day],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(self.err())?;
        let count = |sql: &str| -> Result<u64> {
            self.conn
                .query_row(sql, params![system, entity], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(self.err())
        };
        let (retrying, last_error): (i64, Option<String>) = self
            .conn
            .query_row(
                // With one max() aggregate, SQLite takes the bare column
                // `last_error` from the row holding the maximum: the newest.
                "SELECT count(*), last_error, max(id) FROM outbox
                 WHERE target = ?1 AND entity = ?2 AND last_error IS NOT NULL",
                params![system, entity],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err())?;
        let failing_since: Option<String> = self
            .conn
            .query_row(
                "SELECT min(failing_since) FROM outbox WHERE target = ?1 AND entity = ?2",
                params![system, entity],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(Activity {
            retrying: retrying as u64,
            last_error,
            failing_since,
            last_hour: last_hour as u64,
            last_day: last_day as u64,
            last_at,
            dead_letters: count(
                "SELECT count(*) FROM dead_letters WHERE system = ?1 AND entity = ?2",
            )?,
            held: count("SELECT count(*) FROM held WHERE system = ?1 AND entity = ?2")?,
        })
    }

    /// Conflicts of `entity` nobody decided on yet.
    pub fn open_conflicts(&self, entity: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM conflicts WHERE entity = ?1 AND decision IS NULL",
                [entity],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }
}

/// A conflict nobody decided on yet, as `Tx::open_conflict` finds it.
#[derive(Debug, Clone)]
pub struct OpenConflict {
    /// The entity.
    pub entity: String,
    /// The golden record.
    pub global_id: i64,
    /// The golden record before the conflict (canonical JSON).
    pub ours: Option<String>,
    /// The arriving change.
    pub theirs: Option<String>,
    /// The golden record the policy made of them.
    pub result: String,
    /// The system whose change arrived.
    pub system: String,
}

impl Tx<'_> {
    /// Conflict `id`, unless there is none or it was decided already.
    pub fn open_conflict(&self, id: i64) -> Result<Option<OpenConflict>> {
        self.conn()
            .query_row(
                "SELECT entity, global_id, ours, theirs, result, system FROM conflicts
                 WHERE id = ?1 AND decision IS NULL",
                [id],
                |r| {
                    Ok(OpenConflict {
                        entity: r.get(0)?,
                        global_id: r.get(1)?,
                        ours: r.get(2)?,
                        theirs: r.get(3)?,
                        result: r.get(4)?,
                        system: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(self.err())
    }

    /// Records a person's decision on conflict `id`.
    pub fn decide_conflict(&mut self, id: i64, choice: Choice) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE conflicts SET decision = ?2, decided_at = ?3 WHERE id = ?1",
                params![id, choice, super::now()],
            )
            .map_err(self.err())?;
        Ok(())
    }
}

/// Conflicts and dead letters recorded after given row ids, per system and
/// entity, for alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// New conflicts: arriving system, entity, how many.
    pub conflicts: Vec<(String, String, u64)>,
    /// New dead letters: target system, entity, how many, the last reason.
    pub dead_letters: Vec<(String, String, u64, String)>,
    /// The last conflict id seen.
    pub last_conflict: i64,
    /// The last dead letter id seen.
    pub last_dead_letter: i64,
}

impl Store {
    /// Conflicts with an id above `conflict_after` and dead letters above
    /// `dead_letter_after`.
    pub fn problems_since(&self, conflict_after: i64, dead_letter_after: i64) -> Result<Problems> {
        let mut p = Problems {
            last_conflict: conflict_after,
            last_dead_letter: dead_letter_after,
            ..Problems::default()
        };
        let mut st = self
            .conn
            .prepare(
                "SELECT system, entity, count(*), max(id) FROM conflicts WHERE id > ?1
                 GROUP BY system, entity ORDER BY system, entity",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([conflict_after], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        for (system, entity, n, max) in rows {
            p.conflicts.push((system, entity, n as u64));
            p.last_conflict = p.last_conflict.max(max);
        }
        let mut st = self
            .conn
            .prepare(
                // With one max() aggregate, SQLite takes the bare column
                // `reason` from the row holding the maximum: the last one.
                "SELECT system, entity, count(*), max(id), reason
                 FROM dead_letters WHERE id > ?1
                 GROUP BY system, entity ORDER BY system, entity",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([dead_letter_after], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        for (system, entity, n, max, reason) in rows {
            p.dead_letters
                .push((system, entity, n as u64, reason.unwrap_or_default()));
            p.last_dead_letter = p.last_dead_letter.max(max);
        }
        Ok(p)
    }

    /// The highest conflict and dead letter ids now (alerts start after them).
    pub fn last_problem_ids(&self) -> Result<(i64, i64)> {
        self.conn
            .query_row(
                "SELECT (SELECT coalesce(max(id), 0) FROM conflicts), (SELECT coalesce(max(id), 0) FROM dead_letters)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(self.err())
    }
}

impl Store {
    /// When the earliest pending delivery due after `after` (RFC 3339, as
    /// the store writes times) comes due, if any. Deliveries due at or
    /// before it are left out: a pass at `after` had them due, and the ones
    /// it did not write wait for a reason (a window, held deletes) or come
    /// back with a later time (a backoff). So are the writes waiting for
    /// something another pass brings (a referenced record, a decision on a
    /// held match): their time is the pass that last found them waiting.
    pub fn next_delivery_after(&self, after: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT min(at) FROM (SELECT min(next_attempt_at) AS at FROM outbox
                                       WHERE next_attempt_at > ?1 AND coalesce(last_error, '') NOT LIKE 'waiting%'
                                     UNION ALL SELECT min(created_at) FROM outbox_spans WHERE created_at > ?1)",
                [after],
                |r| r.get(0),
            )
            .map_err(self.err())
    }
}
