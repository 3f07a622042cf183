-- A month of calls filtered by a short number prefix (0532: a tenth of a Turkish archive), or
-- sorted by a party, is read from this index alone: the wall-clock range, the instant's bound,
-- both parties' digits, the duration and the PBX are all in it, so only the page's rows are
-- fetched from the table (bench/search.py: "0532, one month" and "page 5 of a month, by caller").
DROP INDEX catalogue_by_wall;
-- With the object key INCLUDEd, a page sorted by a party (ties by start, then key) is chosen
-- from the index alone too (an index-only scan, once VACUUM has set the visibility map).
CREATE INDEX catalogue_by_wall ON catalogue
    (started_wall_s, started_utc_s, caller_digits, callee_digits, duration_s, pbx)
    INCLUDE (object_key);
