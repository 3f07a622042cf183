"""The catalogue: one row per verified recording, searchable, for `archiver web`.

A row is written in the same transaction that marks its recording verified in the ledger
(`Ledger.mark_verified`), so the catalogue never lists a recording the ledger does not have as
verified, and never misses one. `archiver reconcile` rebuilds it from the bucket; the schema
migration that created it filled it from the ledger.

Numbers are searched through `number_key`: `03123320404`, `3123320404`, `+903123320404` and
`903123320404` are one key, so any spelling finds the same calls. Parties that are not phone
numbers (an extension such as `100`) are their own key.

Search results are newest first and paged by an opaque cursor (keyset paging: the next page costs
the same however deep it is). SQL here is plain enough for PostgreSQL too: the same methods will
exist there with the same contracts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final
from zoneinfo import ZoneInfo

import structlog

from archiver.names import InvalidName, Recording, parse_name
from archiver.numbers import InvalidNumber, normalise_number
from archiver.scope import WHOLE, Scope
from archiver.state.db import Db, Param, SqliteDb

__all__ = [
    "MAX_PAGE",
    "Catalogue",
    "CatalogueEntry",
    "InvalidQuery",
    "SearchPage",
    "SearchQuery",
    "catalogue_entry",
    "catalogue_rows",
    "fill_from_ledger",
    "number_key",
    "scope_clause",
    "search_number",
    "upsert_statements",
]

log = structlog.get_logger(__name__)

MAX_PAGE: Final = 500
_NUMBER_SEPARATORS = str.maketrans("", "", " -().\t")
_MAX_CURSOR_CHARS = 2048


class InvalidQuery(ValueError):
    """A search cannot be run as asked; `reason` is safe to show (it never echoes input)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One archived recording as the catalogue knows it.

    `started_at` is aware, in the PBX's local time (its offset kept); `archived_at` is aware UTC.
    `size_bytes` is the MP3's size (None only for rows moved from a ledger that lacked it).
    `dial_status` / `autocall_id` are set for calls placed through archiver.
    """

    object_key: str
    recording_key: str
    pbx: str
    trunk: str
    caller: str
    callee: str
    started_at: datetime
    duration_s: int
    size_bytes: int | None
    dial_status: str | None
    autocall_id: int | None
    source_name: str
    archived_at: datetime

    @property
    def download_name(self) -> str:
        """The original's file name with `.mp3` for its extension."""
        stem = self.source_name.rsplit(".", 1)[0] if "." in self.source_name else self.source_name
        return f"{stem}.mp3"


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to look for. Every filter is optional; they combine with AND.

    `number` in any spelling (spaces and dashes allowed) matches the caller or the callee.
    `since`/`until` are aware datetimes: calls that started in [since, until). `min_duration_s`
    keeps calls at least that long. `limit` is 1..MAX_PAGE. `cursor` is a `SearchPage.next_cursor`
    of the same query. `scope` is the user's (`archiver.scope`): calls outside it are never
    found, counted or paged through (the default holds everything).
    """

    number: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    pbx: str | None = None
    trunk: str | None = None
    min_duration_s: int | None = None
    dial_status: str | None = None
    limit: int = 50
    cursor: str | None = None
    scope: Scope = WHOLE


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results, newest first; `total` counts every match of the query (all
    pages); `next_cursor` is None on the last page."""

    items: tuple[CatalogueEntry, ...]
    total: int
    next_cursor: str | None


def number_key(party: str) -> str | None:
    """The searchable form of a recording's caller or callee: a phone number as
    `normalise_number` gives it (`90` + 10 digits), any other non-empty party as it is (an
    extension), None for an empty party."""
    if not party:
        return None
    try:
        return normalise_number(party)
    except InvalidNumber:
        return party


def search_number(text: str) -> str:
    """What a user typed in the number box, as the key to look up: blanks, dashes, dots and
    brackets dropped, then `number_key`. Raise `InvalidQuery` if nothing but digits (and one
    leading `+`) remains."""
    compact = text.translate(_NUMBER_SEPARATORS)
    digits = compact[1:] if compact.startswith("+") else compact
    if not digits or not (digits.isascii() and digits.isdigit()) or len(compact) > 32:
        raise InvalidQuery("a number is digits, optionally with a leading + (max 32)")
    key = number_key(compact)
    if key is None:  # unreachable: compact is non-empty
        raise InvalidQuery("empty number")
    return key


