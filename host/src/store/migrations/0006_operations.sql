-- The central store, version 6: a person's decision on a conflict (from the
-- dashboard; a conflict without one is open), and the webhook requests each
-- system refused (bad secret or signature, malformed body), with the last
-- refusal's time and reason.
ALTER TABLE conflicts ADD COLUMN decision TEXT;     -- result | ours | theirs
ALTER TABLE conflicts ADD COLUMN decided_at TEXT;
ALTER TABLE webhook_health ADD COLUMN refused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE webhook_health ADD COLUMN last_refused_at TEXT;
ALTER TABLE webhook_health ADD COLUMN last_refusal TEXT;
