-- Leases: the writer of a store (name 'writer'), its fencing token, holder
-- and expiry. The token only grows: each new holder takes the last plus one.
CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    token      INTEGER NOT NULL,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    since      TEXT    NOT NULL,
    expires_at TEXT    NOT NULL
);
