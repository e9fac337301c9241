-- The central store, version 15: since when a delivery has been failing.
-- `outbox.failing_since`: the time of the first of the passing failures
-- (a system down, a time-out) the row has met since it last landed or was
-- queued anew; none while nothing failed. A row failing for longer than its
-- target's `give_up_after` becomes a dead letter with its last error.
ALTER TABLE outbox ADD COLUMN failing_since TEXT;
UPDATE outbox SET failing_since = created_at WHERE attempts > 0;
