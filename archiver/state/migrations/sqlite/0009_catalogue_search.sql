-- Finding a call fast (issue 18): partial numbers, days at each PBX's own wall clock, sorting,
-- and an index for every filter.
-- caller_digits / callee_digits: the party's digits only ('+905325127222' -> '905325127222',
-- 'anonymous' -> ''). A number typed with a national or international prefix is looked up as a
-- few prefix ranges of these columns (one index each); any other digits anywhere in either
-- party through catalogue_parties, an FTS5 trigram index of "caller_digits callee_digits"
-- keyed by the catalogue's rowid (kept by the triggers below).
-- started_wall_s: the start on the PBX's own wall clock, written as if it were UTC epoch
-- seconds: a search for "1 Dec" is one range over it whatever each PBX's zone.
ALTER TABLE catalogue ADD COLUMN caller_digits TEXT NOT NULL DEFAULT '';
ALTER TABLE catalogue ADD COLUMN callee_digits TEXT NOT NULL DEFAULT '';
ALTER TABLE catalogue ADD COLUMN started_wall_s INTEGER NOT NULL DEFAULT 0;
UPDATE catalogue SET
    started_wall_s = CAST(strftime('%s', substr(started_local, 1, 19)) AS INTEGER),
    caller_digits = CASE WHEN caller NOT GLOB '*[^0-9]*' THEN caller ELSE '' END,
    callee_digits = CASE WHEN callee NOT GLOB '*[^0-9]*' THEN callee ELSE '' END;
CREATE VIRTUAL TABLE catalogue_parties USING fts5(parties, content='', tokenize='trigram');
INSERT INTO catalogue_parties (rowid, parties)
    SELECT rowid, caller_digits || ' ' || callee_digits FROM catalogue;
CREATE TRIGGER catalogue_parties_insert AFTER INSERT ON catalogue BEGIN
    INSERT INTO catalogue_parties (rowid, parties)
        VALUES (NEW.rowid, NEW.caller_digits || ' ' || NEW.callee_digits);
END;
CREATE TRIGGER catalogue_parties_delete AFTER DELETE ON catalogue BEGIN
    INSERT INTO catalogue_parties (catalogue_parties, rowid, parties)
        VALUES ('delete', OLD.rowid, OLD.caller_digits || ' ' || OLD.callee_digits);
END;
CREATE TRIGGER catalogue_parties_update AFTER UPDATE OF caller_digits, callee_digits ON catalogue
BEGIN
    INSERT INTO catalogue_parties (catalogue_parties, rowid, parties)
        VALUES ('delete', OLD.rowid, OLD.caller_digits || ' ' || OLD.callee_digits);
    INSERT INTO catalogue_parties (rowid, parties)
        VALUES (NEW.rowid, NEW.caller_digits || ' ' || NEW.callee_digits);
END;
-- The number_key indexes gave way to the digit ones (prefix ranges, and sorting by party).
DROP INDEX catalogue_by_caller;
DROP INDEX catalogue_by_callee;
CREATE INDEX catalogue_by_caller_digits ON catalogue (caller_digits, started_utc_s, object_key);
CREATE INDEX catalogue_by_callee_digits ON catalogue (callee_digits, started_utc_s, object_key);
CREATE INDEX catalogue_by_wall ON catalogue (started_wall_s);
CREATE INDEX catalogue_by_duration ON catalogue (duration_s, started_utc_s, object_key);
CREATE INDEX catalogue_by_pbx ON catalogue (pbx, started_utc_s, object_key);
CREATE INDEX catalogue_by_trunk ON catalogue (trunk, started_utc_s, object_key);
CREATE INDEX catalogue_by_dial_status ON catalogue (dial_status, started_utc_s, object_key);
