"""Who is asking: the login form, logout, the session check that guards every other path, CSRF
on every POST, and HTTP Basic for scripts (the JSON API and audio).

Every login attempt, by form or by Basic, successful, refused or throttled, is an access-log row
and a `login` log event. The password itself is never logged or echoed.

A password is checked in one place, `check_password` (the htpasswd file today; a directory can
answer there too), on the hash threads, after the attempt was counted by the throttle; a session
lives only while `session_valid` says its credential still stands.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from archiver.web.auth import Session, same_token
from archiver.web.context import (
    CONTEXT_KEY,
    SESSION_COOKIE,
    USER_KEY,
    WebContext,
    basic_credentials,
    client_address,
    log,
)
from archiver.web.directory_login import directory_login, directory_session_valid
from archiver.web.hash_queue import HASH_SOURCE
from archiver.web.i18n import texts
from archiver.web.render import SECURITY_HEADERS, language_of, render
from archiver.web.users import USERNAME_RE, PasswordCheck

__all__ = [
    "add_login_routes",
    "check_password",
    "guard",
    "safe_location",
    "safe_next",
    "security_headers",
    "session_valid",
]

PRELOGIN_COOKIE: Final = "archiver_csrf"
SESSION_KEY: Final = web.RequestKey("archiver_session", Session)
_PUBLIC_PATHS: Final = frozenset({"/login"})
_BASIC_PREFIXES: Final = ("/api/", "/audio/")
# POSTs a script may send with HTTP Basic (no cookie, so no CSRF token to check).
_BASIC_POSTS: Final = frozenset({"/api/export"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _set_cookie(response: web.StreamResponse, context: WebContext, name: str, value: str,
                max_age_s: float | None) -> None:  # fmt: skip
    response.set_cookie(
        name,
        value,
        max_age=None if max_age_s is None else int(max_age_s),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=context.cfg.web.cookies_secure,
    )


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only, else `/`."""
    return target if target is not None and safe_location(target) else "/"


def safe_location(target: str) -> bool:
    """True if `target` is a path of this site once normalised as the response will send it and
    a browser will read it. yarl (which builds aiohttp's Location) drops tabs and newlines, so
    a TAB between two slashes would leave as `//evil.example`; browsers drop them too and take a
    backslash for a slash. So: no control character at all, no backslash before the query, and
    what yarl makes of it starts with one slash only."""
    path = target.partition("?")[0].partition("#")[0]
    if not target or any(ord(char) < 0x20 or char == "\x7f" for char in target) or "\\" in path:
        return False
    try:
        sent = str(URL(target))
    except ValueError:
        return False
    if any(ord(char) < 0x20 or char == "\x7f" for char in sent):
        return False
    return sent.startswith("/") and not sent.startswith("//")


async def _login_form(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    if context.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return _form(request, context, error=None, status=200)


def _form(request: web.Request, context: WebContext, *, error: str | None,
          status: int, headers: dict[str, str] | None = None) -> web.Response:  # fmt: skip
    token = request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        context.templates,
        "login.html",
        status=status,
        headers=headers,
        csrf_token=token,
        error=error,
        next=safe_next(request.query.get("next")),
        ended=request.query.get("ended") == "1",
        user=None,
        is_admin=False,
    )
    _set_cookie(response, context, PRELOGIN_COOKIE, token, None)
    return response


