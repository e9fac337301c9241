//! The dead letters: records a source offered that weir could not take
//! (read side) and writes a target refused (write side), each kept once.
//!
//! A record met again as it was adds no row: its letter counts it
//! (`times`, `last_seen_at`). Met changed, the letter is replaced; taken or
//! written at last, the letter is cleared. So a bad record read at every
//! poll is one letter, not one per poll.

use super::{Result, Store, Tx};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Which way the record was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Offered by a source, refused before it reached the store.
    Read,
    /// Written to a target, refused by it.
    Write,
}

impl Side {
    fn text(self) -> &'static str {
        match self {
            Side::Read => "read",
            Side::Write => "write",
        }
    }
}

/// A dead letter to keep.
pub struct NewDeadLetter<'a> {
    /// The run.
    pub run_id: i64,
    /// The system that offered or refused the record.
    pub system: &'a str,
    /// The entity.
    pub entity: &'a str,
    /// Which way the record was going.
    pub side: Side,
    /// The golden record, if known.
    pub global_id: Option<i64>,
    /// The record's id in the system, if it has one.
    pub local_id: Option<&'a str>,
    /// The record as it was read or was to be written.
    pub data: Option<&'a str>,
    /// Why it was refused.
    pub reason: &'a str,
}

/// What keeping a dead letter did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lettered {
    /// A new letter (or one whose record changed since).
    New,
    /// The record was in the dead letters already, as it is: counted.
    Again,
}

/// A dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its id in the store.
    pub id: i64,
    /// The system that offered or refused it.
    pub system: String,
    /// The entity.
    pub entity: String,
    /// Which way the record was going.
    pub side: Side,
    /// The record's id in that system, if it had one.
    pub local_id: Option<String>,
    /// Why.
    pub reason: String,
    /// When it was first kept (as it is now).
    pub created_at: String,
    /// How many times the record was met, as it is.
    pub times: u64,
    /// When it was met last.
    pub last_seen_at: String,
}

impl std::fmt::Display for DeadLetter {
    /// `#3 2026-… crm/contacts record 7: reason (read; met 4 times, last 2026-…)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let record = self
            .local_id
            .as_ref()
            .map(|id| format!(" record {id}"))
            .unwrap_or_default();
        let side = match self.side {
            Side::Read => "read",
            Side::Write => "write",
        };
        write!(
            f,
            "#{} {} {}/{}{record}: {} ({side}",
            self.id, self.created_at, self.system, self.entity, self.reason
        )?;
        if self.times > 1 {
            write!(f, "; met {} times, last {}", self.times, self.last_seen_at)?;
        }
        f.write_str(")")
    }
}

fn content_hash(data: Option<&str>) -> [u8; 16] {
    let full: [u8; 32] = Sha256::digest(data.unwrap_or_default().as_bytes()).into();
    full[..16].try_into().expect("16 of 32 bytes")
}

