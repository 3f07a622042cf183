"""The search page (form, results, player), the status view and the language switch."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Final

from aiohttp import web

from archiver.state.catalogue import InvalidQuery, SearchPage
from archiver.state.ledger import STATES
from archiver.web.chart import bar_chart
from archiver.web.context import CONTEXT_KEY, USER_KEY, WebContext
from archiver.web.i18n import LANGUAGES, texts
from archiver.web.login import SESSION_KEY
from archiver.web.query import parse_search, row_view
from archiver.web.render import LANG_COOKIE, language_of, render
from archiver.web.trail import log_search

__all__ = ["add_page_routes"]

_FORM_FIELDS: Final = ("number", "from", "to", "pbx", "trunk", "min_duration", "dial_status")
_BACKLOG_STATES: Final = ("discovered", "downloaded", "transcoded")
_STATUS_DAYS: Final = 30


def _common(request: web.Request, context: WebContext) -> dict[str, Any]:
    user = request[USER_KEY]
    session = request.get(SESSION_KEY)
    return {
        "user": user,
        "is_admin": context.is_admin(user),
        "csrf_token": "" if session is None else session.csrf_token,
    }


async def _search(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    params = {name: value for name, value in request.query.items() if isinstance(value, str)}
    error: str | None = None
    page = SearchPage((), 0, None)
    try:
        query = parse_search(params, context.timezone, default_limit=context.cfg.web.page_size)
        query = replace(query, scope=context.access(request).scope)
        page = await context.in_db(context.catalogue.search, query)
        await log_search(request, query, page.total)
    except InvalidQuery as problem:
        error = texts(language_of(request))["bad_query"].format(reason=problem.reason)
    form = {name: params.get(name, "") for name in _FORM_FIELDS}
    next_params = {name: value for name, value in form.items() if value}
    pbx_names = [pbx.name for pbx in context.cfg.pbx]
    return render(
        request,
        context.templates,
        "search.html",
        status=400 if error else 200,
        form=form,
        error=error,
        rows=[row_view(entry) for entry in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
        next_params=next_params,
        paged=bool(params.get("cursor")),
        pbx_names=pbx_names,
        **_common(request, context),
    )


async def _status(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    words = texts(language_of(request))
    common = _common(request, context)
    if not common["is_admin"]:
        return render(request, context.templates, "forbidden.html", status=403, **common)
    today = datetime.now(context.timezone).date()
    days = [today - timedelta(days=offset) for offset in range(_STATUS_DAYS - 1, -1, -1)]
    per_day = await context.in_db(context.catalogue.archived_per_day, days, context.timezone)
    counts = await context.in_db(context.ledger.counts)
    failures = await context.in_db(context.ledger.recent_failures, 50)
    total = await context.in_db(context.catalogue.count)
    return render(
        request,
        context.templates,
        "status.html",
        chart=bar_chart(per_day, title=words["archived_per_day"]),
        counts=[(state, counts[state]) for state in STATES],
        backlog=sum(counts[state] for state in _BACKLOG_STATES),
        failures=failures,
        catalogue_total=total,
        **common,
    )


async def _language(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    if code not in LANGUAGES:
        raise web.HTTPNotFound()
    target = request.query.get("next", "/")
    if not target.startswith("/") or target.startswith(("//", "/\\")):
        target = "/"
    response = web.HTTPSeeOther(target)
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, path="/", samesite="Strict")
    raise response


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", _search)
    app.router.add_get("/status", _status)
    app.router.add_get("/lang/{code}", _language)
