-- How many catalogue rows start in each UTC hour, per PBX: the total of a date-range search
-- (a whole year is ~500,000 rows at 1,000,000 a year) is then a sum over at most 8,784 hours
-- per PBX plus two partial hours, instead of counting every row. Kept by triggers, so every
-- writer (the verified-state transaction, reconcile, the migration fill) keeps it right.
CREATE TABLE catalogue_hours (
    pbx        TEXT NOT NULL,
    hour_s     INTEGER NOT NULL,            -- UTC epoch seconds of the hour's start
    recordings INTEGER NOT NULL,
    PRIMARY KEY (pbx, hour_s)
);
INSERT INTO catalogue_hours (pbx, hour_s, recordings)
    SELECT pbx, started_utc_s - started_utc_s % 3600, COUNT(*) FROM catalogue GROUP BY 1, 2;
CREATE INDEX catalogue_hours_by_hour ON catalogue_hours (hour_s);
CREATE TRIGGER catalogue_hours_insert AFTER INSERT ON catalogue BEGIN
    INSERT OR IGNORE INTO catalogue_hours (pbx, hour_s, recordings)
        VALUES (NEW.pbx, NEW.started_utc_s - NEW.started_utc_s % 3600, 0);
    UPDATE catalogue_hours SET recordings = recordings + 1
        WHERE pbx = NEW.pbx AND hour_s = NEW.started_utc_s - NEW.started_utc_s % 3600;
END;
CREATE TRIGGER catalogue_hours_delete AFTER DELETE ON catalogue BEGIN
    UPDATE catalogue_hours SET recordings = recordings - 1
        WHERE pbx = OLD.pbx AND hour_s = OLD.started_utc_s - OLD.started_utc_s % 3600;
END;
CREATE TRIGGER catalogue_hours_update AFTER UPDATE OF pbx, started_utc_s ON catalogue BEGIN
    UPDATE catalogue_hours SET recordings = recordings - 1
        WHERE pbx = OLD.pbx AND hour_s = OLD.started_utc_s - OLD.started_utc_s % 3600;
    INSERT OR IGNORE INTO catalogue_hours (pbx, hour_s, recordings)
        VALUES (NEW.pbx, NEW.started_utc_s - NEW.started_utc_s % 3600, 0);
    UPDATE catalogue_hours SET recordings = recordings + 1
        WHERE pbx = NEW.pbx AND hour_s = NEW.started_utc_s - NEW.started_utc_s % 3600;
END;
