-- (Numbered 0005: 0002-0004 are taken by the catalogue and access log work in flight.)
-- What the PBX left out or sent oddly in a call-result callback, kept with the event
-- (comma-separated words: son_missing, sonuc_empty, telefon_not_turkish...).
ALTER TABLE call_events ADD COLUMN flags TEXT NOT NULL DEFAULT '';
