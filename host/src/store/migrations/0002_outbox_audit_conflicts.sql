-- The central store, version 2: the transactional outbox, the audit log,
-- conflicts, and provenance of golden records.

-- Which system's change a golden record last took.
ALTER TABLE golden ADD COLUMN origin TEXT;

-- Pending deliveries: one row per target and golden record (several changes
-- to one record for one target compress into one row). A row is removed when
-- its delivery is committed, or moved to dead_letters when refused.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    target          TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    global_id       INTEGER NOT NULL REFERENCES golden (global_id),
    op              TEXT    NOT NULL CHECK (op IN ('upsert', 'delete')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    last_error      TEXT,
    created_at      TEXT    NOT NULL
);
CREATE UNIQUE INDEX outbox_by_record ON outbox (target, global_id);
CREATE INDEX outbox_due ON outbox (target, entity, next_attempt_at, id);

-- Append-only audit log of every operation.
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY,
    at        TEXT    NOT NULL,
    run_id    INTEGER,
    system    TEXT    NOT NULL,
    entity    TEXT    NOT NULL,
    global_id INTEGER,
    local_id  TEXT,
    actor     TEXT,
    operation TEXT    NOT NULL,   -- read:create, read:update, read:delete, write:create, write:update, write:delete
    before    TEXT,
    after     TEXT,
    outcome   TEXT    NOT NULL    -- ok, echo, conflict, rejected, failed
);
CREATE INDEX audit_by_record ON audit (entity, global_id);

-- Concurrent edits of one record, with both values and how they were resolved.
CREATE TABLE conflicts (
    id           INTEGER PRIMARY KEY,
    at           TEXT    NOT NULL,
    run_id       INTEGER,
    entity       TEXT    NOT NULL,
    global_id    INTEGER NOT NULL,
    system       TEXT    NOT NULL,   -- the system whose change arrived
    other_system TEXT,               -- the system the golden record's value came from
    ours         TEXT,               -- the golden record before
    theirs       TEXT,               -- the arriving change
    result       TEXT    NOT NULL,   -- the golden record after
    winner       TEXT    NOT NULL,
    policy       TEXT    NOT NULL
);

ALTER TABLE runs ADD COLUMN records_deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN echoes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0;

-- Changes that cannot be accepted yet because a record they refer to has not
-- been read (an order before its contact). Retried at every intake of their
-- system and entity; a newer change of the same record replaces the parked one.
CREATE TABLE parked (
    system    TEXT NOT NULL,
    entity    TEXT NOT NULL,
    local_id  TEXT NOT NULL,
    change    TEXT NOT NULL,   -- {"data": ..., "actor": ...}
    reason    TEXT NOT NULL,
    parked_at TEXT NOT NULL,
    PRIMARY KEY (system, entity, local_id)
) WITHOUT ROWID;

-- Changes held for review: made by a user beyond the entity's
-- max_changes_per_user. `weir held approve|reject ID` decides; the decision
-- is carried out at the next intake of that system and entity.
CREATE TABLE held (
    id        INTEGER PRIMARY KEY,
    system    TEXT NOT NULL,
    entity    TEXT NOT NULL,
    local_id  TEXT NOT NULL,
    actor     TEXT,
    change    TEXT NOT NULL,   -- {"op": "upsert"|"delete", "data": ..., "actor": ...}
    reason    TEXT NOT NULL,
    status    TEXT NOT NULL DEFAULT 'held' CHECK (status IN ('held', 'approved', 'rejected')),
    held_at   TEXT NOT NULL
);
CREATE UNIQUE INDEX held_by_record ON held (system, entity, local_id);
CREATE INDEX audit_by_actor ON audit (entity, actor, at) WHERE actor IS NOT NULL;
