-- When each PBX last answered a listing, for `archiver status` (as in SQLite). Numbered 0006:
-- 0002-0004 are the catalogue's, in flight.
CREATE TABLE pbx_listings (
    pbx           TEXT PRIMARY KEY,
    last_ok_at    DOUBLE PRECISION
);
