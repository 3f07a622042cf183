"""The access log: who played, downloaded, exported or searched which recordings, and every login
attempt; a hash chain, so a row changed, deleted or inserted in the database is found.

A recording is personal data (KVKK, GDPR): the company must be able to show who listened to which
call. `archiver web` writes one row per play, download, zip member, search, export, access-history
view and login (successful or not); `archiver audit` lists and filters them and `archiver audit
verify` walks the chain (`archiver.state.chain`: every row carries the SHA-256 of its content and
of the row before it). Rows are only ever added, through `chain.append`.

Rows from before the chain (schema version 7) were chained by that migration, oldest first from
`GENESIS` (`chain_existing`), so the whole history verifies; what they said before the migration
is as trustworthy as the database was then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal, get_args

from archiver.state import chain
from archiver.state.db import Db, Execute, Param

__all__ = [
    "ACTIONS",
    "CHAINED_COLUMNS",
    "OUTCOMES",
    "AccessAction",
    "AccessEvent",
    "AccessLog",
    "AccessOutcome",
    "chain_existing",
]

# zip: one file inside a zip download; export: a court export (its keys in object_keys);
# audit: someone read the access history (a call's, or the audit page / CSV).
AccessAction = Literal["play", "download", "zip", "login", "logout", "search", "export", "audit"]
AccessOutcome = Literal["ok", "refused", "throttled"]
ACTIONS: Final[tuple[AccessAction, ...]] = get_args(AccessAction)
OUTCOMES: Final[tuple[AccessOutcome, ...]] = get_args(AccessOutcome)
# The columns each row's hash covers, in the table (id, prev_hash and row_hash aside).
CHAINED_COLUMNS: Final = (
    "at_s",
    "username",
    "action",
    "outcome",
    "object_key",
    "source",
    "byte_range",
    "detail",
    "item_count",
    "object_keys",
)
_TABLE: Final = "access_log"
_MAX_LISTED: Final = 100_000
_MAX_FIELD_CHARS: Final = 1024
_MAX_KEYS: Final = 100_000
_SELECT: Final = "id, " + ", ".join(CHAINED_COLUMNS)


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One access. `at` is aware UTC. `object_key` is set for plays, downloads and zip members;
    `object_keys` lists the calls of an export; `byte_range` is the Range header of a play as
    sent (None: the whole file); `detail` says more (a search's filters, an export's case
    reference, the reason a login was refused); `item_count` is a search's number of results or
    an export's number of files. `event_id` is the row's id once stored."""

    at: datetime
    username: str
    action: AccessAction
    outcome: AccessOutcome
    source: str
    object_key: str | None = None
    byte_range: str | None = None
    detail: str | None = None
    item_count: int | None = None
    object_keys: tuple[str, ...] = ()
    event_id: int | None = None

    def touches(self, object_key: str) -> bool:
        """Whether this event is about the call stored at `object_key`."""
        return self.object_key == object_key or object_key in self.object_keys


