"""The JSON API, for scripts (HTTP Basic or a session):

`GET /api/recordings?number=&from=&to=&pbx=&direction=&trunk=&min_duration=&dial_status=
&sort=&order=&page=&limit=&cursor=` answers `{"items": [{"key", "pbx", "trunk", "caller",
"callee", "started_at", "duration_s", "dial_status", "size_bytes", "audio_url", "direction"}],
"total": N, "total_capped": BOOL, "page": N, "limit": N, "next": CURSOR_OR_NULL}`, the same
parameters as the search page (`from`/`to`: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM`, the wall clock
of each call's PBX). `total` counts up to 10,000 (`total_capped` true: more). A bad parameter
gets 400 `{"error": REASON}`. `audio_url` is relative to the server root.

`GET /api/session` answers `{"user": NAME}` while the session lasts (the page asks it before a
download or a zip, and when a recording will not play, to tell an ended session from a fault).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from archiver.state import InvalidQuery
from archiver.web.context import CONTEXT_KEY, USER_KEY
from archiver.web.query import api_item, dial_plan, parse_search
from archiver.web.trail import log_search

__all__ = ["add_api_routes"]

_NO_STORE = {"Cache-Control": "no-store"}


async def _recordings(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    params = {name: value for name, value in request.query.items() if isinstance(value, str)}
    plan = dial_plan(context.cfg)
    try:
        query = parse_search(params, plan, default_limit=context.cfg.web.page_size)
        query = replace(query, scope=context.access(request).scope)
        page = await context.in_db(context.catalogue.search, query)
        await log_search(request, query, page.total)
    except InvalidQuery as error:
        return web.json_response({"error": error.reason}, status=400, headers=_NO_STORE)
    return web.json_response(
        {
            "items": [api_item(entry, plan) for entry in page.items],
            "total": page.total,
            "total_capped": page.total_capped,
            "page": query.page,
            "limit": query.limit,
            "next": page.next_cursor,
        },
        headers=_NO_STORE,
    )


async def _session(request: web.Request) -> web.StreamResponse:
    return web.json_response({"user": request[USER_KEY]}, headers=_NO_STORE)


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/recordings", _recordings)
    app.router.add_get("/api/session", _session)
