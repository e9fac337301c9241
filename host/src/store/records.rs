//! Golden records, links, the audit log, conflicts and dead letters: the
//! operations of the engine inside one transaction, and the queries of the CLI.

use super::{
    hash_col, link_from_row, AuditOp, Hash, Link, OutboxOp, Outcome, Result, Store, StoreError, Tx,
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