class AccessLog:
    """The access_log table, on either backend (`archiver.state.db.Db`)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def record(self, event: AccessEvent) -> str:
        """Append `event` to the chain (committed when this returns); return its row hash.
        Text fields are cut to 1024 characters, so a hostile header cannot grow the table
        without bound."""
        if len(event.object_keys) > _MAX_KEYS:
            raise ValueError(f"an event lists at most {_MAX_KEYS} keys")
        content: dict[str, Param] = {
            "at_s": event.at.timestamp(),
            "username": event.username[:_MAX_FIELD_CHARS],
            "action": event.action,
            "outcome": event.outcome,
            "object_key": _cut(event.object_key),
            "source": event.source[:_MAX_FIELD_CHARS],
            "byte_range": _cut(event.byte_range),
            "detail": _cut(event.detail),
            "item_count": event.item_count,
            "object_keys": "\n".join(event.object_keys) if event.object_keys else None,
        }
        return chain.append(self._db, _TABLE, content)

    def verify(self) -> chain.ChainReport:
        """Walk the whole chain; the report names the first row changed, deleted or inserted."""
        return chain.verify(self._db, _TABLE, CHAINED_COLUMNS)

    def events(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        username: str | None = None,
        action: AccessAction | None = None,
        object_key: str | None = None,
        number: str | None = None,
        limit: int = _MAX_LISTED,
    ) -> list[AccessEvent]:
        """Events in the order they happened, filtered: from `since` and before `until` (aware),
        of one user, one action, about one call (`object_key`: its plays, downloads, zips and
        the exports that held it) or about one party (`number`, a catalogue number key: events
        on calls whose caller or callee it is, and searches for it). At most `limit`, the latest
        when there are more."""
        clauses: list[str] = []
        values: list[Param] = []
        if since is not None:
            clauses.append("at_s >= ?")
            values.append(since.timestamp())
        if until is not None:
            clauses.append("at_s < ?")
            values.append(until.timestamp())
        for column, value in (("username", username), ("action", action)):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if object_key is not None:
            clauses.append(f"(object_key = ? OR {self._holds_key()})")
            values += [object_key, "\n", "\n", "\n", object_key, "\n"]
        if number is not None:
            clause, bound = self._about_number(number)
            clauses.append(clause)
            values += bound
        where = " AND ".join(clauses) or "1 = 1"
        rows = self._db.execute(
            f"SELECT {_SELECT} FROM access_log WHERE {where} ORDER BY id DESC LIMIT ?",
            (*values, limit),
        ).rows
        return [_event(row) for row in reversed(rows)]

    def _holds_key(self) -> str:
        """SQL true when a row's `object_keys` has a key as a whole line; binds newline,
        newline, newline, the key, newline."""
        find = "instr" if self._db.dialect == "sqlite" else "strpos"
        # `action = 'export'` (the only rows with object_keys) lets both engines answer the OR
        # from two indexes (by key, by action) instead of scanning the log.
        return f"(action = 'export' AND {find}(? || object_keys || ?, ? || ? || ?) > 0)"

    def _about_number(self, number: str) -> tuple[str, list[Param]]:
        find = "instr" if self._db.dialect == "sqlite" else "strpos"
        party = "(c.caller_number = ? OR c.callee_number = ?)"
        clause = (
            f"(object_key IN (SELECT c.object_key FROM catalogue AS c WHERE {party})"
            " OR (action = 'export' AND EXISTS (SELECT 1 FROM catalogue AS c"
            f" WHERE {party} AND {find}(? || object_keys || ?, ? || c.object_key || ?) > 0))"
            f" OR (action = 'search' AND {find}(? || detail || ?, ?) > 0))"
        )
        return clause, [number, number, number, number, "\n", "\n", "\n", "\n", " ", " ",
                        f" number={number} "]  # fmt: skip

    def first_at(self) -> datetime | None:
        """When the oldest row was written (None: the log is empty)."""
        row = self._db.execute("SELECT at_s FROM access_log ORDER BY id LIMIT 1").one()
        return None if row is None else datetime.fromtimestamp(float(row[0]), UTC)

    def last_before(self, moment: datetime) -> tuple[int, str] | None:
        """The id and hash of the last row written before `moment` (the anchor of a day)."""
        row = self._db.execute(
            "SELECT id, row_hash FROM access_log WHERE at_s < ? ORDER BY id DESC LIMIT 1",
            (moment.timestamp(),),
        ).one()
        return None if row is None else (int(row[0]), str(row[1]))

    def hash_of(self, row_id: int) -> str | None:
        """The stored hash of row `row_id`, or None if there is no such row."""
        row = self._db.execute("SELECT row_hash FROM access_log WHERE id = ?", (row_id,)).one()
        return None if row is None else str(row[0])


def _event(row: Sequence[object]) -> AccessEvent:
    (row_id, at_s, username, action, outcome, object_key, source, byte_range, detail,
     item_count, object_keys) = row  # fmt: skip
    return AccessEvent(
        at=datetime.fromtimestamp(float(at_s), UTC),  # type: ignore[arg-type]
        username=str(username),
        action=action,  # type: ignore[arg-type]
        outcome=outcome,  # type: ignore[arg-type]
        source=str(source),
        object_key=None if object_key is None else str(object_key),
        byte_range=None if byte_range is None else str(byte_range),
        detail=None if detail is None else str(detail),
        item_count=None if item_count is None else int(item_count),  # type: ignore[call-overload]
        object_keys=tuple(str(object_keys).split("\n")) if object_keys else (),
        event_id=int(row_id),  # type: ignore[call-overload]
    )


def chain_existing(execute: Execute) -> int:
    """Migration step (version 7): give every row its `prev_hash` and `row_hash`, oldest first
    from `GENESIS`, inside the migration's transaction; return how many rows were chained."""
    select = ", ".join(["id", *CHAINED_COLUMNS])
    rows = execute(f"SELECT {select} FROM access_log ORDER BY id").rows
    prev = chain.GENESIS
    for row in rows:
        content = dict(zip(CHAINED_COLUMNS, row[1:], strict=True))
        digest = chain.row_hash(prev, content)
        execute("UPDATE access_log SET prev_hash = ?, row_hash = ? WHERE id = ?",
                (prev, digest, row[0]))  # fmt: skip
        prev = digest
    return len(rows)


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_FIELD_CHARS]