impl Tx<'_> {
    /// Keeps a dead letter: a new row, or the record's letter counted
    /// (unchanged) or replaced (changed).
    pub fn dead_letter(&mut self, letter: NewDeadLetter<'_>) -> Result<Lettered> {
        let hash = content_hash(letter.data);
        let existing: Option<(i64, Option<Vec<u8>>)> = match (letter.side, letter.local_id) {
            (Side::Read, Some(local)) => self.one(
                "SELECT id, content_hash FROM dead_letters
                 WHERE side = 'read' AND system = ?1 AND entity = ?2 AND local_id = ?3",
                params![letter.system, letter.entity, local],
            )?,
            (Side::Read, None) => self.one(
                "SELECT id, content_hash FROM dead_letters
                 WHERE side = 'read' AND system = ?1 AND entity = ?2 AND local_id IS NULL
                   AND content_hash = ?3",
                params![letter.system, letter.entity, &hash[..]],
            )?,
            (Side::Write, Some(_)) | (Side::Write, None) => match letter.global_id {
                Some(gid) => self.one(
                    "SELECT id, content_hash FROM dead_letters
                     WHERE side = 'write' AND system = ?1 AND global_id = ?2",
                    params![letter.system, gid],
                )?,
                None => None,
            },
        };
        let now = self.now.clone();
        match existing {
            Some((id, Some(h))) if h == hash => {
                self.tx
                    .prepare_cached(
                        "UPDATE dead_letters SET times = times + 1, last_seen_at = ?2, reason = ?3
                         WHERE id = ?1",
                    )
                    .and_then(|mut st| st.execute(params![id, now, letter.reason]))
                    .map_err(self.err())?;
                Ok(Lettered::Again)
            }
            Some((id, _)) => {
                self.tx
                    .prepare_cached(
                        "UPDATE dead_letters SET run_id = ?2, local_id = ?3, data = ?4, reason = ?5,
                             content_hash = ?6, times = 1, created_at = ?7, last_seen_at = ?7
                         WHERE id = ?1",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            id,
                            letter.run_id,
                            letter.local_id,
                            letter.data,
                            letter.reason,
                            &hash[..],
                            now
                        ])
                    })
                    .map_err(self.err())?;
                Ok(Lettered::New)
            }
            None => {
                self.tx
                    .prepare_cached(
                        "INSERT INTO dead_letters (run_id, system, entity, side, global_id, local_id,
                             data, reason, content_hash, times, created_at, last_seen_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, ?10, ?10)",
                    )
                    .and_then(|mut st| {
                        st.execute(params![
                            letter.run_id,
                            letter.system,
                            letter.entity,
                            letter.side.text(),
                            letter.global_id,
                            letter.local_id,
                            letter.data,
                            letter.reason,
                            &hash[..],
                            now
                        ])
                    })
                    .map_err(self.err())?;
                Ok(Lettered::New)
            }
        }
    }

    fn one(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<(i64, Option<Vec<u8>>)>> {
        self.tx
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.query_row(params, |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(self.err())
    }

    /// Clears the read-side letter of a record a source offered again and
    /// weir took this time.
    pub fn clear_read_letter(&mut self, system: &str, entity: &str, local_id: &str) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM dead_letters
                 WHERE side = 'read' AND system = ?1 AND entity = ?2 AND local_id = ?3",
            )
            .and_then(|mut st| st.execute(params![system, entity, local_id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Clears the write-side letter of a record a target took at last.
    pub fn clear_write_letter(&mut self, system: &str, global_id: i64) -> Result<()> {
        self.tx
            .prepare_cached(
                "DELETE FROM dead_letters WHERE side = 'write' AND system = ?1 AND global_id = ?2",
            )
            .and_then(|mut st| st.execute(params![system, global_id]))
            .map_err(self.err())?;
        Ok(())
    }
}

impl Store {
    /// The ids of a source's records of `entity` in the read-side letters.
    pub fn read_letters(&self, system: &str, entity: &str) -> Result<HashSet<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT local_id FROM dead_letters
                 WHERE side = 'read' AND system = ?1 AND entity = ?2 AND local_id IS NOT NULL",
            )
            .map_err(self.err())?;
        let ids = st
            .query_map(params![system, entity], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err())?;
        Ok(ids)
    }

    /// The golden records a target refused and holds a write-side letter of.
    pub fn write_letters(&self, system: &str) -> Result<HashSet<i64>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT global_id FROM dead_letters
                 WHERE side = 'write' AND system = ?1 AND global_id IS NOT NULL",
            )
            .map_err(self.err())?;
        let ids = st
            .query_map(params![system], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err())?;
        Ok(ids)
    }

    /// The dead letters, the latest met first.
    pub fn dead_letters(&self, limit: u32) -> Result<Vec<DeadLetter>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, system, entity, side, local_id, reason, created_at, times,
                        coalesce(last_seen_at, created_at)
                 FROM dead_letters ORDER BY coalesce(last_seen_at, created_at) DESC, id DESC
                 LIMIT ?1",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([limit], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    system: r.get(1)?,
                    entity: r.get(2)?,
                    side: match r.get::<_, String>(3)?.as_str() {
                        "read" => Side::Read,
                        _ => Side::Write,
                    },
                    local_id: r.get(4)?,
                    reason: r.get(5)?,
                    created_at: r.get(6)?,
                    times: r.get::<_, i64>(7)? as u64,
                    last_seen_at: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter<'a>(local: Option<&'a str>, data: &'a str, reason: &'a str) -> NewDeadLetter<'a> {
        NewDeadLetter {
            run_id: 1,
            system: "crm",
            entity: "contacts",
            side: Side::Read,
            global_id: None,
            local_id: local,
            data: Some(data),
            reason,
        }
    }

    #[test]
    fn a_record_met_again_is_one_letter_changed_replaced_fixed_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .transaction(|tx| {
                tx.conn()
                    .execute(
                        "INSERT INTO runs (id, started_at, status) VALUES (1, 'x', 'running')",
                        [],
                    )
                    .map_err(tx.err())?;
                assert_eq!(
                    tx.dead_letter(letter(Some("7"), "a", "bad"))?,
                    Lettered::New
                );
                assert_eq!(
                    tx.dead_letter(letter(Some("7"), "a", "bad"))?,
                    Lettered::Again
                );
                assert_eq!(tx.dead_letter(letter(None, "row", "no id"))?, Lettered::New);
                assert_eq!(
                    tx.dead_letter(letter(None, "row", "no id"))?,
                    Lettered::Again
                );
                assert_eq!(
                    tx.dead_letter(letter(None, "other", "no id"))?,
                    Lettered::New
                );
                Ok(())
            })
            .unwrap();
        let letters = store.dead_letters(10).unwrap();
        assert_eq!(letters.len(), 3, "{letters:?}");
        let seven = letters
            .iter()
            .find(|l| l.local_id.as_deref() == Some("7"))
            .unwrap();
        assert_eq!((seven.times, seven.side), (2, Side::Read));
        store
            .transaction(|tx| {
                assert_eq!(
                    tx.dead_letter(letter(Some("7"), "b", "worse"))?,
                    Lettered::New
                );
                Ok(())
            })
            .unwrap();
        let letters = store.dead_letters(10).unwrap();
        let seven = letters
            .iter()
            .find(|l| l.local_id.as_deref() == Some("7"))
            .unwrap();
        assert_eq!((seven.times, seven.reason.as_str()), (1, "worse"));
        assert_eq!(
            store.read_letters("crm", "contacts").unwrap(),
            HashSet::from(["7".to_string()])
        );
        store
            .transaction(|tx| tx.clear_read_letter("crm", "contacts", "7"))
            .unwrap();
        assert_eq!(store.dead_letters(10).unwrap().len(), 2);
        assert!(store.read_letters("crm", "contacts").unwrap().is_empty());
    }
}
