"""The ledger: one SQLite file that remembers every recording's state.

States move forward: discovered → downloaded → transcoded → verified, or to `failed` (with a
reason, an attempt count and whether trying again can help) or `empty` (a header-only or
zero-length recording: nothing to archive). Only `verified` means the MP3 is in the bucket and
checked. Work files do not survive a restart, so on resume anything short of a final state is
archived again from the download; the store stage's HEAD-before-PUT makes that upload-free when
the object already landed.

Writes are single statements in autocommit mode: a process killed at any moment leaves the
previous or the next state, never a torn one. The same code runs on SQLite (one host) and on
PostgreSQL (several workers, `archiver.state.postgres`) through `archiver.state.db.Db`.

Several workers share the work through leases: `claim` gives one worker a recording for `lease_s`
(on PostgreSQL with `SELECT ... FOR UPDATE SKIP LOCKED`, so a claim never waits for another),
`renew` extends it while the work goes on, and a lease that runs out (a dead worker) can be claimed
by any other. Writes given an `owner` are refused once another worker holds the recording, so a
worker that stalled past its lease cannot move a recording back.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal
from zoneinfo import ZoneInfo

from archiver.names import Recording
from archiver.state.catalogue import CatalogueEntry, upsert_statements
from archiver.state.db import Db, Dialect, Param, connect

__all__ = ["FINAL_STATES", "STATES", "Ledger", "LedgerEntry", "State", "connect"]

State = Literal[
    "discovered", "downloaded", "transcoded", "verified", "failed", "empty", "destroyed"
]
STATES: tuple[State, ...] = (
    "discovered",
    "downloaded",
    "transcoded",
    "verified",
    "failed",
    "empty",
    "destroyed",
)
# `destroyed`: destroyed on purpose by the retention code (archiver/retention/); the name stays
# so that no later poll, backfill or reconcile archives it again while the PBX still lists it.
FINAL_STATES: frozenset[State] = frozenset({"verified", "empty", "destroyed"})
# No write of the pipeline or reconcile ever moves a destroyed recording.
_NOT_DESTROYED: Final = " AND state != 'destroyed'"
_NO_ZONES: Mapping[str, ZoneInfo] = MappingProxyType({})

# The database's own clock as epoch seconds: workers on several hosts compare leases on one clock.
_NOW_SQL: Final[dict[Dialect, str]] = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "postgresql": "extract(epoch from clock_timestamp())::double precision",
}


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


class Ledger:
    """Recording states, in SQLite or PostgreSQL (see the module's docstring for leases)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self._now = _NOW_SQL[db.dialect]

    @classmethod
    def open(cls, path: Path, *, timezones: Mapping[str, ZoneInfo] = _NO_ZONES) -> Ledger:
        """Open (creating or migrating it if needed) the SQLite state file at `path`, with its
        folder (`timezones`: see `archiver.state.migrate.migrate`)."""
        from archiver.state.migrate import open_database  # migrate needs this module's peers

        return cls(open_database(path, timezones=timezones))

    @property
    def db(self) -> Db:
        """The database, for the other tables beside the ledger's (catalogue, call log)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def states_for_day(self, pbx: str, day: str) -> dict[str, LedgerEntry]:
        """Return every known recording of one PBX and day (YYYY-MM-DD), by file name."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE pbx = ? AND day = ?", (pbx, day)
        ).rows
        return {entry.name: entry for entry in map(_entry, rows)}

    def latest_verified(self, pbx: str, *, since: float) -> LedgerEntry | None:
        """The recording of `pbx` most recently verified at or after `since` (Unix time)."""
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE state = 'verified' AND updated_at >= ?"
            " AND pbx = ? ORDER BY updated_at DESC LIMIT 1",
            (since, pbx),
        ).one()
        return None if row is None else _entry(row)

    def get(self, key: str) -> LedgerEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM recordings WHERE key = ?", (key,)).one()
        return None if row is None else _entry(row)

    def discover(self, recordings: Iterable[Recording]) -> None:
        """Record recordings as discovered; ones already known keep their state."""
        now = time.time()
        rows: list[list[Param]] = [
            [r.key, r.pbx, r.folder, r.name, r.day.isoformat(), now, now] for r in recordings
        ]
        if rows:
            self._db.executemany(
                "INSERT INTO recordings (key, pbx, folder, name, day, state, discovered_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, 'discovered', ?, ?)"
                " ON CONFLICT (key) DO NOTHING",
                rows,
            )

    def advance(
        self,
        key: str,
        state: State,
        *,
        owner: str | None = None,
        **fields: str | int | float | None,
    ) -> bool:
        """Move one recording to `state`, storing the given columns with it. With `owner`, only
        while no other worker holds its lease. Return True if the row was written."""
        allowed = {"object_key", "source_sha256", "source_bytes", "mp3_bytes", "mp3_md5", "audio_s"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown ledger columns {sorted(unknown)}")
        assignments = "".join(f", {column} = ?" for column in fields)
        guard, guard_values = _owned_by(owner)
        return (
            self._db.execute(
                f"UPDATE recordings SET state = ?, updated_at = ?{assignments}"
                f" WHERE key = ?{guard}{_NOT_DESTROYED}",
                (state, time.time(), *fields.values(), key, *guard_values),
            ).rowcount
            > 0
        )

    def mark_verified(self, entry: CatalogueEntry, *, owner: str | None = None) -> bool:
        """Mark the recording `entry.recording_key` verified at `entry.object_key` and write its
        catalogue row, in one transaction: the catalogue lists exactly the verified recordings.
        With `owner`, only while no other worker holds its lease (then neither is written).
        Return True if the ledger row was written."""
        guard, guard_values = _owned_by(owner)
        update: tuple[str, list[Param]] = (
            "UPDATE recordings SET state = 'verified', object_key = ?, updated_at = ?"
            f" WHERE key = ?{guard}{_NOT_DESTROYED}",
            [entry.object_key, time.time(), entry.recording_key, *guard_values],
        )
        results = self._db.transaction([update, *upsert_statements(entry, only_if_verified=True)])
        return results[0].rowcount > 0

    def fail(self, key: str, reason: str, *, retryable: bool, owner: str | None = None) -> bool:
        """Mark one recording failed with `reason`, counting the attempt (with `owner`: only
        while no other worker holds it). Return True if the row was written."""
        guard, guard_values = _owned_by(owner)
        return (
            self._db.execute(
                "UPDATE recordings SET state = 'failed', attempts = attempts + 1, retryable = ?,"
                f" last_error = ?, updated_at = ? WHERE key = ?{guard}{_NOT_DESTROYED}",
                (int(retryable), reason[:500], time.time(), key, *guard_values),
            ).rowcount
            > 0
        )

    def mark_empty(
        self, key: str, reason: str, *, object_key: str | None = None, owner: str | None = None
    ) -> bool:
        """Mark one recording `empty` (nothing to archive) with `reason`, and where its original
        was kept, if it was (with `owner`: only while no other worker holds it)."""
        guard, guard_values = _owned_by(owner)
        return (
            self._db.execute(
                "UPDATE recordings SET state = 'empty', last_error = ?, object_key = ?,"
                f" updated_at = ? WHERE key = ?{guard}{_NOT_DESTROYED}",
                (reason[:500], object_key, time.time(), key, *guard_values),
            ).rowcount
            > 0
        )

    # -- leases ------------------------------------------------------------------------------------

    def claim(self, key: str, owner: str, lease_s: float) -> bool:
        """Give `owner` the recording `key` for `lease_s` seconds if it is not final and no other
        worker holds an unexpired lease on it; return whether `owner` now holds it. Never waits
        for another worker's claim in progress (PostgreSQL: `FOR UPDATE SKIP LOCKED`)."""
        claimable = (
            "state NOT IN ('verified', 'empty', 'destroyed')"
            f" AND (lease_until IS NULL OR lease_until < {self._now} OR lease_owner = ?)"
        )
        if self._db.dialect == "postgresql":
            where = (
                f"key = (SELECT key FROM recordings WHERE key = ? AND {claimable}"
                " FOR UPDATE SKIP LOCKED)"
            )
        else:  # one writer at a time: the UPDATE's own WHERE is the check
            where = f"key = ? AND {claimable}"
        updated = self._db.execute(
            f"UPDATE recordings SET lease_owner = ?, lease_until = {self._now} + ? WHERE {where}",
            (owner, lease_s, key, owner),
        )
        return updated.rowcount > 0

    def renew(self, key: str, owner: str, lease_s: float) -> bool:
        """Extend `owner`'s lease on `key` by `lease_s` from now; False if another worker has
        taken it over (then `owner` must stop working on it)."""
        updated = self._db.execute(
            f"UPDATE recordings SET lease_until = {self._now} + ?"
            " WHERE key = ? AND lease_owner = ?",
            (lease_s, key, owner),
        )
        return updated.rowcount > 0

    def release(self, key: str, owner: str) -> None:
        """End `owner`'s lease on `key` (any worker may claim it again at once). The owner's name
        stays, so a stalled former holder's late writes are still refused."""
        self._db.execute(
            "UPDATE recordings SET lease_until = NULL WHERE key = ? AND lease_owner = ?",
            (key, owner),
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
        catalogue: CatalogueEntry | None = None,
    ) -> bool:
        """Record `rec` as `state` from what the bucket holds (`archiver reconcile`).

        A recording the ledger does not know is inserted; one it knows is moved to `state` unless
        it is already `verified`. `catalogue` (for a verified object) is written in the same
        transaction whether or not the ledger row changed: reconcile rebuilds the catalogue.
        Return True if a ledger row was written.
        """
        now = time.time()
        upsert: tuple[str, list[Param]] = (
            "INSERT INTO recordings (key, pbx, folder, name, day, state, last_error, object_key,"
            " source_sha256, source_bytes, mp3_bytes, mp3_md5, discovered_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET state = excluded.state,"
            " last_error = excluded.last_error, object_key = excluded.object_key,"
            " source_sha256 = excluded.source_sha256, mp3_bytes = excluded.mp3_bytes,"
            " mp3_md5 = excluded.mp3_md5, updated_at = excluded.updated_at"
            " WHERE recordings.state != 'verified' AND recordings.state != 'destroyed'"
            " AND recordings.state != excluded.state",
            [
                rec.key, rec.pbx, rec.folder, rec.name, rec.day.isoformat(), state, note,
                object_key, source_sha256, mp3_bytes, mp3_md5, now, now,
            ],
        )  # fmt: skip
        extra = upsert_statements(catalogue) if catalogue is not None else []
        return self._db.transaction([upsert, *extra])[0].rowcount > 0

    def lease_holders(self, prefix: str) -> list[str]:
        """The workers whose names start with `prefix` that hold unexpired leases."""
        rows = self._db.execute(
            "SELECT DISTINCT lease_owner FROM recordings"
            f" WHERE lease_until > {self._now} AND substr(lease_owner, 1, length(?)) = ?",
            (prefix, prefix),
        ).rows
        return [str(row[0]) for row in rows]

    def release_all(self, owner: str) -> int:
        """End every lease `owner` holds (it is known to be dead); return how many."""
        return self._db.execute(
            "UPDATE recordings SET lease_until = NULL WHERE lease_owner = ? AND lease_until IS"
            " NOT NULL",
            (owner,),
        ).rowcount

    def requeue_failed(self, *, only_retryable: bool = False) -> int:
        """Give failed recordings a fresh start (attempts reset); return how many."""
        condition = "state = 'failed'" + (" AND retryable = 1" if only_retryable else "")
        return self._db.execute(
            f"UPDATE recordings SET state = 'discovered', attempts = 0, retryable = 1,"
            f" updated_at = ? WHERE {condition}",
            (time.time(),),
        ).rowcount

    def counts(self) -> dict[str, int]:
        """Return how many recordings are in each state (every state present, zeros included)."""
        found = dict(self._db.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").rows)
        return {state: int(found.get(state, 0)) for state in STATES}

    def counts_failed(self) -> tuple[int, int]:
        """Return how many recordings failed: (retryable, for good)."""
        row = self._db.execute(
            "SELECT COALESCE(SUM(CASE WHEN retryable = 1 THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN retryable = 0 THEN 1 ELSE 0 END), 0)"
            " FROM recordings WHERE state = 'failed'"
        ).one()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def counts_by_pbx(self) -> dict[str, dict[str, int]]:
        """Return, per PBX, how many recordings are in each state (zeros included)."""
        found: dict[str, dict[str, int]] = {}
        rows = self._db.execute(
            "SELECT pbx, state, COUNT(*) FROM recordings GROUP BY pbx, state ORDER BY pbx"
        ).rows
        for pbx, state, count in rows:
            found.setdefault(str(pbx), dict.fromkeys(STATES, 0))[str(state)] = int(count)
        return found

    def listing_ok(self, pbx: str, *, at: float | None = None) -> None:
        """Remember that `pbx` answered a listing (for `archiver status`)."""
        self._db.execute(
            "INSERT INTO pbx_listings (pbx, last_ok_at) VALUES (?, ?)"
            " ON CONFLICT (pbx) DO UPDATE SET last_ok_at = excluded.last_ok_at",
            (pbx, time.time() if at is None else at),
        )

    def last_listings_ok(self) -> dict[str, float]:
        """When each PBX last answered a listing (epoch s), by PBX name."""
        rows = self._db.execute("SELECT pbx, last_ok_at FROM pbx_listings").rows
        return {str(pbx): float(at) for pbx, at in rows if at is not None}

    def recent_failures(self, limit: int = 10) -> list[LedgerEntry]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM recordings WHERE state = 'failed'"
            " ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        ).rows
        return [_entry(row) for row in rows]


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


def _owned_by(owner: str | None) -> tuple[str, tuple[str, ...]]:
    """The WHERE clause that keeps a worker's write off a recording another worker holds."""
    if owner is None:
        return "", ()
    return " AND (lease_owner IS NULL OR lease_owner = ?)", (owner,)
