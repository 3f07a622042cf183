-- The access log becomes a hash chain (archiver/state/chain.py) and learns more actions:
-- 'zip' (one member of a zip download, no longer a look-alike 'download'), 'search' (who looked
-- for what, how many found), 'export' (a court export: its keys in object_keys, one per line),
-- 'audit' (who read the access history). item_count: results of a search, files of an export.
-- SQLite cannot widen a CHECK: the table is rebuilt. Rows written before this version are
-- chained, oldest first from GENESIS, by this migration's data step (archiver.state.access
-- .chain_existing), in the same transaction; a zip member stored as download+detail 'zip'
-- becomes action 'zip' first (it meant that).
CREATE TABLE access_log_chained (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at_s        REAL NOT NULL,              -- UTC epoch seconds
    username    TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('play', 'download', 'zip', 'login', 'logout',
                                                'search', 'export', 'audit')),
    outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'throttled')),
    object_key  TEXT,
    source      TEXT NOT NULL,              -- the client's address
    byte_range  TEXT,                       -- the Range header of a play, as sent
    detail      TEXT,
    item_count  INTEGER,
    object_keys TEXT,
    prev_hash   TEXT NOT NULL,
    row_hash    TEXT NOT NULL
);
INSERT INTO access_log_chained (id, at_s, username, action, outcome, object_key, source,
                                byte_range, detail, prev_hash, row_hash)
    SELECT id, at_s, username,
           CASE WHEN action = 'download' AND detail = 'zip' THEN 'zip' ELSE action END,
           outcome, object_key, source, byte_range, detail, '', ''
    FROM access_log ORDER BY id;
DROP TABLE access_log;
ALTER TABLE access_log_chained RENAME TO access_log;
CREATE INDEX access_log_by_time ON access_log (at_s);
CREATE INDEX access_log_by_user ON access_log (username, at_s);
CREATE INDEX access_log_by_key ON access_log (object_key, at_s);
