-- A page is chosen from an index alone at any archive size (bench/search.py at 10,000,000
-- rows). Past COUNT_CAP matches, a page sorted by caller, callee or duration walks that
-- column's index in order and keeps the rows of the searched days (Catalogue.search): page 5
-- of a month sorted by caller reads about 6,000 index entries instead of sorting the month
-- (400,000 calls in a ten-million archive). With the wall-clock start in these indexes the
-- walk never reads the table. (PostgreSQL: migrations/postgresql/0012, with INCLUDE.)
DROP INDEX catalogue_by_caller_digits;
CREATE INDEX catalogue_by_caller_digits ON catalogue
    (caller_digits, started_utc_s, object_key, started_wall_s);
DROP INDEX catalogue_by_callee_digits;
CREATE INDEX catalogue_by_callee_digits ON catalogue
    (callee_digits, started_utc_s, object_key, started_wall_s);
DROP INDEX catalogue_by_duration;
CREATE INDEX catalogue_by_duration ON catalogue
    (duration_s, started_utc_s, object_key, started_wall_s);
