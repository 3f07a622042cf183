"""Search parameters from a URL (the page's form and the JSON API) into a `SearchQuery`, and
catalogue entries into what the page and the API show."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo

from archiver.state.catalogue import MAX_PAGE, CatalogueEntry, InvalidQuery, SearchQuery

__all__ = ["api_item", "audio_url", "parse_search", "row_view"]

_MAX_TEXT: Final = 64


def _day(params: Mapping[str, str], name: str) -> date | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{name} must be a date as YYYY-MM-DD") from None


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if len(value) > _MAX_TEXT:
        raise InvalidQuery(f"{name} is longer than {_MAX_TEXT} characters")
    return value or None


def _int(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise InvalidQuery(f"{name} must be a whole number from {low} to {high}")
    return int(text)


def parse_search(params: Mapping[str, str], tz: ZoneInfo, *, default_limit: int) -> SearchQuery:
    """The query of `number`, `from`, `to` (days in `tz`, both included), `pbx`, `trunk`,
    `min_duration`, `dial_status`, `limit` and `cursor`. Raise `InvalidQuery` with a reason for
    a malformed value or `to` before `from`."""
    first, last = _day(params, "from"), _day(params, "to")
    if first is not None and last is not None and last < first:
        raise InvalidQuery("to is before from")
    return SearchQuery(
        number=_text(params, "number"),
        since=None if first is None else datetime(first.year, first.month, first.day, tzinfo=tz),
        until=None
        if last is None
        else datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1),
        pbx=_text(params, "pbx"),
        trunk=_text(params, "trunk"),
        min_duration_s=_int(params, "min_duration", 0, 10**7),
        dial_status=_text(params, "dial_status"),
        limit=_int(params, "limit", 1, MAX_PAGE) or default_limit,
        cursor=params.get("cursor") or None,
    )


def audio_url(object_key: str) -> str:
    """Where the recording plays (add `?download=1` to download it), relative to the root."""
    return "/audio/" + quote(object_key, safe="/")


def api_item(entry: CatalogueEntry) -> dict[str, Any]:
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
    }


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "?"
    if size_bytes < 1024 * 1024:
        return f"{size_bytes / 1024:.0f} KB"
    return f"{size_bytes / 1024 / 1024:.1f} MB"


def row_view(entry: CatalogueEntry) -> dict[str, Any]:
    """What one result row shows (escaped by the template, never here)."""
    minutes, seconds = divmod(entry.duration_s, 60)
    return {
        "key": entry.object_key,
        "when": entry.started_at.strftime("%Y-%m-%d %H:%M:%S"),
        "caller": entry.caller or "?",
        "callee": entry.callee or "?",
        "duration": f"{minutes}:{seconds:02d}",
        "dial_status": entry.dial_status or "",
        "size": _size(entry.size_bytes),
        "pbx": entry.pbx,
        "audio_url": audio_url(entry.object_key),
        "download_url": audio_url(entry.object_key) + "?download=1",
        "download_name": entry.download_name,
    }
