-- The central store, version 8: the audit log loses its index by record.
-- Every audit row put an entry in it at a random place (one more page
-- written per change, twice per delivered change, on a store of millions of
-- records), and no query used it: a record's history is read by a scan of
-- the log, which its filters cannot narrow through that index anyway.
DROP INDEX audit_by_record;
