"""The `archiver web` application: routes, the guard, static files, and serving it (optionally
over TLS) until a signal, within its connection caps and time limits, speaking to systemd (READY,
WATCHDOG from the event loop, STOPPING) when it runs under it."""

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
from archiver.notify import Notifier, watchdog_interval_s
from archiver.s3 import S3Store
from archiver.state import open_state
from archiver.web.api import add_api_routes
from archiver.web.audio import add_audio_routes
from archiver.web.compliance import add_compliance_routes
from archiver.web.connections import ConnectionCaps, ensure_descriptors, guarded
from archiver.web.context import CONTEXT_KEY, WebContext
from archiver.web.login import add_login_routes, guard, security_headers
from archiver.web.middleware import body_deadline, compress, search_limits, transport_headers
from archiver.web.pages import add_page_routes
from archiver.web.render import template_environment
from archiver.web.users import Users

__all__ = ["build_app", "open_context", "running", "serve"]

log = structlog.get_logger("archiver.web")
_STATIC = Path(__file__).parent / "static"
# On SIGTERM, requests still running (a long download, a zip) get this long, then are cancelled,
# so the server is gone well within systemd's TimeoutStopSec.
_SHUTDOWN_GRACE_S = 2.0


def build_app(context: WebContext) -> web.Application:
    """The application over `context`: every route, the login guard, security headers."""
    app = web.Application(
        middlewares=[body_deadline, compress, guard, search_limits], client_max_size=256 * 1024
    )
    app[CONTEXT_KEY] = context
    app.on_response_prepare.append(security_headers)
    app.on_response_prepare.append(transport_headers)
    add_login_routes(app)
    add_page_routes(app)
    add_api_routes(app)
    add_audio_routes(app)
    add_compliance_routes(app)
    app.router.add_static("/static/", _STATIC, show_index=False, follow_symlinks=False)
    return app


def open_context(cfg: Config, *, store: S3Store | None = None) -> WebContext:
    """The shared state of the server: the state (migrated), the bucket, the users."""
    return WebContext(
        cfg=cfg,
        state=open_state(cfg, statement_timeout_s=cfg.web.statement_timeout_s),
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
    """Serve on `[web] listen` while inside; yield the bound port. Each connection passes the
    connection caps first; a request's headers must arrive within `header_timeout_s` of the
    connection (or of the previous response), which is aiohttp's keep-alive timer: it closes a
    connection still waiting for a whole request."""
    web_cfg = context.cfg.web
    host, port = web_cfg.host_port
    runner = web.AppRunner(
        build_app(context),
        access_log=None,
        keepalive_timeout=web_cfg.header_timeout_s,
        shutdown_timeout=_SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    caps = ConnectionCaps(
        max_total=ensure_descriptors(web_cfg.max_connections),
        max_per_address=web_cfg.max_connections_per_address,
        exempt=frozenset(web_cfg.trusted_proxies),
    )
    context.connections = caps
    loop = asyncio.get_running_loop()
    listener: asyncio.Server | None = None
    try:
        tls = _tls(context.cfg)
        try:
            listener = await loop.create_server(
                guarded(runner.server, caps),  # type: ignore[arg-type]  # a protocol factory
                host,
                port,
                ssl=tls,
                ssl_handshake_timeout=None if tls is None else web_cfg.header_timeout_s,
                backlog=128,
                reuse_address=True,
            )
        except OSError as error:
            raise listen_error("[web] listen", web_cfg.listen, error, who="archiver web") from None
        bound: int = listener.sockets[0].getsockname()[1]
        yield bound
    finally:
        if listener is not None:
            listener.close()  # no new connections; the runner ends the open ones
        await runner.cleanup()


async def serve(context: WebContext, *, on_ready: object = None) -> None:
    """Serve until SIGTERM or SIGINT. `on_ready(port)` (if callable) runs once listening. Under
    systemd: READY once listening, WATCHDOG from the event loop (so a stuck loop is restarted),
    STOPPING on the way out."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    notifier = Notifier.from_environment()
    try:
        async with running(context) as port:
            scheme = "https" if context.cfg.web.tls_cert else "http"
            log.info("web_listening", listen=context.cfg.web.listen, port=port, scheme=scheme)
            notifier.ready(f"serving {scheme} on {context.cfg.web.listen}")
            if callable(on_ready):
                on_ready(port)
            pulse = asyncio.create_task(_watchdog(notifier, watchdog_interval_s()))
            try:
                await stop.wait()
            finally:
                pulse.cancel()
            log.info("web_stopping")
            notifier.send(STOPPING=1)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _watchdog(notifier: Notifier, interval_s: float | None) -> None:
    """Ping systemd's watchdog at half its period from the event loop: if the loop hangs, the
    pings stop and systemd restarts the service."""
    if interval_s is None or not notifier.enabled:
        return
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval_s / 2)
