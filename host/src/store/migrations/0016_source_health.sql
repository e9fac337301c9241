-- The central store, version 16: a source's failures and the full reads
-- (RESYNC) they call for. `failing_since`: the first failed poll of the
-- failure under way (none while its polls succeed). `resync_reason`: set,
-- the next poll of the source reads it in full, and why (a failure that
-- lasted longer than the system's `resync_after_failure`, a restore).
-- `last_resync_*`: the last such full read, for `weir status`.
CREATE TABLE source_health (
    system             TEXT NOT NULL,
    entity             TEXT NOT NULL,
    failing_since      TEXT,
    resync_reason      TEXT,
    last_resync_at     TEXT,
    last_resync_reason TEXT,
    PRIMARY KEY (system, entity)
) WITHOUT ROWID;
