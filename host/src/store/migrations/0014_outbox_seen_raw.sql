-- The central store, version 14: what a target holds, in its own spelling.
-- `outbox.seen_raw`: the record a target answered `changed` with when,
-- mapped, it held just what weir last saw there (the values spelled
-- otherwise: a time format, a case, a number written as text). The next
-- conditional write of the row checks the fields against these values,
-- as the target holds them; without them it would be answered `changed`
-- at every pass.
ALTER TABLE outbox ADD COLUMN seen_raw TEXT;
