"""The schema's migrations, one runner for both backends.

The schema is the numbered SQL files in `migrations/sqlite/` and `migrations/postgresql/`, the
same numbers and names in both (`NNNN_name.sql`: a test pairs them), numbered 1, 2, 3... without
a gap (a missing file is an error, never skipped). The table `schema_migrations` holds one row
per applied version. `migrate(db)` reads the version first, outside any lock (up to date: it
returns, so a PostgreSQL role without CREATE starts once the owner has migrated); otherwise it
applies every pending version in one transaction holding the migration lock (`Db.migrating`:
SQLite `BEGIN IMMEDIATE`, PostgreSQL a transaction advisory lock), so two processes opening the
state at once cannot both migrate: the second waits, reads the version again and finds nothing
left to do. On any error nothing is applied. A state migrated by a newer archiver (a version we
do not know) is refused (`SchemaTooNew`).

Some versions also move data in Python after their SQL (`_AFTER`), in the same transaction, on
both backends: version 1 adds the lease columns an old SQLite file lacks, version 2 fills the
catalogue from the ledger's verified rows and their names, version 5 adds the callbacks' `flags`
where an old SQLite file lacks them, version 7 chains the access log's existing rows
(`archiver.state.access.chain_existing`), version 9 fills the digits of parties that are not all
digits on SQLite (PostgreSQL's SQL does it with regexp_replace). Steps that only mend SQLite
files from before versioned migrations do nothing on PostgreSQL, whose first schema had it all.

A state file from before versioned migrations has the tables of `0001_initial.sql` (created
with IF NOT EXISTS, so that file adopts them) and no `schema_migrations`: it migrates in place.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import structlog

from archiver.state.access import chain_existing
from archiver.state.catalogue import fill_from_ledger, party_digits
from archiver.state.db import Db, Dialect, Execute, MigrationSession, SqliteDb

__all__ = [
    "Migration",
    "SchemaTooNew",
    "latest_version",
    "migrate",
    "migrations",
    "open_database",
    "schema_version",
]

log = structlog.get_logger(__name__)

_FILE_RE: Final = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")
_NO_ZONES: Mapping[str, ZoneInfo] = MappingProxyType({})
# Columns added before versioned migrations existed: a file may or may not have them already,
# so they are added where missing (ALTER TABLE has no IF NOT EXISTS in SQLite).
_LEASE_COLUMNS: Final = {"lease_owner": "TEXT", "lease_until": "REAL"}
_FLAG_COLUMNS: Final = {"flags": "TEXT NOT NULL DEFAULT ''"}


class SchemaTooNew(Exception):
    """The state was migrated by a newer archiver; `reason` says which versions."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema step: its version, its name and its SQL."""

    version: int
    name: str
    script: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def migrations(dialect: Dialect = "sqlite") -> tuple[Migration, ...]:
    """Every migration shipped for `dialect`, by version. Raise `ValueError` if the numbers are
    not 1, 2, 3... without gaps (a missing file must not be skipped silently)."""
    folder = resources.files("archiver.state") / "migrations" / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match["version"]), match["name"], entry.read_text("utf-8")))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations are not numbered 1..N: {versions}")
    return tuple(found)


def latest_version(dialect: Dialect = "sqlite") -> int:
    return len(migrations(dialect))


def schema_version(db: sqlite3.Connection) -> int:
    """The highest version applied to the SQLite connection `db`; 0 for a new file or one from
    before migrations (for tools and tests; `migrate` reads it through the `Db`)."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _version(execute: Execute) -> int:
    row = execute("SELECT MAX(version) FROM schema_migrations").one()
    return int(row[0] or 0) if row is not None else 0


def _columns(execute: Execute, table: str) -> set[str]:
    return {str(row[1]) for row in execute(f"PRAGMA table_info({table})").rows}


def _add_missing(session: MigrationSession, table: str, columns: Mapping[str, str]) -> int:
    """SQLite files from before versioned migrations may lack `columns` (ALTER TABLE has no IF
    NOT EXISTS there); PostgreSQL's first schema had them."""
    if session.dialect != "sqlite":
        return 0
    missing = [column for column in columns if column not in _columns(session.execute, table)]
    for column in missing:
        session.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
    return len(missing)


