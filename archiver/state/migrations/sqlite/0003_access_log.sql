-- Who listened to or downloaded which recording, and every login attempt (KVKK / GDPR).
CREATE TABLE access_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_s       REAL NOT NULL,               -- UTC epoch seconds
    username   TEXT NOT NULL,
    action     TEXT NOT NULL CHECK (action IN ('play', 'download', 'login')),
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'throttled')),
    object_key TEXT,
    source     TEXT NOT NULL,               -- the client's address
    byte_range TEXT,                        -- the Range header of a play, as sent
    detail     TEXT
);
CREATE INDEX access_log_by_time ON access_log (at_s);
CREATE INDEX access_log_by_user ON access_log (username, at_s);
