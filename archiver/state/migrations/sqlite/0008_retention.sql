-- The archive's lifecycle (retention, destruction, legal holds). Four things:
-- 1. The ledger learns the state `destroyed`: the recording was destroyed on purpose and must
--    never be archived again while the PBX still lists it. SQLite cannot change a CHECK, so the
--    table is rebuilt with the same columns and indexes.
CREATE TABLE recordings_new (
    key           TEXT PRIMARY KEY,
    pbx           TEXT NOT NULL,
    folder        TEXT NOT NULL,
    name          TEXT NOT NULL,
    day           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('discovered', 'downloaded',
                      'transcoded', 'verified', 'failed', 'empty', 'destroyed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    retryable     INTEGER NOT NULL DEFAULT 1,
    last_error    TEXT,
    object_key    TEXT,
    source_sha256 TEXT,
    source_bytes  INTEGER,
    mp3_bytes     INTEGER,
    mp3_md5       TEXT,
    audio_s       REAL,
    discovered_at REAL NOT NULL,
    updated_at    REAL NOT NULL,
    lease_owner   TEXT,
    lease_until   REAL
);
INSERT INTO recordings_new (key, pbx, folder, name, day, state, attempts, retryable, last_error,
        object_key, source_sha256, source_bytes, mp3_bytes, mp3_md5, audio_s, discovered_at,
        updated_at, lease_owner, lease_until)
    SELECT key, pbx, folder, name, day, state, attempts, retryable, last_error, object_key,
        source_sha256, source_bytes, mp3_bytes, mp3_md5, audio_s, discovered_at, updated_at,
        lease_owner, lease_until FROM recordings;
DROP TABLE recordings;
ALTER TABLE recordings_new RENAME TO recordings;
CREATE INDEX recordings_by_day ON recordings (pbx, day);
CREATE INDEX recordings_by_state ON recordings (state, updated_at);

-- 2. The destruction log: one row per destroyed recording, hash-chained (archiver/state/
--    chain.py), never destroyed by retention. A recording is destroyed once: the UNIQUE index.
CREATE TABLE destruction_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at_s          REAL NOT NULL,            -- UTC epoch seconds the destruction completed
    recording_key TEXT NOT NULL,            -- the ledger's key: pbx/trunk/source name
    object_key    TEXT NOT NULL,
    pbx           TEXT NOT NULL,
    source_name   TEXT NOT NULL,
    source_sha256 TEXT,                     -- of the PBX's original (NULL if the ledger lacked it)
    caller        TEXT NOT NULL,
    callee        TEXT NOT NULL,
    started_at    TEXT NOT NULL,            -- ISO 8601 with the PBX's offset
    reason        TEXT NOT NULL CHECK (reason IN ('retention', 'erasure')),
    basis         TEXT NOT NULL,            -- the rule (name and keep_days) or the request ref
    command       TEXT NOT NULL,            -- e.g. "archiver retention run"
    username      TEXT NOT NULL,            -- who ran it (the operating system's user)
    versions      INTEGER NOT NULL,         -- object versions deleted from the store
    prev_hash     TEXT NOT NULL,
    row_hash      TEXT NOT NULL
);
CREATE UNIQUE INDEX destruction_log_by_recording ON destruction_log (recording_key);
CREATE INDEX destruction_log_by_time ON destruction_log (at_s);
CREATE INDEX destruction_log_by_object ON destruction_log (object_key);

-- 3. Destructions under way: claimed before the store is touched, removed when the log row is
--    written (the same transaction). A run killed in between leaves the row, and the next run
--    finishes it.
CREATE TABLE destruction_pending (
    recording_key TEXT PRIMARY KEY,
    object_key    TEXT NOT NULL,
    reason        TEXT NOT NULL CHECK (reason IN ('retention', 'erasure')),
    basis         TEXT NOT NULL,
    command       TEXT NOT NULL,
    username      TEXT NOT NULL,
    claimed_at_s  REAL NOT NULL
);

-- 4. Legal holds (archiver hold), and the destruction runs (for the status views).
CREATE TABLE holds (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    case_ref      TEXT NOT NULL,
    number        TEXT,                     -- number_key of a phone number or extension
    object_key    TEXT,
    from_day      TEXT,                     -- YYYY-MM-DD, the PBX's local day, both included
    to_day        TEXT,
    pbx           TEXT,
    note          TEXT,
    created_at_s  REAL NOT NULL,
    created_by    TEXT NOT NULL,
    released_at_s REAL,
    released_by   TEXT
);
CREATE INDEX holds_by_case ON holds (case_ref);
CREATE TABLE destruction_runs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at_s  REAL NOT NULL,
    finished_at_s REAL,
    command       TEXT NOT NULL,
    destroyed     INTEGER NOT NULL DEFAULT 0,
    kept          INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT                      -- ok, some_failed, stopped, interrupted
);
