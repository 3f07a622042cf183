"""Versioned migrations of the state file, the catalogue and the access log (real SQLite files)."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from archiver.names import parse_name
from archiver.state.access import AccessEvent, AccessLog
from archiver.state.calls import CallLog
from archiver.state.catalogue import (
    Catalogue,
    CatalogueEntry,
    InvalidQuery,
    SearchQuery,
    catalogue_entry,
    search_number,
)
from archiver.state.db import connect
from archiver.state.ledger import Ledger
from archiver.state.migrate import (
    SchemaTooNew,
    latest_version,
    migrate,
    open_database,
    schema_version,
)

IST = ZoneInfo("Europe/Istanbul")
# Three calls with 03123320404 (as callee, as caller with +90, and national), one without it.
NAMES = [
    "20260315-101500-100-903123320404-1773558900.11-42.gsm",
    "20260316-091000-+903123320404-101-1773641400.12-7.gsm",
    "20260402-140000-102-03123320404-1775127600.13-120.gsm",
    "20260317-120000-100-905321112233-1773738000.14-30.gsm",
]
FOLDER = "trunk-sip-908502591905"


# The recordings table as the first release wrote it (no leases, no schema_migrations).
OLD_RECORDINGS = """
CREATE TABLE recordings (
    key TEXT PRIMARY KEY, pbx TEXT NOT NULL, folder TEXT NOT NULL, name TEXT NOT NULL,
    day TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    retryable INTEGER NOT NULL DEFAULT 1, last_error TEXT, object_key TEXT, source_sha256 TEXT,
    source_bytes INTEGER, mp3_bytes INTEGER, mp3_md5 TEXT, audio_s REAL,
    discovered_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX recordings_by_day ON recordings (pbx, day);
"""


def _old_file(path: Path) -> None:
    """A state file as archiver wrote it before versioned migrations, with verified rows."""
    db = sqlite3.connect(path)
    db.executescript(OLD_RECORDINGS)
    db.execute("PRAGMA user_version=1")
    for index, name in enumerate(NAMES):
        db.execute(
            "INSERT INTO recordings (key, pbx, folder, name, day, state, object_key, mp3_bytes,"
            " discovered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                f"pbx/{FOLDER}/{name}",
                "pbx",
                FOLDER,
                name,
                "2026-03-15",
                "verified" if index < 3 else "failed",
                f"recordings/{name}.mp3",
                1000 + index,
                1.0,
                1_770_000_000.0 + index,
            ),
        )
    db.commit()
    db.close()


def test_new_file_gets_every_version_recorded(tmp_path: Path) -> None:
    db = open_database(tmp_path / "state.sqlite3").connection
    assert schema_version(db) == latest_version() >= 4
    rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [version for version, _ in rows] == list(range(1, latest_version() + 1))
    assert rows[1][1] == "catalogue"
    assert db.execute("PRAGMA user_version").fetchone()[0] == latest_version()
    assert migrate(open_database(tmp_path / "state.sqlite3")) == []  # read at open: nothing to do


def test_old_file_migrates_in_place_and_fills_the_catalogue(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _old_file(path)
    ledger = Ledger.open(path, timezones={"pbx": IST})
    assert ledger.get(f"pbx/{FOLDER}/{NAMES[0]}") is not None  # old rows kept
    # The lease columns an old file lacks were added: claiming works.
    assert ledger.claim(f"pbx/{FOLDER}/{NAMES[3]}", "worker", 60)
    catalogue = Catalogue(ledger.db)
    assert catalogue.count() == 3  # the verified rows only
    entry = catalogue.get(f"recordings/{NAMES[0]}.mp3")
    assert entry is not None
    assert entry.started_at == datetime(2026, 3, 15, 10, 15, tzinfo=IST)
    assert entry.started_at.utcoffset() == timedelta(hours=3)
    assert (entry.caller, entry.callee, entry.duration_s) == ("100", "903123320404", 42)
    assert entry.size_bytes == 1000
    assert entry.archived_at == datetime.fromtimestamp(1_770_000_000.0, UTC)
    assert entry.download_name == NAMES[0].removesuffix(".gsm") + ".mp3"


def test_a_pbx_no_longer_configured_is_dated_by_its_uniqueid(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _old_file(path)
    catalogue = Catalogue(open_database(path))  # no time zones known
    entry = catalogue.get(f"recordings/{NAMES[0]}.mp3")
    assert entry is not None
    # uniqueid 1773558900 is 2026-03-15 07:15 UTC; the name says 10:15: so UTC+3.
    assert entry.started_at.utcoffset() == timedelta(hours=3)
    assert entry.started_at.astimezone(UTC) == datetime(2026, 3, 15, 7, 15, tzinfo=UTC)


def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    db = open_database(path)
    db.execute("INSERT INTO schema_migrations VALUES (?, 'future', 0)", [latest_version() + 1])
    db.close()
    with pytest.raises(SchemaTooNew, match="newer than this archiver"):
        Ledger.open(path)


def test_a_failing_step_applies_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.sqlite3"
    _old_file(path)

    def broken(db: sqlite3.Connection, zones: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("archiver.state.migrate._AFTER", {2: broken})
    with pytest.raises(RuntimeError):
        open_database(path)
    db = connect(path)
    assert schema_version(db) == 0
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "catalogue" not in tables and "schema_migrations" not in tables


def test_two_openers_at_once_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    _old_file(path)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            start.wait()
            open_database(path, timezones={"pbx": IST}).close()
        except BaseException as error:  # collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    versions = [row[0] for row in connect(path).execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, latest_version() + 1))
    assert Catalogue(open_database(path)).count() == 3


def _ledger_with_catalogue(path: Path) -> tuple[Ledger, Catalogue]:
    ledger = Ledger.open(path, timezones={"pbx": IST})
    recs = [parse_name("pbx", FOLDER, name, IST) for name in NAMES]
    ledger.discover(recs)
    for index, rec in enumerate(recs):
        entry = catalogue_entry(rec, object_key=f"k/{index}.mp3", size_bytes=100 * index)
        ledger.mark_verified(entry)
    return ledger, Catalogue(ledger.db)


def test_mark_verified_writes_ledger_and_catalogue_together(tmp_path: Path) -> None:
    ledger, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    state = ledger.get(f"pbx/{FOLDER}/{NAMES[1]}")
    assert state is not None and state.state == "verified" and state.object_key == "k/1.mp3"
    assert catalogue.count() == 4
    # A failed write leaves neither: the catalogue never lists what the ledger has not verified.
    rec = parse_name("pbx", FOLDER, NAMES[0].replace("101500", "101501"), IST)
    ledger.discover([rec])
    ledger.db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON catalogue BEGIN SELECT RAISE(ABORT, 'no'); END"
    )
    with pytest.raises(sqlite3.IntegrityError):
        ledger.mark_verified(catalogue_entry(rec, object_key="k/new.mp3", size_bytes=1))
    again = ledger.get(rec.key)
    assert again is not None and again.state == "discovered"


SPELLINGS = ["03123320404", "3123320404", "+903123320404", "903123320404", "0312 332 04 04"]


@pytest.mark.parametrize("spelling", [*SPELLINGS, "0312-332-0404"])
def test_a_number_in_any_spelling_finds_the_same_calls(tmp_path: Path, spelling: str) -> None:
    _, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    page = catalogue.search(SearchQuery(number=spelling))
    assert page.total == 3
    # Newest first, caller or callee.
    assert [e.object_key for e in page.items] == ["k/2.mp3", "k/1.mp3", "k/0.mp3"]


def test_filters_combine_and_pages_follow_the_cursor(tmp_path: Path) -> None:
    _, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    march = SearchQuery(
        number="03123320404",
        since=datetime(2026, 3, 1, tzinfo=IST),
        until=datetime(2026, 4, 1, tzinfo=IST),
    )
    assert catalogue.search(march).total == 2
    assert catalogue.search(SearchQuery(min_duration_s=40)).total == 2
    assert catalogue.search(SearchQuery(pbx="other")).total == 0
    assert catalogue.search(SearchQuery(trunk=FOLDER, min_duration_s=100)).total == 1
    first = catalogue.search(SearchQuery(limit=3))
    assert first.total == 4 and len(first.items) == 3 and first.next_cursor is not None
    second = catalogue.search(SearchQuery(limit=3, cursor=first.next_cursor))
    assert second.total == 4 and len(second.items) == 1 and second.next_cursor is None
    seen = [e.object_key for e in (*first.items, *second.items)]
    assert sorted(seen) == ["k/0.mp3", "k/1.mp3", "k/2.mp3", "k/3.mp3"]


@pytest.mark.parametrize(
    "query",
    [
        SearchQuery(number="12ab"),
        SearchQuery(limit=0),
        SearchQuery(cursor="!!not-ours!!"),
        SearchQuery(since=datetime(2026, 3, 1)),
    ],
)
def test_bad_queries_say_why(tmp_path: Path, query: SearchQuery) -> None:
    _, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    with pytest.raises(InvalidQuery) as raised:
        catalogue.search(query)
    assert raised.value.reason


def test_search_number_keeps_extensions_and_refuses_letters() -> None:
    assert search_number("100") == "100"
    assert search_number("+90 312 332 04 04") == "903123320404"
    with pytest.raises(InvalidQuery):
        search_number("'; DROP TABLE catalogue; --")


def test_archived_per_day_counts_each_local_day(tmp_path: Path) -> None:
    _, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    today = datetime.now(IST).date()
    days = [today - timedelta(days=1), today]
    assert catalogue.archived_per_day(days, IST) == {days[0]: 0, today: 4}


def test_a_callback_that_ends_a_call_sets_the_dial_status(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ledger = Ledger.open(path, timezones={"pbx": IST})
    calls = CallLog.open(path)
    rec = parse_name("pbx", FOLDER, NAMES[0], IST)
    ledger.discover([rec])
    started = rec.started_at.timestamp()
    call_id = _place(calls, started)
    metadata = {"autocall-id": str(call_id), "dial-status": "pending"}
    ledger.mark_verified(catalogue_entry(rec, object_key="k.mp3", size_bytes=1, metadata=metadata))
    catalogue = Catalogue(ledger.db)
    assert catalogue.search(SearchQuery(dial_status="pending")).total == 1
    calls.record_event(
        number="903123320404", status="ANSWERED", kind="final", ended=True, source="t",
        received_at=started + 60,
    )  # fmt: skip
    entry = catalogue.get("k.mp3")
    assert entry is not None and entry.dial_status == "ANSWERED" and entry.autocall_id == call_id


def _place(calls: CallLog, dial_at: float) -> int:
    call_id = calls.begin("pbx", "903123320404", {}, dial_at=dial_at - 5)
    calls.finish_placing(call_id, accepted=True, reply="ok")
    return call_id


def test_access_log_keeps_every_event_and_filters(tmp_path: Path) -> None:
    log = AccessLog(open_database(tmp_path / "s.sqlite3"))
    now = datetime.now(UTC)
    log.record(AccessEvent(now - timedelta(days=2), "ayse", "login", "ok", "10.0.0.1"))
    log.record(
        AccessEvent(
            now, "ayse", "play", "ok", "10.0.0.1", object_key="k.mp3", byte_range="bytes=0-"
        )
    )
    log.record(AccessEvent(now, "mallory", "login", "refused", "10.0.0.9", detail="x" * 5000))
    assert len(log.events()) == 3
    recent = log.events(since=now - timedelta(hours=1))
    assert [(e.username, e.action) for e in recent] == [("ayse", "play"), ("mallory", "login")]
    assert recent[0].byte_range == "bytes=0-" and recent[0].object_key == "k.mp3"
    assert len(recent[1].detail or "") == 1024  # cut, not grown without bound
    assert [e.action for e in log.events(username="ayse")] == ["login", "play"]
    assert abs(recent[0].at.timestamp() - time.time()) < 60


def test_dates_are_stored_with_their_offset(tmp_path: Path) -> None:
    _, catalogue = _ledger_with_catalogue(tmp_path / "s.sqlite3")
    row = catalogue.search(SearchQuery(limit=1)).items[0]
    assert row.started_at.tzinfo is not None
    assert row.started_at.utcoffset() == timezone(timedelta(hours=3)).utcoffset(None)
    assert row.started_at.date() == date(2026, 4, 2)


def test_range_totals_from_hour_counts_equal_counting_rows(tmp_path: Path) -> None:
    """Totals of time-range searches come from per-hour counts kept by triggers; after inserts,
    replacements and deletions they still equal counting the rows, for any range."""
    rng = random.Random(5)
    db = open_database(tmp_path / "s.sqlite3")
    catalogue = Catalogue(db)
    base = datetime(2026, 3, 1, tzinfo=IST)
    template = catalogue_entry(
        parse_name("pbx", FOLDER, NAMES[0], IST), object_key="k", size_bytes=1
    )
    for index in range(300):
        started = base + timedelta(seconds=rng.randrange(5 * 86400))
        catalogue.upsert(replace_entry(template, index, started, rng.choice(["pbx", "other"])))
    for index in range(0, 300, 7):  # the same recording moved to another time and key
        moved = base + timedelta(seconds=rng.randrange(5 * 86400))
        catalogue.upsert(replace_entry(template, index, moved, "pbx", key_suffix="-moved"))
    catalogue.remove_except(f"k/{i}.mp3" for i in range(0, 300, 3))
    rows = db.execute("SELECT pbx, started_utc_s FROM catalogue").rows
    assert rows  # something left to count
    for _ in range(60):
        low = None if rng.random() < 0.1 else base + timedelta(seconds=rng.randrange(6 * 86400))
        high = None if rng.random() < 0.1 else base + timedelta(seconds=rng.randrange(6 * 86400))
        pbx = rng.choice([None, "pbx", "other"])
        expected = sum(
            (low is None or started >= int(low.timestamp()))
            and (high is None or started < int(high.timestamp()))
            and (pbx is None or row_pbx == pbx)
            for row_pbx, started in rows
        )
        query = SearchQuery(since=low, until=high, pbx=pbx, limit=1)
        assert catalogue.search(query).total == expected, (low, high, pbx)


def replace_entry(
    template: CatalogueEntry, index: int, started: datetime, pbx: str, key_suffix: str = ""
) -> CatalogueEntry:
    return replace(template, object_key=f"k/{index}{key_suffix}.mp3",
                   recording_key=f"r/{index}", started_at=started, pbx=pbx)  # fmt: skip


def test_a_second_connection_keeps_other_processes_seeing_our_writes(tmp_path: Path) -> None:
    """Opening the state file again in a process that has it open must not drop that process's
    locks: otherwise another process closing its last connection deletes the WAL, and our later
    writes land in an unlinked WAL no other process can see."""
    path = tmp_path / "state.sqlite3"
    first = open_database(path)  # like the web or the daemon: open for the process's life
    Catalogue(first).count()
    second = open_database(path)  # e.g. a command that opens the state once more
    second.close()
    reader = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " print(c.execute(sys.argv[2]).fetchone()[0]); c.close()"
    )
    count = "SELECT COUNT(*) FROM access_log"
    assert subprocess.run([sys.executable, "-c", reader, str(path), count], capture_output=True,
                          text=True, check=True).stdout.strip() == "0"  # fmt: skip
    AccessLog(first).record(AccessEvent(datetime.now(UTC), "u", "login", "ok", "127.0.0.1"))
    seen = subprocess.run([sys.executable, "-c", reader, str(path), count], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert seen == "1"
