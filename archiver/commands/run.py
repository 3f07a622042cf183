"""`archiver run`: the daemon: poll the PBXs and archive until stopped (or once)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog

from archiver.commands._shared import CHMOD_HINT, finish, progress
from archiver.config import Config, config_path, load_config
from archiver.exits import EXIT_OK, EXIT_UNREACHABLE

if TYPE_CHECKING:  # the handler imports what it runs: parsing loads none of it
    from archiver.retention import DestroyedCounter
    from archiver.s3 import S3Store
    from archiver.service import Health, Metrics
    from archiver.state import State

__all__ = ["add_parser"]

log = structlog.get_logger("archiver")


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    run = sub.add_parser("run", parents=[common], help="poll the PBXs and archive until stopped")
    run.add_argument("--once", action="store_true", help="one poll, drain it, exit")
    run.set_defaults(handler=_cmd_run, logs_to_stdout=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from archiver.credentials import readable_secret_files

    path = config_path(args.config)
    cfg = load_config(path)
    for where in readable_secret_files(path, cfg):
        # (verify_tls = false gets its own warning when the PBX clients are made.)
        log.warning("password_file_readable_by_others", path=str(where), hint=CHMOD_HINT)
    return asyncio.run(_run(cfg, once=args.once))


async def _run(cfg: Config, *, once: bool) -> int:
    from archiver.state import open_state

    with contextlib.closing(open_state(cfg)) as state:
        return await _run_with(cfg, state, once=once)


async def _run_with(cfg: Config, state: State, *, once: bool) -> int:
    from archiver.pipeline import (
        archive_until_signalled,
        max_in_flight,
        open_archiver,
        serve,
        store_ready,
    )
    from archiver.retention import DestroyedCounter
    from archiver.service import DaemonFacts, Health, Metrics, Notifier, Service, check_pbxs

    async with open_archiver(cfg, state) as archiver:
        if not await store_ready(archiver):
            return EXIT_UNREACHABLE
        if once:
            async with progress(archiver):
                report = await archive_until_signalled(archiver)
            return finish(report)
        health = Health.for_config(cfg)
        metrics = Metrics([pbx.name for pbx in cfg.pbx], on_event=health.beat)
        metrics.watch_request_limits(
            lambda: {name: client.limit.limit for name, client in archiver.clients.items()}
        )
        metrics.watch_daemon(
            DaemonFacts(
                poll_interval_s=cfg.poll.interval_s,
                work_dir=cfg.state.work_path,
                in_flight=max_in_flight(cfg),
                failed_counts=state.ledger.counts_failed,
            )
        )
        archiver.observer = metrics
        service = Service(Notifier.from_environment(), health, metrics)
        # A PBX refusing our credentials does not stop the daemon (the others still archive,
        # and a fixed password is picked up without a restart): it is asked again after a
        # doubling pause, each one logged. One-shot commands exit 5 instead.
        for name in await check_pbxs(archiver.clients):
            archiver.back_off(name)
        destroyed = DestroyedCounter()
        metrics.add_counters(destroyed.samples, "Recordings destroyed, by reason.")
        async with (
            _http_server(cfg, health, metrics, state),
            _periodic_destruction(cfg, state, archiver.store, destroyed),
        ):
            service.ready()
            await serve(archiver, service)
    return EXIT_OK


@contextlib.asynccontextmanager
async def _periodic_destruction(
    cfg: Config, state: State, store: S3Store, counter: DestroyedCounter
) -> AsyncIterator[None]:
    """Destruction every [destruction] every_days beside the poll loop (archiver.retention);
    stopped between two recordings when the daemon stops."""
    from archiver.retention import destroy_periodically

    task = asyncio.create_task(destroy_periodically(cfg, state, store, counter))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def _http_server(
    cfg: Config, health: Health, metrics: Metrics, state: State
) -> AsyncIterator[None]:
    from archiver.calls import CALLBACK_STATS_KEY, add_callback_routes
    from archiver.credentials import callbacks_token
    from archiver.logs import register_secret
    from archiver.service import add_metrics_routes, build_http_app, ready_window_s, start_http

    if cfg.http.listen is None:
        yield
        return
    app = build_http_app(health)
    token = callbacks_token(cfg.callbacks)
    if token is not None:
        register_secret(token)
    add_callback_routes(app, cfg.callbacks, state.calls, state.aio)
    add_metrics_routes(
        app, metrics, ready_window_s=ready_window_s(cfg), state_problem=state.aio.problem
    )
    if CALLBACK_STATS_KEY in app:
        metrics.add_counters(app[CALLBACK_STATS_KEY].samples, "Call results received.")
    runner, port = await start_http(app, cfg.http.listen)
    log.info("http_listening", listen=cfg.http.listen, port=port)
    # /readyz follows the database between polls too (an idle daemon asks it nothing else).
    watching = asyncio.create_task(state.aio.watch())
    try:
        yield
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await runner.cleanup()
