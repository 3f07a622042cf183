"""The daemon: which recordings to archive now, and how many at once.

`Archiver.poll_once` picks the days of every PBX (today and the look-back days, in the PBX's
time zone), `archive_days` lists them (`days.list_day`: the PBXs concurrently, each day by day)
and archives what is due, at most `max_in_flight` at once; each recording's stages are
`recording.RecordingWork`'s, retried by `retries.Retrier`, claimed with a `lease.Lease` (several
daemons may share one PostgreSQL state). Every recording's outcome is counted in the
`PollReport`, whatever happened to it; one recording's failure never stops the others. The
state is only ever called on its own threads (`StateThreads`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import structlog

from archiver.config import Config, PbxConfig
from archiver.names import Recording
from archiver.observe import NullObserver, Observer, Outcome
from archiver.pbx import PbxClient
from archiver.pipeline.backoff import CredentialBackoff
from archiver.pipeline.days import DayListing, DueRules, days_to_poll, list_day
from archiver.pipeline.hours import paused_until
from archiver.pipeline.invalid_names import InvalidNameLog
from archiver.pipeline.recording import ExtraMetadata, RecordingWork
from archiver.pipeline.report import PollReport
from archiver.pipeline.retries import Interrupted, Retrier
from archiver.pipeline.workdir import WorkDir
from archiver.pipeline.workers import Workers, max_in_flight
from archiver.s3 import S3Store
from archiver.state import Ledger, StateUnavailable, state_threads, worker_id

__all__ = ["Archiver", "max_in_flight"]

log = structlog.get_logger(__name__)

# A uniqueid's epoch is the channel's creation in UTC; the name's time is local. More than this
# apart means the configured time zone is probably not the PBX's.
_TZ_MISMATCH_S = 900
_PAUSE_RECHECK_S = 60.0


@dataclass
class Archiver:
    """Runs polls and backfills for every configured PBX. Owns its thread pools."""

    cfg: Config
    ledger: Ledger
    store: S3Store
    clients: dict[str, PbxClient]
    ffmpeg: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    # Extra S3 metadata for a recording (the dial status of a call placed through archiver);
    # called on the state's threads.
    extra_metadata: ExtraMetadata | None = None
    observer: Observer = field(default_factory=NullObserver)
    # This process's name in the recordings' leases.
    worker: str = field(default_factory=worker_id)

    def __post_init__(self) -> None:
        self.state = state_threads(self.ledger.db)
        self.workers = Workers(self.cfg, self.ffmpeg)
        self.transcode_workers = self.workers.transcode_workers
        self._in_flight = asyncio.Semaphore(max_in_flight(self.cfg))
        self._invalid_names = InvalidNameLog()
        self._tz_warned: set[str] = set()
        self._stops: set[asyncio.Event] = set()  # of the runs going on, for `stopping`
        # A folder of our own under work_dir: another process on the same state (a backfill
        # next to the daemon) never touches it, and we never touch theirs.
        self.work, removed = WorkDir.claim(self.cfg.state.work_path, self.cfg.state.path)
        if removed:
            log.info("work_dir_cleared", removed=removed, work_dir=str(self.cfg.state.work_path))
        self.work_dir = self.work.path
        self.auth_backoff = CredentialBackoff(
            base_s=self.cfg.poll.interval_s, max_s=self.cfg.daemon.auth_backoff_max_s
        )
        self.rules = DueRules(self.cfg.poll.settle_s, self.cfg.retry.max_recording_attempts)

    def close(self) -> None:
        """Wait for pool threads (so no file appears after), then remove this process's work
        folder."""
        self.workers.close()
        self.work.release()

    @property
    def stopping(self) -> bool:
        """True once the shutdown of a run going on began (for a progress display)."""
        return any(stop.is_set() for stop in self._stops)

    async def poll_once(
        self, stop: asyncio.Event | None = None, report: PollReport | None = None
    ) -> PollReport:
        """One poll of every PBX over today and the look-back days; archive what is due. Counts
        go into `report` (a new one by default), which the caller keeps if this is cancelled.

        A PBX that refused our credentials is skipped until its back-off pause is over (see
        `archiver.pipeline.backoff`); each refusal logs `pbx_credentials_refused` with the pause.
        """
        now = self.clock()
        now_s = time.monotonic()
        plan = {
            pbx.name: days_to_poll(now, ZoneInfo(pbx.timezone), self.cfg.poll.lookback_days)
            for pbx in self.cfg.pbx
            if self.auth_backoff.allowed(pbx.name, now_s)
        }
        report = report if report is not None else PollReport()
        report.backing_off = [pbx.name for pbx in self.cfg.pbx if pbx.name not in plan]
        await self.archive_days(plan, stop, report)
        for pbx_name in plan:
            if pbx_name in report.auth_refused:
                self.back_off(pbx_name)
            else:
                self.auth_backoff.accepted(pbx_name)
        return report

    def back_off(self, pbx_name: str) -> None:
        """`pbx_name` refused our credentials: leave it alone for a growing pause, and say so."""
        pause_s = self.auth_backoff.refused(pbx_name, time.monotonic())
        self.observer.credentials_refused(pbx_name)
        log.error(
            "pbx_credentials_refused",
            pbx=pbx_name,
            refusals=self.auth_backoff.refusals(pbx_name),
            retry_in_s=round(pause_s, 1),
            hint="fix the username/password, then restart; until then it is asked again after "
            "each pause",
        )

    async def archive_days(
        self,
        plan: Mapping[str, Sequence[date]],
        stop: asyncio.Event | None = None,
        report: PollReport | None = None,
        *,
        pausable: bool = False,
    ) -> PollReport:
        """List the given days of the given PBXs and archive every due recording in them. Counts
        go into `report` (a new one by default), which the caller keeps if this is cancelled.
        `pausable` (a backfill, never the live poll): start nothing inside the PBX's
        `[backfill] pause_during` windows."""
        report = report if report is not None else PollReport()
        report.days_planned += sum(len(days) for days in plan.values())
        stop = stop or asyncio.Event()
        self._stops.add(stop)
        retry = Retrier(self.cfg.retry, self.observer, stop)
        try:
            items = self._due_items(plan, report, retry, pausable=pausable)
            await self._archive_many(items, report, self._recording_work(retry))
        finally:
            self._stops.discard(stop)
        return report

    async def _due_items(
        self,
        plan: Mapping[str, Sequence[date]],
        report: PollReport,
        retry: Retrier,
        *,
        pausable: bool,
    ) -> AsyncIterator[tuple[PbxClient, Recording]]:
        """Yield the due recordings of every PBX, the PBXs listed concurrently (a slow one must
        not hold up the others), each PBX day by day. A day is listed only once the previous
        day's recordings have all been taken, so memory holds one day's listing per PBX however
        long the backfill, and the work in flight keeps the cores busy meanwhile."""
        queue: asyncio.Queue[tuple[PbxClient, Recording] | None] = asyncio.Queue(maxsize=1)
        stop = retry.stop

        async def list_days(client: PbxClient, days: Sequence[date]) -> None:
            for day in days:
                if pausable:
                    await self._outside_pause(client.cfg, stop)
                if stop.is_set():
                    return
                try:
                    due = await self._due_on(client, day, report, retry)
                except Interrupted:
                    return  # the shutdown cut the listing short: the day stays not listed
                report.days_listed += 1
                report.due += len(due)
                for rec in due:
                    if pausable:
                        await self._outside_pause(client.cfg, stop)
                    if stop.is_set():
                        return
                    await queue.put((client, rec))

        async def produce(client: PbxClient, days: Sequence[date]) -> None:
            # The end marker goes in on success and failure alike (the error is re-raised by
            # `result()` below), but not on cancellation: then nobody reads the queue any more.
            try:
                await list_days(client, days)
            except asyncio.CancelledError:
                raise
            except Exception:
                await queue.put(None)
                raise
            await queue.put(None)

        producers = [
            asyncio.create_task(produce(self.clients[name], days)) for name, days in plan.items()
        ]
        try:
            running = len(producers)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                else:
                    yield item
            for producer in producers:
                producer.result()  # a producer's bug surfaces here, not silently
        finally:
            for producer in producers:
                producer.cancel()
            await asyncio.gather(*producers, return_exceptions=True)

    async def _outside_pause(self, pbx: PbxConfig, stop: asyncio.Event) -> None:
        """Return once the PBX's local time is outside every `[backfill] pause_during` window
        (at once if it is), or `stop` is set. Says until when it waits, once per pause."""
        windows = self.cfg.backfill.windows
        announced: datetime | None = None
        while windows and not stop.is_set():
            now = self.clock().astimezone(ZoneInfo(pbx.timezone))
            until = paused_until(windows, now)
            if until is None:
                if announced is not None:
                    log.info("backfill_resumed", pbx=pbx.name)
                return
            if until != announced:
                announced = until
                log.info("backfill_paused", pbx=pbx.name, until=until.isoformat())
                self.observer.paused(pbx.name, until)
            # Checked again at least every minute: the clock may be changed under us.
            wait_s = min((until - now).total_seconds(), _PAUSE_RECHECK_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=max(wait_s, 0.01))

    async def _due_on(
        self, client: PbxClient, day: date, report: PollReport, retry: Retrier
    ) -> list[Recording]:
        """List `day` of `client` (`list_day`), count and log what it holds, record the new
        recordings as discovered; return those due now."""
        pbx = client.name
        try:
            listing = await list_day(
                client, day, ledger=self.ledger, state=self.state, retry=retry,
                rules=self.rules, clock=self.clock,
            )  # fmt: skip
            if listing.ok:
                await self.state.run(self.ledger.discover, listing.new)
                await self.state.run(self.ledger.listing_ok, pbx)
        except StateUnavailable as error:
            report.listing_errors.append(error.reason)
            log.error("state_unavailable", pbx=pbx, day=day.isoformat(), reason=error.reason)
            return []
        self._count(listing, report)
        return list(listing.due)

    def _count(self, listing: DayListing, report: PollReport) -> None:
        """Put one day's listing into `report`, the observer and the log."""
        pbx, day = listing.pbx, listing.day.isoformat()
        if listing.error is not None:
            report.listing_errors.append(listing.error)
            self.observer.listed(pbx, ok=False, discovered=0, due=0)
            if listing.auth_refused and pbx not in report.auth_refused:
                report.auth_refused.append(pbx)
            if listing.broken:
                hint = "an empty listing is not believed; nothing is marked or skipped"
                log.error("listing_broken", pbx=pbx, day=day, reason=listing.error, hint=hint)
                self.observer.listing_broken(pbx, listing.error)
            else:
                log.error("listing_failed", pbx=pbx, day=day, reason=listing.error)
            return
        report.listed += listing.listed
        report.invalid += len(listing.invalid)
        report.unsettled += listing.unsettled
        self._invalid_names.log(pbx, list(listing.invalid))
        if listing.valid:
            self._check_timezone(pbx, listing.valid[0])
        self.observer.listed(pbx, ok=True, discovered=len(listing.new), due=len(listing.due))
        log.info(
            "listed", pbx=pbx, day=day, listed=listing.listed, valid=len(listing.valid),
            due=len(listing.due),
        )  # fmt: skip

    def _check_timezone(self, pbx: str, rec: Recording) -> None:
        drift_s = rec.uniqueid_epoch_s - rec.started_at.timestamp()
        if abs(drift_s) > _TZ_MISMATCH_S and pbx not in self._tz_warned:
            self._tz_warned.add(pbx)
            log.warning(
                "timezone_mismatch",
                pbx=pbx,
                uniqueid=rec.uniqueid,
                drift_s=round(drift_s),
                hint="the uniqueid's UTC time and the name's local time disagree: check timezone",
            )

    def _recording_work(self, retry: Retrier) -> RecordingWork:
        return RecordingWork(
            cfg=self.cfg,
            ledger=self.ledger,
            state=self.state,
            store=self.store,
            workers=self.workers,
            work_dir=self.work_dir,
            worker=self.worker,
            observer=self.observer,
            retry=retry,
            extra_metadata=self.extra_metadata,
        )

    async def _archive_many(
        self,
        items: AsyncIterable[tuple[PbxClient, Recording]],
        report: PollReport,
        work: RecordingWork,
    ) -> None:
        """Archive `items` concurrently; stop starting new ones once `stop` is set. Every task is
        reaped as it ends and its outcome counted in `report`: one that fails never cancels the
        others. If this is cancelled (a shutdown past its grace period), the tasks in flight are
        cancelled, awaited and counted as `cancelled` before the cancellation goes on."""
        stop = work.retry.stop
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for client, rec in items:
                await self._in_flight.acquire()
                if stop.is_set():
                    self._in_flight.release()
                    break
                task = asyncio.create_task(self._archive_counted(work, client, rec, report))
                tasks.add(task)
                # Finished tasks go at once: a backfill of 100,000 must not keep 100,000 tasks.
                task.add_done_callback(functools.partial(self._reap, tasks, report, rec))
            if tasks:
                await asyncio.wait(set(tasks))
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(set(tasks))

    def _reap(
        self,
        tasks: set[asyncio.Task[None]],
        report: PollReport,
        rec: Recording,
        task: asyncio.Task[None],
    ) -> None:
        """Account for one ended task: cancelled, or its result fetched so nothing is lost."""
        tasks.discard(task)
        self._in_flight.release()
        if task.cancelled():
            report.cancelled += 1
            return
        try:
            task.result()
        except Exception as error:  # _archive_counted counts every outcome; this is a bug of ours
            report.failed += 1
            log.error(
                "recording_task_failed",
                pbx=rec.pbx,
                uniqueid=rec.uniqueid,
                name=rec.name,
                reason=f"{type(error).__name__}: {error}",
                exc_info=error,
            )

    async def _archive_counted(
        self, work: RecordingWork, client: PbxClient, rec: Recording, report: PollReport
    ) -> None:
        try:
            outcome = await work.archive(client, rec)
        except StateUnavailable as error:
            # Nothing could be recorded: the recording stays as it was, and the next poll (of
            # this or another worker) takes it again once the database is back.
            log.error("state_unavailable", pbx=rec.pbx, name=rec.name, reason=error.reason)
            outcome = Outcome.DEFERRED
        except Exception as error:  # the ledger itself failed (disk full?): count it, go on
            with structlog.contextvars.bound_contextvars(
                pbx=rec.pbx, uniqueid=rec.uniqueid, name=rec.name
            ):
                log.exception("failed", reason=f"unexpected {type(error).__name__}: {error}")
            outcome = Outcome.FAILED
        report.add(outcome)
        self.observer.finished(rec.pbx, outcome)
