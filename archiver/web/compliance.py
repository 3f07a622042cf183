"""The compliance views of `archiver web`, for the `compliance` and `admin` roles: a call's access
history (`/history/{key}`), the audit page with its filters and CSV (`/audit`, `/audit.csv`) and
the court export (`/export`: a form, then the zip; `POST /api/export` for scripts).

Every one of them stays inside the user's scope (a call outside it is 404, as everywhere) and is
itself written to the access log (`audit` and `export` rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from archiver.audit import (
    CaseReference,
    ExportRequest,
    InvalidCase,
    event_record,
    events_csv,
    write_export,
)
from archiver.s3 import StoreError
from archiver.state import (
    ACCESS_ACTIONS,
    COUNT_CAP,
    MAX_PAGE,
    AccessEvent,
    CatalogueEntry,
    InvalidQuery,
    SearchQuery,
    search_number,
)
from archiver.web.audio import ZipPipe
from archiver.web.context import CONTEXT_KEY, WebContext, log
from archiver.web.i18n import texts
from archiver.web.limits import LimitReached
from archiver.web.query import SEARCH_FIELDS, dial_plan, parse_search
from archiver.web.render import language_of, render
from archiver.web.roles import Access
from archiver.web.rows import RowStyle, row_view
from archiver.web.trail import describe_search

__all__ = ["add_compliance_routes"]

_SHOWN_EVENTS: Final = 500
_CSV_EVENTS: Final = 100_000
_HISTORY_EVENTS: Final = 2_000
_AUDIT_FIELDS: Final = ("user", "number", "key", "action", "from", "to")
_SLUG_RE: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _common(request: web.Request, context: WebContext, access: Access) -> dict[str, Any]:
    from archiver.web.login import SESSION_KEY

    session = request.get(SESSION_KEY)
    words = texts(language_of(request))
    return {
        "times_in": words["times_in"].format(zone=context.timezone.key),
        "count_text": lambda n: words["event_one"] if n == 1 else words["events"].format(count=n),
        "calls_text": lambda n: words["calls_n"].format(count=n),
        "user": access.username,
        "is_admin": access.is_admin,
        "can_audit": access.can_audit,
        "csrf_token": "" if session is None else session.csrf_token,
        "role": access.role,
        "scope": access.scope.describe(),
    }


def _auditor(request: web.Request) -> Access:
    """The user's access; 403 unless they may see the audit views."""
    context = request.app[CONTEXT_KEY]
    access = context.access(request)
    if not access.can_audit:
        words = texts(language_of(request))
        raise web.HTTPForbidden(text=words["compliance_only"] + "\n")
    return access


def _params(request: web.Request) -> dict[str, str]:
    return {name: value for name, value in request.query.items() if isinstance(value, str)}


def _part(event: AccessEvent, key: str | None, words: dict[str, str]) -> str:
    if event.action == "export":
        return f"{words['in_export']}: {(event.detail or '').strip()}"
    if event.action == "zip":
        return words["in_zip"]
    if event.byte_range:
        whole = re.fullmatch(r"bytes 0-([0-9]+)/([0-9]+)", event.byte_range)
        if whole and int(whole[1]) + 1 == int(whole[2]):
            return f"{words['whole_file']} ({event.byte_range})"
        return event.byte_range
    if event.action in ("play", "download"):
        return words["whole_file"]
    return (event.detail or "").strip()


