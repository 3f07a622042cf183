-- As in SQLite (migrations/sqlite/0009_catalogue_search.sql), with pg_trgm for digits anywhere
-- in a party: a GIN trigram index over "caller_digits callee_digits" serves LIKE '%5127222%'.
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner that runs the
-- migrations may create it. The digit columns use the "C" collation, so a prefix is a plain
-- byte range ('0532' <= x < '0532:') in the B-tree indexes.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
ALTER TABLE catalogue ADD COLUMN caller_digits TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE catalogue ADD COLUMN callee_digits TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE catalogue ADD COLUMN started_wall_s BIGINT NOT NULL DEFAULT 0;
UPDATE catalogue SET
    started_wall_s = CAST(EXTRACT(EPOCH FROM CAST(substr(started_local, 1, 19) AS timestamp))
                          AS BIGINT),
    caller_digits = regexp_replace(caller, '[^0-9]', '', 'g'),
    callee_digits = regexp_replace(callee, '[^0-9]', '', 'g');
CREATE INDEX catalogue_parties_trgm ON catalogue
    USING gin ((caller_digits || ' ' || callee_digits) gin_trgm_ops);
DROP INDEX catalogue_by_caller;
DROP INDEX catalogue_by_callee;
CREATE INDEX catalogue_by_caller_digits ON catalogue (caller_digits, started_utc_s, object_key);
CREATE INDEX catalogue_by_callee_digits ON catalogue (callee_digits, started_utc_s, object_key);
CREATE INDEX catalogue_by_wall ON catalogue (started_wall_s);
CREATE INDEX catalogue_by_duration ON catalogue (duration_s, started_utc_s, object_key);
CREATE INDEX catalogue_by_pbx ON catalogue (pbx, started_utc_s, object_key);
CREATE INDEX catalogue_by_trunk ON catalogue (trunk, started_utc_s, object_key);
CREATE INDEX catalogue_by_dial_status ON catalogue (dial_status, started_utc_s, object_key);
