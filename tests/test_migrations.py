"""The schema's migrations: the files pair across the two folders, and one runner applies them
with one set of rules on both backends (the numbers checked for gaps, data steps in the same
transaction under the lock, a newer schema refused)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from archiver.state import SchemaTooNew, State
from archiver.state.db import Dialect
from archiver.state.migrate import latest_version, migrate, migrations


def _files(dialect: str) -> list[str]:
    folder = resources.files("archiver.state") / "migrations" / dialect
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))


def test_the_two_folders_pair_file_by_file() -> None:
    sqlite, postgresql = _files("sqlite"), _files("postgresql")
    assert sqlite == postgresql, set(sqlite) ^ set(postgresql)
    assert all(re.fullmatch(r"[0-9]{4}_[a-z0-9_]+\.sql", name) for name in sqlite)
    assert [int(name[:4]) for name in sqlite] == list(range(1, len(sqlite) + 1))
    assert latest_version("sqlite") == latest_version("postgresql") == len(sqlite)


def test_one_runner_records_the_same_versions_and_names_on_both_backends(state: State) -> None:
    db = state.db  # type: ignore[attr-defined]
    rows = db.execute("SELECT version, name FROM schema_migrations ORDER BY version").rows
    assert rows[1:] == [(m.version, m.name) for m in migrations(state.backend)][1:]
    assert rows[0][0] == 1  # an older SQLite file may carry 0001's former name
    assert migrate(db) == []  # up to date: nothing applied, no lock taken


def test_a_newer_schema_is_refused_on_both_backends(state: State) -> None:
    db = state.db  # type: ignore[attr-defined]
    future = latest_version(state.backend) + 1
    db.execute("INSERT INTO schema_migrations VALUES (?, 'future', 0)", (future,))
    try:
        with pytest.raises(SchemaTooNew, match="newer than this archiver"):
            migrate(db)
    finally:
        db.execute("DELETE FROM schema_migrations WHERE version = ?", (future,))


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_gap_in_the_numbers_is_an_error_for_both_folders(
    dialect: Dialect, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = resources.files("archiver.state") / "migrations" / dialect
    kept = [entry for entry in real.iterdir() if not entry.name.startswith("0002_")]

    class Folder:
        def iterdir(self) -> list[object]:
            return list(kept)

    class Root:
        def __truediv__(self, name: str) -> Root | Folder:
            return Folder() if name == dialect else self

    monkeypatch.setattr("archiver.state.migrate.resources.files", lambda _: Root())
    with pytest.raises(ValueError, match=f"{dialect} migrations are not numbered 1..N"):
        migrations(dialect)
