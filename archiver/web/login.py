"""Who is asking: the login form, logout, the session check that guards every other path, CSRF
on every POST, and HTTP Basic for scripts (the JSON API and audio).

Every login attempt, by form or by Basic, successful, refused or throttled, is an access-log row
and a `login` log event. The password itself is never logged or echoed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import quote

from aiohttp import web

from archiver.web.auth import Session, same_token
from archiver.web.context import (
    CONTEXT_KEY,
    SESSION_COOKIE,
    USER_KEY,
    WebContext,
    basic_credentials,
    client_address,
)
from archiver.web.i18n import texts
from archiver.web.render import SECURITY_HEADERS, language_of, render
from archiver.web.users import USERNAME_RE

__all__ = ["add_login_routes", "guard", "security_headers"]

PRELOGIN_COOKIE: Final = "archiver_csrf"
SESSION_KEY: Final = web.RequestKey("archiver_session", Session)
_PUBLIC_PATHS: Final = frozenset({"/login"})
_BASIC_PREFIXES: Final = ("/api/", "/audio/")

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


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never `//host` or a URL)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


async def _login_form(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    if context.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
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
        next=_safe_next(request.query.get("next")),
        user=None,
        is_admin=False,
    )
    _set_cookie(response, context, PRELOGIN_COOKIE, token, None)
    return response


async def _login(request: web.Request) -> web.StreamResponse:
    context = request.app[CONTEXT_KEY]
    form = await request.post()
    if not same_token(_field(form.get("csrf_token")), request.cookies.get(PRELOGIN_COOKIE, "")):
        raise web.HTTPForbidden(text="CSRF check failed: reload the login page\n")
    name = _field(form.get("username")) or ""
    password = _field(form.get("password")) or ""
    words = texts(language_of(request))
    verdict = await _check(request, context, name, password, via="form")
    if isinstance(verdict, float):
        seconds = math.ceil(verdict)
        return _form(request, context, error=words["login_throttled"].format(seconds=seconds),
                     status=429, headers={"Retry-After": str(seconds)})  # fmt: skip
    if not verdict:
        return _form(request, context, error=words["login_failed"], status=401)
    session = context.sessions.create(name)
    response = web.HTTPSeeOther(_safe_next(_field(form.get("next"))))
    _set_cookie(response, context, SESSION_COOKIE, session.token, context.cfg.web.session_ttl_s)
    response.del_cookie(PRELOGIN_COOKIE, path="/")
    raise response


def _field(value: object) -> str | None:
    return value if isinstance(value, str) else None


async def _check(
    request: web.Request, context: WebContext, name: str, password: str, *, via: str
) -> bool | float:
    """Check one login attempt: True (accepted), False (refused), or the seconds to wait
    (throttled; the password was not even checked). Logs and records each outcome."""
    address = client_address(request, context.cfg.web.trusted_proxies)
    keys = (f"user:{name}", f"addr:{address}")
    wait_s = context.throttle.retry_after_s(*keys)
    shown = name if USERNAME_RE.fullmatch(name) else name[:64]
    if wait_s > 0:
        await context.record(request, username=shown, action="login", outcome="throttled",
                             detail=via)  # fmt: skip
        return wait_s
    accepted = bool(name) and await context.in_s3(context.users.verify, name, password)
    if accepted:
        context.throttle.succeeded(keys[0])
    else:
        context.throttle.failed(*keys)
    await context.record(request, username=shown, action="login",
                         outcome="ok" if accepted else "refused", detail=via)  # fmt: skip
    return accepted


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
    if request.path in _PUBLIC_PATHS or request.path.startswith("/static/"):
        return await handler(request)
    context = request.app[CONTEXT_KEY]
    session = context.sessions.get(request.cookies.get(SESSION_COOKIE))
    if session is not None:
        if request.method == "POST":
            form = await request.post()
            if not same_token(_field(form.get("csrf_token")), session.csrf_token):
                raise web.HTTPForbidden(text="CSRF check failed: reload the page\n")
        request[USER_KEY] = session.username
        request[SESSION_KEY] = session
        return await handler(request)
    if request.path.startswith(_BASIC_PREFIXES) and request.method == "GET":
        return await _basic(request, context, handler)
    if request.method == "GET" and not request.path.startswith(_BASIC_PREFIXES):
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    raise web.HTTPUnauthorized(
        text="log in first\n", headers={"WWW-Authenticate": 'Basic realm="archiver"'}
    )


async def _basic(request: web.Request, context: WebContext, handler: Handler) -> web.StreamResponse:
    challenge = {"WWW-Authenticate": 'Basic realm="archiver", charset="UTF-8"'}
    credentials = basic_credentials(request)
    if credentials is None:
        raise web.HTTPUnauthorized(text="log in first (HTTP Basic)\n", headers=challenge)
    verdict = await _check(request, context, *credentials, via="basic")
    if isinstance(verdict, float):
        raise web.HTTPTooManyRequests(
            text="too many failed logins\n", headers={"Retry-After": str(math.ceil(verdict))}
        )
    if not verdict:
        raise web.HTTPUnauthorized(text="wrong user name or password\n", headers=challenge)
    request[USER_KEY] = credentials[0]
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the headers of `SECURITY_HEADERS` on every answer, streamed audio
    and errors included."""
    response.headers.update(SECURITY_HEADERS)


def add_login_routes(app: web.Application) -> None:
    app.router.add_get("/login", _login_form)
    app.router.add_post("/login", _login)
    app.router.add_post("/logout", _logout)
