//! Golden records, links, the outbox, the audit log and conflicts: the
//! operations of the engine inside one transaction, and the queries of the CLI.

use super::{
    hash_col, link_from_row, now, AuditOp, Hash, Link, Outcome, Result, Store, StoreError, Tx,
};
use rusqlite::{params, OptionalExtension};
use std::path::Path;

/// A golden record.
#[derive(Debug, Clone)]
pub struct Golden {
    /// Its global id.
    pub global_id: i64,
    /// The entity.
    pub entity: String,
    /// The canonical record, JSON.
    pub data: String,
    /// Its content hash.
    pub hash: Hash,
    /// Whether it was deleted.
    pub deleted: bool,
    /// The system whose change it last took.
    pub origin: Option<String>,
}

impl Golden {
    /// The canonical record. A text that is not a JSON object is an error
    /// naming the record, never an empty record: a corrupt row must not
    /// be delivered as one.
    pub fn record(&self, store: &Path) -> Result<crate::mapping::Record> {
        let what = || format!("golden record {} of {}", self.global_id, self.entity);
        parse_record(store, &self.data, what)
    }
}

/// A canonical record kept as text in the store; `what` names it in the
/// error when the text is not a JSON object.
pub fn parse_record(
    store: &Path,
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<crate::mapping::Record> {
    let reason = match serde_json::from_str(text) {
        Ok(serde_json::Value::Object(record)) => return Ok(record),
        Ok(_) => "its text is not a JSON object".to_string(),
        Err(e) => format!("its text is not JSON ({e})"),
    };
    Err(StoreError::Corrupt {
        path: store.to_path_buf(),
        what: what(),
        reason,
    })
}

/// What an outbox row delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxOp {
    /// The golden record's current content.
    Upsert,
    /// Its deletion.
    Delete,
}

impl OutboxOp {
    fn as_str(self) -> &'static str {
        match self {
            OutboxOp::Upsert => "upsert",
            OutboxOp::Delete => "delete",
        }
    }
}

/// A pending delivery.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// The row id.
    pub id: i64,
    /// The golden record.
    pub global_id: i64,
    /// What to deliver.
    pub op: OutboxOp,
    /// Failed attempts so far.
    pub attempts: u32,
}

/// An audit row to append.
pub struct NewAudit<'a> {
    /// The run; none for a person's decision outside any run.
    pub run_id: Option<i64>,
    /// The system read from or written to.
    pub system: &'a str,
    /// The entity.
    pub entity: &'a str,
    /// The golden record, if known.
    pub global_id: Option<i64>,
    /// The record's id in the system, if known.
    pub local_id: Option<&'a str>,
    /// Who made the change, where the system says.
    pub actor: Option<&'a str>,
    /// What was done.
    pub operation: AuditOp,
    /// The record before (canonical JSON), if known.
    pub before: Option<&'a str>,
    /// The record after (canonical JSON for reads, the system's JSON for writes).
    pub after: Option<&'a str>,
    /// How it ended.
    pub outcome: Outcome,
}

/// An audit row.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: String,
    /// The run.
    pub run_id: Option<i64>,
    /// The system.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// The golden record.
    pub global_id: Option<i64>,
    /// The record's id in the system.
    pub local_id: Option<String>,
    /// Who, where known.
    pub actor: Option<String>,
    /// The operation.
    pub operation: String,
    /// Before.
    pub before: Option<String>,
    /// After.
    pub after: Option<String>,
    /// The outcome.
    pub outcome: String,
}

/// An audit row, from `SELECT id, at, run_id, system, entity, global_id,
/// local_id, actor, operation, before, after, outcome`.
pub(super) fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        run_id: r.get(2)?,
        system: r.get(3)?,
        entity: r.get(4)?,
        global_id: r.get(5)?,
        local_id: r.get(6)?,
        actor: r.get(7)?,
        operation: r.get(8)?,
        before: r.get(9)?,
        after: r.get(10)?,
        outcome: r.get(11)?,
    })
}

