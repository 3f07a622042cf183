"""Legal holds: recordings kept past their retention period for a case (a dispute, an
investigation). A hold selects by number, by key or by a span of days (optionally of one PBX); it
covers the recordings archived before it and those archived after it that match it, until it is
released. Held recordings are never destroyed or erased (archiver/retention/ asks here, and the
destruction claim asks again in its own transaction: `HELD_SQL`).

Rows are never deleted: a release stamps the row, so the holds' history stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

from archiver.state.catalogue import CatalogueEntry, catalogue_rows, number_key
from archiver.state.db import Db, Execute, Param

__all__ = ["HELD_SQL", "HOLDS_LOCK", "Hold", "Holds", "held_params"]

# Adding a hold and claiming a recording for destruction take this lock, so one never misses
# the other (PostgreSQL; on SQLite every write transaction is serialised anyway).
HOLDS_LOCK: Final = "holds"
_COLUMNS: Final = (
    "id, case_ref, number, object_key, from_day, to_day, pbx, note, created_at_s, created_by,"
    " released_at_s, released_by"
)
# The active holds that cover one catalogue row; bound with `held_params(entry)`.
HELD_SQL: Final = (
    f"SELECT {_COLUMNS} FROM holds WHERE released_at_s IS NULL"
    " AND (number IS NULL OR number = ? OR number = ?)"
    " AND (object_key IS NULL OR object_key = ? OR object_key = ?)"
    " AND (pbx IS NULL OR pbx = ?)"
    " AND (from_day IS NULL OR from_day <= ?) AND (to_day IS NULL OR to_day >= ?)"
    " ORDER BY id"
)


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold. `number` is the searchable form of the number given (any spelling finds the
    same calls); `key` an object key or a recording key; `from_day`/`to_day` the PBX's local
    days of the calls' start, both included. Times are aware UTC."""

    id: int
    case_ref: str
    number: str | None
    key: str | None
    from_day: date | None
    to_day: date | None
    pbx: str | None
    note: str | None
    created_at: datetime
    created_by: str
    released_at: datetime | None
    released_by: str | None

    @property
    def active(self) -> bool:
        return self.released_at is None

    def selector(self) -> str:
        """The hold's selection in words, for listings."""
        parts = []
        if self.number is not None:
            parts.append(f"number {self.number}")
        if self.key is not None:
            parts.append(f"key {self.key}")
        if self.from_day is not None or self.to_day is not None:
            parts.append(f"days {self.from_day} to {self.to_day}")
        if self.pbx is not None:
            parts.append(f"pbx {self.pbx}")
        return ", ".join(parts)


def held_params(entry: CatalogueEntry) -> list[Param]:
    """The values `HELD_SQL` is bound with for `entry`."""
    day = entry.started_at.date().isoformat()
    return [
        number_key(entry.caller),
        number_key(entry.callee),
        entry.object_key,
        entry.recording_key,
        entry.pbx,
        day,
        day,
    ]


def _hold(row: Sequence[object]) -> Hold:
    (ident, case_ref, number, key, from_day, to_day, pbx, note, created_at_s, created_by,
     released_at_s, released_by) = row  # fmt: skip
    return Hold(
        id=int(ident),  # type: ignore[call-overload]
        case_ref=str(case_ref),
        number=None if number is None else str(number),
        key=None if key is None else str(key),
        from_day=None if from_day is None else date.fromisoformat(str(from_day)),
        to_day=None if to_day is None else date.fromisoformat(str(to_day)),
        pbx=None if pbx is None else str(pbx),
        note=None if note is None else str(note),
        created_at=datetime.fromtimestamp(float(created_at_s), UTC),  # type: ignore[arg-type]
        created_by=str(created_by),
        released_at=(
            None if released_at_s is None else datetime.fromtimestamp(float(released_at_s), UTC)  # type: ignore[arg-type]
        ),
        released_by=None if released_by is None else str(released_by),
    )


