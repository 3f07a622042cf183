-- When each PBX last answered a listing, for `archiver status` (as in SQLite).
CREATE TABLE pbx_listings (
    pbx           TEXT PRIMARY KEY,
    last_ok_at    DOUBLE PRECISION
);
