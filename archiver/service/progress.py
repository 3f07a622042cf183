"""Progress of a one-shot command (a backfill, `run --once`), as `Observer`s.

The one way to follow progress is an `Observer` (metrics use the same events). At a terminal,
`ProgressBar` draws with tqdm: each listed day's due recordings go to the bar's total, and it
advances as each recording ends. Elsewhere (a pipe, a systemd-run unit) `ProgressLog` counts the
same and `log_progress` logs one `progress` line every few seconds, so that waiting on a PBX or
S3 that is down never looks like a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TextIO

import structlog
from tqdm import tqdm

from archiver.observe import NullObserver

__all__ = ["ProgressBar", "ProgressLog", "log_progress"]

log = structlog.get_logger("archiver")


class ProgressBar(NullObserver):
    """Draws on `stream` (a terminal); `close()` when done."""

    def __init__(self, stream: TextIO) -> None:
        self._bar = tqdm(unit="rec", desc="archiving", file=stream, total=0)

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        self._bar.total = (self._bar.total or 0) + due
        self._bar.refresh()

    def finished(self, pbx: str, outcome: str) -> None:
        self._bar.update(1)

    def paused(self, pbx: str, until: datetime) -> None:
        self._bar.set_postfix_str(f"{pbx} paused until {until:%Y-%m-%d %H:%M} (PBX time)")

    def close(self) -> None:
        self._bar.close()


class ProgressLog(NullObserver):
    """Counts the recordings planned (due) and ended, for `log_progress`."""

    def __init__(self) -> None:
        self.planned = 0
        self.done = 0
        self.started_s = time.monotonic()

    def listed(self, pbx: str, *, ok: bool, discovered: int, due: int) -> None:
        self.planned += due

    def finished(self, pbx: str, outcome: str) -> None:
        self.done += 1


@contextlib.asynccontextmanager
async def log_progress(
    progress: ProgressLog, *, every_s: float, quiet: Callable[[], bool]
) -> AsyncIterator[None]:
    """While the body runs, log `progress` (planned, done, elapsed_s) every `every_s`, except
    once `quiet()` is true (after SIGTERM only the shutdown speaks)."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            if quiet():
                return
            elapsed_s = round(time.monotonic() - progress.started_s)
            log.info("progress", planned=progress.planned, done=progress.done, elapsed_s=elapsed_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
