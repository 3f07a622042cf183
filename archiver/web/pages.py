"""The search page (form, results, pages, player), the status view and the language switch."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from aiohttp import web

from archiver.retention import schedule
from archiver.state import STATES, InvalidQuery, SearchPage, SearchQuery
from archiver.web.chart import bar_chart
from archiver.web.context import CONTEXT_KEY, USER_KEY, WebContext
from archiver.web.i18n import LANGUAGES, Language, number_text, plural, texts
from archiver.web.login import SESSION_KEY, safe_next
from archiver.web.query import SEARCH_FIELDS, dial_plan, parse_search
from archiver.web.render import LANG_COOKIE, language_of, render
from archiver.web.rows import RowStyle, row_view
from archiver.web.trail import log_search

__all__ = ["add_page_routes", "query_message"]

_BACKLOG_STATES: Final = ("discovered", "downloaded", "transcoded")
_STATUS_DAYS: Final = 30
_NEARBY_PAGES: Final = 2
_CHOICES_TTL_S: Final = 60.0
_SORT_COLUMNS: Final = ("started_at", "caller", "callee", "duration")


def _common(request: web.Request, context: WebContext) -> dict[str, Any]:
    user = request[USER_KEY]
    session = request.get(SESSION_KEY)
    access = context.access(request)
    return {
        "user": user,
        "is_admin": access.is_admin,
        "can_audit": access.can_audit,
        "csrf_token": "" if session is None else session.csrf_token,
    }


def query_message(language: Language, problem: InvalidQuery) -> str:
    """`problem` in the user's language: its translated message when it has a code, else the
    reason (English) inside the translated frame."""
    words = texts(language)
    template = words.get(f"err_{problem.code}") if problem.code else None
    if template is None:
        return words["bad_query"].format(reason=problem.reason)
    values = {name: str(value) for name, value in problem.params.items()}
    if "field" in values:
        values["field"] = words.get(f"field_{values['field']}", values["field"])
    return template.format(**values)


def _zones(context: WebContext) -> tuple[dict[str, ZoneInfo], bool]:
    """Each PBX's zone, and whether they differ in offset now or at either solstice."""
    zones = {pbx.name: ZoneInfo(pbx.timezone) for pbx in context.cfg.pbx}
    year = datetime.now().year
    moments = [datetime(year, 1, 15), datetime(year, 7, 15)]
    offsets = {
        tuple(m.replace(tzinfo=zone).utcoffset() for m in moments) for zone in zones.values()
    }
    return zones, len(offsets) > 1


