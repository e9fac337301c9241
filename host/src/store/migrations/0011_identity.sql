-- The central store, version 11: identity.
-- `golden.match_key`: the record's match key under its entity's `match_on`
-- (a JSON array of normalised values), none without one; `match_specs`
-- holds the `match_on` the keys were made under, so that a changed
-- `match_on` makes them anew.
ALTER TABLE golden ADD COLUMN match_key TEXT;
CREATE INDEX golden_by_match_key ON golden (entity, match_key) WHERE match_key IS NOT NULL;
CREATE TABLE match_specs (
    entity TEXT PRIMARY KEY,
    spec   TEXT NOT NULL
);

-- `outbox.tried_hash`: a create of the row's record was sent to the target,
-- and its outcome is not known (a crash, a timeout); the hash of what was
-- sent. Before such a create is sent again the target is asked whether it
-- holds the record, and a record read back from the target with that hash
-- is linked, never taken for a new one.
ALTER TABLE outbox ADD COLUMN tried_hash BLOB;
CREATE INDEX outbox_tried ON outbox (target, entity, tried_hash) WHERE tried_hash IS NOT NULL;

-- Ambiguous matches held for a person: a record read from `system` whose
-- match key equals that of several golden records (`local_id`, the change
-- as read, `candidates` their global ids), or a golden record about to be
-- created in `system` which holds several records with its key
-- (`global_id`, `candidates` their local ids). Nothing is created for them
-- until `weir matches` settles them.
CREATE TABLE matches (
    id         INTEGER PRIMARY KEY,
    entity     TEXT    NOT NULL,
    system     TEXT    NOT NULL,
    local_id   TEXT,
    global_id  INTEGER,
    match_key  TEXT    NOT NULL,
    candidates TEXT    NOT NULL,
    change     TEXT,
    decision   TEXT,
    created_at TEXT    NOT NULL
);
CREATE UNIQUE INDEX matches_by_local ON matches (entity, system, local_id) WHERE local_id IS NOT NULL;
CREATE UNIQUE INDEX matches_by_global ON matches (system, global_id) WHERE global_id IS NOT NULL;
