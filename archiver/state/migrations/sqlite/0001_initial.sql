-- The ledger and the call log as they were before versioned migrations. IF NOT EXISTS: a state
-- file made by an older archiver already has these tables and adopts this version; the lease
-- columns an older file lacks are added after this file (archiver/state/migrate.py).
CREATE TABLE IF NOT EXISTS recordings (
    key           TEXT PRIMARY KEY,
    pbx           TEXT NOT NULL,
    folder        TEXT NOT NULL,
    name          TEXT NOT NULL,
    day           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('discovered', 'downloaded',
                      'transcoded', 'verified', 'failed', 'empty')),
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
CREATE INDEX IF NOT EXISTS recordings_by_day ON recordings (pbx, day);
CREATE INDEX IF NOT EXISTS recordings_by_state ON recordings (state, updated_at);

CREATE TABLE IF NOT EXISTS autocalls (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    pbx       TEXT NOT NULL,
    number    TEXT NOT NULL,
    placed_at REAL NOT NULL,
    dial_at   REAL NOT NULL,
    params    TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('placing', 'placed', 'refused')),
    reply     TEXT
);
CREATE INDEX IF NOT EXISTS autocalls_by_number ON autocalls (number, dial_at);

CREATE TABLE IF NOT EXISTS call_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    autocall_id INTEGER REFERENCES autocalls (id),
    number      TEXT NOT NULL,
    status      TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('progress', 'final', 'unknown')),
    ended       INTEGER NOT NULL,
    received_at REAL NOT NULL,
    source      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events (autocall_id, id);
CREATE INDEX IF NOT EXISTS call_events_by_number ON call_events (number, received_at);
