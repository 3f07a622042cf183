"""The catalogue: one row per verified recording, searchable, for `archiver web`.

A row is written in the same transaction that marks its recording verified in the ledger
(`Ledger.mark_verified`), so the catalogue never lists a recording the ledger does not have as
verified, and never misses one. `archiver reconcile` rebuilds it from the bucket; the schema
migration that created it filled it from the ledger.

Numbers are searched through each party's digits (`caller_digits`, `callee_digits`): a number
typed with a national or international prefix of the PBX's country (`0532`, `90532`,
`+90 532`, `0090532` in Turkey) matches the parties that *start* with that national number in
any stored spelling (a few prefix ranges, one B-tree index each); other digits (`5127222`, an
extension `126`) match *anywhere* in either party through a trigram index (SQLite FTS5
`trigram`, PostgreSQL `pg_trgm`); one or two digits match a party exactly. See `NumberMatch`.

Dates come two ways: `since`/`until` are instants; `local_since`/`local_until` are wall-clock
times at each call's own PBX (`started_wall_s`), so "1 December" finds every call that started
on 1 December where it was made, whatever the PBX's zone. Results are sorted by start (the real
instant), duration, caller or callee, and paged by page number (`page`, offset paging up to
`MAX_OFFSET` rows) or, for the newest-first order, by an opaque cursor (keyset paging). The total
is counted up to `COUNT_CAP` matches (`SearchPage.total_capped` beyond). A page is chosen from
an index alone where one serves: beyond the cap, a page sorted by a party or the duration
walks that column's index when that reads less than sorting the range (`_walk_pays`), so page
5 of a month costs the same in a ten-million-call archive as in a small one.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Final, Literal
from zoneinfo import ZoneInfo

import structlog

from archiver.names import InvalidName, Recording, parse_name
from archiver.numbers import InvalidNumber, normalise_number
from archiver.scope import WHOLE, Scope
from archiver.state.db import Db, Execute, Param
from archiver.state.digits import (
    DIRECTIONS,
    DialPlan,
    InvalidNumberText,
    NumberMatch,
    PbxDialPlan,
    match_number,
    party_digits,
)

__all__ = [
    "COUNT_CAP",
    "MAX_OFFSET",
    "MAX_PAGE",
    "SORTS",
    "Catalogue",
    "CatalogueEntry",
    "DialPlan",
    "InvalidQuery",
    "NumberMatch",
    "PbxDialPlan",
    "SearchPage",
    "SearchQuery",
    "catalogue_entry",
    "catalogue_rows",
    "fill_from_ledger",
    "match_number",
    "number_key",
    "party_digits",
    "scope_clause",
    "search_number",
    "upsert_statements",
]

log = structlog.get_logger(__name__)

MAX_PAGE: Final = 500
# Totals are counted up to this many matches ("more than 10,000" beyond), and pages reach this
# deep at most: a search that needs more is narrowed, never left to count a million rows.
COUNT_CAP: Final = 10_000
MAX_OFFSET: Final = 10_000
SortKey = Literal["started_at", "duration", "caller", "callee"]
SortOrder = Literal["asc", "desc"]
SORTS: Final[dict[str, str]] = {
    "started_at": "started_utc_s",
    "duration": "duration_s",
    "caller": "caller_digits",
    "callee": "callee_digits",
}
# Epoch seconds a timestamp may hold (year 1 to 9999): a cursor or a date beyond is malformed.
_MIN_EPOCH_S: Final = -62_135_596_800
_MAX_EPOCH_S: Final = 253_402_300_799
# A number of this many digits (national part, or inside a party) finds few calls: it leads.
_SELECTIVE_DIGITS: Final = 5
# A wall-clock time is within 14 hours of UTC in every zone: a wall range bounds the instant.
_MAX_OFFSET_S: Final = 14 * 3600
# How long the catalogue's size (for choosing how to sort a page) may be reused.
_ARCHIVE_SIZE_TTL_S: Final = 60.0
_NUMBER_SEPARATORS = str.maketrans("", "", " -().\t")
_MAX_CURSOR_CHARS = 2048


class InvalidQuery(ValueError):
    """A search cannot be run as asked; `reason` is safe to show (it never echoes input)."""

    def __init__(self, reason: str, code: str = "", **params: object) -> None:
        super().__init__(reason)
        self.reason = reason
        # For a translated message: `code` names it, `params` fill it (never user input).
        self.code = code
        self.params = params


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

    `number` (digits; spaces, dashes, dots and brackets ignored) matches the caller or the
    callee as `match_number` reads it with `dial_plan` (the default: Turkey, for every PBX).
    `since`/`until` are aware datetimes: calls that started in [since, until).
    `local_since`/`local_until` are naive wall-clock times at each call's PBX, the same way.
    `direction` is `in`, `out` or `internal` (see `DialPlan.direction`). `min_duration_s` keeps
    calls at least that long. `sort`/`order` order the results (ties by start, then object key,
    in the same direction); `page` (from 1) and `limit` (1..MAX_PAGE) choose the slice; `cursor` (a
    `SearchPage.next_cursor` of the same query, newest-first order only) pages without offsets.
    `scope` is the user's (`archiver.scope`): calls outside it are never found, counted or
    paged through (the default holds everything).
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
    local_since: datetime | None = None
    local_until: datetime | None = None
    direction: str | None = None
    sort: str = "started_at"
    order: str = "desc"
    page: int = 1
    dial_plan: DialPlan = field(default_factory=DialPlan)
    scope: Scope = WHOLE


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of results in the query's order; `total` counts every match of the query (all
    pages) up to `COUNT_CAP`, `total_capped` says there are more; `next_cursor` is None on the
    last page (and for orders other than newest first)."""

    items: tuple[CatalogueEntry, ...]
    total: int
    next_cursor: str | None
    total_capped: bool = False


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


