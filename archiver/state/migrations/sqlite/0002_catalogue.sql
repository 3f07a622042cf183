-- The catalogue: one row per verified recording, for finding and playing calls (archiver web).
-- Written in the transaction that marks the recording verified; after this file runs, the
-- migration fills it from the ledger's verified rows and their names (archiver/state/migrate.py).
CREATE TABLE catalogue (
    object_key    TEXT PRIMARY KEY,
    recording_key TEXT NOT NULL UNIQUE,     -- the ledger's key: pbx/trunk/source name
    pbx           TEXT NOT NULL,
    trunk         TEXT NOT NULL,
    caller        TEXT NOT NULL,            -- as the PBX wrote it ('' when unknown)
    callee        TEXT NOT NULL,
    caller_number TEXT,                     -- number_key(caller): prefixes removed, NULL if none
    callee_number TEXT,
    started_local TEXT NOT NULL,            -- ISO 8601 in the PBX's time, with its UTC offset
    started_utc_s INTEGER NOT NULL,         -- the same instant, UTC epoch seconds
    duration_s    INTEGER NOT NULL,
    size_bytes    INTEGER,                  -- the MP3's size
    dial_status   TEXT,                     -- for calls placed through archiver
    autocall_id   INTEGER,
    source_name   TEXT NOT NULL,            -- the original's file name on the PBX
    archived_at_s REAL NOT NULL             -- UTC epoch seconds
);
-- Newest first over a date range; the number searches, one index per party (an OR of two
-- index ranges); the status view's per-day counts; callbacks that update a dial status.
CREATE INDEX catalogue_by_time ON catalogue (started_utc_s, object_key);
CREATE INDEX catalogue_by_caller ON catalogue (caller_number, started_utc_s);
CREATE INDEX catalogue_by_callee ON catalogue (callee_number, started_utc_s);
CREATE INDEX catalogue_by_archived ON catalogue (archived_at_s);
CREATE INDEX catalogue_by_autocall ON catalogue (autocall_id);
