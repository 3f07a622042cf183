"""The `archiver web` application: routes, the guard, static files, and serving it (optionally
over TLS) until a signal."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from aiohttp import web

from archiver.config import Config
from archiver.errors import listen_error
from archiver.s3.store import S3Store
from archiver.state.api import open_state
from archiver.web.api import add_api_routes
from archiver.web.audio import add_audio_routes
from archiver.web.context import CONTEXT_KEY, WebContext
from archiver.web.login import add_login_routes, guard, security_headers
from archiver.web.pages import add_page_routes
from archiver.web.render import template_environment
from archiver.web.users import Users

__all__ = ["build_app", "open_context", "running", "serve"]

log = structlog.get_logger("archiver.web")
_STATIC = Path(__file__).parent / "static"


def build_app(context: WebContext) -> web.Application:
    """The application over `context`: every route, the login guard, security headers."""
    app = web.Application(middlewares=[guard], client_max_size=256 * 1024)
    app[CONTEXT_KEY] = context
    app.on_response_prepare.append(security_headers)
    add_login_routes(app)
    add_page_routes(app)
    add_api_routes(app)
    add_audio_routes(app)
    app.router.add_static("/static/", _STATIC, show_index=False, follow_symlinks=False)
    return app


def open_context(cfg: Config, *, store: S3Store | None = None) -> WebContext:
    """The shared state of the server: the state (migrated), the bucket, the users."""
    return WebContext(
        cfg=cfg,
        state=open_state(cfg),
        store=store or S3Store(cfg.s3),
        users=Users(cfg.web.users_path),
        templates=template_environment(),
    )


def _tls(cfg: Config) -> ssl.SSLContext | None:
    if cfg.web.tls_cert is None or cfg.web.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cfg.web.tls_cert, cfg.web.tls_key)
    return context


@asynccontextmanager
async def running(context: WebContext) -> AsyncIterator[int]:
    """Serve on `[web] listen` while inside; yield the bound port."""
    host, port = context.cfg.web.host_port
    runner = web.AppRunner(build_app(context), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=_tls(context.cfg))
        try:
            await site.start()
        except OSError as error:
            listen = context.cfg.web.listen
            raise listen_error("[web] listen", listen, error, who="archiver web") from None
        bound: int = runner.addresses[0][1]
        yield bound
    finally:
        await runner.cleanup()


async def serve(context: WebContext, *, on_ready: object = None) -> None:
    """Serve until SIGTERM or SIGINT. `on_ready(port)` (if callable) runs once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(context) as port:
            scheme = "https" if context.cfg.web.tls_cert else "http"
            log.info("web_listening", listen=context.cfg.web.listen, port=port, scheme=scheme)
            if callable(on_ready):
                on_ready(port)
            await stop.wait()
            log.info("web_stopping")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
