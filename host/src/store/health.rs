//! A source's failures and the full reads (RESYNC) they call for: a source
//! that failed for longer than its system's `resync_after_failure`, or a
//! store restored from a backup, is read in full at its next poll, so that
//! what changed while weir could not see it (deletes included) is found.

use super::{now, Result, Store};
use rusqlite::{params, OptionalExtension};

/// What weir knows of one source's health.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// The system.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// Since when its polls fail; none while they succeed.
    pub failing_since: Option<String>,
    /// Set: its next poll reads it in full, for this reason.
    pub resync_reason: Option<String>,
    /// Its last full read after a fault or a restore: when, and why.
    pub last_resync: Option<(String, String)>,
}

impl Store {
    /// The health of `system`'s `entity`, if anything is known of it.
    pub fn source_health(&self, system: &str, entity: &str) -> Result<Option<SourceHealth>> {
        self.conn
            .query_row(
                "SELECT system, entity, failing_since, resync_reason, last_resync_at, last_resync_reason
                 FROM source_health WHERE system = ?1 AND entity = ?2",
                params![system, entity],
                health_row,
            )
            .optional()
            .map_err(self.err())
    }

    /// The health of every source weir knows something of.
    pub fn sources_health(&self) -> Result<Vec<SourceHealth>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT system, entity, failing_since, resync_reason, last_resync_at, last_resync_reason
                 FROM source_health ORDER BY system, entity",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], health_row)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Records a poll of `system`'s `entity`: failed, it is failing from
    /// now on (if it was not); succeeded, it is not, and a full read made
    /// for `resynced` (a reason) is recorded as the last one.
    pub fn source_polled(
        &mut self,
        system: &str,
        entity: &str,
        failed: bool,
        resynced: Option<&str>,
    ) -> Result<()> {
        let at = now();
        self.write(|conn| {
            if failed {
                conn.execute(
                    "INSERT INTO source_health (system, entity, failing_since) VALUES (?1, ?2, ?3)
                     ON CONFLICT (system, entity) DO UPDATE
                        SET failing_since = coalesce(failing_since, excluded.failing_since)",
                    params![system, entity, at],
                )?;
            } else if let Some(reason) = resynced {
                conn.execute(
                    "INSERT INTO source_health (system, entity, last_resync_at, last_resync_reason)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (system, entity) DO UPDATE SET failing_since = NULL,
                        resync_reason = NULL, last_resync_at = excluded.last_resync_at,
                        last_resync_reason = excluded.last_resync_reason",
                    params![system, entity, at, reason],
                )?;
            } else {
                conn.execute(
                    "UPDATE source_health SET failing_since = NULL WHERE system = ?1 AND entity = ?2",
                    params![system, entity],
                )?;
            }
            Ok(())
        })
    }

    /// Asks for a full read of every source weir has read (each has a
    /// cursor), for `reason`.
    pub fn resync_all(&mut self, reason: &str) -> Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO source_health (system, entity, resync_reason)
                 SELECT DISTINCT system, entity, ?1 FROM cursors WHERE true
                 ON CONFLICT (system, entity) DO UPDATE SET resync_reason = excluded.resync_reason",
                [reason],
            )
        })?;
        Ok(())
    }
}

fn health_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SourceHealth> {
    Ok(SourceHealth {
        system: r.get(0)?,
        entity: r.get(1)?,
        failing_since: r.get(2)?,
        resync_reason: r.get(3)?,
        last_resync: match (r.get(4)?, r.get(5)?) {
            (Some(at), Some(why)) => Some((at, why)),
            _ => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_dated_and_a_full_read_made_for_them_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.source_health("crm", "contacts").unwrap(), None);
        store.source_polled("crm", "contacts", true, None).unwrap();
        let first = store.source_health("crm", "contacts").unwrap().unwrap();
        let since = first.failing_since.clone().unwrap();
        store.source_polled("crm", "contacts", true, None).unwrap();
        let again = store.source_health("crm", "contacts").unwrap().unwrap();
        assert_eq!(
            again.failing_since,
            Some(since),
            "the first failure dates it"
        );
        store
            .source_polled("crm", "contacts", false, Some("recovered"))
            .unwrap();
        let done = store.source_health("crm", "contacts").unwrap().unwrap();
        assert_eq!((done.failing_since, done.resync_reason), (None, None));
        assert_eq!(done.last_resync.unwrap().1, "recovered");
        store
            .transaction(|tx| {
                tx.set_cursor("shop", "orders", crate::store::CursorKind::Changes, "c")
            })
            .unwrap();
        store.resync_all("restored").unwrap();
        let asked = store.source_health("shop", "orders").unwrap().unwrap();
        assert_eq!(asked.resync_reason.as_deref(), Some("restored"));
    }
}