/// A conflict to record.
pub struct NewConflict<'a> {
    /// The run.
    pub run_id: i64,
    /// The entity.
    pub entity: &'a str,
    /// The golden record.
    pub global_id: i64,
    /// The system whose change arrived.
    pub system: &'a str,
    /// The system the golden value came from.
    pub other_system: Option<&'a str>,
    /// The golden record before.
    pub ours: &'a str,
    /// The arriving change.
    pub theirs: &'a str,
    /// The golden record after.
    pub result: &'a str,
    /// Who won (`merge` for field ownership).
    pub winner: &'a str,
    /// The policy applied.
    pub policy: &'a str,
}

/// A recorded conflict.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// Row id.
    pub id: i64,
    /// A person's decision (`result`, `ours` or `theirs`); none while open.
    pub decision: Option<String>,
    /// When.
    pub at: String,
    /// The entity.
    pub entity: String,
    /// The golden record.
    pub global_id: i64,
    /// The system whose change arrived.
    pub system: String,
    /// The system the golden value came from.
    pub other_system: Option<String>,
    /// The golden record before.
    pub ours: Option<String>,
    /// The arriving change.
    pub theirs: Option<String>,
    /// The golden record after.
    pub result: String,
    /// Who won.
    pub winner: String,
    /// The policy.
    pub policy: String,
}

/// A golden record, on any connection.
fn golden(conn: &rusqlite::Connection, global_id: i64) -> rusqlite::Result<Option<Golden>> {
    conn.prepare_cached(
        "SELECT global_id, entity, data, hash, deleted, origin FROM golden WHERE global_id = ?1",
    )
    .and_then(|mut st| {
        st.query_row([global_id], |r| {
            Ok(Golden {
                global_id: r.get(0)?,
                entity: r.get(1)?,
                data: r.get(2)?,
                hash: hash_col(r, 3)?.unwrap_or_default(),
                deleted: r.get(4)?,
                origin: r.get(5)?,
            })
        })
        .optional()
    })
}

