"""The destruction log and the destructions under way: what the retention code (archiver/
retention/) destroyed, when, why and by whom, kept as a hash-chained append-only table
(`archiver.state.chain`), and the two steps that make one destruction all-or-nothing.

One recording is destroyed in three steps:
1. `claim`: in one transaction, check that its catalogue row is there, that its ledger row is
   `verified` and that no active hold covers it, then write a `destruction_pending` row (the
   intent: which command, why, on whose behalf).
2. The store deletes every version of its object (idempotent: the caller does it).
3. `finish`: in one transaction, append the destruction-log row, delete the catalogue row, move
   the ledger row to `destroyed` and delete the pending row; only if the pending row is still
   there, so two processes finishing the same recording log it once (and the log's UNIQUE index
   on the recording holds that too).
A process killed between 1 and 3 leaves the pending row: the next run (`pending`) finishes it.
`cancel` drops a claim whose object the store refused to delete (Object Lock), or that a hold
added since covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from archiver.state.catalogue import CatalogueEntry, catalogue_rows
from archiver.state.chain import ChainReport, append_within, verify
from archiver.state.db import Db, Execute, Param
from archiver.state.holds import HELD_SQL, HOLDS_LOCK, held_params

__all__ = [
    "LOG_COLUMNS",
    "Claim",
    "Destruction",
    "DestructionLog",
    "DestructionRun",
    "Reason",
]

Reason = Literal["retention", "erasure"]
_TABLE: Final = "destruction_log"
# The chained content columns, in the table's order (archiver.state.chain hashes them).
LOG_COLUMNS: Final = (
    "at_s", "recording_key", "object_key", "pbx", "source_name", "source_sha256", "caller",
    "callee", "started_at", "reason", "basis", "command", "username", "versions",
)  # fmt: skip
_PENDING: Final = "recording_key, object_key, reason, basis, command, username, claimed_at_s"
_RUN_COLUMNS: Final = "id, started_at_s, finished_at_s, command, destroyed, kept, failed, outcome"


@dataclass(frozen=True, slots=True)
class Claim:
    """A destruction under way: the recording, why (`reason`, and `basis`: the rule or the
    request reference), and on whose behalf (`command`, `username`)."""

    recording_key: str
    object_key: str
    reason: Reason
    basis: str
    command: str
    username: str
    claimed_at: datetime


@dataclass(frozen=True, slots=True)
class Destruction:
    """One row of the destruction log. `at` is aware UTC; `started_at` is the call's start in
    the PBX's time, ISO 8601 with its offset, as the catalogue had it."""

    id: int
    at: datetime
    recording_key: str
    object_key: str
    pbx: str
    source_name: str
    source_sha256: str | None
    caller: str
    callee: str
    started_at: str
    reason: Reason
    basis: str
    command: str
    username: str
    versions: int


