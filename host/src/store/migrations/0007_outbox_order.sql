-- The central store, version 7: delivery reads a target's outbox in id order.
-- The old index (target, entity, next_attempt_at, id) made every batch sort
-- all due rows (quadratic over a large backlog); this one walks them in order.
DROP INDEX outbox_due;
CREATE INDEX outbox_in_order ON outbox (target, entity, id);
