"""The call log: calls placed through `archiver call` and the PBX's call-result callbacks.

Two tables beside the ledger's (one file or database to back up), kept by this module so the
recordings' ledger stays as it is; the same code runs on SQLite and PostgreSQL
(`archiver.state.db.Db`). A callback names only the dialled number, so each event is
tied, when it arrives, to the latest call placed to that number within `window_s`; events that
match no call are kept too (autocall_id NULL): nothing the PBX sends is dropped. A callback that
ends a call also sets the dial status of its recordings already in the catalogue.

Writers: `archiver call` (another process) and the daemon's callback receiver. WAL mode and a
busy timeout let them share the file; every write is one short statement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from archiver.names import Recording
from archiver.numbers import InvalidNumber, normalise_number
from archiver.state.catalogue import Catalogue
from archiver.state.db import Db, Param

__all__ = ["CallEvent", "CallLog", "CallSummary", "EventKind", "PlacedState"]

EventKind = Literal["progress", "final", "unknown"]
PlacedState = Literal["placing", "placed", "refused"]

# A callback or a recording may carry a time a little before the call we logged: the PBX's
# clock and ours are not the same clock.
CLOCK_SLACK_S: Final = 300.0
_MAX_LISTED: Final = 10_000


@dataclass(frozen=True, slots=True)
class CallEvent:
    """One call-result callback as received."""

    id: int
    autocall_id: int | None
    number: str
    status: str
    kind: EventKind
    ended: bool
    received_at: float
    source: str
    # What the PBX left out or sent oddly, kept with the event rather than refused:
    # son_missing, son_empty, son_unknown, sonuc_empty, telefon_missing, telefon_not_turkish.
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One placed call and where it got to. `status` is the status of the event that ended the
    call, else the latest final status, else the latest progress code, else None (no callback
    yet); `ended` says whether the PBX said the call is over."""

    id: int
    pbx: str
    number: str
    placed_at: float
    dial_at: float
    state: PlacedState
    reply: str | None
    params: dict[str, str]
    status: str | None
    ended: bool
    events: int