@dataclass(frozen=True, slots=True)
class DestructionRun:
    """One destruction run (`archiver retention run`, or `archiver run`'s periodic one). A run
    that never finished (killed) has no `finished_at` and no `outcome`."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    command: str
    destroyed: int
    kept: int
    failed: int
    outcome: str | None


def _utc(epoch_s: object) -> datetime:
    return datetime.fromtimestamp(float(epoch_s), UTC)  # type: ignore[arg-type]


def _destruction(row: Sequence[object]) -> Destruction:
    values = dict(zip(("id", *LOG_COLUMNS), row, strict=True))
    return Destruction(
        id=int(values["id"]),  # type: ignore[call-overload]
        at=_utc(values["at_s"]),
        recording_key=str(values["recording_key"]),
        object_key=str(values["object_key"]),
        pbx=str(values["pbx"]),
        source_name=str(values["source_name"]),
        source_sha256=None if values["source_sha256"] is None else str(values["source_sha256"]),
        caller=str(values["caller"]),
        callee=str(values["callee"]),
        started_at=str(values["started_at"]),
        reason=values["reason"],  # type: ignore[arg-type]  # CHECKed on write
        basis=str(values["basis"]),
        command=str(values["command"]),
        username=str(values["username"]),
        versions=int(values["versions"]),  # type: ignore[call-overload]
    )


def _claim(row: Sequence[object]) -> Claim:
    recording_key, object_key, reason, basis, command, username, claimed_at_s = row
    return Claim(
        recording_key=str(recording_key),
        object_key=str(object_key),
        reason=reason,  # type: ignore[arg-type]  # CHECKed on write
        basis=str(basis),
        command=str(command),
        username=str(username),
        claimed_at=_utc(claimed_at_s),
    )


def _run(row: Sequence[object]) -> DestructionRun:
    ident, started, finished, command, destroyed, kept, failed, outcome = row
    return DestructionRun(
        id=int(ident),  # type: ignore[call-overload]
        started_at=_utc(started),
        finished_at=None if finished is None else _utc(finished),
        command=str(command),
        destroyed=int(destroyed),  # type: ignore[call-overload]
        kept=int(kept),  # type: ignore[call-overload]
        failed=int(failed),  # type: ignore[call-overload]
        outcome=None if outcome is None else str(outcome),
    )


class DestructionLog:
    """The destruction log, the pending destructions and the runs, on either backend."""

    def __init__(self, db: Db) -> None:
        self._db = db

    # -- what may be destroyed ------------------------------------------------------------------

    def archived(
        self, *, started_before_s: int, after: tuple[int, str] | None, limit: int
    ) -> list[CatalogueEntry]:
        """Archived recordings that started before `started_before_s` (UTC epoch s), oldest
        first, after the (start, object key) `after` (keyset paging)."""
        where = "started_utc_s < ?"
        values: list[Param] = [started_before_s]
        if after is not None:
            where += " AND (started_utc_s > ? OR (started_utc_s = ? AND object_key > ?))"
            values += [after[0], after[0], after[1]]
        return catalogue_rows(self._db, where, values, limit=limit)

    def of_number(self, key: str, *, limit: int = 1_000_000) -> list[CatalogueEntry]:
        """Archived recordings whose caller or callee is `key` (a `number_key`)."""
        return catalogue_rows(
            self._db, "caller_number = ? OR callee_number = ?", [key, key], limit=limit
        )

    def source_sha256(self, recording_key: str) -> str | None:
        row = self._db.execute(
            "SELECT source_sha256 FROM recordings WHERE key = ?", (recording_key,)
        ).one()
        return None if row is None or row[0] is None else str(row[0])

    # -- one destruction ------------------------------------------------------------------------

    def claim(
        self,
        entry: CatalogueEntry,
        *,
        reason: Reason,
        basis: str,
        command: str,
        username: str,
    ) -> Claim | str:
        """Claim `entry` for destruction (step 1). Return the claim, or why not: `held`
        (an active hold covers it), `gone` (no longer archived: destroyed meanwhile), `claimed`
        (another process is destroying it)."""
        now = datetime.now(UTC)

        def work(execute: Execute) -> Claim | str:
            # The claim first, then the checks: on PostgreSQL an INSERT that waited for another
            # process's finishing transaction (which deletes this very pending row) goes ahead
            # once that commits, and only a statement after it sees the recording destroyed.
            inserted = execute(
                f"INSERT INTO destruction_pending ({_PENDING}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (recording_key) DO NOTHING",
                (entry.recording_key, entry.object_key, reason, basis, command, username,
                 now.timestamp()),
            )  # fmt: skip
            if inserted.rowcount == 0:
                return "claimed"
            why = None
            if execute(HELD_SQL, held_params(entry)).one() is not None:
                why = "held"
            elif (
                execute(
                    "SELECT 1 FROM catalogue AS c JOIN recordings AS r"
                    " ON r.key = c.recording_key WHERE c.object_key = ? AND c.recording_key = ?"
                    " AND r.state = 'verified'",
                    (entry.object_key, entry.recording_key),
                ).one()
                is None
            ):
                why = "gone"
            if why is not None:
                execute(
                    "DELETE FROM destruction_pending WHERE recording_key = ?",
                    (entry.recording_key,),
                )
                return why
            return Claim(entry.recording_key, entry.object_key, reason, basis, command,
                         username, now)  # fmt: skip

        return self._db.atomic(work, lock=HOLDS_LOCK)

    def held_now(self, entry: CatalogueEntry) -> bool:
        """Whether an active hold covers `entry` now (asked again just before the store
        deletes, for a hold added since the claim)."""
        return self._db.execute(HELD_SQL, held_params(entry)).one() is not None

    def finish(self, claim: Claim, entry: CatalogueEntry, *, versions: int) -> Destruction | None:
        """Record the destruction of `claim`'s recording (step 3), whose object the store has
        deleted (`versions` of it). Return the log row, or None if another process finished it
        first."""
        at = datetime.now(UTC)
        sha = self.source_sha256(claim.recording_key)
        content: dict[str, Param] = {
            "at_s": at.timestamp(),
            "recording_key": claim.recording_key,
            "object_key": claim.object_key,
            "pbx": entry.pbx,
            "source_name": entry.source_name,
            "source_sha256": sha,
            "caller": entry.caller,
            "callee": entry.callee,
            "started_at": entry.started_at.isoformat(),
            "reason": claim.reason,
            "basis": claim.basis,
            "command": claim.command,
            "username": claim.username,
            "versions": versions,
        }

        def work(execute: Execute) -> bool:
            pending = execute(
                "SELECT 1 FROM destruction_pending WHERE recording_key = ?",
                (claim.recording_key,),
            ).one()
            if pending is None:
                return False
            logged = execute(
                f"SELECT 1 FROM {_TABLE} WHERE recording_key = ?", (claim.recording_key,)
            ).one()
            if logged is not None:  # destroyed already (a claim made as it was finished)
                execute(
                    "DELETE FROM destruction_pending WHERE recording_key = ?",
                    (claim.recording_key,),
                )
                return False
            append_within(execute, _TABLE, content)
            execute("DELETE FROM catalogue WHERE recording_key = ?", (claim.recording_key,))
            execute(
                "UPDATE recordings SET state = 'destroyed', updated_at = ?, lease_until = NULL"
                " WHERE key = ?",
                (at.timestamp(), claim.recording_key),
            )
            execute(
                "DELETE FROM destruction_pending WHERE recording_key = ?", (claim.recording_key,)
            )
            return True

        if not self._db.atomic(work, lock=_TABLE):
            return None
        return self.of_recording(claim.recording_key)

    def cancel(self, claim: Claim) -> None:
        """Drop `claim` (the store refused, or a hold covers the recording now)."""
        self._db.execute(
            "DELETE FROM destruction_pending WHERE recording_key = ?", (claim.recording_key,)
        )

    def pending(self) -> list[tuple[Claim, CatalogueEntry | None]]:
        """Destructions claimed and not finished (a process killed between the store and the
        log, or one at work right now), with their catalogue rows (None: the row is gone)."""
        claims = [
            _claim(row)
            for row in self._db.execute(
                f"SELECT {_PENDING} FROM destruction_pending ORDER BY claimed_at_s"
            ).rows
        ]
        found = []
        for claim in claims:
            rows = catalogue_rows(self._db, "recording_key = ?", [claim.recording_key], limit=1)
            found.append((claim, rows[0] if rows else None))
        return found

    # -- the log --------------------------------------------------------------------------------

    def of_recording(self, recording_key: str) -> Destruction | None:
        row = self._db.execute(
            f"SELECT id, {', '.join(LOG_COLUMNS)} FROM {_TABLE} WHERE recording_key = ?",
            (recording_key,),
        ).one()
        return None if row is None else _destruction(row)

    def of_object(self, object_key: str) -> Destruction | None:
        """The destruction of the recording stored at `object_key`, if it was destroyed (the
        web answers its audio URL 410 Gone)."""
        row = self._db.execute(
            f"SELECT id, {', '.join(LOG_COLUMNS)} FROM {_TABLE} WHERE object_key = ?"
            " ORDER BY id DESC LIMIT 1",
            (object_key,),
        ).one()
        return None if row is None else _destruction(row)

    def between(self, since: datetime, until: datetime) -> list[Destruction]:
        """The destructions done in [since, until) (aware), in the order they happened."""
        rows = self._db.execute(
            f"SELECT id, {', '.join(LOG_COLUMNS)} FROM {_TABLE}"
            " WHERE at_s >= ? AND at_s < ? ORDER BY id",
            (since.timestamp(), until.timestamp()),
        ).rows
        return [_destruction(row) for row in rows]

    def count(self) -> int:
        row = self._db.execute(f"SELECT COUNT(*) FROM {_TABLE}").one()
        return 0 if row is None else int(row[0])

    def verify(self) -> ChainReport:
        """Walk the log's hash chain (a row changed, deleted or inserted is named)."""
        return verify(self._db, _TABLE, LOG_COLUMNS)

    # -- runs -----------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        row = self._db.execute(
            "INSERT INTO destruction_runs (started_at_s, command) VALUES (?, ?) RETURNING id",
            (datetime.now(UTC).timestamp(), command),
        ).one()
        assert row is not None  # noqa: S101 - RETURNING gives the row
        return int(row[0])

    def finish_run(
        self, run_id: int, *, destroyed: int, kept: int, failed: int, outcome: str
    ) -> None:
        self._db.execute(
            "UPDATE destruction_runs SET finished_at_s = ?, destroyed = ?, kept = ?, failed = ?,"
            " outcome = ? WHERE id = ?",
            (datetime.now(UTC).timestamp(), destroyed, kept, failed, outcome, run_id),
        )

    def last_run(
        self, *, finished: bool = True, commands: Sequence[str] = ()
    ) -> DestructionRun | None:
        """The latest run (that finished, with `finished`; of one of `commands`, if given)."""
        clauses, values = ["1 = 1"], list[Param]()
        if finished:
            clauses.append("finished_at_s IS NOT NULL")
        if commands:
            clauses.append(f"command IN ({', '.join('?' for _ in commands)})")
            values += list(commands)
        row = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM destruction_runs WHERE {' AND '.join(clauses)}"
            " ORDER BY id DESC LIMIT 1",
            values,
        ).one()
        return None if row is None else _run(row)