def _add_lease_columns(session: MigrationSession, timezones: Mapping[str, ZoneInfo]) -> int:
    return _add_missing(session, "recordings", _LEASE_COLUMNS)


def _fill_catalogue(session: MigrationSession, timezones: Mapping[str, ZoneInfo]) -> int:
    return fill_from_ledger(session.execute, timezones)


def _add_flag_column(session: MigrationSession, timezones: Mapping[str, ZoneInfo]) -> int:
    return _add_missing(session, "call_events", _FLAG_COLUMNS)


def _chain_access_log(session: MigrationSession, timezones: Mapping[str, ZoneInfo]) -> int:
    return chain_existing(session.execute)


def _fill_party_digits(session: MigrationSession, timezones: Mapping[str, ZoneInfo]) -> int:
    """Version 9's SQL filled the digit columns of all-digit parties; on SQLite here the rest
    (`+90…`, letters), through the triggers that keep the trigram index."""
    if session.dialect != "sqlite":
        return 0
    rows = session.execute(
        "SELECT rowid, caller, callee FROM catalogue"
        " WHERE caller GLOB '*[^0-9]*' OR callee GLOB '*[^0-9]*'"
    ).rows
    for rowid, caller, callee in rows:
        session.execute(
            "UPDATE catalogue SET caller_digits = ?, callee_digits = ? WHERE rowid = ?",
            (party_digits(caller), party_digits(callee), rowid),
        )
    return len(rows)


# Data moved in Python after a version's SQL, in the same transaction.
_AFTER: Mapping[int, Callable[[MigrationSession, Mapping[str, ZoneInfo]], int]] = MappingProxyType(
    {
        1: _add_lease_columns,
        2: _fill_catalogue,
        5: _add_flag_column,
        7: _chain_access_log,
        9: _fill_party_digits,
    }
)


def migrate(db: Db, *, timezones: Mapping[str, ZoneInfo] = _NO_ZONES) -> list[str]:
    """Bring the state `db` (either backend) to the latest schema; return the file names
    applied (empty: it was up to date). `timezones` (PBX name → zone) dates the recordings
    moved into the catalogue (see `fill_from_ledger` for PBXs it does not name). Raise
    `SchemaTooNew` if `db` carries a version this archiver does not know."""
    steps = migrations(db.dialect)
    latest = len(steps)
    current = _version(db.execute) if db.has_table("schema_migrations") else 0
    _refuse_newer(current, latest)
    if current == latest:
        return []
    # A new state is created quietly; an existing one being upgraded is worth a line.
    fresh = not db.has_table("recordings")
    with db.migrating() as session:
        session.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        current = _version(session.execute)  # another process may have migrated meanwhile
        _refuse_newer(current, latest)
        applied: list[dict[str, object]] = []
        for step in steps[current:]:
            session.script(step.script)
            after = _AFTER.get(step.version)
            moved = after(session, timezones) if after is not None else None
            session.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (step.version, step.name, time.time()),
            )
            applied.append({"version": step.version, "name": step.name, "rows_moved": moved})
        if session.dialect == "sqlite":
            # For sqlite3's own tools; the table above is what archiver reads.
            session.execute(f"PRAGMA user_version = {latest:d}")
    if applied:
        (log.debug if fresh else log.info)("state_migrated", backend=db.dialect, applied=applied)
    return [f"{step['version']:04d}_{step['name']}.sql" for step in applied]


def _refuse_newer(current: int, latest: int) -> None:
    if current > latest:
        raise SchemaTooNew(
            f"the state is at schema version {current}, newer than this archiver's "
            f"{latest}: upgrade archiver (or restore a backup)"
        )


def open_database(
    path: Path, *, timezones: Mapping[str, ZoneInfo] = _NO_ZONES, create: bool = True
) -> SqliteDb:
    """Open the SQLite state file at `path` and migrate it to the latest schema. Without
    `create`, a missing file raises `StateFileError` (see `archiver.state.db.connect`). (The
    PostgreSQL state opens through `archiver.state.pg_state.connect_postgres`.)"""
    db = SqliteDb.open(path, create=create)
    try:
        migrate(db, timezones=timezones)
    except BaseException:
        db.close()
        raise
    return db
