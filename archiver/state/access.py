"""The access log: who played or downloaded which recording, and every login attempt.

A recording is personal data (KVKK, GDPR): the company must be able to show who listened to which
call. `archiver web` writes one row per play, download and login (successful or not);
`archiver audit` lists them. Rows are only ever added.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from archiver.state.db import Db, Param

__all__ = ["ACTIONS", "OUTCOMES", "AccessAction", "AccessEvent", "AccessLog", "AccessOutcome"]

AccessAction = Literal["play", "download", "login"]
AccessOutcome = Literal["ok", "refused", "throttled"]
ACTIONS: Final[tuple[AccessAction, ...]] = ("play", "download", "login")
OUTCOMES: Final[tuple[AccessOutcome, ...]] = ("ok", "refused", "throttled")
_MAX_LISTED: Final = 100_000
_MAX_FIELD_CHARS: Final = 1024


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One access. `at` is aware UTC. `object_key` is set for plays and downloads; `byte_range`
    is the Range header of a play as sent (None: the whole file); `detail` says more (`zip` for
    a file inside a zip download, the reason a login was refused)."""

    at: datetime
    username: str
    action: AccessAction
    outcome: AccessOutcome
    source: str
    object_key: str | None = None
    byte_range: str | None = None
    detail: str | None = None


class AccessLog:
    """The access_log table, on either backend (`archiver.state.db.Db`)."""

    def __init__(self, db: Db) -> None:
        self._db = db

    def record(self, event: AccessEvent) -> None:
        """Append `event` (one statement: committed when this returns). Text fields are cut to
        1024 characters, so a hostile header cannot grow the file without bound."""
        self._db.execute(
            "INSERT INTO access_log (at_s, username, action, outcome, object_key, source,"
            " byte_range, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.at.timestamp(),
                event.username[:_MAX_FIELD_CHARS],
                event.action,
                event.outcome,
                _cut(event.object_key),
                event.source[:_MAX_FIELD_CHARS],
                _cut(event.byte_range),
                _cut(event.detail),
            ),
        )

    def events(
        self,
        *,
        since: datetime | None = None,
        username: str | None = None,
        limit: int = _MAX_LISTED,
    ) -> list[AccessEvent]:
        """Events in the order they happened, optionally from `since` (aware) on and of one
        user; at most `limit` (the latest ones when there are more)."""
        clauses: list[str] = []
        values: list[Param] = []
        if since is not None:
            clauses.append("at_s >= ?")
            values.append(since.timestamp())
        if username is not None:
            clauses.append("username = ?")
            values.append(username)
        where = " AND ".join(clauses) or "1 = 1"
        rows = self._db.execute(
            "SELECT at_s, username, action, outcome, source, object_key, byte_range, detail"
            f" FROM access_log WHERE {where} ORDER BY id DESC LIMIT ?",
            (*values, limit),
        ).rows
        return [
            AccessEvent(
                at=datetime.fromtimestamp(float(row[0]), UTC),
                username=str(row[1]),
                action=row[2],
                outcome=row[3],
                source=str(row[4]),
                object_key=None if row[5] is None else str(row[5]),
                byte_range=None if row[6] is None else str(row[6]),
                detail=None if row[7] is None else str(row[7]),
            )
            for row in reversed(rows)
        ]


def _cut(text: str | None) -> str | None:
    return None if text is None else text[:_MAX_FIELD_CHARS]
