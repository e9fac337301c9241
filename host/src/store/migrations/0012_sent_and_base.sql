-- The central store, version 12: what a system may hold, and what it held.
-- `outbox.sent_hash`: an update of the row's record was sent to the target
-- with this content hash and may have landed without being recorded (a
-- crash between the write and its record). The record read back from the
-- target with that hash is weir's own write coming back, not an edit made
-- there.
ALTER TABLE outbox ADD COLUMN sent_hash BLOB;

-- `links.base`: the canonical record the system last held as far as weir
-- knows (read from it, or written to it), kept only while it differs from
-- the golden record: none when the link's hash is the golden record's.
-- A change read from the system is merged field by field against it: an
-- edit there and another elsewhere, of different fields, both survive.
ALTER TABLE links ADD COLUMN base TEXT;
