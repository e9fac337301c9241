-- The central store, version 6: a person's decision on a conflict (from the
-- dashboard). A conflict without one is open.
ALTER TABLE conflicts ADD COLUMN decision TEXT;     -- result | ours | theirs
ALTER TABLE conflicts ADD COLUMN decided_at TEXT;
