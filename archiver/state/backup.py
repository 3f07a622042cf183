"""`archiver state backup`: a consistent copy of a SQLite state, taken while `archiver run` goes on
writing to it.

SQLite's online backup API (`sqlite3.Connection.backup`) copies the database page by page inside
one read transaction: in WAL mode a reader never blocks the daemon's writes, and the copy is the
database as of one instant (a write that lands during the copy is in the next backup, not half
in this one). Copying the file with `cp` instead can catch the main file and its -wal at
different moments. The copy is written beside the target under a temporary name, checked
(`PRAGMA integrity_check`), made one self-contained file (rollback journal, no -wal), synced, and
only then renamed onto the target, so a failed or interrupted backup never leaves a half file
under the name an administrator would restore from. An existing target is replaced only with
`force`.

PostgreSQL states are backed up with `pg_dump` (README, "Backup and restore").
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from archiver.state.db import SqliteDb, connect
from archiver.state.migrate import open_database, schema_version

__all__ = ["BackupRefused", "BackupReport", "backup_sqlite", "migrated_snapshot"]


class BackupRefused(Exception):
    """The backup was not made; `reason` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class BackupReport:
    """What a backup holds: its size, schema version and the rows of each table."""

    source: Path
    target: Path
    size_bytes: int
    schema_version: int
    rows: tuple[tuple[str, int], ...]  # (table, rows), by table name
    seconds: float


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupReport:
    """Copy the SQLite state `source` to `target` consistently while other processes write to
    it. Raise `BackupRefused` if `target` exists (without `force`), is the state itself, or
    its folder is missing; `StateFileError` if `source` cannot be opened."""
    started = time.monotonic()
    _check_target(source, target, force=force)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        with contextlib.closing(connect(source, create=False)) as db:
            # A new file, 0600 whatever the umask: the state holds the call log's numbers.
            os.close(os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            with contextlib.closing(sqlite3.connect(partial, isolation_level=None)) as copy:
                db.backup(copy)  # every page in one step: one read transaction, one instant
                copy.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
                _check_integrity(copy)
                version = schema_version(copy)
                rows = _row_counts(copy)
        _sync(partial)
        partial.replace(target)
        _sync(target.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(
        source=source,
        target=target,
        size_bytes=target.stat().st_size,
        schema_version=version,
        rows=rows,
        seconds=time.monotonic() - started,
    )


def migrated_snapshot(
    source: Path, folder: Path, *, timezones: Mapping[str, ZoneInfo]
) -> tuple[SqliteDb, int]:
    """A consistent copy of the SQLite state `source` in `folder`, migrated to today's schema,
    and the schema version `source` itself is at (which stays as it was: a state an older
    archiver still runs on must not be migrated under it). What `archiver state copy` reads, so
    that an old state's rows reach PostgreSQL with everything a migration derives from them
    (the web archive's catalogue, from the ledger's verified recordings)."""
    report = backup_sqlite(source, folder / "snapshot.sqlite3")
    db = open_database(report.target, timezones=timezones, create=False)
    return db, report.schema_version


def _check_target(source: Path, target: Path, *, force: bool) -> None:
    if not target.parent.is_dir():
        raise BackupRefused(f"{target.parent} is not a folder: create it first")
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise BackupRefused(f"{target} is the state itself: back it up to another file")
    if target.is_dir():
        raise BackupRefused(f"{target} is a folder: give a file name (e.g. {target}/state.bak)")
    if target.exists() and not force:
        raise BackupRefused(
            f"{target} exists: give another name, or --force to replace it (the old copy is "
            "replaced only once the new one is complete and checked)"
        )


def _check_integrity(copy: sqlite3.Connection) -> None:
    problems = [str(row[0]) for row in copy.execute("PRAGMA integrity_check").fetchall()]
    if problems != ["ok"]:
        raise BackupRefused(
            "the copy failed SQLite's integrity check, so the state itself may be damaged "
            f"(run `sqlite3 STATE 'PRAGMA integrity_check'`): {'; '.join(problems[:5])}"
        )


def _row_counts(copy: sqlite3.Connection) -> tuple[tuple[str, int], ...]:
    """Rows per table, virtual tables (the full-text index) included, their shadow tables not."""
    found = copy.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name"
    ).fetchall()
    virtual = [str(name) for name, sql in found if str(sql).upper().startswith("CREATE VIRTUAL")]
    tables = [
        str(name)
        for name, _ in found
        if not any(str(name).startswith(f"{parent}_") for parent in virtual)
    ]
    # The names come from the copy's own catalogue, quoted as identifiers.
    return tuple(
        (table, int(copy.execute(f'SELECT COUNT(*) FROM "{_quoted(table)}"').fetchone()[0]))
        for table in tables
    )


def _quoted(name: str) -> str:
    return name.replace('"', '""')


def _sync(path: Path) -> None:
    """fsync a file or a folder (so a rename survives a power cut)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
