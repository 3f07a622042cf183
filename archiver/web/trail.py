"""What the web writes to the access log besides plays and downloads: every search (who, the
filters, how many matched), so that "who looked up this number" has an answer."""

from __future__ import annotations

from aiohttp import web

from archiver.state import InvalidQuery, SearchQuery, search_number
from archiver.web.context import CONTEXT_KEY, USER_KEY

__all__ = ["describe_search", "log_search"]


def describe_search(query: SearchQuery) -> str:
    """The query's filters as ` name=value ... ` (spaces around each pair, values without
    spaces; the number as its search key, so any spelling of it is found by `archiver audit
    --number`). The scope is the user's, not a filter, and is left out."""
    pairs: list[tuple[str, str]] = []
    if query.number and query.number.strip():
        try:
            pairs.append(("number", search_number(query.number)))
        except InvalidQuery:  # a part of a number: kept as typed, blanks dropped
            pairs.append(("number_part", "".join(query.number.split())[:32]))
    moments = (("since", query.since), ("until", query.until),
               ("local_since", query.local_since), ("local_until", query.local_until))  # fmt: skip
    for name, moment in moments:
        if moment is not None:
            pairs.append((name, moment.isoformat()))
    for name, value in (("pbx", query.pbx), ("direction", query.direction),
                        ("trunk", query.trunk), ("dial_status", query.dial_status)):  # fmt: skip
        if value:
            pairs.append((name, value.replace(" ", "_")))
    if query.min_duration_s is not None:
        pairs.append(("min_duration_s", str(query.min_duration_s)))
    return " " + " ".join(f"{name}={value}" for name, value in pairs) + " "


async def log_search(request: web.Request, query: SearchQuery, total: int) -> None:
    """One `search` row for a search's first page (turning pages is the same search)."""
    if query.cursor is not None:
        return
    context = request.app[CONTEXT_KEY]
    await context.record(request, username=request[USER_KEY], action="search",
                         detail=describe_search(query), item_count=total)  # fmt: skip
