"""Versioned schema migrations of the SQLite state file.

The schema is the numbered SQL files in `migrations/sqlite/` (`0001_ledger_calls.sql`, ...),
applied in order; PostgreSQL has its own files in `migrations/postgresql/` with the same numbers
and names (`archiver.state.postgres.apply_migrations`). The table `schema_migrations` holds one
row per applied version and is read at every open. Pending versions are applied in one
transaction taken with `BEGIN IMMEDIATE`, so two processes opening the same file at once cannot
both migrate: the second waits for the write lock, reads the version again and finds nothing left
to do. A file migrated by a newer archiver (a version we do not know) is refused.

Some versions also move data in Python after their SQL (`_AFTER`), inside the same transaction:
version 1 adds the lease columns an older file lacks, version 2 fills the catalogue from the
ledger's verified rows and their names, version 5 adds the callbacks' `flags` where missing,
version 7 chains the access log's existing rows (`archiver.state.access.chain_existing`),
version 9 fills the digits of parties that are not all digits (`+90…`, letters).

A state file from before versioned migrations has the tables of `0001_ledger_calls.sql` (created
with IF NOT EXISTS, so that file adopts them) and no `schema_migrations`: it migrates in place.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final
from zoneinfo import ZoneInfo

import structlog

from archiver.state.access import chain_existing
from archiver.state.catalogue import fill_from_ledger, party_digits
from archiver.state.db import Param, Result, SqliteDb

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
    """One numbered schema step: its version, its name and its SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def _split(script: str) -> tuple[str, ...]:
    """Split a SQL script into statements (executescript() would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"unterminated SQL statement: {pending.strip()[:80]!r}")
    return tuple(statements)


def migrations(dialect: str = "sqlite") -> tuple[Migration, ...]:
    """Every migration shipped for `dialect`, by version. Raise `ValueError` if the numbers are
    not 1, 2, 3... without gaps (a missing file must not be skipped silently)."""
    folder = resources.files("archiver.state") / "migrations" / dialect
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match is None:
            continue
        text = entry.read_text("utf-8")
        statements = _split(text) if dialect == "sqlite" else (text,)
        found.append(Migration(int(match["version"]), match["name"], statements))
    found.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in found]
    if versions != list(range(1, len(found) + 1)):
        raise ValueError(f"{dialect} migrations are not numbered 1..N: {versions}")
    return tuple(found)


def latest_version(dialect: str = "sqlite") -> int:
    return len(migrations(dialect))


def schema_version(db: sqlite3.Connection) -> int:
    """The highest version applied to `db`; 0 for a new file or one from before migrations."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return 0
    row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def _add_missing(db: SqliteDb, table: str, columns: Mapping[str, str]) -> int:
    have = {row[1] for row in db.connection.execute(f"PRAGMA table_info({table})")}
    missing = [column for column in columns if column not in have]
    for column in missing:
        db.connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {columns[column]}")
    return len(missing)


def _add_lease_columns(db: SqliteDb, timezones: Mapping[str, ZoneInfo]) -> int:
    return _add_missing(db, "recordings", _LEASE_COLUMNS)


def _add_flag_column(db: SqliteDb, timezones: Mapping[str, ZoneInfo]) -> int:
    return _add_missing(db, "call_events", _FLAG_COLUMNS)


def _chain_access_log(db: SqliteDb, timezones: Mapping[str, ZoneInfo]) -> int:
    def execute(sql: str, params: Sequence[Param] = ()) -> Result:
        cursor = db.connection.execute(sql, params)
        return Result(cursor.fetchall(), cursor.rowcount)

    return chain_existing(execute)


def _fill_party_digits(db: SqliteDb, timezones: Mapping[str, ZoneInfo]) -> int:
    """Version 9's SQL filled the digit columns of all-digit parties; here the rest (`+90…`,
    letters), through the triggers that keep the trigram index."""
    rows = db.connection.execute(
        "SELECT rowid, caller, callee FROM catalogue"
        " WHERE caller GLOB '*[^0-9]*' OR callee GLOB '*[^0-9]*'"
    ).fetchall()
    db.connection.executemany(
        "UPDATE catalogue SET caller_digits = ?, callee_digits = ? WHERE rowid = ?",
        [(party_digits(caller), party_digits(callee), rowid) for rowid, caller, callee in rows],
    )
    return len(rows)


# Data moved in Python after a version's SQL, in the same transaction.
_AFTER: Mapping[int, Callable[[SqliteDb, Mapping[str, ZoneInfo]], int]] = MappingProxyType(
    {
        1: _add_lease_columns,
        2: fill_from_ledger,
        5: _add_flag_column,
        7: _chain_access_log,
        9: _fill_party_digits,
    }
)


def migrate(db: SqliteDb, *, timezones: Mapping[str, ZoneInfo] = _NO_ZONES) -> int:
    """Bring the SQLite state `db` to the latest schema; return how many versions were applied
    (0: it was up to date).

    `timezones` (PBX name → zone) dates the recordings moved into the catalogue; see
    `fill_from_ledger` for PBXs it does not name. All pending versions are applied in one
    `BEGIN IMMEDIATE` transaction: on any error nothing is applied. Raise `SchemaTooNew` if `db`
    carries a version this archiver does not know.
    """
    steps = migrations()
    latest = len(steps)
    connection = db.connection
    current = schema_version(connection)
    _refuse_newer(current, latest)
    if current == latest:
        return 0
    connection.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(connection)  # another process may have migrated meanwhile
        _refuse_newer(current, latest)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        pending = steps[current:]
        # A new file is created quietly; an existing one being upgraded is worth a line.
        fresh = (
            connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'recordings'"
            ).fetchone()
            is None
        )
        applied: list[dict[str, object]] = []
        for step in pending:
            for statement in step.statements:
                connection.execute(statement)
            moved = _AFTER[step.version](db, timezones) if step.version in _AFTER else None
            connection.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (step.version, step.name, time.time()),
            )
            applied.append({"version": step.version, "name": step.name, "rows_moved": moved})
        # For sqlite3's own tools; the table above is what archiver reads.
        connection.execute(f"PRAGMA user_version = {latest:d}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    (log.debug if fresh else log.info)("state_migrated", backend="sqlite", applied=applied)
    return len(pending)


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
    `create`, a missing file raises `StateFileError` (see `archiver.state.db.connect`)."""
    db = SqliteDb.open(path, create=create)
    try:
        migrate(db, timezones=timezones)
    except BaseException:
        db.close()
        raise
    return db
