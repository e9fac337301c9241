//! Identity: golden records by match key, creates whose outcome is not
//! known, and ambiguous matches held for a person.

use super::{Hash, Result, Store, Tx};
use rusqlite::{params, OptionalExtension};

/// An ambiguous match waiting for a person, as `weir matches` lists it.
#[derive(Debug, Clone)]
pub struct Ambiguous {
    pub id: i64,
    pub entity: String,
    pub system: String,
    /// A record read from `system` that matches several golden records.
    pub local_id: Option<String>,
    /// A golden record that matches several records of `system`.
    pub global_id: Option<i64>,
    /// The normalised match key.
    pub match_key: String,
    /// The candidates: global ids (for a record read) or local ids of
    /// `system` (for a golden record), as text.
    pub candidates: Vec<String>,
    /// The change as read (for a record read), as the inbox keeps one.
    pub change: Option<String>,
    /// A person's decision: `new`, or `link:ID` (a candidate).
    pub decision: Option<String>,
    pub created_at: String,
}

/// An ambiguous match to hold.
pub struct NewMatch<'a> {
    pub entity: &'a str,
    pub system: &'a str,
    pub local_id: Option<&'a str>,
    pub global_id: Option<i64>,
    pub match_key: &'a str,
    pub candidates: &'a [String],
    pub change: Option<&'a str>,
}

const COLUMNS: &str =
    "id, entity, system, local_id, global_id, match_key, candidates, change, decision, created_at";

fn ambiguous(r: &rusqlite::Row<'_>) -> rusqlite::Result<Ambiguous> {
    let candidates: String = r.get(6)?;
    Ok(Ambiguous {
        id: r.get(0)?,
        entity: r.get(1)?,
        system: r.get(2)?,
        local_id: r.get(3)?,
        global_id: r.get(4)?,
        match_key: r.get(5)?,
        candidates: serde_json::from_str(&candidates).unwrap_or_default(),
        change: r.get(7)?,
        decision: r.get(8)?,
        created_at: r.get(9)?,
    })
}

