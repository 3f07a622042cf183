-- The access log becomes a hash chain (archiver/state/chain.py) and learns more actions:
-- 'zip' (one member of a zip download, no longer a look-alike 'download'), 'search' (who looked
-- for what, how many found), 'export' (a court export: its keys in object_keys, one per line),
-- 'audit' (who read the access history). item_count: results of a search, files of an export.
-- Rows written before this version are chained, oldest first from GENESIS, by this migration's
-- data step (archiver.state.access.chain_existing), in the same transaction; a zip member
-- stored as download+detail 'zip' becomes action 'zip' first (it meant that).
ALTER TABLE access_log DROP CONSTRAINT IF EXISTS access_log_action_check;
UPDATE access_log SET action = 'zip' WHERE action = 'download' AND detail = 'zip';
ALTER TABLE access_log ADD CONSTRAINT access_log_action_check CHECK (
    action IN ('play', 'download', 'zip', 'login', 'logout', 'search', 'export', 'audit'));
ALTER TABLE access_log ADD COLUMN item_count BIGINT;
ALTER TABLE access_log ADD COLUMN object_keys TEXT;
ALTER TABLE access_log ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE access_log ADD COLUMN row_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE access_log ALTER COLUMN prev_hash DROP DEFAULT;
ALTER TABLE access_log ALTER COLUMN row_hash DROP DEFAULT;
CREATE INDEX access_log_by_key ON access_log (object_key, at_s);
