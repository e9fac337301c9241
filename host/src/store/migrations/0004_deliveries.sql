-- The central store, version 4: delivery ids of pushed changes already
-- accepted (webhook delivery headers, publish idempotency keys), so that a
-- repeated delivery is acknowledged without being stored twice. Kept 7 days.
CREATE TABLE deliveries (
    system      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (system, delivery_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_by_age ON deliveries (received_at);
