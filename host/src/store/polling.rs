//! Polling and webhook health, as `weir run` last saw them.

use super::{Result, Store};
use rusqlite::params;

/// The health of one system's webhooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookHealth {
    /// The system.
    pub system: String,
    /// When its last webhook arrived.
    pub last_webhook_at: Option<String>,
    /// Since when its webhooks are degraded; none while healthy.
    pub degraded_since: Option<String>,
    /// Why they are degraded.
    pub reason: Option<String>,
    /// How many webhook requests were refused (bad secret or signature,
    /// malformed body). Kept by [`Store::webhook_refused`] alone.
    pub refused: u64,
    /// When the last one was refused, and why.
    pub last_refusal: Option<(String, String)>,
}

/// The last poll of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastPoll {
    /// The system.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// When it was polled.
    pub at: String,
    /// Changes it found that weir did not know yet.
    pub fresh: u64,
    /// Whether it failed.
    pub failed: bool,
}

impl Store {
    /// Saves webhook health and the polls of one pass, in one transaction.
    pub fn save_polling(&mut self, health: &[WebhookHealth], polls: &[LastPoll]) -> Result<()> {
        self.transaction(|tx| {
            for h in health {
                tx.conn()
                    .prepare_cached(
                        "INSERT INTO webhook_health (system, last_webhook_at, degraded_since, reason)
                         VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (system) DO UPDATE SET last_webhook_at = excluded.last_webhook_at,
                            degraded_since = excluded.degraded_since, reason = excluded.reason",
                    )
                    .and_then(|mut st| {
                        st.execute(params![h.system, h.last_webhook_at, h.degraded_since, h.reason])
                    })
                    .map_err(tx.err())?;
            }
            for p in polls {
                tx.conn()
                    .prepare_cached(
                        "INSERT INTO polls (system, entity, last_poll_at, fresh, failed)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (system, entity) DO UPDATE SET last_poll_at = excluded.last_poll_at,
                            fresh = excluded.fresh, failed = excluded.failed",
                    )
                    .and_then(|mut st| {
                        st.execute(params![p.system, p.entity, p.at, p.fresh as i64, p.failed])
                    })
                    .map_err(tx.err())?;
            }
            Ok(())
        })
    }

    /// Counts `n` refused webhook requests of `system`, the last at `at`, and why.
    pub fn webhook_refused(&mut self, system: &str, n: u64, at: &str, why: &str) -> Result<()> {
        self.write(|conn| {
            conn.execute(
                "INSERT INTO webhook_health (system, refused, last_refused_at, last_refusal)
                 VALUES (?1, ?4, ?2, ?3)
                 ON CONFLICT (system) DO UPDATE SET refused = refused + excluded.refused,
                    last_refused_at = excluded.last_refused_at, last_refusal = excluded.last_refusal",
                params![system, at, why, n as i64],
            )
        })?;
        Ok(())
    }

    /// Webhook health of every system that has some, by system name.
    pub fn webhook_health(&self) -> Result<Vec<WebhookHealth>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT system, last_webhook_at, degraded_since, reason, refused, last_refused_at, last_refusal
                 FROM webhook_health ORDER BY system",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(WebhookHealth {
                    system: r.get(0)?,
                    last_webhook_at: r.get(1)?,
                    degraded_since: r.get(2)?,
                    reason: r.get(3)?,
                    refused: r.get::<_, i64>(4)? as u64,
                    last_refusal: match (r.get(5)?, r.get(6)?) {
                        (Some(at), Some(why)) => Some((at, why)),
                        _ => None,
                    },
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// The last poll of every source polled by `weir run`.
    pub fn last_polls(&self) -> Result<Vec<LastPoll>> {
        let mut st = self
            .conn
            .prepare("SELECT system, entity, last_poll_at, fresh, failed FROM polls ORDER BY system, entity")
            .map_err(self.err())?;
        let rows = st
            .query_map([], |r| {
                Ok(LastPoll {
                    system: r.get(0)?,
                    entity: r.get(1)?,
                    at: r.get(2)?,
                    fresh: r.get::<_, i64>(3)? as u64,
                    failed: r.get(4)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }
}
