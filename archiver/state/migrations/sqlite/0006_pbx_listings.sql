-- When each PBX last answered a listing, for `archiver status`. IF NOT EXISTS: a file opened by
-- an archiver from before versioned migrations may have it already.
CREATE TABLE IF NOT EXISTS pbx_listings (
    pbx           TEXT PRIMARY KEY,
    last_ok_at    REAL
);