def catalogue_entry(
    rec: Recording,
    *,
    object_key: str,
    size_bytes: int | None,
    metadata: Mapping[str, str] | None = None,
    archived_at: datetime | None = None,
) -> CatalogueEntry:
    """The catalogue row of `rec` stored at `object_key`. `metadata` (the object's extra S3
    metadata) gives `dial-status` and `autocall-id` when present; a malformed id is left out."""
    extra = metadata or {}
    autocall = extra.get("autocall-id", "")
    return CatalogueEntry(
        object_key=object_key,
        recording_key=rec.key,
        pbx=rec.pbx,
        trunk=rec.folder,
        caller=rec.caller,
        callee=rec.callee,
        started_at=rec.started_at,
        duration_s=rec.duration_s,
        size_bytes=size_bytes,
        dial_status=extra.get("dial-status") or None,
        autocall_id=int(autocall) if autocall.isdigit() and len(autocall) < 19 else None,
        source_name=rec.name,
        archived_at=archived_at or datetime.now(UTC),
    )


_COLUMNS: Final = (
    "object_key, recording_key, pbx, trunk, caller, callee, caller_number, callee_number,"
    " started_local, started_utc_s, duration_s, size_bytes, dial_status, autocall_id,"
    " source_name, archived_at_s"
)
_SELECT: Final = (
    "object_key, recording_key, pbx, trunk, caller, callee, started_local, duration_s,"
    " size_bytes, dial_status, autocall_id, source_name, archived_at_s"
)


def _row(entry: CatalogueEntry) -> list[Param]:
    return [
        entry.object_key,
        entry.recording_key,
        entry.pbx,
        entry.trunk,
        entry.caller,
        entry.callee,
        number_key(entry.caller),
        number_key(entry.callee),
        entry.started_at.isoformat(),
        int(entry.started_at.timestamp()),
        entry.duration_s,
        entry.size_bytes,
        entry.dial_status,
        entry.autocall_id,
        entry.source_name,
        entry.archived_at.timestamp(),
    ]


_INSERT: Final = f"INSERT INTO catalogue ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"
# The recording is verified at this very key: a catalogue row never outruns the ledger.
_VERIFIED: Final = (
    "EXISTS (SELECT 1 FROM recordings WHERE key = ? AND state = 'verified' AND object_key = ?)"
)


def upsert_statements(
    entry: CatalogueEntry, *, only_if_verified: bool = False
) -> list[tuple[str, list[Param]]]:
    """The statements that write `entry`, replacing the row of the same object or recording
    (delete, then insert: a recording moved to another key must not leave two rows). Run them
    in one transaction (`Db.transaction`), e.g. with the ledger's verified write. With
    `only_if_verified` they change nothing unless the ledger has the recording verified at
    `entry.object_key` (a worker whose lease was taken over must not write the row)."""
    guard: list[Param] = [entry.recording_key, entry.object_key]
    if not only_if_verified:
        return [
            ("DELETE FROM catalogue WHERE object_key = ? OR recording_key = ?",
             [entry.object_key, entry.recording_key]),
            (_INSERT, _row(entry)),
        ]  # fmt: skip
    marks = ", ".join("?" * 16)
    return [
        (f"DELETE FROM catalogue WHERE (object_key = ? OR recording_key = ?) AND {_VERIFIED}",
         [entry.object_key, entry.recording_key, *guard]),
        (f"INSERT INTO catalogue ({_COLUMNS}) SELECT {marks} WHERE {_VERIFIED}",
         [*_row(entry), *guard]),
    ]  # fmt: skip