impl Tx<'_> {
    /// The live golden records of `entity` with this match key (at most
    /// `limit`), oldest first.
    pub fn golden_by_match_key(&self, entity: &str, key: &str, limit: u32) -> Result<Vec<i64>> {
        self.conn()
            .prepare_cached(
                "SELECT global_id FROM golden WHERE entity = ?1 AND match_key = ?2 AND deleted = 0
                 ORDER BY global_id LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![entity, key, limit], |r| r.get(0))?
                    .collect()
            })
            .map_err(self.err())
    }

    /// The golden record whose create was sent to `target` with content
    /// `hash` and whose outcome is not known, if any.
    pub fn tried_create(&self, target: &str, entity: &str, hash: &Hash) -> Result<Option<i64>> {
        self.conn()
            .prepare_cached(
                "SELECT global_id FROM outbox WHERE target = ?1 AND entity = ?2 AND tried_hash = ?3
                 ORDER BY id LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![target, entity, &hash[..]], |r| r.get(0))
                    .optional()
            })
            .map_err(self.err())
    }

    /// The content a create of `global_id` to `target` was sent with, its
    /// outcome not known; none when no such create is pending.
    pub fn tried_hash(&self, target: &str, global_id: i64) -> Result<Option<Hash>> {
        self.conn()
            .prepare_cached("SELECT tried_hash FROM outbox WHERE target = ?1 AND global_id = ?2")
            .and_then(|mut st| {
                st.query_row(params![target, global_id], |r| super::hash_col(r, 0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// Marks an outbox row's create as sent with content `hash`: until it
    /// is recorded, its outcome is not known.
    pub fn try_create(&mut self, row: i64, hash: &Hash) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE outbox SET tried_hash = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![row, &hash[..]]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Marks an outbox row's update as sent with content `hash`: it may
    /// land without being recorded, and a record read back with that hash
    /// is then weir's own write.
    pub fn mark_sent(&mut self, row: i64, hash: &Hash) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE outbox SET sent_hash = CASE WHEN substr(sent_hash, 1, 16) = ?2 THEN sent_hash
                     ELSE substr(CAST(?2 || coalesce(sent_hash, x'') AS BLOB), 1, 128) END
                 WHERE id = ?1",
            )
            .and_then(|mut st| st.execute(params![row, &hash[..]]))
            .map_err(self.err())?;
        Ok(())
    }

    /// The content hashes of the updates of `global_id` sent to `target`
    /// and not recorded yet (the latest first, at most eight).
    pub fn sent_hashes(&self, target: &str, global_id: i64) -> Result<Vec<Hash>> {
        self.conn()
            .prepare_cached("SELECT sent_hash FROM outbox WHERE target = ?1 AND global_id = ?2")
            .and_then(|mut st| {
                st.query_row(params![target, global_id], |r| sent_col(r, 0))
                    .optional()
            })
            .map(Option::unwrap_or_default)
            .map_err(self.err())
    }

    /// Forgets that a create of `global_id` to `target` was tried: it is
    /// settled (recorded, found, or known not to have happened).
    pub fn create_settled(&mut self, target: &str, global_id: i64) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE outbox SET tried_hash = NULL
                 WHERE target = ?1 AND global_id = ?2 AND tried_hash IS NOT NULL",
            )
            .and_then(|mut st| st.execute(params![target, global_id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Holds an ambiguous match (again: a record read once more replaces
    /// what was held of it).
    pub fn hold_match(&mut self, m: NewMatch<'_>) -> Result<()> {
        let candidates = serde_json::to_string(m.candidates).unwrap_or_default();
        let sql = if m.local_id.is_some() {
            "INSERT INTO matches (entity, system, local_id, global_id, match_key, candidates, change, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (entity, system, local_id) WHERE local_id IS NOT NULL DO UPDATE SET
                match_key = excluded.match_key, candidates = excluded.candidates, change = excluded.change"
        } else {
            "INSERT INTO matches (entity, system, local_id, global_id, match_key, candidates, change, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (system, global_id) WHERE global_id IS NOT NULL DO UPDATE SET
                match_key = excluded.match_key, candidates = excluded.candidates"
        };
        self.conn()
            .prepare_cached(sql)
            .and_then(|mut st| {
                st.execute(params![
                    m.entity,
                    m.system,
                    m.local_id,
                    m.global_id,
                    m.match_key,
                    candidates,
                    m.change,
                    &self.now
                ])
            })
            .map_err(self.err())?;
        Ok(())
    }

    /// Whether a record read from `system` is held as an ambiguous match.
    pub fn held_match(&self, entity: &str, system: &str, local_id: &str) -> Result<bool> {
        self.conn()
            .prepare_cached(
                "SELECT 1 FROM matches WHERE entity = ?1 AND system = ?2 AND local_id = ?3",
            )
            .and_then(|mut st| {
                st.query_row(params![entity, system, local_id], |_| Ok(()))
                    .optional()
            })
            .map(|r| r.is_some())
            .map_err(self.err())
    }

    /// The decided matches of a system and entity.
    pub fn decided_matches(&self, system: &str, entity: &str) -> Result<Vec<Ambiguous>> {
        self.conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM matches WHERE system = ?1 AND entity = ?2 AND decision IS NOT NULL ORDER BY id"
            ))
            .and_then(|mut st| st.query_map(params![system, entity], ambiguous)?.collect())
            .map_err(self.err())
    }

    /// The golden records that are candidates of undecided matches of
    /// records read from `system`: they are not created there until the
    /// match is settled (the record read may be one of them).
    pub fn held_candidates(
        &self,
        system: &str,
        entity: &str,
    ) -> Result<std::collections::HashSet<i64>> {
        let lists: Vec<String> = self
            .conn()
            .prepare_cached(
                "SELECT candidates FROM matches WHERE system = ?1 AND entity = ?2
                 AND local_id IS NOT NULL AND decision IS NULL",
            )
            .and_then(|mut st| {
                st.query_map(params![system, entity], |r| r.get(0))?
                    .collect()
            })
            .map_err(self.err())?;
        Ok(lists
            .iter()
            .flat_map(|l| serde_json::from_str::<Vec<String>>(l).unwrap_or_default())
            .filter_map(|c| c.parse().ok())
            .collect())
    }

    /// Whether a person decided that golden record `global_id` is to be
    /// created in `system` as a record of its own; the decision is used up.
    pub fn decided_new(&mut self, system: &str, global_id: i64) -> Result<bool> {
        let n = self
            .conn()
            .prepare_cached(
                "DELETE FROM matches WHERE system = ?1 AND global_id = ?2 AND decision = 'new'",
            )
            .and_then(|mut st| st.execute(params![system, global_id]))
            .map_err(self.err())?;
        Ok(n > 0)
    }

    /// Takes back the decision on a held match: it waits for another.
    pub fn undecide_match(&mut self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE matches SET decision = NULL WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Removes a held match (carried out, or moot).
    pub fn drop_match(&mut self, id: i64) -> Result<()> {
        self.conn()
            .prepare_cached("DELETE FROM matches WHERE id = ?1")
            .and_then(|mut st| st.execute([id]))
            .map_err(self.err())?;
        Ok(())
    }

    /// The `match_on` the keys of `entity` were made under.
    pub fn match_spec(&self, entity: &str) -> Result<Option<String>> {
        self.conn()
            .prepare_cached("SELECT spec FROM match_specs WHERE entity = ?1")
            .and_then(|mut st| st.query_row([entity], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// Records the `match_on` the keys of `entity` are made under.
    pub fn set_match_spec(&mut self, entity: &str, spec: &str) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO match_specs (entity, spec) VALUES (?1, ?2)
                 ON CONFLICT (entity) DO UPDATE SET spec = excluded.spec",
            )
            .and_then(|mut st| st.execute(params![entity, spec]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Golden records of `entity` after `after`, with their content, for
    /// their keys to be made anew.
    pub fn golden_page(&self, entity: &str, after: i64, limit: u32) -> Result<Vec<(i64, String)>> {
        self.conn()
            .prepare_cached(
                "SELECT global_id, data FROM golden WHERE entity = ?1 AND global_id > ?2
                 ORDER BY global_id LIMIT ?3",
            )
            .and_then(|mut st| {
                st.query_map(params![entity, after, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(self.err())
    }

    /// Sets a golden record's match key.
    pub fn set_match_key(&mut self, global_id: i64, key: Option<&str>) -> Result<()> {
        self.conn()
            .prepare_cached("UPDATE golden SET match_key = ?2 WHERE global_id = ?1")
            .and_then(|mut st| st.execute(params![global_id, key]))
            .map_err(self.err())?;
        Ok(())
    }
}

impl Store {
    /// The ambiguous matches held, of one entity or all.
    pub fn matches(&self, entity: Option<&str>) -> Result<Vec<Ambiguous>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM matches WHERE ?1 IS NULL OR entity = ?1 ORDER BY id"
            ))
            .map_err(self.err())?;
        let rows = st
            .query_map([entity], ambiguous)
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }

    /// Whether any create was sent without its outcome being recorded.
    pub fn has_tried(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE tried_hash IS NOT NULL)",
                [],
                |r| r.get(0),
            )
            .map_err(self.err())
    }

    /// Records a person's decision on a held match; false when there is no
    /// such match.
    pub fn decide_match(&self, id: i64, decision: &str) -> Result<bool> {
        self.conn
            .execute(
                "UPDATE matches SET decision = ?2 WHERE id = ?1",
                params![id, decision],
            )
            .map(|n| n > 0)
            .map_err(self.err())
    }

    /// Groups of live golden records of `entity` that share a match key:
    /// the key, and the global ids, oldest first.
    pub fn duplicates(&self, entity: &str) -> Result<Vec<(String, Vec<i64>)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT match_key, group_concat(global_id) FROM
                    (SELECT match_key, global_id FROM golden
                     WHERE entity = ?1 AND deleted = 0 AND match_key IS NOT NULL
                     ORDER BY match_key, global_id)
                 GROUP BY match_key HAVING count(*) > 1 ORDER BY min(global_id)",
            )
            .map_err(self.err())?;
        let rows = st
            .query_map([entity], |r| {
                let key: String = r.get(0)?;
                let ids: String = r.get(1)?;
                Ok((key, ids.split(',').filter_map(|i| i.parse().ok()).collect()))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(self.err())?;
        Ok(rows)
    }
}

/// The sent hashes of an outbox row (`sent_hash`: 16-byte hashes, the
/// latest first).
pub(super) fn sent_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Vec<Hash>> {
    let bytes: Option<Vec<u8>> = r.get(i)?;
    Ok(bytes
        .unwrap_or_default()
        .chunks_exact(16)
        .map(|c| c.try_into().expect("chunks of 16"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[test]
    fn every_content_sent_and_not_recorded_is_known_for_weirs_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        let (h1, h2, h3) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        store
            .transaction(|tx| {
                let gid = tx.create_golden("contacts", "{}", &h1, "a", None)?;
                tx.enqueue_content("b", "contacts", gid, &h1)?;
                // Sent with h2, then queued again with h3 before it was
                // recorded: a write of h2 may have landed, and its echo is
                // still weir's own.
                tx.enqueue_content("b", "contacts", gid, &h2)?;
                tx.enqueue_content("b", "contacts", gid, &h2)?;
                tx.enqueue_content("b", "contacts", gid, &h3)?;
                assert_eq!(tx.sent_hashes("b", gid)?, vec![h3, h2, h1]);
                for i in 0..20u8 {
                    tx.enqueue_content("b", "contacts", gid, &[i + 10; 16])?;
                }
                let kept = tx.sent_hashes("b", gid)?;
                assert_eq!(kept.len(), 8, "the latest eight are kept");
                assert_eq!(kept[0], [29u8; 16]);
                assert!(tx.sent_hashes("c", gid)?.is_empty());
                Ok(())
            })
            .unwrap();
    }
}