class Holds:
    """The holds table, on either backend."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def add(
        self,
        case_ref: str,
        *,
        by: str,
        number: str | None = None,
        key: str | None = None,
        from_day: date | None = None,
        to_day: date | None = None,
        pbx: str | None = None,
        note: str | None = None,
    ) -> Hold:
        """Record a hold (the caller has validated the values: a selector is given, the days
        are in order, `number` is a `number_key`); return it."""
        if number is None and key is None and from_day is None:
            raise ValueError("a hold needs a number, a key or a span of days")
        now = datetime.now(UTC)
        values: list[Param] = [
            case_ref,
            number,
            key,
            None if from_day is None else from_day.isoformat(),
            None if to_day is None else to_day.isoformat(),
            pbx,
            note,
            now.timestamp(),
            by,
        ]

        def work(execute: Execute) -> int:
            row = execute(
                "INSERT INTO holds (case_ref, number, object_key, from_day, to_day, pbx, note,"
                " created_at_s, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            ).one()
            assert row is not None  # noqa: S101 - RETURNING gives the row
            return int(row[0])

        ident = self._db.atomic(work, lock=HOLDS_LOCK)
        found = self.get(ident)
        assert found is not None  # noqa: S101 - just written
        return found

    def get(self, ident: int) -> Hold | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM holds WHERE id = ?", (ident,)).one()
        return None if row is None else _hold(row)

    def listed(self, *, include_released: bool = False) -> list[Hold]:
        """Every active hold (and the released ones too with `include_released`), oldest
        first."""
        where = "" if include_released else " WHERE released_at_s IS NULL"
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM holds{where} ORDER BY id").rows
        return [_hold(row) for row in rows]

    def of_case(self, case_ref: str) -> list[Hold]:
        """The holds of one case, released ones included."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM holds WHERE case_ref = ? ORDER BY id", (case_ref,)
        ).rows
        return [_hold(row) for row in rows]

    def release(self, case_ref: str, *, by: str) -> list[Hold]:
        """Release every active hold of `case_ref`; return them (released). [] if the case has
        no active hold."""
        now = datetime.now(UTC).timestamp()
        rows = self._db.execute(
            f"UPDATE holds SET released_at_s = ?, released_by = ? WHERE case_ref = ?"
            f" AND released_at_s IS NULL RETURNING {_COLUMNS}",
            (now, by, case_ref),
        ).rows
        return sorted((_hold(row) for row in rows), key=lambda hold: hold.id)

    def covering(self, entry: CatalogueEntry) -> list[Hold]:
        """The active holds that cover `entry`."""
        return [_hold(row) for row in self._db.execute(HELD_SQL, held_params(entry)).rows]

    def covers(
        self, *, pbx: str, caller: str, callee: str, key: str, recording_key: str, day: date
    ) -> bool:
        """Whether an active hold covers a recording about to be archived (the pipeline sets
        the store's legal hold at upload then)."""
        row = self._db.execute(
            f"SELECT 1 FROM ({HELD_SQL}) AS held LIMIT 1",
            (number_key(caller), number_key(callee), key, recording_key, pbx,
             day.isoformat(), day.isoformat()),
        ).one()  # fmt: skip
        return row is not None

    def entries(self, hold: Hold, *, limit: int = 1_000_000) -> list[CatalogueEntry]:
        """The archived recordings `hold` selects (active or not), oldest first."""
        clauses: list[str] = []
        values: list[Param] = []
        if hold.number is not None:
            clauses.append("(caller_number = ? OR callee_number = ?)")
            values += [hold.number, hold.number]
        if hold.key is not None:
            clauses.append("(object_key = ? OR recording_key = ?)")
            values += [hold.key, hold.key]
        if hold.pbx is not None:
            clauses.append("pbx = ?")
            values.append(hold.pbx)
        if hold.from_day is not None:
            clauses.append("substr(started_local, 1, 10) >= ?")
            values.append(hold.from_day.isoformat())
        if hold.to_day is not None:
            clauses.append("substr(started_local, 1, 10) <= ?")
            values.append(hold.to_day.isoformat())
        return catalogue_rows(self._db, " AND ".join(clauses) or "1 = 1", values, limit=limit)
