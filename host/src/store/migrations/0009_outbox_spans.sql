-- The central store, version 9: spans of new records in the outbox.
-- A page read from a source that creates records holds, for each target
-- written along the intake, one span (the page's first and last new global
-- ids) instead of an outbox row per record: the records themselves are
-- delivered from memory, and the span is removed in the transaction that
-- records the last of them. A span still here after a crash or a failed
-- target becomes outbox rows again, one per record of the span that is not
-- deleted (`Tx::expand_spans`); what was already delivered is no write then.
CREATE TABLE outbox_spans (
    id         INTEGER PRIMARY KEY,
    target     TEXT    NOT NULL,
    entity     TEXT    NOT NULL,
    first_gid  INTEGER NOT NULL,
    last_gid   INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);
