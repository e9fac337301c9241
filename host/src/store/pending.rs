//! Changes kept before they are accepted: parked until a record they
//! refer to is read, held for review over a per-user limit, or pushed to
//! the service's inbox.

use super::{now, HeldStatus, Result, Store, Tx};
use rusqlite::params;

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
    /// Where it stands.
    pub status: HeldStatus,
    /// When.
    pub held_at: String,
}

impl Tx<'_> {
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
}

impl Store {
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
        let status = if approve {
            HeldStatus::Approved
        } else {
            HeldStatus::Rejected
        };
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
}
