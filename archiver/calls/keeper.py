"""Call results on their way to the call log: written in the order they came, on the state's own
threads, and kept while the state database is away.

The PBX is not known to send a callback again (pbx-api.md documents no retry), so refusing one
while the database is away (503) could lose a call's result for good. Instead every accepted
callback is queued; one writer task stores them in order, each with the time it was received.
The receiver answers as soon as its result is stored, or after `answer_within_s` at the latest:
then with 202 ("kept"), and the writer stores it when the database answers again (every
`retry_s`). Only when `max_kept` results wait already is a callback refused with 503 and a
Retry-After, so memory stays bounded through a long outage. What is still kept when the daemon
stops (after `drain_s`) is logged one line per result (`call_result_not_stored`, with its
number, status and time) so nothing is lost silently; a kill -9 during an outage loses the kept
ones (they are in memory, not on disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Final

import structlog

from archiver.state import CallEvent, CallLog, EventKind, StateThreads, StateUnavailable

__all__ = ["KeptResult", "ResultKeeper"]

log = structlog.get_logger("archiver.callbacks")

ANSWER_WITHIN_S: Final = 0.8
MAX_KEPT: Final = 10_000
RETRY_S: Final = 1.0
DRAIN_S: Final = 5.0


@dataclass(frozen=True, slots=True)
class KeptResult:
    """One callback to store, as received."""

    number: str
    status: str
    kind: EventKind
    ended: bool
    source: str
    flags: tuple[str, ...]
    received_at: float = field(default_factory=time.time)


@dataclass
class ResultKeeper:
    """The queue of call results and the task that writes them (see the module docstring)."""

    calls: CallLog
    state: StateThreads
    answer_within_s: float = ANSWER_WITHIN_S
    max_kept: int = MAX_KEPT
    retry_s: float = RETRY_S
    drain_s: float = DRAIN_S
    _queue: asyncio.Queue[tuple[KeptResult, asyncio.Future[CallEvent]]] = field(
        init=False, default_factory=asyncio.Queue
    )
    _writer: asyncio.Task[None] | None = field(init=False, default=None)
    _waiting_since: float | None = field(init=False, default=None)

    @property
    def kept(self) -> int:
        """Results received and not yet stored."""
        return self._queue.qsize()

    def full(self) -> bool:
        return self.kept >= self.max_kept

    async def store(self, result: KeptResult) -> CallEvent | None:
        """Queue `result` and wait up to `answer_within_s` for it to be stored: its event, or
        None if it is kept for later. Raise what storing it raised (not `StateUnavailable`:
        that is waited out)."""
        self.start()
        future: asyncio.Future[CallEvent] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((result, future))
        done, _ = await asyncio.wait({future}, timeout=self.answer_within_s)
        if future in done:
            return future.result()
        future.add_done_callback(_retrieve)  # its error (if any) is logged by the writer
        return None

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="call-results")

    async def close(self) -> None:
        """Give the kept results `drain_s` to be stored, then stop; log those that were not."""
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), self.drain_s)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        while not self._queue.empty():
            result, future = self._queue.get_nowait()
            future.cancel()
            log.error(
                "call_result_not_stored",
                number=result.number,
                status=result.status,
                ended=result.ended,
                received_at=result.received_at,
                hint="the state database did not come back before the daemon stopped",
            )

    async def _write_forever(self) -> None:
        while True:
            result, future = await self._queue.get()
            try:
                event = await self._write(result, future)
                if event is not None and not future.done():
                    future.set_result(event)
            finally:
                self._queue.task_done()

    async def _write(
        self, result: KeptResult, future: asyncio.Future[CallEvent]
    ) -> CallEvent | None:
        """Store one result, waiting out an unavailable database; None if it failed for
        another reason (set on `future`, and logged)."""
        while True:
            try:
                event = await self.state.run(
                    self.calls.record_event,
                    number=result.number,
                    status=result.status,
                    kind=result.kind,
                    ended=result.ended,
                    source=result.source,
                    received_at=result.received_at,
                    flags=result.flags,
                )
            except StateUnavailable as error:
                if self._waiting_since is None:
                    self._waiting_since = time.monotonic()
                    log.warning("call_results_kept", kept=self.kept + 1, reason=error.reason)
                await asyncio.sleep(self.retry_s)
                continue
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
                log.exception(
                    "call_result_not_stored", number=result.number, status=result.status,
                    reason=reason,
                )  # fmt: skip
                if not future.done():
                    future.set_exception(error)
                return None
            if self._waiting_since is not None:
                waited_s = time.monotonic() - self._waiting_since
                log.info("call_results_stored_after_outage", waited_s=round(waited_s, 1))
                self._waiting_since = None
            _log_stored(result, event)
            return event


def _log_stored(result: KeptResult, event: CallEvent) -> None:
    log.info(
        "call_result",
        number=result.number,
        status=result.status,
        kind=result.kind,
        ended=result.ended,
        flags=list(result.flags),
        autocall_id=event.autocall_id,
        source=result.source,
        delayed_s=round(max(0.0, time.time() - result.received_at), 3),
    )


def _retrieve(future: asyncio.Future[CallEvent]) -> None:
    if not future.cancelled():
        future.exception()
