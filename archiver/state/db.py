"""One way to run SQL on either backend: the `Db` protocol, and its SQLite side.

The tables' code (ledger, call log) is written once, in the SQL both SQLite ≥ 3.35 and PostgreSQL
understand (`?` marks, `ON CONFLICT`, `RETURNING`); the PostgreSQL side (`archiver.state.postgres`)
turns the marks into psycopg's. Where the two engines really differ (claiming with `SKIP LOCKED`,
the schema's DDL) the caller asks `dialect`.

Every statement runs in autocommit: one statement is one transaction, so a process killed at any
moment leaves the previous or the next state. `executemany` is one transaction for the batch.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

__all__ = [
    "Db",
    "Dialect",
    "Execute",
    "MigrationSession",
    "Param",
    "Result",
    "SqliteDb",
    "StateFileError",
    "StateUnavailable",
    "StatementTimeout",
    "connect",
]

Dialect = Literal["sqlite", "postgresql"]
# A bound value. A list binds as an array on PostgreSQL (`= ANY(?)`); SQLite callers expand it.
Param = str | int | float | bytes | None | list[str]
T = TypeVar("T")


class StateUnavailable(Exception):
    """The state database could not be reached for longer than the outage budget. `reason` is
    safe to log (never a password)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatementTimeout(Exception):
    """A statement ran longer than the time limit its process set (`archiver web` sets one, so
    a search can never hold a database thread for long). Not retried: the same statement would
    run as long again."""

    def __init__(self, limit_s: float) -> None:
        super().__init__(f"the statement ran longer than {limit_s:g} s")
        self.limit_s = limit_s


