"""One recording's stages: claim → download → transcode → store → record, each transient error
retried, each outcome written to the ledger with its reason.

`RecordingWork.archive` never raises for a recording's own problems: it returns the `Outcome`.
Every ledger write runs on the state's own threads (`StateThreads`), never on the event loop;
the one that marks a recording verified is shielded, so a shutdown cannot leave it in doubt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from archiver import cpu_budget
from archiver.config import Config
from archiver.names import Recording
from archiver.observe import Observer, Outcome, failure_reason
from archiver.pbx import Download, PbxClient, PbxError
from archiver.pipeline.completeness import shortfall
from archiver.pipeline.lease import Lease, LeaseLost
from archiver.pipeline.quarantine import digests, quarantine_metadata
from archiver.pipeline.retries import Interrupted, RecordingFailed, Retrier
from archiver.pipeline.transcode import BadAudio, TranscodeError, TranscodeResult
from archiver.pipeline.work import Progress, missing_work_file, work_token
from archiver.pipeline.workers import Workers
from archiver.retention import upload_lock
from archiver.s3 import (
    QUARANTINE_CONTENT_TYPE,
    ObjectLock,
    S3Store,
    StoredObject,
    object_key,
    object_metadata,
    quarantine_key,
)
from archiver.state import Holds, Ledger, StateThreads, StateUnavailable, catalogue_entry

__all__ = ["RecordingWork"]

log = structlog.get_logger("archiver.pipeline.daemon")

# Extra S3 metadata for a recording (the dial status of a call placed through archiver).
ExtraMetadata = Callable[[Recording], Mapping[str, str]]


@dataclass(frozen=True)
class RecordingWork:
    """What archiving one recording needs, for one run (`retry` carries the run's shutdown)."""

    cfg: Config
    ledger: Ledger
    state: StateThreads
    store: S3Store
    workers: Workers
    work_dir: Path
    worker: str  # this process's name in the leases
    observer: Observer
    retry: Retrier
    extra_metadata: ExtraMetadata | None = None

    async def archive(self, client: PbxClient, rec: Recording) -> Outcome:
        """Archive one recording; return its outcome. Raise `StateUnavailable` if the ledger
        could not be written (nothing was recorded: the next poll takes it again)."""
        # Bound in this task's own context, so every event about the recording (stamina's retry
        # events, the PBX client's) carries its pbx and uniqueid.
        with structlog.contextvars.bound_contextvars(
            pbx=rec.pbx, uniqueid=rec.uniqueid, name=rec.name
        ):
            lease_s = self.cfg.state.lease_s
            if not await self.state.run(self.ledger.claim, rec.key, self.worker, lease_s):
                log.debug("taken_elsewhere")
                return Outcome.TAKEN_ELSEWHERE
            lease = Lease(self.ledger, self.state, rec.key, self.worker, lease_s)
            try:
                async with lease.renewed():
                    return await self._archive_leased(client, rec, lease)
            except LeaseLost:
                log.warning("lease_lost", hint="another worker took it over; it archives it")
                return Outcome.TAKEN_ELSEWHERE
            finally:
                # Unreleased, the lease just runs out: no need to wait for the database again.
                with contextlib.suppress(StateUnavailable):
                    await self.state.run(self.ledger.release, rec.key, self.worker)

    async def _archive_leased(self, client: PbxClient, rec: Recording, lease: Lease) -> Outcome:
        token = work_token(rec)
        source = self.work_dir / f"{token}.src"
        mp3 = self.work_dir / f"{token}.mp3"
        started = time.monotonic()
        progress = Progress()
        try:
            stored = await self._stages(client, rec, source, mp3, lease, progress)
        except (LeaseLost, StateUnavailable):
            raise
        except Interrupted:
            return Outcome.CANCELLED  # by the shutdown, during a retry: taken at the next start
        except Exception as error:
            return await self._after_error(rec, error, source, mp3, progress)
        finally:
            source.unlink(missing_ok=True)
            mp3.unlink(missing_ok=True)
        outcome = Outcome.ALREADY_PRESENT if stored.already_present else Outcome.ARCHIVED
        log.info(outcome.value, key=stored.key, seconds=round(time.monotonic() - started, 3))
        return outcome

    async def _after_error(
        self, rec: Recording, error: Exception, source: Path, mp3: Path, progress: Progress
    ) -> Outcome:
        """The outcome of a stage's error, recorded in the ledger."""
        if progress.vanished(source, mp3) or missing_work_file(error, self.work_dir):
            # Not the recording's fault: someone removed our work file. Never final.
            log.warning("work_file_vanished", error=type(error).__name__)
            return await self._failed(
                rec, "a work file vanished during the run; taken again", kind="work_file_vanished"
            )
        if isinstance(error, BadAudio):
            if error.empty:
                return await self._empty(rec, source, error.reason)
            return await self._failed(
                rec, f"bad audio: {error.reason}", kind="bad_audio", retryable=False
            )
        if isinstance(error, RecordingFailed):
            return await self._failed(rec, error.reason, kind=error.kind, retryable=error.transient)
        # A bug or a local fault (disk full): this recording only.
        reason = f"unexpected {type(error).__name__}: {error}"
        return await self._failed(rec, reason, kind="unexpected", unexpected=True)

    async def _failed(
        self,
        rec: Recording,
        reason: str,
        *,
        kind: str,
        retryable: bool = True,
        unexpected: bool = False,
    ) -> Outcome:
        """Record `rec` as failed with `reason` (an unexpected error with its traceback);
        `kind` (an error kind or one of `FAILURE_REASONS`) labels the failure metric."""
        await self.state.run(
            self.ledger.fail, rec.key, reason, retryable=retryable, owner=self.worker
        )
        self.observer.failed(rec.pbx, failure_reason(kind), for_good=not retryable)
        if unexpected:
            log.exception("failed", reason=reason)
        else:
            log.warning("failed", reason=reason, retryable=retryable)
        return Outcome.FAILED

    async def _empty(self, rec: Recording, source: Path, reason: str) -> Outcome:
        """Record a header-only/zero-length source as `empty`; with `on_empty = "quarantine"`
        store its original bytes first. Return the outcome (`empty`, or `failed` if the
        quarantine upload ran out of retries: retryable, so the next poll tries again)."""
        kept_at: str | None = None
        if self.cfg.transcode.on_empty == "quarantine":
            try:
                stored = await self.retry(
                    lambda: self._quarantine(rec, source, reason), "quarantine", rec.pbx
                )
            except RecordingFailed as failure:
                return await self._failed(rec, failure.reason, kind=failure.kind)
            except Interrupted:
                return Outcome.CANCELLED
            except Exception as error:  # a local fault (unreadable file): this recording only
                name = type(error).__name__
                why = f"quarantine: unexpected {name}: {error}"
                return await self._failed(rec, why, kind="unexpected", unexpected=True)
            kept_at = stored.key
            reason = f"{reason} (original kept at {kept_at})"
        await self.state.run(
            self.ledger.mark_empty, rec.key, reason, object_key=kept_at, owner=self.worker
        )
        log.info("empty", reason=reason)
        return Outcome.EMPTY

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

        return await self.workers.upload(put)

    async def _stages(
        self,
        client: PbxClient,
        rec: Recording,
        source: Path,
        mp3: Path,
        lease: Lease,
        progress: Progress,
    ) -> StoredObject:
        cpu_budget.mark("download")
        download = await self.retry(
            lambda: self._download_checked(client, rec, source), "download", rec.pbx
        )
        progress.downloaded = True
        self.observer.downloaded(rec.pbx, download.size_bytes)
        await self.state.run(
            self.ledger.advance,
            rec.key,
            "downloaded",
            owner=self.worker,
            source_sha256=download.sha256,
            source_bytes=download.size_bytes,
        )
        cpu_budget.mark("transcode")
        result = await self._transcode(rec, source, mp3)
        progress.transcoded = True
        await self.state.run(
            self.ledger.advance,
            rec.key,
            "transcoded",
            owner=self.worker,
            mp3_bytes=result.mp3_bytes,
            mp3_md5=result.md5_b64,
            audio_s=result.mp3_duration_s,
        )
        await lease.check()  # the last moment to stand back without work done twice
        cpu_budget.mark("upload")
        extra = await self._extra_metadata(rec)
        lock = await self._lock(rec)
        stored = await self.retry(
            lambda: self._upload(rec, result, download.sha256, extra, lock), "upload", rec.pbx
        )
        # The catalogue row goes in with the verified state, in one transaction; once asked
        # for, the write is waited for even through a shutdown's cancellation.
        entry = catalogue_entry(
            rec, object_key=stored.key, size_bytes=stored.size_bytes, metadata=extra
        )
        await self.state.run_shielded(self.ledger.mark_verified, entry, owner=self.worker)
        self.observer.stored(
            rec.pbx,
            mp3_bytes=result.mp3_bytes,
            audio_s=result.mp3_duration_s,
            uploaded=not stored.already_present,
        )
        return stored

    async def _lock(self, rec: Recording) -> ObjectLock | None:
        """The Object Lock the upload carries ([s3] retain_days; a legal hold when a hold
        covers the recording and [s3] object_lock is on: archiver.retention.lock)."""
        if not self.cfg.s3.uses_object_lock:
            return None
        key = object_key(rec, self.cfg.s3.key_template, self.cfg.s3.prefix)
        return await self.state.run(upload_lock, self.cfg.s3, rec, key, Holds(self.ledger.db))

    async def _extra_metadata(self, rec: Recording) -> Mapping[str, str]:
        if self.extra_metadata is None:
            return {}
        return await self.state.run(self.extra_metadata, rec)

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
        started = time.monotonic()
        ok = False
        try:
            result = await self.workers.transcode(rec, source, mp3)
            ok = True
            return result
        except TranscodeError as error:
            raise RecordingFailed(
                f"transcode: {error.reason}", transient=False, kind="transcode"
            ) from None
        finally:
            self.observer.stage_done("transcode", rec.pbx, time.monotonic() - started, ok=ok)

    async def _upload(
        self,
        rec: Recording,
        result: TranscodeResult,
        sha256: str,
        extra: Mapping[str, str],
        lock: ObjectLock | None = None,
    ) -> StoredObject:
        key = object_key(rec, self.cfg.s3.key_template, self.cfg.s3.prefix)
        metadata = object_metadata(rec, source_sha256=sha256, md5_b64=result.md5_b64, extra=extra)

        def put() -> StoredObject:
            return self.store.put_verified(
                result.mp3_path,
                key,
                metadata,
                md5_b64=result.md5_b64,
                md5_hex=result.md5_hex,
                lock=lock,
            )

        return await self.workers.upload(put)