# The columns of the first catalogue (migration 0002): what `fill_from_ledger` writes (on both
# backends) inside that migration, before the later columns exist (0009 then fills those).
_COLUMNS_V2: Final = (
    "object_key, recording_key, pbx, trunk, caller, callee, caller_number, callee_number,"
    " started_local, started_utc_s, duration_s, size_bytes, dial_status, autocall_id,"
    " source_name, archived_at_s"
)
_COLUMNS: Final = f"{_COLUMNS_V2}, caller_digits, callee_digits, started_wall_s"
_COLUMN_COUNT: Final = 19
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
        party_digits(entry.caller),
        party_digits(entry.callee),
        wall_seconds(entry.started_at),
    ]


def wall_seconds(moment: datetime) -> int:
    """`moment`'s wall-clock time (in its own zone) as if it were UTC, in epoch seconds."""
    return int(moment.replace(tzinfo=UTC).timestamp())


_INSERT: Final = f"INSERT INTO catalogue ({_COLUMNS}) VALUES ({', '.join('?' * _COLUMN_COUNT)})"
_INSERT_V2: Final = f"INSERT INTO catalogue ({_COLUMNS_V2}) VALUES ({', '.join('?' * 16)})"
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
    marks = ", ".join("?" * _COLUMN_COUNT)
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
        raise InvalidQuery("cursor too long", "cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
        started, key = raw.split(":", 1)
        started_s = int(started)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidQuery("cursor is not one this server gave", "cursor") from None
    if not _MIN_EPOCH_S <= started_s <= _MAX_EPOCH_S:
        raise InvalidQuery("cursor is not one this server gave", "cursor")
    return started_s, key


class Catalogue:
    """Search and status queries over the catalogue table, and its rebuild by reconcile.

    Works on either backend (`archiver.state.db.Db`, migrated: see `archiver.state.migrate`).
    """

    def __init__(self, db: Db) -> None:
        self._db = db
        self._archive_cache: tuple[float, int] | None = None  # (monotonic s, calls)

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
        """Run `query`: its page of matches in its order, the total (up to `COUNT_CAP`) and,
        for the newest-first order, the cursor of the next page. Raise `InvalidQuery` for a bad
        number, sort, page, limit or cursor."""
        if not 1 <= query.limit <= MAX_PAGE:
            raise InvalidQuery(f"limit must be 1..{MAX_PAGE}", "limit", high=MAX_PAGE)
        order_by = _order_by(query)
        if self._selective_number(query) and self._db.dialect == "sqlite":
            # Its few rows are sorted, never an index walked in order (SQLite's unary +).
            order_by = "+" + order_by.replace(", ", ", +")
        offset = (query.page - 1) * query.limit if query.page >= 1 else -1
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidQuery(
                f"page must be 1..{MAX_OFFSET // query.limit + 1} at {query.limit} a page"
                " (narrow the search to go deeper)",
                "page",
                high=MAX_OFFSET // query.limit + 1,
            )
        where, values = self._where(query)
        total, capped = self._total(where, values)
        # Past COUNT_CAP matches a page sorted by a party or the duration may walk that
        # column's index rather than sort every match (`_walk_pays`).
        walk = (
            capped
            and query.sort != "started_at"
            and not self._selective_number(query)
            and self._walk_pays(query, offset)
        )
        if walk:
            where, values = self._where(query, walk=True)
        page_where, page_values = where, list(values)
        if query.cursor is not None:
            if query.sort != "started_at" or query.order != "desc" or query.page != 1:
                raise InvalidQuery("a cursor pages the newest-first order only, without page",
                                   "cursor")  # fmt: skip
            started_s, key = _decode_cursor(query.cursor)
            page_where += " AND (started_utc_s < ? OR (started_utc_s = ? AND object_key < ?))"
            page_values += [started_s, started_s, key]
        statement = self._page_statement(page_where, order_by, query.sort, walk=walk)
        rows = self._db.execute(statement, (*page_values, query.limit + 1, offset)).rows
        items = tuple(_entry(row) for row in rows[: query.limit])
        more = len(rows) > query.limit
        keyset = query.sort == "started_at" and query.order == "desc"
        cursor = _encode_cursor(items[-1]) if more and items and keyset else None
        return SearchPage(items, total, cursor, capped)

    def _page_statement(self, where: str, order_by: str, sort: str, *, walk: bool) -> str:
        """The SELECT of one page of `where` in `order_by` (its last two values: LIMIT, OFFSET)."""
        if sort != "started_at" and self._db.dialect == "sqlite":
            # The page's rowids first, from an index alone where one covers the filters and the
            # sort (catalogue_by_wall: a day sorted by duration; the sort column's own index
            # when walking), then only those rows.
            if not walk:
                order_by = order_by.replace("object_key", "rowid")
            return (
                f"SELECT {_SELECT} FROM catalogue WHERE rowid IN (SELECT rowid FROM catalogue"
                f" WHERE {where} ORDER BY {order_by} LIMIT ? OFFSET ?) ORDER BY {order_by}"
            )
        if self._db.dialect == "postgresql":
            # The page's keys first, from an index alone (the covering ones of migration 12:
            # a month's newest 0532 calls walking catalogue_by_time backwards), then only the
            # page's rows: a filter PostgreSQL checks in a plain index scan costs a table read
            # per row, one in an index-only scan does not.
            return (
                f"SELECT {_SELECT} FROM catalogue WHERE object_key IN (SELECT object_key"
                f" FROM catalogue WHERE {where} ORDER BY {order_by} LIMIT ? OFFSET ?)"
                f" ORDER BY {order_by}"
            )
        return f"SELECT {_SELECT} FROM catalogue WHERE {where} ORDER BY {order_by} LIMIT ? OFFSET ?"

    def _walk_pays(self, query: SearchQuery, offset: int) -> bool:
        """Whether a page sorted by a party or the duration should walk that column's index
        in order, keeping the matches, rather than sort every match of the search.

        The walk reads about (offset + limit) x archive / in-range index entries; the sort
        reads and sorts the in-range calls. Both sizes come from `catalogue_hours` (calls per
        PBX and UTC hour): page 5 of a month of a 10,000,000-call archive walks ~6,000 entries
        instead of sorting 400,000 calls, while the last page of one busy day still sorts it."""
        archive = self._archive_size()
        low, high = _instant_bounds(query)
        if low is None and high is None and not query.pbx:
            in_range = archive
        else:
            clauses = ["1 = 1"]
            values: list[Param] = []
            if low is not None:
                clauses.append("hour_s >= ?")
                values.append(low - low % 3600)
            if high is not None:
                clauses.append("hour_s < ?")
                values.append(high)
            if query.pbx:
                clauses.append("pbx = ?")
                values.append(query.pbx)
            row = self._db.execute(
                "SELECT COALESCE(SUM(recordings), 0) FROM catalogue_hours WHERE "
                + " AND ".join(clauses),
                values,
            ).one()
            in_range = 0 if row is None else int(row[0])
        return (offset + query.limit) * archive < in_range * in_range

    def _archive_size(self) -> int:
        """`count()`, asked at most once a minute (a sum over every hour of every PBX: 35,000
        rows for two PBXs and two years)."""
        now_s = time.monotonic()
        cached = self._archive_cache
        if cached is not None and now_s - cached[0] < _ARCHIVE_SIZE_TTL_S:
            return cached[1]
        size = self.count()
        self._archive_cache = (now_s, size)
        return size

    def _total(self, where: str, values: Sequence[Param]) -> tuple[int, bool]:
        """How many rows match, counted up to `COUNT_CAP` (then: the cap and True)."""
        row = self._db.execute(
            f"SELECT COUNT(*) FROM (SELECT 1 FROM catalogue WHERE {where} LIMIT ?) AS found",
            (*values, COUNT_CAP + 1),
        ).one()
        found = 0 if row is None else int(row[0])
        return min(found, COUNT_CAP), found > COUNT_CAP

    def _where(self, query: SearchQuery, *, walk: bool = False) -> tuple[str, list[Param]]:
        """The WHERE clause of `query` and its values. `walk`: written for a page that walks
        its sort column's index (see `search`): on SQLite no time index may lead (a unary +),
        on PostgreSQL the wall-clock range is hidden from the row estimate (`_local_range`)."""
        clauses: list[str] = []
        values: list[Param] = []
        if query.number is not None and query.number.strip():
            clause, number_values = self._number_clause(query.number, query.dial_plan)
            clauses.append(clause)
            values += number_values
        # A selective number leads: its index finds a few rows, which the dates then filter
        # (a unary + keeps the time index out of the plan); otherwise the planner chooses.
        sqlite_walk = walk and self._db.dialect == "sqlite"
        unary = self._selective_number(query) or sqlite_walk
        time_column = "+started_utc_s" if unary else "started_utc_s"
        for column, moment in ((f"{time_column} >= ?", query.since),
                               (f"{time_column} < ?", query.until)):  # fmt: skip
            if moment is not None:
                clauses.append(column)
                values.append(_epoch_s(moment))
        hide_wall = walk and self._db.dialect == "postgresql"
        _local_range(query, clauses, values, time_column, hide_wall=hide_wall)
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
        if query.direction:
            clause, direction_values = _direction_clause(query.direction, query.dial_plan)
            clauses.append(clause)
            values += direction_values
        if not query.scope.whole:
            clause, scoped = scope_clause(query.scope)
            clauses.append(clause)
            values += scoped
        return " AND ".join(clauses) or "1 = 1", values

    @staticmethod
    def _selective_number(query: SearchQuery) -> bool:
        """Whether the number alone narrows the search to a few calls: five digits or more
        of a national number, or inside a party (`0532` is a tenth of a Turkish archive)."""
        if not query.number or not query.number.strip():
            return False
        try:
            match = match_number(query.number, query.dial_plan.default.country)
        except InvalidNumberText:
            return False
        digits = match.bare_prefix or match.anywhere or match.exact or ""
        return len(digits) >= _SELECTIVE_DIGITS

    def _number_clause(self, text: str, plan: DialPlan) -> tuple[str, list[Param]]:
        """The number filter: for each country among the PBXs, what `match_number` makes of
        `text` there, limited to that country's PBXs when they differ."""
        countries: dict[str, list[str]] = {}
        for name, pbx_plan in plan.pbxs:
            countries.setdefault(pbx_plan.country, []).append(name)
        default = plan.default.country
        others = [name for name, pbx_plan in plan.pbxs if pbx_plan.country != default]
        parts: list[str] = []
        values: list[Param] = []
        for country in sorted({default, *countries}):
            try:
                match = match_number(text, country)
            except InvalidNumberText as error:
                raise InvalidQuery(error.reason, "number") from None
            longest = max((p.extension_digits for n, p in plan.pbxs if p.country == country),
                          default=plan.default.extension_digits)  # fmt: skip
            clause, clause_values = self._match_clause(match, longest)
            if country == default:
                if others:
                    clause = f"pbx NOT IN ({', '.join('?' * len(others))}) AND ({clause})"
                    clause_values = [*others, *clause_values]
            else:
                names = countries[country]
                clause = f"pbx IN ({', '.join('?' * len(names))}) AND ({clause})"
                clause_values = [*names, *clause_values]
            parts.append(f"({clause})")
            values += clause_values
        return "(" + " OR ".join(parts) + ")", values

    def _match_clause(self, match: NumberMatch, longest_extension: int) -> tuple[str, list[Param]]:
        terms: list[str] = []
        values: list[Param] = []
        for column in ("caller_digits", "callee_digits"):
            for prefix in match.prefixes:
                terms.append(f"({column} >= ? AND {column} < ?)")
                values += [prefix, prefix + ":"]  # ':' follows '9': every longer digit string
            if match.bare_prefix:
                terms.append(f"({column} >= ? AND {column} < ? AND length({column}) > ?)")
                values += [match.bare_prefix, match.bare_prefix + ":", longest_extension]
            if match.exact:
                terms.append(f"{column} = ?")
                values.append(match.exact)
        if match.anywhere:
            if self._db.dialect == "sqlite":
                terms.append(
                    "catalogue.rowid IN (SELECT rowid FROM catalogue_parties"
                    " WHERE catalogue_parties MATCH ?)"
                )
                values.append(f'"{match.anywhere}"')  # digits only: a safe phrase
            else:
                terms.append("(caller_digits || ' ' || callee_digits) LIKE ?")
                values.append(f"%{match.anywhere}%")
        clause = " OR ".join(terms)
        if match.bare_prefix:
            # Every spelling holds the national part: one cheap test first rules out most rows
            # of a long date range read from an index (0532 over a month: half the time).
            find = "instr" if self._db.dialect == "sqlite" else "strpos"
            clause = (
                f"({find}(caller_digits, ?) > 0 OR {find}(callee_digits, ?) > 0) AND ({clause})"
            )
            values = [match.bare_prefix, match.bare_prefix, *values]
        return clause, values

    def distinct_values(self, column: str, limit: int = 50) -> list[str]:
        """The first `limit` distinct non-empty values of `trunk` or `dial_status`, in order:
        one index seek per value (a skip scan), so it costs the same at any catalogue size."""
        if column not in ("trunk", "dial_status"):
            raise ValueError(f"no choices for {column!r}")
        rows = self._db.execute(
            f"WITH RECURSIVE found(value, n) AS ("
            f" SELECT MIN({column}), 1 FROM catalogue WHERE {column} > ''"
            f" UNION ALL SELECT (SELECT MIN({column}) FROM catalogue WHERE {column} > found.value),"
            f" n + 1 FROM found WHERE found.value IS NOT NULL AND n < ?)"
            f" SELECT value FROM found WHERE value IS NOT NULL",
            (limit,),
        ).rows
        return [str(row[0]) for row in rows]

    def count(self) -> int:
        """How many recordings the catalogue lists: the sum of `catalogue_hours` (kept by the
        catalogue's triggers), not a count of its rows, which reads an index of every row
        (10,000,000 on a big archive's status page)."""
        row = self._db.execute("SELECT COALESCE(SUM(recordings), 0) FROM catalogue_hours").one()
        return 0 if row is None else int(row[0])

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
    try:
        return int(moment.timestamp())
    except (OverflowError, ValueError, OSError):
        raise InvalidQuery("a date is out of range", "date_range") from None


def _wall_s(moment: datetime) -> int:
    if moment.tzinfo is not None:
        raise InvalidQuery("local_since/local_until are wall-clock times, without a zone")
    return int((moment - datetime(1970, 1, 1)).total_seconds())


def _instant_bounds(query: SearchQuery) -> tuple[int | None, int | None]:
    """About where the query's calls lie, in UTC epoch seconds: the narrowest [low, high) of
    its dates, a wall-clock bound read as if it were UTC (a window of the same length, which
    holds about as many calls); None where unbounded. For estimates only."""
    lows: list[int] = []
    highs: list[int] = []
    if query.since is not None:
        lows.append(_epoch_s(query.since))
    if query.until is not None:
        highs.append(_epoch_s(query.until))
    if query.local_since is not None:
        lows.append(_wall_s(query.local_since))
    if query.local_until is not None:
        highs.append(_wall_s(query.local_until))
    return max(lows, default=None), min(highs, default=None)


def _local_range(
    query: SearchQuery,
    clauses: list[str],
    values: list[Param],
    time_column: str,
    *,
    hide_wall: bool = False,
) -> None:
    """Calls whose start on their PBX's wall clock is in [local_since, local_until); with a
    bound on the real instant too (a wall time is within 14 h of UTC), so the time index
    serves it in the newest-first order.

    `hide_wall`: the wall-clock test goes inside a CASE. PostgreSQL takes the wall and the
    instant ranges for independent and multiplies their shares (a month of two years: 1/576
    instead of 1/24), so it would sort a whole month rather than walk an index in the page's
    order; a CASE it estimates at one half, which leaves the instant's range to speak."""
    wall_column = "+started_wall_s" if time_column.startswith("+") else "started_wall_s"
    wall_tests: list[str] = []
    wall_values: list[Param] = []
    instant_tests: list[str] = []
    instant_values: list[Param] = []
    if query.local_since is not None:
        low = _wall_s(query.local_since)
        wall_tests.append(f"{wall_column} >= ?")
        wall_values.append(low)
        instant_tests.append(f"{time_column} >= ?")
        instant_values.append(low - _MAX_OFFSET_S)
    if query.local_until is not None:
        high = _wall_s(query.local_until)
        wall_tests.append(f"{wall_column} < ?")
        wall_values.append(high)
        instant_tests.append(f"{time_column} < ?")
        instant_values.append(high + _MAX_OFFSET_S)
    if not wall_tests:
        return
    if hide_wall:
        clauses.append(f"(CASE WHEN {' AND '.join(wall_tests)} THEN TRUE ELSE FALSE END)")
    else:
        clauses += wall_tests
    clauses += instant_tests
    values += [*wall_values, *instant_values]


def _order_by(query: SearchQuery) -> str:
    column = SORTS.get(query.sort)
    if column is None:
        raise InvalidQuery("sort must be one of " + ", ".join(SORTS), "sort")
    if query.order not in ("asc", "desc"):
        raise InvalidQuery("order must be asc or desc", "order")
    if column == "started_utc_s":
        return f"started_utc_s {query.order}, object_key {query.order}"
    # Ties in the same direction, so one index (column, started_utc_s, object_key) serves it.
    return f"{column} {query.order}, started_utc_s {query.order}, object_key {query.order}"


def _direction_clause(direction: str, plan: DialPlan) -> tuple[str, list[Param]]:
    """Calls of `direction` (see `DialPlan.direction`), each PBX with its extension length."""
    if direction not in DIRECTIONS:
        raise InvalidQuery("direction must be in, out or internal", "direction")
    wanted = {"in": (False, True), "out": (True, False), "internal": (True, True)}[direction]
    lengths = {plan.default.extension_digits, *(p.extension_digits for _, p in plan.pbxs)}
    parts: list[str] = []
    values: list[Param] = []
    for length in sorted(lengths):
        names = [n for n, p in plan.pbxs if p.extension_digits == length]
        sides = []
        for column, inside in zip(("caller", "callee"), wanted, strict=True):
            test = (f"(length({column}_digits) BETWEEN 1 AND ? AND length({column}_digits)"
                    f" = length({column}))")  # fmt: skip
            sides.append(test if inside else f"NOT {test}")
            values.append(length)
        clause = " AND ".join(sides)
        if length == plan.default.extension_digits:
            other = [n for n, p in plan.pbxs if p.extension_digits != length]
            if other:
                clause = f"pbx NOT IN ({', '.join('?' * len(other))}) AND {clause}"
                values[-2:-2] = other
        else:
            clause = f"pbx IN ({', '.join('?' * len(names))}) AND {clause}"
            values[-2:-2] = names
        parts.append(f"({clause})")
    return "(" + " OR ".join(parts) + ")", values


def _offset_from_uniqueid(name_local: datetime, uniqueid_epoch_s: int) -> timedelta:
    """The PBX's UTC offset as the recording shows it: the uniqueid's epoch is the channel's
    creation in UTC and the name's time is local; their difference, to the quarter hour."""
    naive_utc = datetime.fromtimestamp(uniqueid_epoch_s, UTC).replace(tzinfo=None)
    quarters = round((name_local.replace(tzinfo=None) - naive_utc).total_seconds() / 900)
    return timedelta(seconds=quarters * 900)


def fill_from_ledger(execute: Execute, timezones: Mapping[str, ZoneInfo]) -> int:
    """Migration step: write a catalogue row for every verified ledger row that has none, from
    its name (parties, start, duration), object key and MP3 size; return how many.

    A PBX missing from `timezones` (no longer configured) is dated by the offset its uniqueid
    shows (see `_offset_from_uniqueid`). Rows whose name does not parse are counted in a log
    event and left out (reconcile can add them from the bucket). It runs inside migration 0002's
    transaction on both backends (`archiver.state.migrate`), so it writes the columns of that
    version's catalogue.
    """
    rows = execute(
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
    for row in batch:
        execute(_INSERT_V2, row[:16])
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
