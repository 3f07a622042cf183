-- Catalogue rows per PBX and UTC hour, kept by a trigger: the total of a date-range search is a
-- sum over hours (see migrations/sqlite/0004_catalogue_hours.sql).
CREATE TABLE catalogue_hours (
    pbx        TEXT NOT NULL,
    hour_s     BIGINT NOT NULL,
    recordings BIGINT NOT NULL,
    PRIMARY KEY (pbx, hour_s)
);
INSERT INTO catalogue_hours (pbx, hour_s, recordings)
    SELECT pbx, started_utc_s - started_utc_s % 3600, COUNT(*) FROM catalogue GROUP BY 1, 2;
CREATE INDEX catalogue_hours_by_hour ON catalogue_hours (hour_s);
CREATE FUNCTION catalogue_hours_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE catalogue_hours SET recordings = recordings - 1
            WHERE pbx = OLD.pbx AND hour_s = OLD.started_utc_s - OLD.started_utc_s % 3600;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO catalogue_hours (pbx, hour_s, recordings)
            VALUES (NEW.pbx, NEW.started_utc_s - NEW.started_utc_s % 3600, 1)
            ON CONFLICT (pbx, hour_s) DO UPDATE SET recordings = catalogue_hours.recordings + 1;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER catalogue_hours_count AFTER INSERT OR DELETE OR UPDATE OF pbx, started_utc_s
    ON catalogue FOR EACH ROW EXECUTE FUNCTION catalogue_hours_count();