class CallLog:
    """Placed calls and callback events in the ledger's SQLite file."""

    def __init__(self, db: Db, *, window_s: float) -> None:
        self._db = db
        self.window_s = window_s

    @classmethod
    def open(cls, path: Path, *, window_s: float = 3600.0) -> CallLog:
        """Open (creating or migrating it if needed) the call log in the SQLite file at `path`.
        `window_s`: how long after a call was dialled its callbacks and recording belong to it."""
        from archiver.state.migrate import open_database  # migrate needs this module's peers

        return cls(open_database(path), window_s=window_s)

    @property
    def db(self) -> Db:
        return self._db

    def close(self) -> None:
        self._db.close()

    # -- placed calls ------------------------------------------------------------------------------

    def begin(
        self, pbx: str, number: str, params: Mapping[str, str], *, dial_at: float | None = None
    ) -> int:
        """Log a call to `number` (normalised) about to be placed with the autocalls.cgi query
        `params` (before the request, so no early callback can miss it); return its id.
        `dial_at` (epoch s) defaults to now."""
        now = time.time()
        row = self._db.execute(
            "INSERT INTO autocalls (pbx, number, placed_at, dial_at, params, state)"
            " VALUES (?, ?, ?, ?, ?, 'placing') RETURNING id",
            (pbx, number, now, now if dial_at is None else dial_at, json.dumps(dict(params))),
        ).rows[0]
        return int(row[0])

    def finish_placing(self, call_id: int, *, accepted: bool, reply: str) -> None:
        """Record the PBX's answer to the request: `placed`, or `refused` with the reason."""
        self._db.execute(
            "UPDATE autocalls SET state = ?, reply = ? WHERE id = ?",
            ("placed" if accepted else "refused", reply[:500], call_id),
        )

    def calls(
        self, *, number: str | None = None, since: float | None = None, limit: int = _MAX_LISTED
    ) -> list[CallSummary]:
        """The placed calls, newest first, optionally to one number and dialled since `since`."""
        where, values = _where(("number = ?", number), ("dial_at >= ?", since))
        rows = self._db.execute(
            "SELECT id, pbx, number, placed_at, dial_at, state, reply, params FROM autocalls"
            f" WHERE {where} ORDER BY dial_at DESC, id DESC LIMIT ?",
            (*values, limit),
        ).rows
        return [self._summary(row) for row in rows]

    def get(self, call_id: int) -> CallSummary | None:
        row = self._db.execute(
            "SELECT id, pbx, number, placed_at, dial_at, state, reply, params FROM autocalls"
            " WHERE id = ?",
            (call_id,),
        ).one()
        return None if row is None else self._summary(row)

    def _summary(self, row: tuple[object, ...]) -> CallSummary:
        call_id, pbx, number, placed_at, dial_at, state, reply, params = row
        events = self.events(autocall_id=int(call_id))  # type: ignore[call-overload]
        return CallSummary(
            id=int(call_id),  # type: ignore[call-overload]
            pbx=str(pbx),
            number=str(number),
            placed_at=float(placed_at),  # type: ignore[arg-type]
            dial_at=float(dial_at),  # type: ignore[arg-type]
            state=state,  # type: ignore[arg-type]  # CHECKed on write
            reply=None if reply is None else str(reply),
            params=json.loads(str(params)),
            status=_status_of(events),
            ended=any(event.ended for event in events),
            events=len(events),
        )

    def mask_number(self, number: str, mask: str) -> int:
        """Replace `number` (normalised) with `mask` wherever the call log keeps it: the calls
        placed to it (their number and the request's parameters) and the callbacks about it
        (an erasure request, `archiver erase`). Return how many rows changed."""
        changed = 0
        rows = self._db.execute("SELECT id, params FROM autocalls WHERE number = ?", (number,)).rows
        for call_id, params in rows:
            values = json.loads(str(params))
            masked = {
                name: mask if _same_number(str(value), number) else value
                for name, value in values.items()
            }
            changed += self._db.execute(
                "UPDATE autocalls SET number = ?, params = ? WHERE id = ?",
                (mask, json.dumps(masked), call_id),
            ).rowcount
        changed += self._db.execute(
            "UPDATE call_events SET number = ? WHERE number = ?", (mask, number)
        ).rowcount
        return changed

    # -- callbacks ---------------------------------------------------------------------------------

    def record_event(
        self,
        *,
        number: str,
        status: str,
        kind: EventKind,
        ended: bool,
        source: str,
        received_at: float | None = None,
        flags: tuple[str, ...] = (),
    ) -> CallEvent:
        """Store one callback, tied to the latest call to `number` dialled within the window
        (or to none); return it as stored. `flags` name what was missing or odd in it."""
        now = time.time() if received_at is None else received_at
        autocall_id = self._call_for(number, now) if number else None
        row = self._db.execute(
            "INSERT INTO call_events (autocall_id, number, status, kind, ended, received_at,"
            " source, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (autocall_id, number, status, kind, int(ended), now, source, ",".join(flags)),
        ).rows[0]
        if autocall_id is not None and (ended or kind == "final"):
            # Recordings of this call already archived show how it ended, in the web's search.
            Catalogue(self._db).set_dial_status(autocall_id, status)
        return CallEvent(
            id=int(row[0]),
            autocall_id=autocall_id,
            number=number,
            status=status,
            kind=kind,
            ended=ended,
            received_at=now,
            source=source,
            flags=flags,
        )

    def _call_for(self, number: str, at: float) -> int | None:
        row = self._db.execute(
            "SELECT id FROM autocalls WHERE number = ? AND state != 'refused'"
            " AND dial_at BETWEEN ? AND ? ORDER BY dial_at DESC, id DESC LIMIT 1",
            (number, at - self.window_s, at + CLOCK_SLACK_S),
        ).one()
        return None if row is None else int(row[0])

    def events(
        self, *, autocall_id: int | None = None, number: str | None = None
    ) -> list[CallEvent]:
        """Callback events in arrival order, for one call or one number (or all)."""
        where, values = _where(("autocall_id = ?", autocall_id), ("number = ?", number))
        rows = self._db.execute(
            "SELECT id, autocall_id, number, status, kind, ended, received_at, source, flags"
            f" FROM call_events WHERE {where} ORDER BY id LIMIT ?",
            (*values, _MAX_LISTED),
        ).rows
        return [
            CallEvent(
                id=int(r[0]),
                autocall_id=None if r[1] is None else int(r[1]),
                number=str(r[2]),
                status=str(r[3]),
                kind=r[4],
                ended=bool(r[5]),
                received_at=float(r[6]),
                source=str(r[7]),
                flags=tuple(flag for flag in str(r[8]).split(",") if flag),
            )
            for r in rows
        ]

    # -- recordings --------------------------------------------------------------------------------

    def call_for_recording(self, rec: Recording) -> CallSummary | None:
        """The placed call a recording belongs to: its caller or callee is the dialled number
        and it started within the window after the call was dialled (the latest such call)."""
        numbers = sorted({n for n in map(_lenient_number, (rec.caller, rec.callee)) if n})
        if not numbers:
            return None
        started_s = rec.started_at.timestamp()
        marks = ", ".join("?" for _ in numbers)
        row = self._db.execute(
            f"SELECT id FROM autocalls WHERE number IN ({marks}) AND state != 'refused'"
            " AND dial_at BETWEEN ? AND ? ORDER BY dial_at DESC, id DESC LIMIT 1",
            (*numbers, started_s - self.window_s, started_s + CLOCK_SLACK_S),
        ).one()
        return None if row is None else self.get(int(row[0]))

    def recording_metadata(self, rec: Recording) -> dict[str, str]:
        """Extra S3 metadata for `rec`: `autocall-id` and `dial-status` (`pending` until a
        callback said more) when it belongs to a call placed through archiver, else nothing."""
        call = self.call_for_recording(rec)
        if call is None:
            return {}
        return {"autocall-id": str(call.id), "dial-status": call.status or "pending"}


def _status_of(events: list[CallEvent]) -> str | None:
    for event in reversed(events):
        if event.ended:
            return event.status
    for event in reversed(events):
        if event.kind == "final":
            return event.status
    # A progress or unknown status, the latest that says anything (an empty `sonuc` is kept
    # flagged, but it is not a status).
    return next((event.status for event in reversed(events) if event.status), None)


def _lenient_number(party: str) -> str | None:
    """A recording's party as a dialled number, or None (an extension, `anonymous`, ...)."""
    try:
        return normalise_number(party)
    except InvalidNumber:
        return None


def _where(
    *conditions: tuple[str, str | int | float | None],
) -> tuple[str, list[Param]]:
    """AND the fixed `clause`s whose value is given; return the SQL text and its parameters."""
    given = [(clause, value) for clause, value in conditions if value is not None]
    text = " AND ".join(clause for clause, _ in given) or "1 = 1"
    return text, [value for _, value in given if value is not None]


_SEPARATORS = str.maketrans("", "", " -().\t")


def _same_number(value: str, number: str) -> bool:
    """Whether a stored parameter is `number` in some spelling (blanks, dashes, dots and
    brackets between the digits allowed)."""
    if value == number:
        return True
    try:
        return normalise_number(value.translate(_SEPARATORS)) == number
    except InvalidNumber:
        return False
