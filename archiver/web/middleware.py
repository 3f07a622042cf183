"""The web's middleware against slow or greedy requests, and its transport headers:

- `body_deadline`: a request's body is read whole within `[web] body_timeout_s` (at most
  `client_max_size`), before any handler runs, or the answer is 408.
- `search_limits`: searches (the search page, the API, the status view) run at most
  `search_max_per_user` at once per user and `search_max_concurrent` in total, so one user's
  slow searches cannot hold every database thread; beyond, 429 or 503 with Retry-After. A search
  whose statement ran past `statement_timeout_s` answers 503 saying so.
- `compress`: pages and API answers are gzipped for clients that accept it. Safe from BREACH
  because every page that holds a secret (the CSRF token) is only ever served to a request that
  carries the SameSite=Strict session cookie, which a page elsewhere cannot make a browser send.
- `transport_headers`: Strict-Transport-Security under TLS (or behind a TLS proxy when
  `secure_cookies` is set), max-age `[web] hsts_max_age_s`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from aiohttp import web

from archiver.state import StatementTimeout
from archiver.web.context import CONTEXT_KEY, USER_KEY, log
from archiver.web.limits import LimitReached

__all__ = ["body_deadline", "compress", "search_limits", "transport_headers"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_COMPRESSIBLE: Final = ("text/html", "application/json", "text/css", "application/javascript")
_MIN_COMPRESS_BYTES: Final = 1024
_SEARCH_RETRY_AFTER_S: Final = 2


def _is_search(request: web.Request) -> bool:
    return request.method == "GET" and (
        request.path in ("/", "/status") or request.path.startswith("/api/")
    )


def _refusal(request: web.Request, status: int, reason: str, retry_after_s: int) -> web.Response:
    headers = {"Retry-After": str(retry_after_s)}
    if request.path.startswith("/api/"):
        return web.json_response({"error": reason}, status=status, headers=headers)
    return web.Response(status=status, text=reason + "\n", headers=headers)


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read a request's body within the deadline before anything else (it is kept for the
    handler: `request.post()` reads the copy)."""
    if request.can_read_body:
        timeout_s = request.app[CONTEXT_KEY].cfg.web.body_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                await request.read()
        except TimeoutError:
            log.info("web_body_too_slow", path=request.path, timeout_s=timeout_s)
            raise web.HTTPRequestTimeout(
                text="the request's body came too slowly\n", headers={"Connection": "close"}
            ) from None
    return await handler(request)


@web.middleware
async def search_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admit a search within the per-user and total limits; a statement past its time limit
    is a 503 with the reason. Runs inside the guard, which names the user."""
    if not _is_search(request):
        return await handler(request)
    context = request.app[CONTEXT_KEY]
    user = request.get(USER_KEY, "")
    try:
        with context.searches.slot(user):
            return await handler(request)
    except LimitReached as refused:
        log.info("search_refused", user=user, limit=refused.scope)
        if refused.scope == "user":
            reason = (f"at most {context.cfg.web.search_max_per_user} searches at once per user:"
                      " wait for the others to finish")  # fmt: skip
            return _refusal(request, 429, reason, _SEARCH_RETRY_AFTER_S)
        return _refusal(request, 503, "the server is busy searching: try again shortly",
                        _SEARCH_RETRY_AFTER_S)  # fmt: skip
    except StatementTimeout:
        log.warning("search_timed_out", user=user, path=request.path,
                    timeout_s=context.cfg.web.statement_timeout_s)  # fmt: skip
        reason = (f"the search took longer than {context.cfg.web.statement_timeout_s:g} s:"
                  " narrow it (a shorter period, a longer number)")  # fmt: skip
        return _refusal(request, 503, reason, _SEARCH_RETRY_AFTER_S)


@web.middleware
async def compress(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gzip (or deflate) a page or an API answer when the client accepts it; audio, zips and
    anything streamed are left alone (MP3 and zips of MP3 do not shrink)."""
    response = await handler(request)
    if (
        type(response) is web.Response
        and response.content_type.startswith(_COMPRESSIBLE)
        and response.body is not None
        and len(response.body) >= _MIN_COMPRESS_BYTES  # type: ignore[arg-type]  # bytes here
    ):
        response.enable_compression()
    return response


async def transport_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: Strict-Transport-Security when the connection is TLS, or the
    site is declared to sit behind a TLS proxy (`secure_cookies = true`)."""
    web_cfg = request.app[CONTEXT_KEY].cfg.web
    if web_cfg.hsts_max_age_s > 0 and (request.secure or web_cfg.secure_cookies is True):
        response.headers["Strict-Transport-Security"] = f"max-age={web_cfg.hsts_max_age_s}"
