"""Search parameters from a URL (the page's form and the JSON API) into a `SearchQuery`, the
dial plan of the configured PBXs, and the API's view of a catalogue entry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, Final
from urllib.parse import quote

from archiver.config import Config
from archiver.state import (
    DIRECTIONS,
    MAX_PAGE,
    SORTS,
    CatalogueEntry,
    DialPlan,
    InvalidQuery,
    PbxDialPlan,
    SearchQuery,
)

__all__ = ["SEARCH_FIELDS", "Moment", "api_item", "audio_url", "dial_plan", "parse_search"]

_MAX_TEXT: Final = 64
# Every parameter the page and the API read; the page keeps them in its links.
SEARCH_FIELDS: Final = ("number", "from", "to", "pbx", "direction", "trunk", "min_duration",
                        "dial_status", "sort", "order")  # fmt: skip
_MAX_PAGE_NUMBER: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Moment:
    """A `from` or `to` as typed: a whole day (`time_of_day` None) or a day and a time."""

    day: date
    time_of_day: time | None


def dial_plan(cfg: Config) -> DialPlan:
    """Each configured PBX's country and extension length ([web] country by default)."""
    default = PbxDialPlan(country=cfg.web.country)
    return DialPlan(
        default=default,
        pbxs=tuple(
            (pbx.name, PbxDialPlan(pbx.country or cfg.web.country, pbx.extension_digits))
            for pbx in cfg.pbx
        ),
    )


def _moment(params: Mapping[str, str], name: str) -> Moment | None:
    """`YYYY-MM-DD`, or that with a time `THH:MM` (a space for the T, seconds optional)."""
    text = params.get(name, "").strip()
    if not text:
        return None
    day_text, _, time_text = text.replace(" ", "T", 1).partition("T")
    try:
        if len(day_text) != 10:
            raise ValueError(day_text)
        day = date.fromisoformat(day_text)
        if not time_text:
            return Moment(day, None)
        if len(time_text) not in (5, 8):
            raise ValueError(time_text)
        return Moment(day, time.fromisoformat(time_text))
    except ValueError:
        raise InvalidQuery(
            f"{name} must be a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM)",
            "date",
            field=name,
        ) from None


def _start(moment: Moment) -> datetime:
    return datetime.combine(moment.day, moment.time_of_day or time())


def _end(moment: Moment) -> datetime | None:
    """The first instant after `to`: the next midnight for a whole day; None past year 9999
    (no upper bound: nothing is later)."""
    if moment.time_of_day is not None:
        return datetime.combine(moment.day, moment.time_of_day)
    try:
        return datetime.combine(moment.day + timedelta(days=1), time())
    except OverflowError:
        return None


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > _MAX_TEXT:
        raise InvalidQuery(f"{name} is longer than {_MAX_TEXT} characters", "too_long",
                           field=name, high=_MAX_TEXT)  # fmt: skip
    return value or None


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 12 or not low <= int(text) <= high:
        raise InvalidQuery(f"{name} must be a whole number from {low} to {high}", "whole_number",
                           field=name, low=low, high=high)  # fmt: skip
    return int(text)


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if value not in allowed:
        raise InvalidQuery(f"{name} must be one of: {', '.join(allowed)}", "choice",
                           field=name, allowed=", ".join(allowed))  # fmt: skip
    return value


def parse_search(params: Mapping[str, str], plan: DialPlan, *, default_limit: int) -> SearchQuery:
    """The query of `number`, `from`, `to` (wall-clock dates or date-times at each call's PBX:
    a date means the whole day, both included; from ≤ start < to), `pbx`, `direction`, `trunk`,
    `min_duration`, `dial_status`, `sort`, `order`, `page`, `limit` and `cursor`. Raise
    `InvalidQuery` with a reason for a malformed value or `to` not after `from`."""
    first, last = _moment(params, "from"), _moment(params, "to")
    since = None if first is None else _start(first)
    until = None if last is None else _end(last)
    if since is not None and until is not None and until <= since:
        raise InvalidQuery("to must be later than from", "to_before_from")
    sort = _choice(params, "sort", tuple(SORTS)) or "started_at"
    default_order = "asc" if sort in ("caller", "callee") else "desc"
    return SearchQuery(
        number=_text(params, "number"),
        local_since=since,
        local_until=until,
        pbx=_text(params, "pbx"),
        direction=_choice(params, "direction", DIRECTIONS),
        trunk=_text(params, "trunk"),
        min_duration_s=_int(params, "min_duration", 0, 10**7),
        dial_status=_text(params, "dial_status"),
        limit=_int(params, "limit", 1, MAX_PAGE) or default_limit,
        cursor=params.get("cursor") or None,
        sort=sort,
        order=_choice(params, "order", ("asc", "desc")) or default_order,
        page=_int(params, "page", 1, _MAX_PAGE_NUMBER) or 1,
        dial_plan=plan,
    )


def audio_url(object_key: str) -> str:
    """Where the recording plays (add `?download=1` to download it), relative to the root."""
    return "/audio/" + quote(object_key, safe="/")


def api_item(entry: CatalogueEntry, plan: DialPlan) -> dict[str, Any]:
    """One item of `GET /api/recordings`, exactly the documented fields."""
    return {
        "key": entry.object_key,
        "pbx": entry.pbx,
        "trunk": entry.trunk,
        "caller": entry.caller,
        "callee": entry.callee,
        "started_at": entry.started_at.isoformat(),
        "duration_s": entry.duration_s,
        "dial_status": entry.dial_status,
        "size_bytes": entry.size_bytes,
        "audio_url": audio_url(entry.object_key),
        "direction": plan.direction(entry.pbx, entry.caller, entry.callee),
    }
