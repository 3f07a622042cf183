"""The daemon: the only place that knows the order of the stages.

One recording goes list → name → settle → download → transcode → store → record. Each stage is a
small function or client call; this module sequences them, bounds concurrency, retries what is
transient and records every outcome in the ledger. One recording's failure is logged with its
reason and never stops the others.

Several daemons may share one state (PostgreSQL): each recording is claimed with a lease before
its work starts (skipped if another worker holds it), the lease is renewed while the work goes
on, and a worker that lost its lease stops before uploading and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import stamina
import stamina.instrumentation
import structlog

from archiver.config import Config, PbxConfig
from archiver.names import Recording
from archiver.observe import NullObserver, Observer, retry_reason
from archiver.pbx import Download, PbxAuthError, PbxClient, PbxError, date_pattern
from archiver.pipeline.backoff import CredentialBackoff
from archiver.pipeline.completeness import shortfall
from archiver.pipeline.cpus import usable_cpus
from archiver.pipeline.days import days_to_poll, is_due
from archiver.pipeline.hours import paused_until
from archiver.pipeline.invalid_names import InvalidNameLog
from archiver.pipeline.lease import Lease, LeaseLost
from archiver.pipeline.listing import parse_listing
from archiver.pipeline.listing_check import RECENT_S, explain_empty_listing
from archiver.pipeline.quarantine import digests, quarantine_metadata
from archiver.pipeline.report import PollReport
from archiver.pipeline.retries import Interrupted, RecordingFailed
from archiver.pipeline.transcode import (
    BadAudio,
    BatchJob,
    BatchTranscoder,
    TranscodeError,
    TranscodeResult,
    transcode_to_mp3,
)
from archiver.pipeline.work import (
    Progress,
    id3_tags,
    missing_work_file,
    transcode_limit_s,
    work_token,
)
from archiver.pipeline.workdir import WorkDir
from archiver.s3 import (
    QUARANTINE_CONTENT_TYPE,
    S3Store,
    StoredObject,
    StoreError,
    object_key,
    object_metadata,
    quarantine_key,
)
from archiver.state import (
    Ledger,
    StateUnavailable,
    catalogue_entry,
    worker_id,
)

__all__ = ["Archiver", "max_in_flight"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

# A uniqueid's epoch is the channel's creation in UTC; the name's time is local. More than this
# apart means the configured time zone is probably not the PBX's.
_TZ_MISMATCH_S = 900
_TRANSCODE_BASE_S = 120.0
_TRANSCODE_S_PER_AUDIO_S = 2.0
_PAUSE_RECHECK_S = 60.0


def max_in_flight(cfg: Config) -> int:
    """How many recordings may be between download and upload at once (each holds a source
    and an MP3 in the work folder): enough to keep every core and connection busy, few enough
    that work files stay bounded. Batching needs a full batch waiting per worker while the
    workers run theirs."""
    settings = cfg.transcode
    batch_files = settings.batch_files if settings.engine != "pydub" else 1
    workers = settings.workers or usable_cpus()
    per_pbx = sum(pbx.max_concurrent_requests for pbx in cfg.pbx)
    uploads = cfg.s3.max_concurrent_uploads
    return (batch_files + 1) * workers + per_pbx + uploads


@dataclass
class Archiver:
    """Runs polls and backfills for every configured PBX. Owns its thread pools."""

    cfg: Config
    ledger: Ledger
    store: S3Store
    clients: dict[str, PbxClient]
    ffmpeg: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    # Extra S3 metadata for a recording (the dial status of a call placed through archiver).
    extra_metadata: Callable[[Recording], Mapping[str, str]] | None = None
    observer: Observer = field(default_factory=NullObserver)
    # This process's name in the recordings' leases.
    worker: str = field(default_factory=worker_id)

    def __post_init__(self) -> None:
        settings = self.cfg.transcode
        workers = settings.workers or usable_cpus()
        self.transcode_workers = workers
        self._transcoders = ThreadPoolExecutor(workers, thread_name_prefix="transcode")
        self._uploaders = ThreadPoolExecutor(
            self.cfg.s3.max_concurrent_uploads, thread_name_prefix="upload"
        )
        batch_files = settings.batch_files if settings.engine != "pydub" else 1
        # "auto": a recording that finds a transcoder idle goes through pydub alone; those that
        # queue behind busy transcoders share ffmpeg processes (transcode/batch.py).
        self._batcher = (
            BatchTranscoder(
                self._transcoders,
                workers=workers,
                ffmpeg=self.ffmpeg,
                bitrate=settings.bitrate,
                max_files=batch_files,
                solo_engine="pydub" if settings.engine == "auto" else "ffmpeg",
            )
            if settings.engine != "pydub"
            else None
        )
        self._in_flight = asyncio.Semaphore(max_in_flight(self.cfg))
        self._invalid_names = InvalidNameLog()
        self._tz_warned: set[str] = set()
        self._stop: asyncio.Event | None = None
        # A folder of our own under work_dir: another process on the same state (a backfill
        # next to the daemon) never touches it, and we never touch theirs.
        self.work, removed = WorkDir.claim(self.cfg.state.work_path, self.cfg.state.path)
        if removed:
            log.info("work_dir_cleared", removed=removed, work_dir=str(self.cfg.state.work_path))
        self.work_dir = self.work.path
        self.auth_backoff = CredentialBackoff(
            base_s=self.cfg.poll.interval_s, max_s=self.cfg.daemon.auth_backoff_max_s
        )

    def close(self) -> None:
        """Wait for pool threads (so no file appears after), then remove this process's work
        folder."""
        self._transcoders.shutdown(wait=True, cancel_futures=True)
        self._uploaders.shutdown(wait=True, cancel_futures=True)
        self.work.release()

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
        items = self._due_items(plan, report, stop, pausable=pausable)
        await self.archive_many(items, report, stop)
        return report

    async def _due_items(
        self,
        plan: Mapping[str, Sequence[date]],
        report: PollReport,
        stop: asyncio.Event,
        *,
        pausable: bool,
    ) -> AsyncIterator[tuple[PbxClient, Recording]]:
        """Yield the due recordings of every PBX, the PBXs listed concurrently (a slow one must
        not hold up the others), each PBX day by day. A day is listed only once the previous
        day's recordings have all been taken, so memory holds one day's listing per PBX however
        long the backfill, and the work in flight keeps the cores busy meanwhile."""
        queue: asyncio.Queue[tuple[PbxClient, Recording] | None] = asyncio.Queue(maxsize=1)

        async def list_days(client: PbxClient, days: Sequence[date]) -> None:
            for day in days:
                if pausable:
                    await self._outside_pause(client.cfg, stop)
                if stop.is_set():
                    return
                try:
                    due = await self._due_on(client, day, report)
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

    async def _due_on(self, client: PbxClient, day: date, report: PollReport) -> list[Recording]:
        try:
            with structlog.contextvars.bound_contextvars(pbx=client.name, day=day.isoformat()):
                listing = await self._retry(
                    lambda: client.find(date_pattern(day)), "list", client.name
                )
        except RecordingFailed as error:
            report.listing_errors.append(error.reason)
            refused = isinstance(error.__cause__, PbxAuthError)
            if refused and client.name not in report.auth_refused:
                report.auth_refused.append(client.name)
            log.error("listing_failed", pbx=client.name, day=day.isoformat(), reason=error.reason)
            self.observer.listed(client.name, ok=False, discovered=0, due=0)
            return []
        if not listing.lines:
            broken = await self._empty_listing_problem(client)
            if broken is not None:
                report.listing_errors.append(broken)
                log.error(
                    "listing_broken",
                    pbx=client.name,
                    day=day.isoformat(),
                    reason=broken,
                    hint="an empty listing is not believed; nothing is marked or skipped",
                )
                self.observer.listed(client.name, ok=False, discovered=0, due=0)
                self.observer.listing_broken(client.name, broken)
                return []
        # ~3.5 us a line: a full listing parsed on the loop would stall /healthz and callbacks.
        tz = ZoneInfo(client.cfg.timezone)
        parsed = await asyncio.to_thread(parse_listing, client.name, listing.lines, tz)
        recordings = parsed.recordings
        report.listed += len(listing.lines)
        report.invalid += len(parsed.invalid)
        self._invalid_names.log(client.name, parsed.invalid)
        if recordings:
            self._check_timezone(client.name, recordings[0])
        try:
            due = self._plan_day(client, day, recordings, report, len(listing.lines))
            self.ledger.listing_ok(client.name)
            return due
        except StateUnavailable as error:
            report.listing_errors.append(error.reason)
            log.error(
                "state_unavailable", pbx=client.name, day=day.isoformat(), reason=error.reason
            )
            return []

    def _plan_day(
        self,
        client: PbxClient,
        day: date,
        recordings: list[Recording],
        report: PollReport,
        listed: int,
    ) -> list[Recording]:
        """Record the day's new recordings as discovered; return those due now."""
        known = self.ledger.states_for_day(client.name, day.isoformat())
        now = self.clock()
        due: list[Recording] = []
        for rec in recordings:
            if rec.day != day:
                continue  # the pattern matched elsewhere in the name; its own day lists it
            verdict = is_due(
                rec,
                known.get(rec.name),
                now=now,
                settle_s=self.cfg.poll.settle_s,
                max_attempts=self.cfg.retry.max_recording_attempts,
            )
            if verdict is None:
                report.unsettled += 1
            elif verdict:
                due.append(rec)
        discovered = [rec for rec in due if rec.name not in known]
        self.ledger.discover(discovered)
        self.observer.listed(client.name, ok=True, discovered=len(discovered), due=len(due))
        log.info(
            "listed",
            pbx=client.name,
            day=day.isoformat(),
            listed=listed,
            valid=len(recordings),
            due=len(due),
        )
        return due

    async def _empty_listing_problem(self, client: PbxClient) -> str | None:
        """Why an empty `find` of `client` cannot be believed (see `listing_check`), or None."""
        recent = self.ledger.latest_verified(client.name, since=time.time() - RECENT_S)
        name = recent.name if recent is not None else None
        try:
            return await self._retry(
                lambda: explain_empty_listing(client, name), "list", client.name
            )
        except RecordingFailed as error:
            return f"the listing came back empty and the check of it failed: {error.reason}"

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

    async def archive_many(
        self,
        items: AsyncIterable[tuple[PbxClient, Recording]],
        report: PollReport,
        stop: asyncio.Event,
    ) -> None:
        """Archive `items` concurrently; stop starting new ones once `stop` is set. Every task is
        reaped as it ends and its outcome counted in `report`: one that fails never cancels the
        others. If this is cancelled (a shutdown past its grace period), the tasks in flight are
        cancelled, awaited and counted as `cancelled` before the cancellation goes on."""
        self._stop = stop  # once set, no retry starts (see `_retry`)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for client, rec in items:
                await self._in_flight.acquire()
                if stop.is_set():
                    self._in_flight.release()
                    break
                task = asyncio.create_task(self._archive_counted(client, rec, report))
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

    async def _archive_counted(self, client: PbxClient, rec: Recording, report: PollReport) -> None:
        try:
            outcome = await self.archive_one(client, rec)
        except StateUnavailable as error:
            # Nothing could be recorded: the recording stays as it was, and the next poll (of
            # this or another worker) takes it again once the database is back.
            log.error("state_unavailable", pbx=rec.pbx, name=rec.name, reason=error.reason)
            outcome = "deferred"
        except Exception as error:  # the ledger itself failed (disk full?): count it, go on
            with structlog.contextvars.bound_contextvars(
                pbx=rec.pbx, uniqueid=rec.uniqueid, name=rec.name
            ):
                log.exception("failed", reason=f"unexpected {type(error).__name__}: {error}")
            outcome = "failed"
        report.add_outcome(outcome)
        self.observer.finished(rec.pbx, outcome)

    async def archive_one(self, client: PbxClient, rec: Recording) -> str:
        """Archive one recording; return its outcome: archived, already_present, failed or empty.
        Never raises for a recording's own problems; they end in the ledger with a reason."""
        # Bound in this task's own context, so every event about the recording (stamina's retry
        # events, the PBX client's) carries its pbx and uniqueid.
        with structlog.contextvars.bound_contextvars(
            pbx=rec.pbx, uniqueid=rec.uniqueid, name=rec.name
        ):
            lease_s = self.cfg.state.lease_s
            if not self.ledger.claim(rec.key, self.worker, lease_s):
                log.debug("taken_elsewhere")
                return "taken_elsewhere"
            lease = Lease(self.ledger, rec.key, self.worker, lease_s)
            try:
                async with lease.renewed():
                    return await self._archive_bound(client, rec, lease)
            except LeaseLost:
                log.warning("lease_lost", hint="another worker took it over; it archives it")
                return "taken_elsewhere"
            finally:
                # Unreleased, the lease just runs out: no need to wait for the database again.
                with contextlib.suppress(StateUnavailable):
                    self.ledger.release(rec.key, self.worker)

    async def _archive_bound(self, client: PbxClient, rec: Recording, lease: Lease) -> str:
        token = work_token(rec)
        source = self.work_dir / f"{token}.src"
        mp3 = self.work_dir / f"{token}.mp3"
        started = time.monotonic()
        progress = Progress()
        try:
            stored = await self._stages(client, rec, source, mp3, lease, progress)
        except LeaseLost:
            raise
        except Interrupted:
            return "cancelled"  # by the shutdown, during a retry: taken again at the next start
        except Exception as error:
            if progress.vanished(source, mp3) or missing_work_file(error, self.work_dir):
                # Not the recording's fault: someone removed our work file. Never final.
                log.warning("work_file_vanished", error=type(error).__name__)
                return self._failed(rec, "a work file vanished during the run; taken again")
            if isinstance(error, BadAudio):
                if error.empty:
                    return await self._empty(rec, source, error.reason)
                return self._failed(rec, f"bad audio: {error.reason}", retryable=False)
            if isinstance(error, RecordingFailed):
                return self._failed(rec, error.reason, retryable=error.transient)
            # A bug or a local fault (disk full): this recording only.
            return self._failed(rec, f"unexpected {type(error).__name__}: {error}", unexpected=True)
        finally:
            source.unlink(missing_ok=True)
            mp3.unlink(missing_ok=True)
        outcome = "already_present" if stored.already_present else "archived"
        log.info(outcome, key=stored.key, seconds=round(time.monotonic() - started, 3))
        return outcome

    def _failed(
        self, rec: Recording, reason: str, *, retryable: bool = True, unexpected: bool = False
    ) -> str:
        """Record `rec` as failed with `reason` (an unexpected error with its traceback)."""
        self.ledger.fail(rec.key, reason, retryable=retryable, owner=self.worker)
        if unexpected:
            log.exception("failed", reason=reason)
        else:
            log.warning("failed", reason=reason, retryable=retryable)
        return "failed"

    async def _empty(self, rec: Recording, source: Path, reason: str) -> str:
        """Record a header-only/zero-length source as `empty`; with `on_empty = "quarantine"`
        store its original bytes first. Return the outcome (`empty`, or `failed` if the
        quarantine upload ran out of retries: retryable, so the next poll tries again)."""
        kept_at: str | None = None
        if self.cfg.transcode.on_empty == "quarantine":
            try:
                stored = await self._retry(
                    lambda: self._quarantine(rec, source, reason), "quarantine", rec.pbx
                )
            except RecordingFailed as failure:
                return self._failed(rec, failure.reason)
            except Interrupted:
                return "cancelled"
            except Exception as error:  # a local fault (unreadable file): this recording only
                name = type(error).__name__
                return self._failed(rec, f"quarantine: unexpected {name}: {error}", unexpected=True)
            kept_at = stored.key
            reason = f"{reason} (original kept at {kept_at})"
        self.ledger.mark_empty(rec.key, reason, object_key=kept_at, owner=self.worker)
        log.info("empty", reason=reason)
        return "empty"

    async def _quarantine(self, rec: Recording, source: Path, reason: str) -> StoredObject:
        def put() -> StoredObject:
            found = digests(source)
            return self.store.put_verified(
                source,
                quarantine_key(rec, self.cfg.s3.prefix),
                quarantine_metadata(rec, found, reason),
                md5_b64=found.md5_b64,
                md5_hex=found.md5_hex,
                content_type=QUARANTINE_CONTENT_TYPE,
            )

        return await asyncio.get_running_loop().run_in_executor(self._uploaders, put)

    async def _stages(
        self,
        client: PbxClient,
        rec: Recording,
        source: Path,
        mp3: Path,
        lease: Lease,
        progress: Progress,
    ) -> StoredObject:
        download = await self._retry(
            lambda: self._download_checked(client, rec, source), "download", rec.pbx
        )
        progress.downloaded = True
        self.observer.downloaded(rec.pbx, download.size_bytes)
        self.ledger.advance(
            rec.key,
            "downloaded",
            owner=self.worker,
            source_sha256=download.sha256,
            source_bytes=download.size_bytes,
        )
        result = await self._transcode(rec, source, mp3)
        progress.transcoded = True
        self.ledger.advance(
            rec.key,
            "transcoded",
            owner=self.worker,
            mp3_bytes=result.mp3_bytes,
            mp3_md5=result.md5_b64,
            audio_s=result.mp3_duration_s,
        )
        lease.check()  # the last moment to stand back without work done twice
        extra = self.extra_metadata(rec) if self.extra_metadata is not None else {}
        stored = await self._retry(
            lambda: self._upload(rec, result, download.sha256, extra), "upload", rec.pbx
        )
        # The catalogue row goes in with the verified state, in one transaction.
        entry = catalogue_entry(
            rec, object_key=stored.key, size_bytes=stored.size_bytes, metadata=extra
        )
        self.ledger.mark_verified(entry, owner=self.worker)
        self.observer.stored(
            rec.pbx,
            mp3_bytes=result.mp3_bytes,
            audio_s=result.mp3_duration_s,
            uploaded=not stored.already_present,
        )
        return stored

    async def _download_checked(self, client: PbxClient, rec: Recording, source: Path) -> Download:
        """Download `rec`. Without a Content-Length to check it against (a body delimited by the
        closed connection), its audio's own length stands in (`completeness`): a download that
        looks short by its length is fetched again at once, and taken only if the second is
        byte-identical; one whose header says it was cut, or that changed, raises a transient
        PbxError, which sends it round the retry loop."""
        download = await client.download(rec, source)
        if not download.delimited_by_close:
            return download
        short = await asyncio.to_thread(shortfall, source, float(rec.duration_s))
        if short is None:
            return download
        if short.certain:
            raise PbxError(f"download: cut short: {short.reason}", transient=True, kind="truncated")
        again = await client.download(rec, source)
        if again.sha256 != download.sha256:
            raise PbxError(f"download: cut short: {short.reason}", transient=True, kind="truncated")
        log.info("download_short_but_stable", reason=short.reason, size_bytes=again.size_bytes)
        return again

    async def _transcode(self, rec: Recording, source: Path, mp3: Path) -> TranscodeResult:
        loop = asyncio.get_running_loop()
        settings = self.cfg.transcode
        tags = id3_tags(rec)
        started = time.monotonic()
        ok = False
        try:
            if self._batcher is not None:
                batch_job = BatchJob(source, mp3, tags, float(rec.duration_s))
                result = await self._batcher.transcode(batch_job)
            else:
                job = functools.partial(
                    transcode_to_mp3,
                    source,
                    mp3,
                    ffmpeg=self.ffmpeg,
                    bitrate=settings.bitrate,
                    tags=tags,
                    engine="pydub",  # no batcher: engine = "pydub" was configured
                    timeout_s=transcode_limit_s(rec),
                )
                result = await loop.run_in_executor(self._transcoders, job)
            ok = True
            return result
        except TranscodeError as error:
            raise RecordingFailed(
                f"transcode: {error.reason}", transient=False, kind="transcode"
            ) from None
        finally:
            self.observer.stage_done("transcode", rec.pbx, time.monotonic() - started, ok=ok)

    async def _upload(
        self, rec: Recording, result: TranscodeResult, sha256: str, extra: Mapping[str, str]
    ) -> StoredObject:
        key = object_key(rec, self.cfg.s3.key_template, self.cfg.s3.prefix)
        metadata = object_metadata(rec, source_sha256=sha256, md5_b64=result.md5_b64, extra=extra)

        def put() -> StoredObject:
            return self.store.put_verified(
                result.mp3_path, key, metadata, md5_b64=result.md5_b64, md5_hex=result.md5_hex
            )

        return await asyncio.get_running_loop().run_in_executor(self._uploaders, put)

    async def _retry(self, call: Callable[[], Awaitable[T]], stage: str, pbx: str) -> T:
        """Run `call`, retrying transient PBX/S3 errors with backoff, jitter and both an attempt
        and a time cap. Raise RecordingFailed with the last reason when they run out, or
        `Interrupted` once `stop` is set: no retry starts after it, and a wait for one ends."""
        retry = self.cfg.retry
        started = time.monotonic()
        ok = False
        last_reason = "other"

        def transient(error: Exception) -> bool:
            nonlocal last_reason
            if isinstance(error, PbxError | StoreError) and error.transient:
                last_reason = retry_reason(error.kind)
                return True
            return False

        # Each retry is one `retrying` event (the stamina hook `_log_retry`) carrying these,
        # plus pbx/uniqueid bound by the caller (contextvars are per task: no mixing).
        try:
            with structlog.contextvars.bound_contextvars(stage=stage, attempts=retry.attempts):
                attempts = aiter(
                    stamina.retry_context(
                        on=transient,
                        attempts=retry.attempts,
                        timeout=retry.timeout_s,
                        wait_initial=retry.wait_initial_s,
                        wait_max=retry.wait_max_s,
                    )
                )
                failed_before = False
                while True:
                    try:
                        attempt = await self._next_attempt(attempts, stage, failed_before)
                    except StopAsyncIteration:
                        break
                    if attempt.num > 1:
                        self.observer.retrying(stage, pbx, last_reason)
                    with attempt:
                        value = await call()
                        ok = True
                        return value
                    failed_before = True  # the attempt's error was kept: the next may wait
        except (PbxError, StoreError) as error:
            raise RecordingFailed(
                f"{stage}: {error.reason}", transient=error.transient, kind=error.kind
            ) from error
        finally:
            self.observer.stage_done(stage, pbx, time.monotonic() - started, ok=ok)
        raise AssertionError("unreachable: retry_context either returns or raises")

    async def _next_attempt(
        self, attempts: AsyncIterator[stamina.Attempt], stage: str, may_wait: bool
    ) -> stamina.Attempt:
        """The next attempt from stamina. When it may first wait out a back-off (`may_wait`),
        the wait is raced against the shutdown: a set `stop` ends it with `Interrupted`."""
        stop = self._stop
        if not may_wait or stop is None or stop.is_set():
            return await anext(attempts)
        step = asyncio.ensure_future(anext(attempts))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            step.cancel()
            raise
        finally:
            stopped.cancel()
        if step.done():
            return step.result()
        step.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await step
        raise Interrupted(stage)

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    @property
    def stopping(self) -> bool:
        """True once the shutdown began (the `stop` of the current run is set)."""
        return self._stopping()
