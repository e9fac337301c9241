//! The links of golden records to systems' records, with what each system
//! last held: its hash, and, while it differs from the golden record, its
//! content (`base`), the common ancestor of a field-by-field merge.

use super::{Hash, Result, Tx};
use rusqlite::{params, OptionalExtension};

impl Tx<'_> {
    /// Replaces a golden record's content (and revives it if it was deleted).
    /// Links that held the content replaced keep it as their base: the
    /// systems they link to still hold it.
    pub fn update_golden(
        &mut self,
        global_id: i64,
        data: &str,
        hash: &Hash,
        origin: &str,
        match_key: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE links SET base = g.data FROM golden g
                 WHERE links.global_id = ?1 AND g.global_id = ?1 AND links.base IS NULL
                   AND coalesce(links.hash_seen, links.hash_written) = g.hash AND g.hash <> ?2",
            )
            .and_then(|mut st| st.execute(params![global_id, &hash[..]]))
            .map_err(self.err())?;
        self.conn()
            .prepare_cached(
                "UPDATE golden SET data = ?2, hash = ?3, deleted = 0, updated_at = ?4, origin = ?5, match_key = ?6 WHERE global_id = ?1",
            )
            .and_then(|mut st| st.execute(params![global_id, data, &hash[..], &self.now, origin, match_key]))
            .map_err(self.err())?;
        Ok(())
    }

    /// Records what was read from a system: creates or updates the link and
    /// its `hash_seen`. `base` is the canonical record read, kept while it
    /// differs from the golden record (call this after the golden record is
    /// set); none keeps the base the link has (an echo: what was written).
    pub fn record_seen(
        &mut self,
        entity: &str,
        system: &str,
        local_id: &str,
        global_id: i64,
        hash: &Hash,
        base: Option<&str>,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "INSERT INTO links (entity, system, local_id, global_id, hash_seen, updated_at, base)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                    CASE WHEN ?5 = (SELECT hash FROM golden WHERE global_id = ?4) THEN NULL ELSE ?7 END)
                 ON CONFLICT (entity, system, local_id) DO UPDATE SET hash_seen = excluded.hash_seen,
                    updated_at = excluded.updated_at,
                    base = CASE WHEN excluded.hash_seen = (SELECT hash FROM golden WHERE global_id = ?4) THEN NULL
                                ELSE coalesce(?7, links.base) END",
            )
            .and_then(|mut st| {
                st.execute(params![entity, system, local_id, global_id, &hash[..], &self.now, base])
            })
            .map_err(self.err())?;
        Ok(())
    }

    /// Records a successful write to a system: the link (with the id the system
    /// assigned) and the hash written, with `base`, the canonical record
    /// written, kept if the golden record changed meanwhile. `hash_seen` is
    /// cleared: the system now holds what was written, and reading it back
    /// is an echo. `linked` says the link is expected to exist already (an
    /// update): then only its hashes are set if it does, which leaves the
    /// index by golden record alone (an upsert rewrites its entry: one more
    /// page written a record).
    #[allow(clippy::too_many_arguments)]
    pub fn record_written(
        &mut self,
        entity: &str,
        system: &str,
        local_id: &str,
        global_id: i64,
        hash: &Hash,
        base: Option<&str>,
        linked: bool,
    ) -> Result<()> {
        let args = params![
            entity,
            system,
            local_id,
            global_id,
            &hash[..],
            &self.now,
            base
        ];
        if linked {
            let updated = self
                .conn()
                .prepare_cached(
                    "UPDATE links SET hash_seen = NULL, hash_written = ?5, updated_at = ?6,
                        base = CASE WHEN ?5 = (SELECT hash FROM golden WHERE global_id = ?4) THEN NULL ELSE ?7 END
                     WHERE entity = ?1 AND system = ?2 AND local_id = ?3 AND global_id = ?4",
                )
                .and_then(|mut st| st.execute(args))
                .map_err(self.err())?;
            if updated > 0 {
                return Ok(());
            }
        }
        self.conn()
            .prepare_cached(
                "INSERT INTO links (entity, system, local_id, global_id, hash_seen, hash_written, updated_at, base)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6,
                    CASE WHEN ?5 = (SELECT hash FROM golden WHERE global_id = ?4) THEN NULL ELSE ?7 END)
                 ON CONFLICT (entity, system, local_id) DO UPDATE SET
                    global_id = excluded.global_id, hash_seen = NULL, hash_written = excluded.hash_written,
                    updated_at = excluded.updated_at, base = excluded.base",
            )
            .and_then(|mut st| st.execute(args))
            .map_err(self.err())?;
        Ok(())
    }

    /// What the system last held of a golden record, where it differs from
    /// the golden record and weir knows it.
    pub fn link_base(&self, system: &str, global_id: i64) -> Result<Option<String>> {
        self.conn()
            .prepare_cached("SELECT base FROM links WHERE global_id = ?1 AND system = ?2")
            .and_then(|mut st| {
                st.query_row(params![global_id, system], |r| r.get(0))
                    .optional()
            })
            .map(Option::flatten)
            .map_err(self.err())
    }

    /// The systems holding a golden record, with its id in each.
    pub fn holders(&self, global_id: i64) -> Result<Vec<(String, String)>> {
        self.conn()
            .prepare_cached(
                "SELECT system, local_id FROM links WHERE global_id = ?1 ORDER BY system",
            )
            .and_then(|mut st| {
                st.query_map([global_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            })
            .map_err(self.err())
    }

    /// Links a system's record to another golden record (a merge, or its
    /// undoing). What the system held is not known against the new one:
    /// its hashes are kept, its base forgotten.
    pub fn relink(
        &mut self,
        entity: &str,
        system: &str,
        local_id: &str,
        global_id: i64,
    ) -> Result<()> {
        self.conn()
            .prepare_cached(
                "UPDATE links SET global_id = ?4, base = NULL, updated_at = ?5
                 WHERE entity = ?1 AND system = ?2 AND local_id = ?3",
            )
            .and_then(|mut st| st.execute(params![entity, system, local_id, global_id, &self.now]))
            .map_err(self.err())?;
        Ok(())
    }
}
