"""The JSON API, for scripts (HTTP Basic or a session):

`GET /api/recordings?number=&from=YYYY-MM-DD&to=YYYY-MM-DD&pbx=&limit=&cursor=` answers
`{"items": [{"key", "pbx", "trunk", "caller", "callee", "started_at", "duration_s",
"dial_status", "size_bytes", "audio_url"}], "total": N, "next": CURSOR_OR_NULL}`; a bad parameter
gets 400 `{"error": REASON}`. `audio_url` is relative to the server root.
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from archiver.state.catalogue import InvalidQuery
from archiver.web.context import CONTEXT_KEY
from archiver.web.query import api_item, parse_search
from archiver.web.trail import log_search

__all__ = ["add_api_routes"]


async def _recordings(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    params = {name: value for name, value in request.query.items() if isinstance(value, str)}
    try:
        query = parse_search(params, context.timezone, default_limit=context.cfg.web.page_size)
        query = replace(query, scope=context.access(request).scope)
        page = await context.in_db(context.catalogue.search, query)
        await log_search(request, query, page.total)
    except InvalidQuery as error:
        return web.json_response({"error": error.reason}, status=400)
    return web.json_response(
        {
            "items": [api_item(entry) for entry in page.items],
            "total": page.total,
            "next": page.next_cursor,
        },
        headers={"Cache-Control": "no-store"},
    )


def add_api_routes(app: web.Application) -> None:
    app.router.add_get("/api/recordings", _recordings)
