-- The central store, version 1.

-- Canonical (golden) records: one row per record of an entity, whatever system it came from.
CREATE TABLE golden (
    global_id  INTEGER PRIMARY KEY,
    entity     TEXT    NOT NULL,
    data       TEXT    NOT NULL,          -- canonical JSON object
    hash       BLOB    NOT NULL,          -- hash of `data`
    deleted    INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT    NOT NULL
);
CREATE INDEX golden_entity ON golden (entity, global_id);

-- Id links between a golden record and its copy in each system, with provenance:
-- the hash of the record as last read from the system and as last written to it.
CREATE TABLE links (
    entity       TEXT    NOT NULL,
    system       TEXT    NOT NULL,
    local_id     TEXT    NOT NULL,
    global_id    INTEGER NOT NULL REFERENCES golden (global_id),
    hash_seen    BLOB,
    hash_written BLOB,
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (entity, system, local_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX links_by_global ON links (global_id, system);

-- Where reading stands, per system and entity: `read` resumes a full snapshot,
-- `changes` is the incremental cursor.
CREATE TABLE cursors (
    system     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('read', 'changes')),
    cursor     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (system, entity, kind)
) WITHOUT ROWID;

-- One row per `weir sync` run, with its figures.
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    status      TEXT    NOT NULL DEFAULT 'running',
    records_read    INTEGER NOT NULL DEFAULT 0,
    records_written INTEGER NOT NULL DEFAULT 0,
    records_skipped INTEGER NOT NULL DEFAULT 0,
    records_failed  INTEGER NOT NULL DEFAULT 0,
    error       TEXT
);

-- Records a system refused, with the reason, so nothing vanishes.
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY,
    run_id     INTEGER REFERENCES runs (id),
    system     TEXT NOT NULL,
    entity     TEXT NOT NULL,
    global_id  INTEGER,
    local_id   TEXT,
    data       TEXT,
    reason     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- The connector-private key/value state (the `state` import).
CREATE TABLE connector_state (
    system TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (system, key)
) WITHOUT ROWID;