impl Tx<'_> {
    /// The link of a system's record, by its local id.
    pub fn link_by_local(
        &self,
        entity: &str,
        system: &str,
        local_id: &str,
    ) -> Result<Option<Link>> {
        self.conn()
            .prepare_cached(
                "SELECT global_id, local_id, hash_seen, hash_written FROM links
                 WHERE entity = ?1 AND system = ?2 AND local_id = ?3",
            )
            .and_then(|mut st| {
                st.query_row(params![entity, system, local_id], link_from_row)
                    .optional()
            })
            .map_err(self.err())
    }

    /// The link of a golden record in a system.
    pub fn link_by_global(&self, system: &str, global_id: i64) -> Result<Option<Link>> {
        self.conn()
            .prepare_cached(
                "SELECT global_id, local_id, hash_seen, hash_written FROM links
                 WHERE global_id = ?1 AND system = ?2",
            )
            .and_then(|mut st| {
                st.query_row(params![global_id, system], link_from_row)
                    .optional()
            })
            .map_err(self.err())
    }

    /// A golden record.
    pub fn golden(&self, global_id: i64) -> Result<Option<Golden>> {
        golden(self.conn(), global_id).map_err(self.err())
    }

    /// Marks a golden record deleted.
    pub fn delete_golden(&mut self, global_id: i64, origin: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE golden SET deleted = 1, updated_at = ?2, origin = ?3 WHERE global_id = ?1",
            )
            .and_then(|mut st| st.execute(params![global_id, &self.now, origin]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes the link of a system's record (it was deleted there).
    pub fn unlink(&mut self, system: &str, global_id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM links WHERE global_id = ?1 AND system = ?2")
            .and_then(|mut st| st.execute(params![global_id, system]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Queues a delivery. A pending row for the same target and record is
    /// replaced, so several changes become one write (change compression).
    pub fn enqueue(
        &mut self,
        target: &str,
        entity: &str,
        global_id: i64,
        op: OutboxOp,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox (target, entity, global_id, op, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (target, global_id) DO UPDATE SET op = excluded.op, attempts = 0,
                    next_attempt_at = excluded.next_attempt_at, last_error = NULL",
            )
            .and_then(|mut st| st.execute(params![target, entity, global_id, op.as_str(), &self.now]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a delivered (or given up) outbox row.
    pub fn outbox_done(&mut self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM outbox WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes an outbox row once its delivery is recorded, unless the golden
    /// record changed since it was planned (content `hash`, `deleted`): a
    /// change accepted while the write was on its way is still to deliver.
    pub fn outbox_delivered(
        &mut self,
        id: i64,
        global_id: i64,
        hash: &Hash,
        deleted: bool,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM outbox WHERE id = ?1 AND EXISTS
                    (SELECT 1 FROM golden WHERE global_id = ?2 AND hash = ?3 AND deleted = ?4)",
            )
            .and_then(|mut st| st.execute(params![id, global_id, &hash[..], deleted]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Keeps the deliveries of a page's new records of `entity` to `target`
    /// as one span, `first..=last` of their global ids; returns its id.
    pub fn add_span(&mut self, target: &str, entity: &str, first: i64, last: i64) -> Result<i64> {
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox_spans (target, entity, first_gid, last_gid, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut st| st.execute(params![target, entity, first, last, &self.now]))
            .map_err(self.err())?;
        Ok(self.conn().last_insert_rowid())
    }

    /// Removes a span once the last of its records is recorded (delivered,
    /// refused, or back in the outbox).
    pub fn span_done(&mut self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM outbox_spans WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Turns every span back into outbox rows: one upsert for each record
    /// of a span that is not deleted, due since the span was made, unless
    /// the record already has a row for the target. Returns how many spans
    /// there were.
    pub fn expand_spans(&mut self) -> Result<usize> {
        type Span = (i64, String, String, i64, i64, String);
        let spans: Vec<Span> = self
            .conn()
            .prepare_cached(
                "SELECT id, target, entity, first_gid, last_gid, created_at FROM outbox_spans ORDER BY id",
            )
            .and_then(|mut st| {
                st.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })?
                .collect()
            })
            .map_err(self.err())?;
        for (id, target, entity, first, last, at) in &spans {
            self.conn()
                .prepare_cached(
                    "INSERT INTO outbox (target, entity, global_id, op, next_attempt_at, created_at)
                     SELECT ?1, entity, global_id, 'upsert', ?5, ?5 FROM golden
                     WHERE global_id BETWEEN ?3 AND ?4 AND entity = ?2 AND deleted = 0
                     ORDER BY global_id
                     ON CONFLICT (target, global_id) DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![target, entity, first, last, at]))
                .map_err(self.err())?;
            self.span_done(*id)?;
        }
        Ok(spans.len())
    }

    /// Queues a delivery that failed on its way from a span: an outbox row
    /// with one attempt counted, tried again at `next_attempt_at`. Returns
    /// the row's id.
    pub fn enqueue_failed(
        &mut self,
        target: &str,
        entity: &str,
        global_id: i64,
        next_attempt_at: &str,
        error: &str,
    ) -> Result<i64> {
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox (target, entity, global_id, op, attempts, next_attempt_at, last_error, created_at)
                 VALUES (?1, ?2, ?3, 'upsert', 1, ?4, ?5, ?6)
                 ON CONFLICT (target, global_id) DO UPDATE SET attempts = attempts + 1,
                    next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error
                 RETURNING id",
            )
            .and_then(|mut st| {
                st.query_row(
                    params![target, entity, global_id, next_attempt_at, error, &self.now],
                    |r| r.get(0),
                )
            })
            .map_err(self.err())
    }

    /// Postpones an outbox row after a failed or impossible attempt.
    pub fn outbox_retry(
        &mut self,
        id: i64,
        next_attempt_at: &str,
        error: &str,
        count_attempt: bool,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + ?4, next_attempt_at = ?2, last_error = ?3 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![id, next_attempt_at, error, i64::from(count_attempt)]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Appends an audit row.
    pub fn audit(&mut self, a: NewAudit<'_>) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO audit (at, run_id, system, entity, global_id, local_id, actor, operation, before, after, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    &self.now,
                    a.run_id,
                    a.system,
                    a.entity,
                    a.global_id,
                    a.local_id,
                    a.actor,
                    a.operation,
                    a.before,
                    a.after,
                    a.outcome
                ])
            })
            .map_err(self.err())?;
        Ok(())
    }

    /// Parks a change whose references cannot be resolved yet.
    pub fn park(
        &mut self,
        system: &str,
        entity: &str,
        local_id: &str,
        change: &str,
        reason: &str,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO parked (system, entity, local_id, change, reason, parked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (system, entity, local_id) DO UPDATE SET change = excluded.change, reason = excluded.reason",
            )
            .and_then(|mut st| st.execute(params![system, entity, local_id, change, reason, &self.now]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a parked change.
    pub fn unpark(&mut self, system: &str, entity: &str, local_id: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "DELETE FROM parked WHERE system = ?1 AND entity = ?2 AND local_id = ?3",
            )
            .and_then(|mut st| st.execute(params![system, entity, local_id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Changes accepted from `actor` for `entity` since `since` (RFC 3339).
    pub fn changes_by(&self, entity: &str, actor: &str, since: &str) -> Result<u64> {
        self.conn()
            .prepare_cached(
                "SELECT count(*) FROM audit WHERE entity = ?1 AND actor = ?2 AND at >= ?3
                 AND operation LIKE 'read:%' AND outcome IN ('ok', 'conflict')",
            )
            .and_then(|mut st| st.query_row(params![entity, actor, since], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Holds a change for review (a later change of the same record replaces it
    /// and needs a new decision, unless it is the same change).
    pub fn hold(
        &mut self,
        system: &str,
        entity: &str,
        local_id: &str,
        actor: Option<&str>,
        change: &str,
        reason: &str,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO held (system, entity, local_id, actor, change, reason, held_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (system, entity, local_id) DO UPDATE SET
                    status = CASE WHEN held.change = excluded.change THEN held.status ELSE 'held' END,
                    actor = excluded.actor, change = excluded.change, reason = excluded.reason, held_at = excluded.held_at",
            )
            .and_then(|mut st| st.execute(params![system, entity, local_id, actor, change, reason, &self.now]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a held change.
    pub fn unhold(&mut self, id: i64) -> Result<()> {
        self.conn()
            .execute("DELETE FROM held WHERE id = ?1", [id])
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes an inbox entry (accepted in this transaction).
    pub fn inbox_done(&mut self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM inbox WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Records a conflict.
    pub fn conflict(&mut self, c: NewConflict<'_>) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO conflicts (at, run_id, entity, global_id, system, other_system, ours, theirs, result, winner, policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    &self.now,
                    c.run_id,
                    c.entity,
                    c.global_id,
                    c.system,
                    c.other_system,
                    c.ours,
                    c.theirs,
                    c.result,
                    c.winner,
                    c.policy
                ])
            })
            .map_err(self.err())?;
        Ok(())
    }
}

/// A change held for review.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its id.
    pub id: i64,
    /// The source system.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// The record's id in the source.
    pub local_id: String,
    /// Who made it.
    pub actor: Option<String>,
    /// The change, JSON.
    pub change: String,
    /// Why it is held.
    pub reason: String,
    /// `held`, `approved` or `rejected`.
    pub status: String,
    /// When.
    pub held_at: String,
}

/// What retrying a dead letter did.
#[derive(Debug)]
pub enum Retry {
    /// Queued for delivery to `system` again.
    Queued {
        /// The target.
        system: String,
        /// The entity.
        entity: String,
    },
    /// The dead letter is a bad source record: nothing to deliver.
    FromSource {
        /// The source system.
        system: String,
    },
    /// No such dead letter.
    Missing,
}

impl Store {
    /// A golden record.
    pub fn golden(&self, global_id: i64) -> Result<Option<Golden>> {
        golden(&self.conn, global_id).map_err(self.err())
    }

    /// Copies the whole store into a new file at `to` (for dry runs).
    pub fn copy_to(&self, to: &std::path::Path) -> Result<()> {
        self.conn
            .execute("VACUUM INTO ?1", [to.to_string_lossy()])
            .map_err(self.err())?;
        Ok(())
    }

    /// Queues a dead letter's record for delivery again and removes the dead letter.
    pub fn retry_dead_letter(&mut self, id: i64) -> Result<Retry> {
        self.transaction(|tx| {
            let row: Option<(String, String, Option<i64>)> = tx
                .conn()
                .query_row(
                    "SELECT system, entity, global_id FROM dead_letters WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(tx.err())?;
            let Some((system, entity, global_id)) = row else {
                return Ok(Retry::Missing);
            };
            let Some(gid) = global_id else {
                return Ok(Retry::FromSource { system });
            };
            tx.enqueue(&system, &entity, gid, OutboxOp::Upsert)?;
            tx.conn()
                .execute("DELETE FROM dead_letters WHERE id = ?1", [id])
                .map_err(tx.err())?;
            Ok(Retry::Queued { system, entity })
        })
    }

    /// Calls `f` with the local id of every link of a system's entity, one
    /// row at a time (nothing is collected).
    pub fn each_local_id(&self, entity: &str, system: &str, mut f: impl FnMut(&str)) -> Result<()> {
        let mut st = self
            .conn
            .prepare_cached("SELECT local_id FROM links WHERE entity = ?1 AND system = ?2")
            .map_err(self.err())?;
        let mut rows = st.query(params![entity, system]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            if let rusqlite::types::ValueRef::Text(t) = row.get_ref(0).map_err(self.err())? {
                f(&String::from_utf8_lossy(t));
            }
        }
        Ok(())
    }

    /// Outbox rows for a target and entity that are due at `due` (RFC 3339),
    /// with an id above `after`, oldest first.
    pub fn outbox_due(
        &self,
        target: &str,
        entity: &str,
        due: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<OutboxRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, global_id, op, attempts FROM outbox
                 WHERE target = ?1 AND entity = ?2 AND next_attempt_at <= ?3 AND id > ?4 ORDER BY id LIMIT ?5",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![target, entity, due, after, limit], |r| {
                let op: String = r.get(2)?;
                Ok(OutboxRow {
                    id: r.get(0)?,
                    global_id: r.get(1)?,
                    op: if op == "delete" {
                        OutboxOp::Delete
                    } else {
                        OutboxOp::Upsert
                    },
                    attempts: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Parked changes of a system and entity: (local id, change JSON).
    pub fn parked(&self, system: &str, entity: &str) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT local_id, change FROM parked WHERE system = ?1 AND entity = ?2 ORDER BY parked_at")
            .map_err(self.err())?;
        let rows = st
            .query_map(params![system, entity], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Number of parked changes.
    pub fn parked_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM parked", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Pending deletes for a target and entity.
    pub fn outbox_deletes(&self, target: &str, entity: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM outbox o JOIN golden g ON g.global_id = o.global_id
                 WHERE o.target = ?1 AND o.entity = ?2 AND (o.op = 'delete' OR g.deleted = 1)",
                params![target, entity],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Held changes, oldest first; only those of one system and entity when given.
    pub fn held(&self, scope: Option<(&str, &str)>) -> Result<Vec<Held>> {
        let (system, entity) = scope.unzip();
        let mut st = self
            .conn
            .prepare(
                "SELECT id, system, entity, local_id, actor, change, reason, status, held_at FROM held
                 WHERE (?1 IS NULL OR system = ?1) AND (?2 IS NULL OR entity = ?2) ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(params![system, entity], |r| {
                Ok(Held {
                    id: r.get(0)?,
                    system: r.get(1)?,
                    entity: r.get(2)?,
                    local_id: r.get(3)?,
                    actor: r.get(4)?,
                    change: r.get(5)?,
                    reason: r.get(6)?,
                    status: r.get(7)?,
                    held_at: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Approves or rejects a held change; false when there is no such change.
    pub fn decide_held(&self, id: i64, approve: bool) -> Result<bool> {
        let status = if approve { "approved" } else { "rejected" };
        self.conn
            .execute(
                "UPDATE held SET status = ?2 WHERE id = ?1",
                params![id, status],
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Adds pushed changes of one system to the inbox, in one transaction:
    /// (entity, local id, change JSON). With a delivery id, a delivery already
    /// accepted (within 7 days) is not stored again: the result is false.
    pub fn inbox_add(
        &mut self,
        system: &str,
        delivery: Option<&str>,
        changes: &[(String, String, String)],
    ) -> Result<bool> {
        self.transaction(|tx| {
            if let Some(id) = delivery {
                let week_ago = format!("{:.3}", jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 7));
                tx.conn().execute("DELETE FROM deliveries WHERE received_at < ?1", [week_ago]).map_err(tx.err())?;
                let fresh = tx
                    .conn()
                    .execute("INSERT OR IGNORE INTO deliveries (system, delivery_id, received_at) VALUES (?1, ?2, ?3)", params![system, id, now()])
                    .map_err(tx.err())?;
                if fresh == 0 {
                    return Ok(false);
                }
            }
            for (entity, id, change) in changes {
                tx.conn()
                    .prepare_cached("INSERT INTO inbox (system, entity, local_id, change, received_at) VALUES (?1, ?2, ?3, ?4, ?5)")
                    .and_then(|mut st| st.execute(params![system, entity, id, change, now()]))
                    .map_err(tx.err())?;
            }
            Ok(true)
        })
    }

    /// The inbox of one system and entity, oldest first: (id, local id, change JSON).
    pub fn inbox(&self, system: &str, entity: &str) -> Result<Vec<(i64, String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, local_id, change FROM inbox WHERE system = ?1 AND entity = ?2 ORDER BY id")
            .map_err(self.err())?;
        let rows = st
            .query_map(params![system, entity], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Number of pending deliveries: outbox rows, and the records of spans
    /// (at most: a span counts every global id between its ends).
    pub fn outbox_pending(&self) -> Result<u64> {
        self.conn
            .query_row(super::PENDING, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }

    /// Audit rows, oldest first, optionally filtered.
    pub fn audit(
        &self,
        entity: Option<&str>,
        system: Option<&str>,
        global_id: Option<i64>,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, at, run_id, system, entity, global_id, local_id, actor, operation, before, after, outcome FROM (
                    SELECT * FROM audit
                    WHERE (?1 IS NULL OR entity = ?1) AND (?2 IS NULL OR system = ?2) AND (?3 IS NULL OR global_id = ?3)
                      AND (?4 IS NULL OR at >= ?4)
                    ORDER BY id DESC LIMIT ?5
                 ) ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(
                params![entity, system, global_id, since, limit],
                audit_from_row,
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Recorded conflicts, oldest first.
    pub fn conflicts(&self, limit: u32) -> Result<Vec<Conflict>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, at, entity, global_id, system, other_system, ours, theirs, result, winner, policy, decision FROM (
                    SELECT * FROM conflicts ORDER BY id DESC LIMIT ?1
                 ) ORDER BY id",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([limit], |r| {
                Ok(Conflict {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    entity: r.get(2)?,
                    global_id: r.get(3)?,
                    system: r.get(4)?,
                    other_system: r.get(5)?,
                    ours: r.get(6)?,
                    theirs: r.get(7)?,
                    result: r.get(8)?,
                    winner: r.get(9)?,
                    policy: r.get(10)?,
                    decision: r.get(11)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }
}
