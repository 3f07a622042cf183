"""The ledger: one SQLite file that remembers every recording's state.

States move forward: discovered → downloaded → transcoded → verified, or to `failed` (with a
reason, an attempt count and whether trying again can help) or `empty` (a header-only or
zero-length recording: nothing to archive). Only `verified` means the MP3 is in the bucket and
checked. Work files do not survive a restart, so on resume anything short of a final state is
archived again from the download; the store stage's HEAD-before-PUT makes that upload-free when
the object already landed.

Writes are single statements in autocommit mode on a WAL database: a process killed at any
moment leaves the previous or the next state, never a torn one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from archiver.names import Recording

__all__ = ["FINAL_STATES", "STATES", "Ledger", "LedgerEntry", "State", "connect"]

State = Literal["discovered", "downloaded", "transcoded", "verified", "failed", "empty"]
STATES: tuple[State, ...] = (
    "discovered",
    "downloaded",
    "transcoded",
    "verified",
    "failed",
    "empty",
)
FINAL_STATES: frozenset[State] = frozenset({"verified", "empty"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    key           TEXT PRIMARY KEY,
    pbx           TEXT NOT NULL,
    folder        TEXT NOT NULL,
    name          TEXT NOT NULL,
    day           TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('discovered', 'downloaded',
                      'transcoded', 'verified', 'failed', 'empty')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    retryable     INTEGER NOT NULL DEFAULT 1,
    last_error    TEXT,
    object_key    TEXT,
    source_sha256 TEXT,
    source_bytes  INTEGER,
    mp3_bytes     INTEGER,
    mp3_md5       TEXT,
    audio_s       REAL,
    discovered_at REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_by_day ON recordings (pbx, day);
CREATE INDEX IF NOT EXISTS recordings_by_state ON recordings (state, updated_at);
"""
_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    pbx: str
    name: str
    state: State
    attempts: int
    retryable: bool
    last_error: str | None
    object_key: str | None
    updated_at: float


def connect(path: Path) -> sqlite3.Connection:
    """Open the state file at `path` (creating its folder) the way every table in it is used:
    autocommit, WAL, and waiting rather than failing while another connection writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    # NORMAL keeps every commit through a process crash (SIGKILL); only power loss can undo
    # the last few, and the bucket-side HEAD check covers that case too.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=5000")
    return connection


class Ledger:
    """Recording states in a SQLite file. Not shared between processes that write at once."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating if needed) the ledger at `path`, with its folder."""
        connection = connect(path)
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        return cls(connection)

    def close(self) -> None:
        self._db.close()

    def states_for_day(self, pbx: str, day: str) -> dict[str, LedgerEntry]:
        """Return every known recording of one PBX and day (YYYY-MM-DD), by file name."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE pbx = ? AND day = ?", (pbx, day)
        )
        return {entry.name: entry for entry in map(_entry, rows)}

    def get(self, key: str) -> LedgerEntry | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else _entry(row)

    def discover(self, recordings: Iterable[Recording]) -> None:
        """Record recordings as discovered; ones already known keep their state."""
        now = time.time()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO recordings (key, pbx, folder, name, day, state,"
                " discovered_at, updated_at) VALUES (?, ?, ?, ?, ?, 'discovered', ?, ?)",
                [(r.key, r.pbx, r.folder, r.name, r.day.isoformat(), now, now) for r in recordings],
            )

    def advance(self, key: str, state: State, **fields: str | int | float | None) -> None:
        """Move one recording to `state`, storing the given columns with it."""
        allowed = {"object_key", "source_sha256", "source_bytes", "mp3_bytes", "mp3_md5", "audio_s"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown ledger columns {sorted(unknown)}")
        assignments = "".join(f", {column} = ?" for column in fields)
        self._db.execute(
            f"UPDATE recordings SET state = ?, updated_at = ?{assignments} WHERE key = ?",
            (state, time.time(), *fields.values(), key),
        )

    def fail(self, key: str, reason: str, *, retryable: bool) -> None:
        """Mark one recording failed with `reason`, counting the attempt."""
        self._db.execute(
            "UPDATE recordings SET state = 'failed', attempts = attempts + 1, retryable = ?,"
            " last_error = ?, updated_at = ? WHERE key = ?",
            (int(retryable), reason[:500], time.time(), key),
        )

    def mark_empty(self, key: str, reason: str, *, object_key: str | None = None) -> None:
        """Mark one recording `empty` (nothing to archive) with `reason`, and where its original
        was kept, if it was."""
        self._db.execute(
            "UPDATE recordings SET state = 'empty', last_error = ?, object_key = ?, updated_at = ?"
            " WHERE key = ?",
            (reason[:500], object_key, time.time(), key),
        )

    def restore(
        self,
        rec: Recording,
        state: State,
        *,
        object_key: str,
        source_sha256: str | None,
        mp3_md5: str | None,
        mp3_bytes: int | None,
        note: str | None = None,
    ) -> bool:
        """Record `rec` as `state` from what the bucket holds (`archiver reconcile`).

        A recording the ledger does not know is inserted; one it knows is moved to `state` unless
        it is already `verified`. Return True if a row was written.
        """
        now = time.time()
        cursor = self._db.execute(
            "INSERT INTO recordings (key, pbx, folder, name, day, state, last_error, object_key,"
            " source_sha256, source_bytes, mp3_bytes, mp3_md5, discovered_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state = excluded.state,"
            " last_error = excluded.last_error, object_key = excluded.object_key,"
            " source_sha256 = excluded.source_sha256, mp3_bytes = excluded.mp3_bytes,"
            " mp3_md5 = excluded.mp3_md5, updated_at = excluded.updated_at"
            " WHERE recordings.state != 'verified' AND recordings.state != excluded.state",
            (
                rec.key, rec.pbx, rec.folder, rec.name, rec.day.isoformat(), state, note,
                object_key, source_sha256, mp3_bytes, mp3_md5, now, now,
            ),
        )  # fmt: skip
        return cursor.rowcount > 0

    def requeue_failed(self, *, only_retryable: bool = False) -> int:
        """Give failed recordings a fresh start (attempts reset); return how many."""
        condition = "state = 'failed'" + (" AND retryable = 1" if only_retryable else "")
        cursor = self._db.execute(
            f"UPDATE recordings SET state = 'discovered', attempts = 0, retryable = 1,"
            f" updated_at = ? WHERE {condition}",
            (time.time(),),
        )
        return cursor.rowcount

    def counts(self) -> dict[str, int]:
        """Return how many recordings are in each state (every state present, zeros included)."""
        found = dict(self._db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state"))
        return {state: int(found.get(state, 0)) for state in STATES}

    def recent_failures(self, limit: int = 10) -> list[LedgerEntry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE state = 'failed'"
            " ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [_entry(row) for row in rows]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


_COLUMNS = "key, pbx, name, state, attempts, retryable, last_error, object_key, updated_at"


def _entry(row: tuple[object, ...]) -> LedgerEntry:
    key, pbx, name, state, attempts, retryable, last_error, object_key, updated_at = row
    return LedgerEntry(
        key=str(key),
        pbx=str(pbx),
        name=str(name),
        state=state,  # type: ignore[arg-type]  # CHECKed on write: only State values are stored
        attempts=int(attempts),  # type: ignore[call-overload]
        retryable=bool(retryable),
        last_error=None if last_error is None else str(last_error),
        object_key=None if object_key is None else str(object_key),
        updated_at=float(updated_at),  # type: ignore[arg-type]
    )


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")
