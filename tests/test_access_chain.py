"""The access log as a hash chain (schema version 7), on SQLite and PostgreSQL: rows written by
an older archiver are chained by the migration and verify; new rows go through chain.append;
a row edited in the database is named; the new actions and filters work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archiver.lab.postgres import LocalPostgres
from archiver.state import migrate as sqlite_migrate  # the one runner, both backends
from archiver.state import postgres as pg
from archiver.state.access import AccessEvent, AccessLog
from archiver.state.api import BaseState, State
from archiver.state.db import Db
from archiver.state.migrate import open_database

_OLD_ROWS = [
    (1_700_000_000.5, "ayse", "login", "ok", None, "10.0.0.1", None, None),
    (1_700_000_010.25, "ayse", "play", "ok", "k/1.mp3", "10.0.0.1", "bytes=0-", None),
    (1_700_000_020.0, "ayse", "download", "ok", "k/2.mp3", "10.0.0.1", None, "zip"),
]
_INSERT_OLD = (
    "INSERT INTO access_log (at_s, username, action, outcome, object_key, source, byte_range,"
    " detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _check_old_rows_chained(db: Db) -> None:
    log = AccessLog(db)
    report = log.verify()
    assert report.intact and report.rows == 3
    events = log.events()
    assert [e.action for e in events] == ["login", "play", "zip"]  # a zip member says so now
    log.record(AccessEvent(datetime.now(UTC), "can", "search", "ok", "10.0.0.2",
                           detail=" number=903123320404 ", item_count=4))  # fmt: skip
    assert log.verify().intact and log.verify().rows == 4


def test_sqlite_rows_from_before_the_chain_are_chained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite3"
    every = sqlite_migrate.migrations()
    monkeypatch.setattr(sqlite_migrate, "migrations", lambda dialect="sqlite": every[:6])
    old = open_database(path)
    old.executemany(_INSERT_OLD, _OLD_ROWS)
    old.close()
    monkeypatch.undo()
    _check_old_rows_chained(open_database(path))


@pytest.fixture
def old_postgres(postgres: LocalPostgres, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = postgres.create_database()
    every = sqlite_migrate.migrations("postgresql")
    monkeypatch.setattr(sqlite_migrate, "migrations", lambda dialect="postgresql": every[:6])
    db = pg.PostgresDb(url, pool_size=2, outage_s=5)
    db.open()
    sqlite_migrate.migrate(db)
    db.executemany(_INSERT_OLD, _OLD_ROWS)
    db.close()
    monkeypatch.undo()
    yield url


def test_postgresql_rows_from_before_the_chain_are_chained(old_postgres: str) -> None:
    db = pg.PostgresDb(old_postgres, pool_size=2, outage_s=5)
    db.open()
    try:
        assert "0007_access_log_chain.sql" in sqlite_migrate.migrate(db)
        _check_old_rows_chained(db)
    finally:
        db.close()


def _base(state: State) -> BaseState:
    assert isinstance(state, BaseState)
    return state


def test_an_edited_row_is_named_on_both_backends(state: State) -> None:
    now = datetime.now(UTC)
    for n in range(5):
        state.access_log.record(AccessEvent(now + timedelta(seconds=n), "ayse", "play", "ok",
                                            "10.0.0.1", object_key=f"k/{n}.mp3"))  # fmt: skip
    assert state.access_log.verify().intact
    _base(state).db.execute("UPDATE access_log SET username = 'mallory' WHERE id = 3")
    broken = state.access_log.verify().first_break
    assert broken is not None and (broken.row_id, broken.reason) == (3, "changed")


def test_filters_by_key_action_and_period_include_exports(state: State) -> None:
    now = datetime(2026, 12, 1, 12, tzinfo=UTC)
    log = state.access_log
    log.record(AccessEvent(now, "ayse", "play", "ok", "a", object_key="k/1_x.mp3"))
    log.record(AccessEvent(now + timedelta(hours=1), "ayse", "zip", "ok", "a",
                           object_key="k/2.mp3", detail="zip"))  # fmt: skip
    log.record(AccessEvent(now + timedelta(hours=2), "officer", "export", "ok", "a",
                           detail="case 2026/17", item_count=2,
                           object_keys=("k/1_x.mp3", "k/3.mp3")))  # fmt: skip
    log.record(AccessEvent(now + timedelta(hours=3), "ayse", "play", "ok", "a",
                           object_key="k/1.mp3"))  # fmt: skip
    about_one = log.events(object_key="k/1_x.mp3")
    assert [(e.username, e.action) for e in about_one] == [("ayse", "play"), ("officer", "export")]
    assert about_one[1].object_keys == ("k/1_x.mp3", "k/3.mp3") and about_one[1].item_count == 2
    assert [e.action for e in log.events(object_key="k/1")] == []  # whole keys only
    assert [e.object_key for e in log.events(action="zip")] == ["k/2.mp3"]
    window = log.events(since=now + timedelta(minutes=30), until=now + timedelta(hours=2))
    assert [e.action for e in window] == ["zip"]
    assert all(e.event_id is not None for e in window)