async def _login(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    form = await request.post()
    # Both must be there: a missing cookie is not the empty string an empty field would match.
    if not same_token(_field(form.get("csrf_token")), request.cookies.get(PRELOGIN_COOKIE)):
        raise web.HTTPForbidden(text="CSRF check failed: reload the login page\n")
    name = _field(form.get("username")) or ""
    password = _field(form.get("password")) or ""
    words = texts(language_of(request))
    verdict = await _check(request, context, name, password, via="form")
    if verdict.wait_s > 0:
        seconds = math.ceil(verdict.wait_s)
        key = "login_busy" if verdict.busy else "login_throttled"
        return _form(request, context, error=words[key].format(seconds=seconds),
                     status=503 if verdict.busy else 429,
                     headers={"Retry-After": str(seconds)})  # fmt: skip
    if verdict.directory_down:
        return _form(request, context, error=words["login_directory_down"], status=503)
    if verdict.stamp is None:
        return _form(request, context, error=words["login_failed"], status=401)
    session = context.sessions.create(name, verdict.stamp)
    response = web.HTTPSeeOther(safe_next(_field(form.get("next"))))
    _set_cookie(response, context, SESSION_COOKIE, session.token, context.cfg.web.session_ttl_s)
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


def _field(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def check_password(context: WebContext, name: str, password: str) -> PasswordCheck:
    """The one place a password is checked: on the hash threads (never those that stream
    audio), then padded so that every name takes as long. Call only for an attempt the throttle
    admitted."""
    check = await context.in_hash(context.users.verify, name, password)
    if check.pad_s > 0:
        await asyncio.sleep(check.pad_s)
    if check.accepted or context.directory is None or context.users.stamp(name) is not None:
        return check
    return await directory_login(context, name, password)  # not a local user: the directory


def session_valid(context: WebContext, session: Session) -> bool:
    """True while the credential the session was opened with still stands (the user is in the
    users file with the same password, or the directory login is still remembered)."""
    if directory_session_valid(context, session.username, session.stamp):
        return True
    return context.users.stamp(session.username) == session.stamp


@dataclass(frozen=True, slots=True)
class _Verdict:
    """One login attempt's outcome: `stamp` when accepted; `wait_s` > 0 when it was not
    checked (throttled, or `busy`: too many checks already waiting)."""

    stamp: str | None
    wait_s: float = 0.0
    busy: bool = False
    directory_down: bool = False


async def _check(
    request: web.Request, context: WebContext, name: str, password: str, *, via: str
) -> _Verdict:
    """Check one login attempt, counted before its hash; a throttled attempt costs none. Logs
    and records each outcome."""
    address = client_address(request, context.cfg.web.trusted_proxies)
    shown = name if USERNAME_RE.fullmatch(name) else name[:64]
    if context.hash_queue.full(address):  # this address's share of checks is queued already
        await context.record(request, username=shown, action="login", outcome="throttled",
                             detail=f"{via}, server busy")  # fmt: skip
        return _Verdict(stamp=None, wait_s=2.0, busy=True)
    wait_s = context.throttle.admit(name, address)
    if wait_s > 0:
        await context.record(request, username=shown, action="login", outcome="throttled",
                             detail=via)  # fmt: skip
        return _Verdict(stamp=None, wait_s=wait_s)
    source = HASH_SOURCE.set(address)  # its turn among the addresses waiting for a hash
    try:
        check = await check_password(context, name, password) if name else None
    finally:
        HASH_SOURCE.reset(source)
    stamp = check.stamp if check is not None and check.accepted else None
    if stamp is not None:
        context.throttle.succeeded(name, address)
    down = check is not None and check.unavailable
    await context.record(request, username=shown, action="login",
                         outcome="ok" if stamp else "refused",
                         detail=f"{via}, directory unavailable" if down else via)  # fmt: skip
    return _Verdict(stamp=stamp, directory_down=down)


async def _logout(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    context.sessions.end(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every path but the login page and /static/ needs a session (or, for /api/ and /audio/,
    HTTP Basic); every POST a valid CSRF token. Sets `request[USER_KEY]`."""
    if request.path in _PUBLIC_PATHS or request.path.startswith(("/static/", "/lang/")):
        return await handler(request)
    context = request.app[CONTEXT_KEY]
    session = context.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None and not session_valid(context, session):
        context.sessions.end(session.token)  # the user was removed or the password changed
        log.info("session_ended", user=session.username, reason="credential changed")
        session = None
    if session is not None:
        if request.method == "POST":
            form = await request.post()
            if not same_token(_field(form.get("csrf_token")), session.csrf_token):
                raise web.HTTPForbidden(text="CSRF check failed: reload the page\n")
        request[USER_KEY] = session.username
        request[SESSION_KEY] = session
        return await handler(request)
    basic_post = request.method == "POST" and request.path in _BASIC_POSTS
    basic_path = request.path.startswith(_BASIC_PREFIXES) and (
        request.method == "GET" or basic_post
    )
    if basic_path and ("Authorization" in request.headers or not _from_a_page(request)):
        return await _basic(request, context, handler)
    raise await _session_ended(request)


def _from_a_page(request: web.Request) -> bool:
    """A browser asks (it sends Sec-Fetch-* headers), or a session cookie came with it: never
    answered with an HTTP Basic challenge, which would pop up a password dialog."""
    return "Sec-Fetch-Mode" in request.headers or SESSION_COOKIE in request.cookies


async def _session_ended(request: web.Request) -> web.HTTPException:
    """No session: a page or a form goes to the login page (saying the session ended when a
    cookie shows there was one), back to where it was after logging in; the page's scripts,
    audio and API calls get a 401 without a challenge (the page then goes to the login)."""
    ended = "ended=1&" if SESSION_COOKIE in request.cookies or request.method == "POST" else ""
    if request.method == "POST":
        back = safe_next(_field((await request.post()).get("next")))
    else:
        back = request.path_qs
    target = f"/login?{ended}next={quote(back, safe='')}"
    navigating = request.headers.get("Sec-Fetch-Mode", "navigate") == "navigate"
    if request.path.startswith(_BASIC_PREFIXES) and not navigating:
        return web.HTTPUnauthorized(
            text='{"error": "session ended", "login": "/login?ended=1"}',
            content_type="application/json",
        )
    return web.HTTPSeeOther(target)


async def _basic(request: web.Request, context: WebContext, handler: Handler) -> web.StreamResponse:
    challenge = {"WWW-Authenticate": 'Basic realm="archiver", charset="UTF-8"'}
    credentials = basic_credentials(request)
    if credentials is None:
        raise web.HTTPUnauthorized(text="log in first (HTTP Basic)\n", headers=challenge)
    name, password = credentials
    # A script fetching many files proves its password once a minute, not once per request.
    remembered = context.verified.stamp_of(name, password)
    if remembered is None or remembered != context.users.stamp(name):
        verdict = await _check(request, context, name, password, via="basic")
        if verdict.wait_s > 0:
            retry = {"Retry-After": str(math.ceil(verdict.wait_s))}
            if verdict.busy:
                raise web.HTTPServiceUnavailable(text="busy checking passwords\n", headers=retry)
            raise web.HTTPTooManyRequests(text="too many failed logins\n", headers=retry)
        if verdict.directory_down:
            raise web.HTTPServiceUnavailable(text="the directory cannot be reached; try again\n")
        if verdict.stamp is None:
            raise web.HTTPUnauthorized(text="wrong user name or password\n", headers=challenge)
        context.verified.remember(name, password, verdict.stamp)
    request[USER_KEY] = name
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the headers of `SECURITY_HEADERS` on every answer, streamed audio
    and errors included; no redirect ever leaves this site, whoever built its Location."""
    response.headers.update(SECURITY_HEADERS)
    location = response.headers.get("Location")
    if location is not None and not safe_location(location):
        log.warning("redirect_refused", path=request.path)
        response.headers["Location"] = "/"


def add_login_routes(app: web.Application) -> None:
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