def _entry(row: Sequence[object]) -> CatalogueEntry:
    (object_key, recording_key, pbx, trunk, caller, callee, started_local, duration_s,
     size_bytes, dial_status, autocall_id, source_name, archived_at_s) = row  # fmt: skip
    return CatalogueEntry(
        object_key=str(object_key),
        recording_key=str(recording_key),
        pbx=str(pbx),
        trunk=str(trunk),
        caller=str(caller),
        callee=str(callee),
        started_at=datetime.fromisoformat(str(started_local)),
        duration_s=int(duration_s),  # type: ignore[call-overload]
        size_bytes=None if size_bytes is None else int(size_bytes),  # type: ignore[call-overload]
        dial_status=None if dial_status is None else str(dial_status),
        autocall_id=None if autocall_id is None else int(autocall_id),  # type: ignore[call-overload]
        source_name=str(source_name),
        archived_at=datetime.fromtimestamp(float(archived_at_s), UTC),  # type: ignore[arg-type]
    )


def _encode_cursor(entry: CatalogueEntry) -> str:
    raw = f"{int(entry.started_at.timestamp())}:{entry.object_key}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    if len(cursor) > _MAX_CURSOR_CHARS:
        raise InvalidQuery("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        started, key = raw.split(":", 1)
        return int(started), key
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidQuery("cursor is not one this server gave") from None


class Catalogue:
    """Search and status queries over the catalogue table, and its rebuild by reconcile.

    Works on either backend (`archiver.state.db.Db`, migrated: see `archiver.state.migrate`).
    """

    def __init__(self, db: Db) -> None:
        self._db = db

    def upsert(self, entry: CatalogueEntry) -> None:
        """Write one entry in its own transaction (the daemon goes through
        `Ledger.mark_verified`, reconcile through `Ledger.restore`)."""
        self._db.transaction(upsert_statements(entry))

    def get(self, object_key: str, *, scope: Scope = WHOLE) -> CatalogueEntry | None:
        """The entry stored at `object_key`, or None; None too when it lies outside `scope`
        (a user asking for a call they may not see learns nothing, not even that it exists).
        The web serves only keys found here."""
        where, values = scope_clause(scope)
        row = self._db.execute(
            f"SELECT {_SELECT} FROM catalogue WHERE object_key = ? AND {where}",
            (object_key, *values),
        ).one()
        return None if row is None else _entry(row)

    def search(self, query: SearchQuery) -> SearchPage:
        """Run `query`: the page of matches after its cursor, newest first (by start time, then
        object key), and the total number of matches. Raise `InvalidQuery` for a bad number,
        limit or cursor."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidQuery(f"limit must be 1..{MAX_PAGE}")
        where, values = self._where(query)
        total = self._total(query, where, values)
        page_where, page_values = where, list(values)
        if query.cursor is not None:
            started_s, key = _decode_cursor(query.cursor)
            page_where += " AND (started_utc_s < ? OR (started_utc_s = ? AND object_key < ?))"
            page_values += [started_s, started_s, key]
        rows = self._db.execute(
            f"SELECT {_SELECT} FROM catalogue WHERE {page_where}"
            " ORDER BY started_utc_s DESC, object_key DESC LIMIT ?",
            (*page_values, query.limit + 1),
        ).rows
        items = tuple(_entry(row) for row in rows[: query.limit])
        more = len(rows) > query.limit
        return SearchPage(items, total, _encode_cursor(items[-1]) if more and items else None)

    def _count(self, where: str, values: Sequence[Param]) -> int:
        row = self._db.execute(f"SELECT COUNT(*) FROM catalogue WHERE {where}", values).one()
        return 0 if row is None else int(row[0])

    def _total(self, query: SearchQuery, where: str, values: Sequence[Param]) -> int:
        """How many rows match. A query of a time range (and a PBX) only is summed from the
        per-hour counts (`catalogue_hours`, kept by triggers) plus exact counts of its partial
        first and last hours; any other filter counts the matching rows."""
        if (
            query.number
            or query.trunk
            or query.dial_status
            or query.min_duration_s is not None
            or not query.scope.whole
        ):
            return self._count(where, values)
        low = -(2**62) if query.since is None else _epoch_s(query.since)
        high = 2**62 if query.until is None else _epoch_s(query.until)
        first_hour = -(-low // 3600) * 3600  # the first whole hour inside the range
        end_hour = high // 3600 * 3600  # the end of the last whole hour inside it
        if end_hour <= first_hour:
            return self._count(where, values)
        pbx_clause, pbx_values = (" AND pbx = ?", [query.pbx]) if query.pbx else ("", [])
        hours = self._db.execute(
            "SELECT COALESCE(SUM(recordings), 0) FROM catalogue_hours"
            f" WHERE hour_s >= ? AND hour_s < ?{pbx_clause}",
            (first_hour, end_hour, *pbx_values),
        ).rows[0][0]
        edges = " OR ".join(
            clause
            for clause, needed in (
                ("(started_utc_s >= ? AND started_utc_s < ?)", low < first_hour),
                ("(started_utc_s >= ? AND started_utc_s < ?)", end_hour < high),
            )
            if needed
        )
        edge_values: list[Param] = [
            *([low, first_hour] if low < first_hour else []),
            *([end_hour, high] if end_hour < high else []),
        ]
        partial = self._count(f"({edges}){pbx_clause}", [*edge_values, *pbx_values]) if edges else 0
        return int(hours) + partial

    @staticmethod
    def _where(query: SearchQuery) -> tuple[str, list[Param]]:
        clauses: list[str] = []
        values: list[Param] = []
        if query.number is not None and query.number.strip():
            key = search_number(query.number)
            clauses.append("(caller_number = ? OR callee_number = ?)")
            values += [key, key]
        if query.since is not None:
            clauses.append("started_utc_s >= ?")
            values.append(_epoch_s(query.since))
        if query.until is not None:
            clauses.append("started_utc_s < ?")
            values.append(_epoch_s(query.until))
        for column, value in (
            ("pbx", query.pbx),
            ("trunk", query.trunk),
            ("dial_status", query.dial_status),
        ):
            if value:
                clauses.append(f"{column} = ?")
                values.append(value)
        if query.min_duration_s is not None:
            clauses.append("duration_s >= ?")
            values.append(query.min_duration_s)
        if not query.scope.whole:
            clause, scoped = scope_clause(query.scope)
            clauses.append(clause)
            values += scoped
        return " AND ".join(clauses) or "1 = 1", values

    def count(self) -> int:
        """How many recordings the catalogue lists."""
        return int(self._db.execute("SELECT COUNT(*) FROM catalogue").rows[0][0])

    def archived_per_day(self, days: Sequence[date], tz: ZoneInfo) -> dict[date, int]:
        """How many recordings were archived (`archived_at`) on each of `days`, a day being
        midnight to midnight in `tz`. Every day given is in the answer, zeros included."""
        counts: dict[date, int] = {}
        for day in days:
            start = datetime(day.year, day.month, day.day, tzinfo=tz)
            end = start + timedelta(days=1)
            rows = self._db.execute(
                "SELECT COUNT(*) FROM catalogue WHERE archived_at_s >= ? AND archived_at_s < ?",
                (start.timestamp(), end.timestamp()),
            ).rows
            counts[day] = int(rows[0][0])
        return counts

    def set_dial_status(self, autocall_id: int, status: str) -> int:
        """Give every recording of placed call `autocall_id` the dial status `status` (a
        callback said how the call ended); return how many rows changed."""
        return self._db.execute(
            "UPDATE catalogue SET dial_status = ? WHERE autocall_id = ?", (status, autocall_id)
        ).rowcount

    def remove_except(self, keep: Iterable[str]) -> int:
        """Delete every entry whose object key is not in `keep` (reconcile, after listing the
        whole bucket: those objects are gone). Return how many were deleted."""
        kept = set(keep)
        listed = self._db.execute("SELECT object_key FROM catalogue").rows
        gone = [str(key) for (key,) in listed if key not in kept]
        if gone:
            self._db.executemany("DELETE FROM catalogue WHERE object_key = ?", [[k] for k in gone])
        return len(gone)


def _party_in(column: str, length: int, first: str, last: str) -> tuple[str, list[Param]]:
    # Equal-length digit strings order as numbers; ltrim(.., digits) = '' keeps out parties
    # with a letter or a '+' that would sort between the bounds (both engines have ltrim).
    return (
        f"(length({column}) = ? AND {column} >= ? AND {column} <= ?"
        f" AND ltrim({column}, '0123456789') = '')",
        [length, first, last],
    )


def scope_clause(scope: Scope) -> tuple[str, list[Param]]:
    """The SQL condition (over the catalogue's `pbx`, `caller`, `callee`) holding exactly the
    rows `scope.holds`, and its bound values. `1 = 1` for the whole archive."""
    clauses: list[str] = []
    values: list[Param] = []
    if scope.pbx is not None:
        names = sorted(scope.pbx)
        clauses.append(f"pbx IN ({', '.join('?' * len(names))})")
        values += names
    if scope.extensions is not None:
        parties: list[str] = []
        for extension in scope.extensions:
            for length, first, last in extension.spans():
                for column in ("caller", "callee"):
                    clause, bound = _party_in(column, length, first, last)
                    parties.append(clause)
                    values += bound
        clauses.append(f"({' OR '.join(parties)})")
    return " AND ".join(clauses) or "1 = 1", values


def _epoch_s(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise InvalidQuery("since/until must carry a time zone")
    return int(moment.timestamp())


def _offset_from_uniqueid(name_local: datetime, uniqueid_epoch_s: int) -> timedelta:
    """The PBX's UTC offset as the recording shows it: the uniqueid's epoch is the channel's
    creation in UTC and the name's time is local; their difference, to the quarter hour."""
    naive_utc = datetime.fromtimestamp(uniqueid_epoch_s, UTC).replace(tzinfo=None)
    quarters = round((name_local.replace(tzinfo=None) - naive_utc).total_seconds() / 900)
    return timedelta(seconds=quarters * 900)


def fill_from_ledger(db: Db, timezones: Mapping[str, ZoneInfo]) -> int:
    """Migration step: write a catalogue row for every verified ledger row that has none, from
    its name (parties, start, duration), object key and MP3 size; return how many.

    A PBX missing from `timezones` (no longer configured) is dated by the offset its uniqueid
    shows (see `_offset_from_uniqueid`). Rows whose name does not parse are counted in a log
    event and left out (reconcile can add them from the bucket). On SQLite it runs inside the
    migration's transaction; on PostgreSQL right after the migration, idempotently.
    """
    rows = db.execute(
        "SELECT r.pbx, r.folder, r.name, r.object_key, r.mp3_bytes, r.updated_at"
        " FROM recordings AS r WHERE r.state = 'verified' AND r.object_key IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM catalogue AS c WHERE c.recording_key = r.key)"
        " AND NOT EXISTS (SELECT 1 FROM catalogue AS c WHERE c.object_key = r.object_key)"
    ).rows
    batch: list[list[Param]] = []
    skipped = 0
    utc = ZoneInfo("UTC")
    for pbx, folder, name, key, mp3_bytes, updated_at in rows:
        tz = timezones.get(pbx)
        try:
            rec = parse_name(pbx, folder, name, tz or utc)
        except InvalidName:
            skipped += 1
            continue
        if tz is None:
            offset = _offset_from_uniqueid(rec.started_at, rec.uniqueid_epoch_s)
            rec = replace(rec, started_at=rec.started_at.replace(tzinfo=timezone(offset)))
        entry = catalogue_entry(
            rec,
            object_key=key,
            size_bytes=mp3_bytes,
            archived_at=datetime.fromtimestamp(updated_at, UTC),
        )
        batch.append(_row(entry))
    if batch:
        if isinstance(db, SqliteDb):  # inside the migration's open transaction
            db.connection.executemany(_INSERT, batch)
        else:
            db.executemany(_INSERT, batch)
    if skipped:
        log.warning("catalogue_fill_skipped", rows=skipped, reason="name does not parse")
    return len(batch)


def catalogue_rows(
    db: Db, where: str, values: Sequence[Param], *, limit: int = MAX_PAGE
) -> list[CatalogueEntry]:
    """The catalogue rows matching `where` (SQL of ours over the catalogue's columns, with `?`
    marks for `values`), oldest first (start time, then object key), at most `limit`: the
    retention code's selections (a hold, an erasure's number, the expired)."""
    rows = db.execute(
        f"SELECT {_SELECT} FROM catalogue WHERE {where} ORDER BY started_utc_s, object_key LIMIT ?",
        (*values, limit),
    ).rows
    return [_entry(row) for row in rows]