def _event_rows(events: list[AccessEvent], context: WebContext, words: dict[str, str],
                key: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for event in reversed(events):  # newest first
        record = event_record(event, context.timezone)
        record["when"] = event.at.astimezone(context.timezone).strftime("%Y-%m-%d %H:%M:%S")
        record["part"] = _part(event, key, words)
        record["calls"] = len(event.object_keys)
        rows.append(record)
    return rows


async def _visible(
    context: WebContext, access: Access, events: list[AccessEvent]
) -> list[AccessEvent]:
    """The events a scoped officer may see: those about calls in their scope (events about no
    call, such as logins and searches, only for the whole archive)."""
    if access.scope.whole:
        return events
    known: dict[str, bool] = {}

    async def holds(key: str) -> bool:
        if key not in known:
            entry = await context.in_db(context.catalogue.get, key, scope=access.scope)
            known[key] = entry is not None
        return known[key]

    kept = []
    for event in events:
        keys = [*([event.object_key] if event.object_key else []), *event.object_keys]
        if keys and any([await holds(key) for key in keys]):
            kept.append(event)
    return kept


async def _history(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    access = _auditor(request)
    key = request.match_info["key"]
    entry = await context.in_db(context.catalogue.get, key, scope=access.scope)
    if entry is None:
        raise web.HTTPNotFound(text="no such recording\n")
    events = await context.in_db(context.access_log.events, object_key=key,
                                 limit=_HISTORY_EVENTS)  # fmt: skip
    await context.record(request, username=access.username, action="audit", object_key=key,
                         detail="access history", item_count=len(events))  # fmt: skip
    words = texts(language_of(request))
    flagged = context.integrity.get(key)
    zones = {pbx.name: ZoneInfo(pbx.timezone) for pbx in context.cfg.pbx}
    style = RowStyle(plan=dial_plan(context.cfg), zones=zones, show_zone=True, words=words)
    return render(
        request,
        context.templates,
        "history.html",
        call=row_view(entry, style),
        pbx=entry.pbx,
        started_at=entry.started_at.isoformat(),
        rows=_event_rows(events, context, words, key),
        integrity_bad=None
        if flagged is None
        else flagged.astimezone(context.timezone).strftime("%Y-%m-%d %H:%M:%S"),
        **_common(request, context, access),
    )


def _day(params: Mapping[str, str], name: str) -> date | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidQuery(f"{name} must be a date as YYYY-MM-DD") from None


def _audit_filters(params: Mapping[str, str], context: WebContext) -> dict[str, Any]:
    """The audit page's filters as `AccessLog.events` arguments; `InvalidQuery` if malformed."""
    first, last = _day(params, "from"), _day(params, "to")
    if first and last and last < first:
        raise InvalidQuery("to is before from")
    tz = context.timezone
    action = params.get("action", "").strip() or None
    if action is not None and action not in ACCESS_ACTIONS:
        raise InvalidQuery(f"action must be one of {', '.join(ACCESS_ACTIONS)}")
    number = params.get("number", "").strip()
    user = params.get("user", "").strip()
    key = params.get("key", "").strip()
    if len(user) > 64 or len(key) > 1024:
        raise InvalidQuery("user or key too long")
    return {
        "since": None if first is None else datetime(first.year, first.month, first.day, tzinfo=tz),
        "until": None if last is None
        else datetime(last.year, last.month, last.day, tzinfo=tz) + timedelta(days=1),
        "username": user or None,
        "action": action,
        "object_key": key or None,
        "number": search_number(number) if number else None,
    }  # fmt: skip


async def _audit_events(
    request: web.Request, access: Access, limit: int
) -> tuple[list[AccessEvent], str | None, dict[str, str]]:
    context = request.app[CONTEXT_KEY]
    params = _params(request)
    form = {name: params.get(name, "") for name in _AUDIT_FIELDS}
    try:
        filters = _audit_filters(params, context)
    except InvalidQuery as problem:
        words = texts(language_of(request))
        return [], words["bad_query"].format(reason=problem.reason), form
    events = await context.in_db(context.access_log.events, limit=limit, **filters)
    events = await _visible(context, access, events)
    detail = " " + " ".join(f"{name}={value}" for name, value in form.items() if value) + " "
    await context.record(request, username=access.username, action="audit",
                         detail=f"audit{detail}".rstrip(), item_count=len(events))  # fmt: skip
    return events, None, form


async def _audit(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    access = _auditor(request)
    events, error, form = await _audit_events(request, access, _SHOWN_EVENTS)
    words = texts(language_of(request))
    return render(
        request,
        context.templates,
        "audit.html",
        status=400 if error else 200,
        error=error,
        form=form,
        actions=ACCESS_ACTIONS,
        rows=_event_rows(events, context, words),
        shown_limit=_SHOWN_EVENTS,
        csv_params={name: value for name, value in form.items() if value},
        **_common(request, context, access),
    )


async def _audit_csv(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    access = _auditor(request)
    events, error, _ = await _audit_events(request, access, _CSV_EVENTS)
    if error is not None:
        raise web.HTTPBadRequest(text=error + "\n")
    stamp = datetime.now(context.timezone).strftime("%Y%m%d-%H%M%S")
    return web.Response(
        text=events_csv(events, context.timezone),
        content_type="text/csv",
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="access-log-{stamp}.csv"',
            "Cache-Control": "private, no-store",
        },
    )


async def _matching(
    context: WebContext, access: Access, params: Mapping[str, str]
) -> tuple[SearchQuery, int]:
    query = parse_search(params, dial_plan(context.cfg), default_limit=MAX_PAGE)
    # Newest first, paged by cursor: every match, whatever page the search showed.
    query = replace(query, scope=access.scope, limit=MAX_PAGE, cursor=None, page=1,
                    sort="started_at", order="desc")  # fmt: skip
    first = await context.in_db(context.catalogue.search, replace(query, limit=1))
    # A capped count (more than COUNT_CAP) is more than any export may hold: max_export is at
    # most COUNT_CAP, so it is refused, with "more than" in the message.
    return query, first.total + (1 if first.total_capped else 0)


async def _export_form(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    access = _auditor(request)
    params = _params(request)
    words = texts(language_of(request))
    error: str | None = None
    total = 0
    filters = ""
    try:
        query, total = await _matching(context, access, params)
        filters = describe_search(query).strip()
    except InvalidQuery as problem:
        error = words["bad_query"].format(reason=problem.reason)
    limit = context.cfg.web.max_export
    return render(
        request,
        context.templates,
        "export.html",
        status=400 if error else 200,
        error=error,
        total=total,
        limit=limit,
        too_many=total > limit,
        filters=filters or "-",
        search={name: params[name] for name in SEARCH_FIELDS if params.get(name)},
        **_common(request, context, access),
    )


async def _export_post(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    params = {name: value for name, value in form.items() if isinstance(value, str)}
    return await _export(request, params)


async def _api_export(request: web.Request) -> web.StreamResponse:
    """`POST /api/export`: the search's parameters and `case`, in the query string or a form
    body (both accepted; the body wins)."""
    params = _params(request)
    form = await request.post()
    params.update({name: value for name, value in form.items() if isinstance(value, str)})
    return await _export(request, params)


async def _all_entries(context: WebContext, query: SearchQuery) -> list[CatalogueEntry]:
    entries: list[CatalogueEntry] = []
    while True:
        page = await context.in_db(context.catalogue.search, query)
        entries += page.items
        if page.next_cursor is None:
            return entries
        query = replace(query, cursor=page.next_cursor)


async def _export(request: web.Request, params: Mapping[str, str]) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    access = _auditor(request)
    try:
        case = CaseReference.parse(params.get("case"))
        query, total = await _matching(context, access, params)
    except (InvalidCase, InvalidQuery) as problem:
        raise web.HTTPBadRequest(text=problem.reason + "\n") from None
    limit = context.cfg.web.max_export
    if total > limit:
        shown = f"more than {COUNT_CAP}" if total > COUNT_CAP else str(total)
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit, actual_size=total,
            text=f"{shown} calls match, more than [web] max_export ({limit}): narrow the"
            " search; nothing was exported\n",
        )  # fmt: skip
    if total == 0:
        raise web.HTTPNotFound(text="no call matches this search in your scope\n")
    try:
        with context.zips.slot(access.username):
            return await _export_admitted(request, context, access, query, case)
    except LimitReached:
        raise web.HTTPServiceUnavailable(
            text="the server is making as many zips as it can: try again shortly\n",
            headers={"Retry-After": "10"},
        ) from None


async def _export_admitted(
    request: web.Request,
    context: WebContext,
    access: Access,
    query: SearchQuery,
    case: CaseReference,
) -> web.StreamResponse:
    entries = await _all_entries(context, query)
    if len(entries) > context.cfg.web.max_export:  # calls archived since the count
        raise web.HTTPConflict(text="more calls match than a moment ago: try again\n")
    keys = [entry.object_key for entry in entries]
    expected = await context.in_db(context.state.fixity.of_keys, keys)
    filters = describe_search(query)
    await context.record(request, username=access.username, action="export",
                         detail=f"case={case}{filters}".strip(), item_count=len(keys),
                         object_keys=tuple(keys))  # fmt: skip
    meta = ExportRequest(username=access.username, role=access.role, case=case,
                         filters=filters, scope=access.scope.describe(),
                         at=datetime.now(context.timezone))  # fmt: skip
    slug = _SLUG_RE.sub("-", case)[:40].strip("-") or "case"
    response = web.StreamResponse()
    response.headers["Content-Type"] = "application/zip"
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["Content-Disposition"] = (
        f'attachment; filename="export-{slug}-{meta.at:%Y%m%d-%H%M%S}.zip"'
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    pipe = ZipPipe(loop)

    def write() -> None:
        try:
            summary = write_export(pipe, context.store, entries, expected, meta)  # type: ignore[arg-type]  # a write-only stream is enough
            log.info("court_export", user=access.username, calls=len(summary.rows),
                     manifest_sha256=summary.manifest_sha256,
                     mismatched=len(summary.mismatched))  # fmt: skip
        finally:
            with contextlib.suppress(BrokenPipeError):
                pipe.close_writing()

    writer = loop.run_in_executor(context.zip_threads, write)
    try:
        while (chunk := await pipe.get()) is not None:
            await response.write(chunk)
        await writer
        await response.write_eof()
    except (StoreError, ConnectionResetError, BrokenPipeError) as error:
        # Headers are gone: the client gets a truncated zip, which every unzip reports.
        log.warning("export_stream_broken", reason=getattr(error, "reason", type(error).__name__))
    finally:
        pipe.cancel()
    return response


def add_compliance_routes(app: web.Application) -> None:
    app.router.add_get("/history/{key:.+}", _history)
    app.router.add_get("/audit", _audit)
    app.router.add_get("/audit.csv", _audit_csv)
    app.router.add_get("/export", _export_form)
    app.router.add_post("/export", _export_post)
    app.router.add_post("/api/export", _api_export)
