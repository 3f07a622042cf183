"""Retries of one stage: transient PBX/S3 errors are tried again with backoff and jitter, within
[retry]'s attempt and time caps, and never after the shutdown began (`Retrier`); what ends a
recording (`RecordingFailed`) and what only interrupts it (`Interrupted`). The `retrying` log
line is stamina's hook, installed by the commands that archive (`install_retry_log`), not as a
side effect of importing this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import stamina
import stamina.instrumentation
import structlog
from stamina.instrumentation import RetryDetails

from archiver.config import RetryConfig
from archiver.errors import ArchiverError
from archiver.observe import Observer, retry_reason
from archiver.pbx import PbxError
from archiver.s3 import StoreError

__all__ = ["Interrupted", "RecordingFailed", "Retrier", "install_retry_log"]

log = structlog.get_logger("archiver.pipeline.daemon")
T = TypeVar("T")


class RecordingFailed(ArchiverError):
    """One recording could not be archived (see `ArchiverError`); `reason` names the stage."""


class Interrupted(Exception):
    """A stage was cut short by the shutdown (SIGTERM): not the recording's failure. Its ledger
    state stays as it was, so the next start takes it again."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"{stage}: interrupted by the shutdown")
        self.stage = stage


def _log_retry(details: RetryDetails) -> None:
    """stamina's retry hook: one `retrying` line per retry, just before its wait: what failed
    (`reason`, the sanitised error), where (`stage`, `pbx`, `uniqueid`, bound by the caller),
    which attempt (`attempt` of `attempts`) and when the next one starts."""
    error = details.caused_by
    log.warning(
        "retrying",
        reason=getattr(error, "reason", type(error).__name__),
        attempt=details.retry_num,
        next_attempt_in_s=round(details.wait_for, 2),
    )


def install_retry_log() -> None:
    """Make each retry one `retrying` line (`_log_retry`). Replaces stamina's default hooks: its
    structlog one logs `callable`, `args` and `kwargs` (`<context block>`, [], {}), its
    Prometheus one a global registry we never serve. Idempotent."""
    stamina.instrumentation.set_on_retry_hooks([_log_retry])


@dataclass(frozen=True)
class Retrier:
    """Retries the stages of one run: `settings` caps them, `observer` hears of each retry and
    each stage's time, and `stop` (the run's shutdown) ends them: no retry starts after it is
    set, and a back-off wait in progress ends with `Interrupted`."""

    settings: RetryConfig
    observer: Observer
    stop: asyncio.Event

    async def __call__(self, call: Callable[[], Awaitable[T]], stage: str, pbx: str) -> T:
        """Run `call`, retrying transient PBX/S3 errors. Raise RecordingFailed with the last
        reason when the caps are reached, or `Interrupted` once `stop` is set."""
        retry = self.settings
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
        stop = self.stop
        if not may_wait or stop.is_set():
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
