-- The catalogue: one row per verified recording, for finding and playing calls (archiver web).
-- As in SQLite (migrations/sqlite/0002_catalogue.sql); archiver fills it from the ledger's
-- verified rows right after this file runs (archiver/state/pg_state.py).
CREATE TABLE catalogue (
    object_key    TEXT PRIMARY KEY,
    recording_key TEXT NOT NULL UNIQUE,
    pbx           TEXT NOT NULL,
    trunk         TEXT NOT NULL,
    caller        TEXT NOT NULL,
    callee        TEXT NOT NULL,
    caller_number TEXT,
    callee_number TEXT,
    started_local TEXT NOT NULL,
    started_utc_s BIGINT NOT NULL,
    duration_s    INTEGER NOT NULL,
    size_bytes    BIGINT,
    dial_status   TEXT,
    autocall_id   BIGINT,
    source_name   TEXT NOT NULL,
    archived_at_s DOUBLE PRECISION NOT NULL
);
CREATE INDEX catalogue_by_time ON catalogue (started_utc_s, object_key);
CREATE INDEX catalogue_by_caller ON catalogue (caller_number, started_utc_s);
CREATE INDEX catalogue_by_callee ON catalogue (callee_number, started_utc_s);
CREATE INDEX catalogue_by_archived ON catalogue (archived_at_s);
CREATE INDEX catalogue_by_autocall ON catalogue (autocall_id);
