"""The daemon's own HTTP server (`[http] listen`): health now; metrics and call-result callbacks
register their routes on the same application.

Bound to 127.0.0.1 by default. It never serves anything the PBX password could leak into.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web

__all__ = ["HEALTH_KEY", "Health", "build_http_app", "parse_listen", "start_http"]


@dataclass
class Health:
    """What /healthz reports: the main loop's last heartbeat (monotonic seconds)."""

    started_at_s: float = field(default_factory=time.monotonic)
    last_beat_s: float = field(default_factory=time.monotonic)
    stale_after_s: float = 300.0

    def beat(self) -> None:
        self.last_beat_s = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat_s < self.stale_after_s


HEALTH_KEY = web.AppKey("health", Health)


async def _healthz(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    if health.alive():
        return web.Response(text="ok\n")
    return web.Response(status=503, text="main loop stalled\n")


def build_http_app(health: Health) -> web.Application:
    """The application with /healthz; other modules add their routes before it starts."""
    app = web.Application(client_max_size=64 * 1024)
    app[HEALTH_KEY] = health
    app.router.add_get("/healthz", _healthz)
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) → (host, port). Raise ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


async def start_http(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    """Serve `app` on `listen`; return the runner (to clean up) and the bound port."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return runner, bound
