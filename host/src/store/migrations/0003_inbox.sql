-- The central store, version 3: the inbox of changes pushed to a running
-- daemon (publish API). A change is acknowledged once it is here; the next
-- intake of its system and entity accepts it and removes it, in one transaction.
CREATE TABLE inbox (
    id          INTEGER PRIMARY KEY,
    system      TEXT NOT NULL,
    entity      TEXT NOT NULL,
    local_id    TEXT NOT NULL,
    change      TEXT NOT NULL,   -- {"op": "upsert"|"delete", "data": ..., "actor": ...}
    received_at TEXT NOT NULL
);
CREATE INDEX inbox_by_source ON inbox (system, entity, id);
