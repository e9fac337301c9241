-- The central store, version 13: a dead letter once per record and content.
-- `side`: 'read' for a record a source offered that weir could not take
-- (refused by the mapping or the rules, or rejected by the connector),
-- 'write' for a write a target refused. A letter is kept once per record
-- (read side: the system's id, or the content for a record without one;
-- write side: the golden record): met again unchanged it is counted
-- (`times`, `last_seen_at`), changed it is replaced, fixed it is cleared.
ALTER TABLE dead_letters ADD COLUMN side TEXT NOT NULL DEFAULT 'write'
    CHECK (side IN ('read', 'write'));
UPDATE dead_letters SET side = 'read' WHERE global_id IS NULL AND local_id IS NOT NULL;
ALTER TABLE dead_letters ADD COLUMN content_hash BLOB;
ALTER TABLE dead_letters ADD COLUMN times INTEGER NOT NULL DEFAULT 1;
ALTER TABLE dead_letters ADD COLUMN last_seen_at TEXT;

-- Letters of one record kept before this version: the newest stays, with
-- the count of them all.
UPDATE dead_letters SET times = (
    SELECT count(*) FROM dead_letters d
    WHERE d.side = 'read' AND d.system = dead_letters.system
      AND d.entity = dead_letters.entity AND d.local_id = dead_letters.local_id)
WHERE side = 'read';
DELETE FROM dead_letters WHERE side = 'read' AND id < (
    SELECT max(id) FROM dead_letters d
    WHERE d.side = 'read' AND d.system = dead_letters.system
      AND d.entity = dead_letters.entity AND d.local_id = dead_letters.local_id);
UPDATE dead_letters SET last_seen_at = created_at;

CREATE INDEX dead_letters_of_read ON dead_letters (system, entity, local_id) WHERE side = 'read';
CREATE INDEX dead_letters_of_write ON dead_letters (system, global_id) WHERE side = 'write';