@dataclass(frozen=True, slots=True)
class Result:
    """A statement's rows (all of them: every query here is bounded) and affected-row count."""

    rows: list[tuple[Any, ...]]
    rowcount: int

    def one(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


class Db(Protocol):
    """A connection (or pool) to the state database."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def threads(self) -> int:
        """How many threads can use it at once to any gain (SQLite 1: one writer; PostgreSQL
        the pool's size): the size of the state's own thread pool (`archiver.state.aio`)."""
        ...

    def execute(self, sql: str, params: Sequence[Param] = ()) -> Result:
        """Run one statement in its own transaction; return its rows and row count."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> None:
        """Run `sql` once per row, all in one transaction."""
        ...

    def executescript(self, script: str) -> None:
        """Run several `;`-separated statements (DDL) in one transaction."""
        ...

    def transaction(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        """Run `statements` in order in one transaction (all of them or none); return each
        one's result. For writes that must land together (a verified state and its catalogue
        row)."""
        ...

    def atomic(self, work: Callable[[Execute], T], *, lock: str) -> T:
        """Run `work(execute)` in one transaction that holds the write lock named `lock`
        (SQLite: the database's own write lock, `BEGIN IMMEDIATE`; PostgreSQL: a transaction
        advisory lock on that name), so that a read and the write that depends on it (the hash
        chain's previous row, then the new row) cannot interleave with another process's. All of
        it or none; `work` may run again after a lost connection, so it must only use `execute`."""
        ...

    def has_table(self, name: str) -> bool:
        """Whether the table `name` exists (outside any transaction)."""
        ...

    def migrating(self) -> AbstractContextManager[MigrationSession]:
        """One transaction holding the schema's migration lock, for `archiver.state.migrate`
        (SQLite: `BEGIN IMMEDIATE`, the database's write lock; PostgreSQL: a transaction
        advisory lock on the migration key): committed when the block ends, rolled back if it
        raises."""
        ...

    def close(self) -> None: ...


class MigrationSession(Protocol):
    """What the migration runner needs inside `Db.migrating`'s transaction."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Sequence[Param] = ()) -> Result:
        """One statement (with `?` marks)."""
        ...

    def script(self, text: str) -> None:
        """A migration file's statements, as the file writes them (no marks)."""
        ...


class Execute(Protocol):
    """Runs one statement inside `Db.atomic`'s transaction."""

    def __call__(self, sql: str, params: Sequence[Param] = ()) -> Result: ...


class StateFileError(StateUnavailable):
    """The SQLite state file is missing (for a command that must not create it) or cannot be
    opened: a problem on this machine, named with its path and what to do."""


def connect(path: Path, *, create: bool = True) -> sqlite3.Connection:
    """Open the state file at `path` the way every table in it is used: autocommit, WAL, and
    waiting rather than failing while another connection writes. With `create`, the file and
    its folder are made if missing; without (read-only commands: a wrong path must not look like
    an empty archive), a missing file raises `StateFileError`, as does one that cannot be
    opened."""
    try:
        if create:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # SQLite creates the file (and its -wal and -shm) under the process umask: make it
            # first. Only when it is missing: closing any descriptor of an open database drops
            # every POSIX lock this process holds on it, so another process could then take the
            # database for unused, checkpoint and delete the WAL under our other connections
            # (their later writes would go to an unlinked WAL no other process ever sees).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        else:
            if not path.is_file():
                raise StateFileError(
                    f"no state file at {path}: check [state] path in the configuration "
                    "(`archiver run` or `archiver backfill` creates it on its first start)"
                )
            # mode=rw: SQLite must not create the file if it vanished since the check.
            connection = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        connection.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.OperationalError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise StateFileError(
            f"cannot open the state file {path} ({why}): under the shipped unit it belongs to "
            "the service (run the command as root, or as the service's user)"
        ) from None
    # NORMAL keeps every commit through a process crash (SIGKILL); only power loss can undo
    # the last few, and the bucket-side HEAD check covers that case too.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


class SqliteDb:
    """One SQLite connection, shared by the threads of one process (one statement at a time)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._limit_s: float | None = None
        self._deadline_s = float("inf")

    def limit_statements(self, limit_s: float) -> None:
        """From now on `execute` interrupts a statement that runs longer than `limit_s` and
        raises `StatementTimeout` (SQLite checks every 10,000 virtual-machine steps)."""
        self._limit_s = limit_s
        self._db.set_progress_handler(lambda: int(time.monotonic() > self._deadline_s), 10_000)

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> SqliteDb:
        return cls(connect(path, create=create))

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    @property
    def threads(self) -> int:
        return 1

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db

    def execute(self, sql: str, params: Sequence[Param] = ()) -> Result:
        with self._lock:
            if self._limit_s is None:
                cursor = self._db.execute(sql, params)
                return Result(cursor.fetchall(), cursor.rowcount)
            self._deadline_s = time.monotonic() + self._limit_s
            try:
                cursor = self._db.execute(sql, params)
                return Result(cursor.fetchall(), cursor.rowcount)
            except sqlite3.OperationalError as error:
                if str(error) == "interrupted":
                    raise StatementTimeout(self._limit_s) from None
                raise
            finally:
                self._deadline_s = float("inf")

    def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def executescript(self, script: str) -> None:
        with self._lock:
            self._db.executescript(script)

    def transaction(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                results = []
                for sql, params in statements:
                    cursor = self._db.execute(sql, params)
                    results.append(Result(cursor.fetchall(), cursor.rowcount))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return results

    def atomic(self, work: Callable[[Execute], T], *, lock: str) -> T:
        del lock  # one database, one write lock: BEGIN IMMEDIATE takes it

        def execute(sql: str, params: Sequence[Param] = ()) -> Result:
            cursor = self._db.execute(sql, params)
            return Result(cursor.fetchall(), cursor.rowcount)

        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = work(execute)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def has_table(self, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.execute(sql, (name,)).one() is not None

    @contextlib.contextmanager
    def migrating(self) -> Iterator[MigrationSession]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteSession(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _SqliteSession:
    """`MigrationSession` on one connection inside its open transaction (a script is split
    into statements: `executescript` would commit the transaction)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @property
    def dialect(self) -> Dialect:
        return "sqlite"

    def execute(self, sql: str, params: Sequence[Param] = ()) -> Result:
        cursor = self._db.execute(sql, params)
        return Result(cursor.fetchall(), cursor.rowcount)

    def script(self, text: str) -> None:
        for statement in split_statements(text):
            self._db.execute(statement)


def split_statements(script: str) -> tuple[str, ...]:
    """A SQLite script's statements, comments and blank lines between them left out."""
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
