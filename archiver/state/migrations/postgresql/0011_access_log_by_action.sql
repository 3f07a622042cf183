-- The access log by action: a call's history and `archiver audit --key/--number` find the
-- exports (and searches) that name it without reading every row.
CREATE INDEX access_log_by_action ON access_log (action, at_s);
