"""The daemon's runtime: one run, a backfill, or polling until stopped, and how each stops.

Like arq's Worker, this owns the loop, its pace and its signals; `cli` only parses arguments and
wires the parts together. The shutdown policy (`until_signalled`): the first SIGTERM/SIGINT sets
`stop`, so no new recording starts, and gives those in flight `shutdown_grace_s` to finish; then,
or at a second signal, they are cancelled. Either way every recording is accounted for in the
`PollReport` (a cancelled one as `cancelled`), the ledger stays consistent and work files go.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

import structlog

from archiver.config import Config
from archiver.credentials import pbx_password
from archiver.pbx import PbxClient
from archiver.pipeline.daemon import Archiver
from archiver.pipeline.report import PollReport
from archiver.pipeline.retries import install_retry_log
from archiver.pipeline.transcode import find_ffmpeg
from archiver.s3 import S3Store, StoreError
from archiver.service import Service
from archiver.state import State, free_dead_local_leases

__all__ = [
    "Ending",
    "archive_until_signalled",
    "open_archiver",
    "poll_ticks",
    "serve",
    "store_ready",
    "until_signalled",
]

log = structlog.get_logger("archiver")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.asynccontextmanager
async def open_archiver(cfg: Config, state: State) -> AsyncIterator[Archiver]:
    """The Archiver for `cfg` over `state`, with its PBX clients and store; closed on exit (the
    caller closes `state`). The Archiver claims its own work folder (sweeping what dead
    processes left, see `archiver.pipeline.workdir`); the leases of dead workers of this host
    are freed. Archived recordings of calls placed through archiver
    get their dial status from the call log. Where the state is shared (PostgreSQL), each PBX's
    request limit holds across all workers."""
    ffmpeg = find_ffmpeg(cfg.transcode.ffmpeg)
    clients = {pbx.name: PbxClient(pbx, pbx_password(pbx)) for pbx in cfg.pbx}
    for pbx in cfg.pbx:
        clients[pbx.name].shared_gate = state.pbx_gate(pbx.name, pbx.max_concurrent_requests)
        if pbx.tls_unverified:
            log.warning("tls_verification_off", pbx=pbx.name)
    log.info("state_opened", backend=state.backend, where=state.where)
    install_retry_log()
    dead = await state.aio.run(free_dead_local_leases, state.ledger)
    if dead:
        log.info("dead_workers_leases_freed", workers=dead)
    store = await asyncio.to_thread(S3Store, cfg.s3)
    archiver = Archiver(cfg=cfg, ledger=state.ledger, store=store, clients=clients, ffmpeg=ffmpeg)
    archiver.extra_metadata = state.calls.recording_metadata
    try:
        yield archiver
    finally:
        for client in clients.values():
            await client.close()
        await asyncio.to_thread(archiver.close)


async def store_ready(archiver: Archiver) -> bool:
    """Start-up maintenance of the bucket: check we can reach it (False, logged as
    `s3_unreachable`, if not), then abort multipart uploads a crash left incomplete."""
    try:
        await asyncio.to_thread(archiver.store.check_access)
    except StoreError as error:
        log.error("s3_unreachable", reason=error.reason)
        return False
    await _abort_stale_multipart(archiver)
    return True


async def _abort_stale_multipart(archiver: Archiver) -> None:
    """Abort multipart uploads a crash left incomplete under our prefix (their parts cost
    storage and a listing shows them). A failure here is logged; it never stops the run."""
    s3 = archiver.cfg.s3
    try:
        aborted = await asyncio.to_thread(
            archiver.store.abort_stale_multipart, f"{s3.prefix}/", s3.stale_multipart_s
        )
    except StoreError as error:
        log.warning("stale_multipart_not_aborted", reason=error.reason)
        return
    if aborted:
        log.info("stale_multipart_aborted", aborted=aborted, older_than_s=s3.stale_multipart_s)


async def archive_until_signalled(
    archiver: Archiver, plan: Mapping[str, Sequence[date]] | None = None
) -> PollReport:
    """One poll (`plan` None) or a backfill of `plan` (which waits out `[backfill]
    pause_during`; a poll never does), under the shutdown policy. Return its
    report; if a signal stopped it before it was done, `interrupted` is set and what it left
    undone is logged (`interrupted`)."""
    report = PollReport()

    async def work(stop: asyncio.Event) -> None:
        if plan is None:
            await archiver.poll_once(stop, report)
        else:
            await archiver.archive_days(plan, stop, report, pausable=True)

    ending = await until_signalled(work, grace_s=archiver.cfg.daemon.shutdown_grace_s)
    left_undone = report.unfinished > 0 or report.days_not_listed > 0
    report.interrupted = ending.cancelled or (ending.signalled and left_undone)
    if report.interrupted:
        log.warning(
            "interrupted",
            unfinished=report.unfinished,
            cancelled=report.cancelled,
            days_not_listed=report.days_not_listed,
            hint="run the same command again: finished recordings are skipped",
        )
    return report


async def serve(archiver: Archiver, service: Service) -> None:
    """Poll every `poll.interval_s` until a signal stops it, telling systemd and the health
    check about each tick. Each poll is logged as `poll_done` with its report."""

    async def loop(stop: asyncio.Event) -> None:
        async with service.running(stop):
            async for tick in poll_ticks(archiver.cfg.poll.interval_s, stop):
                service.health.beat()
                report = await archiver.poll_once(stop)
                service.health.beat()
                log.info("poll_done", tick=tick, **report.summary())

    await until_signalled(loop, grace_s=archiver.cfg.daemon.shutdown_grace_s)


async def poll_ticks(interval_s: float, stop: asyncio.Event) -> AsyncIterator[int]:
    """Yield at once, then every `interval_s` (measured start to start) until `stop` is set."""
    tick = 0
    while not stop.is_set():
        started = time.monotonic()
        yield tick
        tick += 1
        remaining_s = interval_s - (time.monotonic() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(remaining_s, 0))


@dataclass(frozen=True, slots=True)
class Ending:
    """How work run by `until_signalled` ended: `signalled` if a signal asked it to stop,
    `cancelled` if it was then cut off (grace period over, or a second signal)."""

    signalled: bool
    cancelled: bool


async def until_signalled(
    work: Callable[[asyncio.Event], Awaitable[None]], *, grace_s: float
) -> Ending:
    """Run `work(stop)` under the shutdown policy (see the module docstring)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    task = asyncio.ensure_future(work(stop))

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second_signal_cancelling")
            task.cancel()
            return
        log.info("stopping", grace_s=grace_s)
        stop.set()
        loop.call_later(grace_s, task.cancel)

    for signum in _SIGNALS:
        loop.add_signal_handler(signum, on_signal)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled ourselves, not the work by a signal
        log.warning("in_flight_cancelled")
        return Ending(signalled=True, cancelled=True)
    finally:
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
    return Ending(signalled=stop.is_set(), cancelled=False)