def _page_links(query: SearchQuery, page: SearchPage) -> dict[str, Any]:
    """Numbered pages: first, previous, nearby, next and last (when the total is known)."""
    current = query.page
    last = max(1, -(-page.total // query.limit))
    if page.total_capped:
        last = max(current, last)
    nearby = [n for n in range(current - _NEARBY_PAGES, current + _NEARBY_PAGES + 1)
              if 1 <= n <= last]  # fmt: skip
    first_row = (current - 1) * query.limit + 1 if page.items else 0
    return {
        "current": current,
        "last": None if page.total_capped else last,
        "nearby": nearby,
        "previous": current - 1 if current > 1 else None,
        "next": current + 1
        if len(page.items) == query.limit and (page.total_capped or current < last)
        else None,
        "first_row": first_row,
        "last_row": first_row + len(page.items) - 1 if page.items else 0,
    }


def _quick_ranges(today: date) -> list[tuple[str, str, str]]:
    """(label key, from, to) of the quick links."""
    month_start = today.replace(day=1)
    yesterday = today - timedelta(days=1)
    return [
        ("today", today.isoformat(), today.isoformat()),
        ("yesterday", yesterday.isoformat(), yesterday.isoformat()),
        ("last_7_days", (today - timedelta(days=6)).isoformat(), today.isoformat()),
        ("this_month", month_start.isoformat(), today.isoformat()),
    ]


class _Choices:
    """The archive's trunks and dial statuses (for the form's choices), read at most once a
    minute: a skip scan over their indexes, cheap at any size."""

    def __init__(self) -> None:
        self.at_s = -_CHOICES_TTL_S
        self.values: tuple[list[str], list[str]] = ([], [])


_CHOICES_KEY: Final = web.AppKey("search_choices", _Choices)


async def _choices(request: web.Request, context: WebContext) -> tuple[list[str], list[str]]:
    cache = request.app.get(_CHOICES_KEY)
    if cache is None:
        return [], []
    if time.monotonic() - cache.at_s > _CHOICES_TTL_S:
        trunks = await context.in_db(context.catalogue.distinct_values, "trunk")
        statuses = await context.in_db(context.catalogue.distinct_values, "dial_status")
        cache.values = (trunks, statuses)
        cache.at_s = time.monotonic()
    return cache.values


def _total_text(language: Language, page: SearchPage) -> str:
    words = texts(language)
    count = number_text(language, page.total)
    if page.total_capped:
        return words["results_capped"].format(total=count)
    return plural(language, page.total, words["results_one"], words["results_other"]).format(
        total=count
    )


async def _search(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    language = language_of(request)
    words = texts(language)
    params = {name: value for name, value in request.query.items() if isinstance(value, str)}
    plan = dial_plan(context.cfg)
    error: str | None = None
    page = SearchPage((), 0, None)
    query = SearchQuery(dial_plan=plan, limit=context.cfg.web.page_size)
    try:
        query = parse_search(params, plan, default_limit=context.cfg.web.page_size)
        query = replace(query, scope=context.access(request).scope)
        page = await context.in_db(context.catalogue.search, query)
        await log_search(request, query, page.total)
    except InvalidQuery as problem:
        error = query_message(language, problem)
    form = {name: params.get(name, "") for name in SEARCH_FIELDS}
    kept = {name: value for name, value in form.items() if value}
    if params.get("limit"):
        kept["limit"] = params["limit"]
    zones, show_zone = _zones(context)
    style = RowStyle(plan=plan, zones=zones, show_zone=show_zone, words=words)
    trunks, statuses = await _choices(request, context)
    links = _page_links(query, page)
    today = datetime.now(context.timezone).date()
    shown = {
        "first": number_text(language, links["first_row"]),
        "last": number_text(language, links["last_row"]),
        "total": number_text(language, page.total),
    }
    return render(
        request,
        context.templates,
        "search.html",
        status=400 if error else 200,
        form=form,
        error=error,
        rows=[row_view(entry, style) for entry in page.items],
        total=page.total,
        total_capped=page.total_capped,
        total_text=_total_text(language, page),
        showing=words["showing_capped" if page.total_capped else "showing"].format(**shown),
        links=links,
        page_url=lambda number: "/?" + urlencode({**kept, "page": number}),
        sort_url=lambda column: "/?" + urlencode(_sorted(kept, column, query)),
        sort_columns=_SORT_COLUMNS,
        query=query,
        quick=_quick_links(words, kept, today),
        pbx_names=[pbx.name for pbx in context.cfg.pbx],
        trunks=trunks,
        statuses=statuses,
        back=request.path_qs,
        export_url="/export?" + urlencode(_without_page(kept)),
        **_common(request, context),
    )


def _quick_links(words: dict[str, str], kept: dict[str, str], today: date) -> list[tuple[str, str]]:
    base = _without_page(kept)
    return [
        (words[key], "/?" + urlencode({**base, "from": low, "to": high}))
        for key, low, high in _quick_ranges(today)
    ]


def _without_page(kept: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in kept.items() if name != "page"}


def _sorted(kept: dict[str, str], column: str, query: SearchQuery) -> dict[str, str]:
    """The parameters that sort by `column`: the other order when it is already the sort."""
    if query.sort == column:
        order = "asc" if query.order == "desc" else "desc"
    else:
        order = "asc" if column in ("caller", "callee") else "desc"
    return {**_without_page(kept), "sort": column, "order": order}


async def _status(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    language = language_of(request)
    words = texts(language)
    common = _common(request, context)
    if not common["is_admin"]:
        return render(request, context.templates, "forbidden.html", status=403, **common)
    today = datetime.now(context.timezone).date()
    days = [today - timedelta(days=offset) for offset in range(_STATUS_DAYS - 1, -1, -1)]
    per_day = await context.in_db(context.catalogue.archived_per_day, days, context.timezone)
    counts = await context.in_db(context.ledger.counts)
    failures = await context.in_db(context.ledger.recent_failures, 50)
    total = await context.in_db(context.catalogue.count)
    destruction = await context.in_db(_destruction_lines, context, words, language)
    return render(
        request,
        context.templates,
        "status.html",
        destruction=destruction,
        chart=bar_chart(per_day, title=words["archived_per_day"]),
        counts=[(words.get(f"state_{s}", s), number_text(language, counts[s])) for s in STATES],
        backlog=number_text(language, sum(counts[state] for state in _BACKLOG_STATES)),
        failures=failures,
        catalogue_total=number_text(language, total),
        integrity_count=context.integrity.count,
        **common,
    )


def _destruction_lines(
    context: WebContext, words: dict[str, str], language: Language
) -> list[tuple[str, str, str]]:
    """The status view's periodic destruction: (id, label, text) of the last run (when, how
    many), the next, and the total destroyed (archiver.retention.schedule)."""
    due = schedule(context.cfg, context.state)
    zone = context.timezone

    def when(moment: datetime) -> str:
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    last = due.last
    if last is None:
        last_text = words["destruction_never"]
    elif last.outcome is None:
        last_text = f"{when(last.started_at)}: {words['destruction_running']}"
    else:
        last_text = f"{when(last.started_at)}: " + words["destruction_result"].format(
            destroyed=number_text(language, last.destroyed),
            kept=number_text(language, last.kept),
            failed=number_text(language, last.failed),
            outcome=last.outcome,
        )
    next_text = words["destruction_off"] if due.next_at is None else when(due.next_at)
    total = number_text(language, context.state.destructions.count())
    return [
        ("destruction-last", words["destruction_last"], last_text),
        ("destruction-next", words["destruction_next"], next_text),
        ("destruction-total", words["destruction_total"], total),
    ]


async def _language(request: web.Request) -> web.StreamResponse:
    code = request.match_info["code"]
    if code not in LANGUAGES:
        raise web.HTTPNotFound()
    # Public (the login page has the switch too): only a path of this site, as after a login.
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, path="/", samesite="Strict")
    raise response


def add_page_routes(app: web.Application) -> None:
    app[_CHOICES_KEY] = _Choices()
    app.router.add_get("/", _search)
    app.router.add_get("/status", _status)
    app.router.add_get("/lang/{code}", _language)
