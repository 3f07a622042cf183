-- A page is chosen from an index alone at any archive size (bench/search.py at 10,000,000
-- rows): the search reads the page's object keys from an index-only scan, then fetches only
-- those rows (Catalogue.search). For that the indexes a page walks in order carry what the
-- filters test:
-- - catalogue_by_time: the newest calls of a month whose party starts with 0532, walking
--   backwards from the month's end (before, the month's 40,000 rows were read from the
--   table and sorted);
-- - by caller, callee and duration: page 5 of a month sorted by caller walks that column's
--   index and keeps the month's rows (a month of a ten-million archive is 400,000 calls:
--   sorting them took longer than the 150 ms goal).
DROP INDEX catalogue_by_time;
CREATE INDEX catalogue_by_time ON catalogue (started_utc_s, object_key)
    INCLUDE (started_wall_s, caller_digits, callee_digits, duration_s, pbx);
DROP INDEX catalogue_by_caller_digits;
CREATE INDEX catalogue_by_caller_digits ON catalogue (caller_digits, started_utc_s, object_key)
    INCLUDE (started_wall_s, pbx);
DROP INDEX catalogue_by_callee_digits;
CREATE INDEX catalogue_by_callee_digits ON catalogue (callee_digits, started_utc_s, object_key)
    INCLUDE (started_wall_s, pbx);
DROP INDEX catalogue_by_duration;
CREATE INDEX catalogue_by_duration ON catalogue (duration_s, started_utc_s, object_key)
    INCLUDE (started_wall_s, pbx);
