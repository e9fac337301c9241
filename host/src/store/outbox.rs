//! The outbox: one pending write per target and record (several changes
//! compress into one), the spans of new records a target along an intake
//! takes from memory, and their retries.

use super::{Hash, Result, Store, Tx};
use rusqlite::params;

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
    /// A create of the record was sent with this content hash and its
    /// outcome is not known.
    pub tried: Option<super::Hash>,
    /// An update of the record was sent with this content hash and its
    /// outcome is not recorded.
    pub sent: Option<super::Hash>,
    /// The target's record as it holds it, where a conditional write was
    /// answered `changed` while it held what weir last saw, spelled
    /// otherwise: the next write's condition takes its values.
    pub seen_raw: Option<String>,
    /// Since when its deliveries have been failing with passing errors,
    /// and the last error.
    pub failing: Option<(String, String)>,
}

impl Tx<'_> {
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

    /// Queues the upsert of content `hash`, as `enqueue` does, marked as
    /// possibly sent with that content (`sent_hash`): its write goes out
    /// from now on, and may land without being recorded. The contents
    /// marked before are kept too (the latest eight): a write of one of them
    /// may have landed unrecorded, and its echo is still to be told apart.
    pub fn enqueue_content(
        &mut self,
        target: &str,
        entity: &str,
        global_id: i64,
        hash: &super::Hash,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO outbox (target, entity, global_id, op, next_attempt_at, created_at, sent_hash)
                 VALUES (?1, ?2, ?3, 'upsert', ?4, ?4, ?5)
                 ON CONFLICT (target, global_id) DO UPDATE SET op = 'upsert', attempts = 0,
                    next_attempt_at = excluded.next_attempt_at, last_error = NULL,
                    sent_hash = CASE WHEN substr(sent_hash, 1, 16) = excluded.sent_hash THEN sent_hash
                        ELSE substr(CAST(excluded.sent_hash || coalesce(sent_hash, x'') AS BLOB), 1, 128) END",
            )
            .and_then(|mut st| st.execute(params![target, entity, global_id, &self.now, &hash[..]]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Keeps (or, none, forgets) the record `target` holds of `global_id`
    /// in its own spelling, for the condition of the row's next write.
    pub fn set_seen_raw(&mut self, target: &str, global_id: i64, raw: Option<&str>) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE outbox SET seen_raw = ?3 WHERE target = ?1 AND global_id = ?2")
            .and_then(|mut st| st.execute(params![target, global_id, raw]))
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
    /// of a span that is not deleted and that the target does not hold (no
    /// link), due since the span was made; a record with a row for the
    /// target already keeps it. With `tried`, their creates are marked as
    /// tried (a crash may have come after their write). Returns how many
    /// spans there were.
    pub fn expand_spans(&mut self, tried: bool) -> Result<usize> {
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
                    "INSERT INTO outbox (target, entity, global_id, op, next_attempt_at, created_at, tried_hash)
                     SELECT ?1, entity, global_id, 'upsert', ?5, ?5, CASE WHEN ?6 THEN hash END FROM golden g
                     WHERE global_id BETWEEN ?3 AND ?4 AND entity = ?2 AND deleted = 0
                       AND NOT EXISTS (SELECT 1 FROM links l WHERE l.global_id = g.global_id AND l.system = ?1)
                     ORDER BY global_id
                     ON CONFLICT (target, global_id) DO UPDATE SET tried_hash = coalesce(tried_hash, excluded.tried_hash)",
                )
                .and_then(|mut st| st.execute(params![target, entity, first, last, at, tried]))
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
                "INSERT INTO outbox (target, entity, global_id, op, attempts, next_attempt_at, last_error, created_at, failing_since)
                 VALUES (?1, ?2, ?3, 'upsert', 1, ?4, ?5, ?6, ?6)
                 ON CONFLICT (target, global_id) DO UPDATE SET attempts = attempts + 1,
                    next_attempt_at = excluded.next_attempt_at, last_error = excluded.last_error,
                    failing_since = coalesce(failing_since, excluded.failing_since)
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

    /// Postpones an outbox row after a failed or impossible attempt; a
    /// failed one (`count_attempt`) is failing from now on, if it was not.
    pub fn outbox_retry(
        &mut self,
        id: i64,
        next_attempt_at: &str,
        error: &str,
        count_attempt: bool,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + ?4, next_attempt_at = ?2, last_error = ?3,
                    failing_since = CASE WHEN ?4 = 1 THEN coalesce(failing_since, ?5) ELSE failing_since END
                 WHERE id = ?1",
            )
            .and_then(|mut st| {
                st.execute(params![id, next_attempt_at, error, i64::from(count_attempt), &self.now])
            })
            .map_err(self.err())?;
        Ok(())
    }
}

impl Store {
    /// Outbox rows for a target and entity that are due at `due` (RFC 3339),
    /// or at `gather` unless a rate limit set their time, with an id above
    /// `after`, oldest first; with `tried`, only the creates sent whose
    /// outcome is not known.
    pub fn outbox_due(
        &self,
        target: &str,
        entity: &str,
        (due, gather, after): (&str, &str, i64),
        limit: u32,
        tried: bool,
    ) -> Result<Vec<OutboxRow>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, global_id, op, attempts, tried_hash, sent_hash, seen_raw, failing_since, last_error FROM outbox
                 WHERE target = ?1 AND entity = ?2 AND id > ?4
                   AND next_attempt_at <= max(?3, ?7)
                   AND (next_attempt_at <= ?3 OR coalesce(last_error, '') NOT LIKE 'rate-limited:%')
                   AND (NOT ?6 OR tried_hash IS NOT NULL)
                 ORDER BY id LIMIT ?5",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map(
                params![target, entity, due, after, limit, tried, gather],
                |r| {
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
                        tried: super::hash_col(r, 4)?,
                        sent: super::identity::sent_col(r, 5)?.first().copied(),
                        seen_raw: r.get(6)?,
                        failing: match (
                            r.get::<_, Option<String>>(7)?,
                            r.get::<_, Option<String>>(8)?,
                        ) {
                            (Some(since), error) => Some((since, error.unwrap_or_default())),
                            _ => None,
                        },
                    })
                },
            )
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
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

    /// Number of pending deliveries: outbox rows, and the records of spans
    /// (at most: a span counts every global id between its ends).
    pub fn outbox_pending(&self) -> Result<u64> {
        self.conn
            .query_row(super::PENDING, [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(self.err())
    }
}
