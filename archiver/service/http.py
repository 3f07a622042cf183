"""The daemon's own HTTP server (`[http] listen`): health now; metrics and call-result callbacks
register their routes on the same application.

Bound to 127.0.0.1 by default. It never serves anything the PBX password could leak into.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from archiver.config import Config
from archiver.errors import ListenError, listen_error
from archiver.service.metrics import Metrics

__all__ = [
    "HEALTH_KEY",
    "METRICS_KEY",
    "Health",
    "ListenError",
    "add_metrics_routes",
    "build_http_app",
    "parse_listen",
    "ready_window_s",
    "start_http",
]


@dataclass
class Health:
    """What /healthz reports: the main loop's last heartbeat (monotonic seconds)."""

    started_at_s: float = field(default_factory=time.monotonic)
    last_beat_s: float = field(default_factory=time.monotonic)
    stale_after_s: float = 300.0

    @classmethod
    def for_config(cls, cfg: Config) -> Health:
        """Stale when neither a poll nor any stage of any recording ended for a while: at least
        5 minutes, three poll intervals, and twice the retry budget (a stage may legitimately
        take its whole budget)."""
        return cls(stale_after_s=max(300.0, 3 * cfg.poll.interval_s, 2 * cfg.retry.timeout_s))

    def beat(self) -> None:
        self.last_beat_s = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self.last_beat_s < self.stale_after_s


HEALTH_KEY = web.AppKey("health", Health)


def ready_window_s(cfg: Config) -> float:
    """/readyz is ready while every PBX answered within this long: three polls plus one
    listing's retry budget."""
    return 3 * cfg.poll.interval_s + cfg.retry.timeout_s


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


METRICS_KEY = web.AppKey("metrics", Metrics)
READY_WINDOW_KEY = web.AppKey("ready_window_s", float)
# Why the state database is not answering, or None (archiver.state.StateThreads.problem).
StateProblem = Callable[[], str | None]
STATE_PROBLEM_KEY: web.AppKey[StateProblem] = web.AppKey("state_problem")


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS_KEY]
    await metrics.refresh()  # the state's counts, asked in a thread (never blocks the loop)
    body = metrics.render()
    # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants given apart.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _readyz(request: web.Request) -> web.Response:
    problems = request.app[METRICS_KEY].not_ready(request.app[READY_WINDOW_KEY])
    if not request.app[HEALTH_KEY].alive():
        problems.insert(0, "main loop stalled")
    state_problem = request.app.get(STATE_PROBLEM_KEY)
    if state_problem is not None and (problem := state_problem()) is not None:
        problems.insert(0, problem)
    if problems:
        return web.Response(status=503, text="".join(f"{p}\n" for p in problems))
    return web.Response(text="ready\n")


def add_metrics_routes(
    app: web.Application,
    metrics: Metrics,
    *,
    ready_window_s: float,
    state_problem: Callable[[], str | None] | None = None,
) -> None:
    """Add GET /metrics (Prometheus text format) and GET /readyz: 200 when every PBX's last
    listing succeeded and it answered within `ready_window_s`, and the state database answers
    (`state_problem` says why not), else 503 with the reasons."""
    app[METRICS_KEY] = metrics
    app[READY_WINDOW_KEY] = ready_window_s
    if state_problem is not None:
        app[STATE_PROBLEM_KEY] = state_problem
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/readyz", _readyz)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) → (host, port). Raise ValueError if malformed."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


async def start_http(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    """Serve `app` on `listen`; return the runner (to clean up) and the bound port. Raise
    `ListenError` if the address is taken or cannot be bound."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        raise listen_error("[http] listen", listen, error, who="archiver") from None
    except BaseException:
        await runner.cleanup()
        raise
    bound: int = runner.addresses[0][1]
    return runner, bound
