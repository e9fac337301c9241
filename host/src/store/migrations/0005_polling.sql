-- The central store, version 5: what `weir run` knows about polling and
-- webhooks, for `weir status`. One row per system that sends webhooks
-- (degraded_since is NULL while they are healthy), one per polled source.
CREATE TABLE webhook_health (
    system          TEXT PRIMARY KEY,
    last_webhook_at TEXT,
    degraded_since  TEXT,
    reason          TEXT
) WITHOUT ROWID;
CREATE TABLE polls (
    system       TEXT NOT NULL,
    entity       TEXT NOT NULL,
    last_poll_at TEXT NOT NULL,
    fresh        INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    PRIMARY KEY (system, entity)
) WITHOUT ROWID;
