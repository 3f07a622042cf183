"""The state's one async face: every state call a coroutine makes runs on the state's own threads.

The tables' code (ledger, call log, catalogue) is synchronous and shared by both backends; a
coroutine never calls it directly, because a query waiting for a database that is away (a
PostgreSQL restart or failover: up to `state.outage_s` of retries) would stop the event loop,
and with it `/healthz`, the watchdog and the callback receiver. `StateThreads.run(call, ...)`
runs the call on a thread of the state's own pool and awaits it:

- SQLite: one thread. SQLite has one writer at a time anyway (`SqliteDb` holds one connection
  under a lock); one thread keeps the writes in the order the coroutines asked for them.
- PostgreSQL: as many threads as the connection pool has connections (`Db.threads`), so the
  pool, not a thread, is what a busy daemon waits for.

`run_shielded` is for the writes that must land once started (the verified state): cancelling
the caller waits for the write to end before the cancellation goes on.

It also knows whether the database answers (`problem`): a call that failed with
`StateUnavailable`, or one that has been waiting longer than `slow_s`, makes it say so until a
call succeeds; `/readyz` reports it, naming the state database. An idle daemon makes no calls
between two polls, so `watch` (run beside the daemon's HTTP server) asks the database a
trivial query whenever no call has ended for `every_s`: an outage, and its end, are seen within
that time, not at the next poll.

One `StateThreads` per `Db` (`state_threads(db)`), whoever asks: the pipeline, the callback
receiver and (later) the web share it, so SQLite keeps its one writer thread per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

from archiver.state.db import Db, StateUnavailable

__all__ = ["StateThreads", "state_threads"]

P = ParamSpec("P")
T = TypeVar("T")

# A call waiting this long means the database is not answering (a healthy query takes ms).
SLOW_S: Final = 5.0
# How long an idle state goes unasked before `watch` asks it (`SELECT 1`).
WATCH_EVERY_S: Final = 10.0


class StateThreads:
    """The state's own threads, and what they last saw of the database (see the module doc)."""

    def __init__(self, db: Db, *, slow_s: float = SLOW_S) -> None:
        self.threads = max(1, db.threads)
        self._db = weakref.ref(db)
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"state-{db.dialect}")
        self._dialect = db.dialect
        self._slow_s = slow_s
        self._ids = itertools.count()
        self._waiting: dict[int, float] = {}  # call number → when it was asked (monotonic)
        self._failure: str | None = None
        self._last_ended_s = time.monotonic()
        self._lock = threading.Lock()

    async def run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call(*args, **kwargs)` on a state thread; its result or its exception."""
        future = self._submit(call, *args, **kwargs)
        return await future

    async def run_shielded(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """As `run`, but a cancellation of the caller waits for the call to end (a write that
        must not be left in doubt), then goes on: the caller is still cancelled."""
        future = self._submit(call, *args, **kwargs)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({future})
            raise

    def problem(self) -> str | None:
        """Why the state database is not answering (None: it is): the last call failed with
        `StateUnavailable` and none has succeeded since, or a call has waited over `slow_s`."""
        now_s = time.monotonic()
        with self._lock:
            oldest = min(self._waiting.values(), default=None)
            failure = self._failure
        if failure is not None:
            return f"state database ({self._dialect}) unavailable: {failure}"
        if oldest is not None and now_s - oldest > self._slow_s:
            return f"state database ({self._dialect}) not answering for {now_s - oldest:.0f} s"
        return None

    async def watch(self, *, every_s: float = WATCH_EVERY_S) -> None:
        """Until cancelled: ask the database `SELECT 1` on a state thread whenever no call has
        ended for `every_s`, so that `problem` follows the database while nothing else asks."""
        while True:
            await asyncio.sleep(every_s)
            with self._lock:
                idle_s = time.monotonic() - self._last_ended_s
                asking = bool(self._waiting)
            db = self._db()
            if db is None:
                return
            if asking or idle_s < every_s:
                continue
            # Its failure is what `problem` reports (recorded by `_watched`); nothing to raise.
            with contextlib.suppress(Exception):
                await self.run(db.execute, "SELECT 1")

    def close(self) -> None:
        """Wait for the calls running, then stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        number = next(self._ids)
        with self._lock:
            self._waiting[number] = time.monotonic()
        job = functools.partial(self._watched, number, functools.partial(call, *args, **kwargs))
        return asyncio.get_running_loop().run_in_executor(self._pool, job)

    def _watched(self, number: int, call: Callable[[], T]) -> T:
        try:
            result = call()
        except StateUnavailable as error:
            with self._lock:
                self._failure = error.reason
            raise
        else:
            with self._lock:
                self._failure = None
            return result
        finally:
            with self._lock:
                self._waiting.pop(number, None)
                self._last_ended_s = time.monotonic()


_BY_DB: weakref.WeakKeyDictionary[Db, StateThreads] = weakref.WeakKeyDictionary()
_BY_DB_LOCK = threading.Lock()


def state_threads(db: Db) -> StateThreads:
    """The one `StateThreads` of `db` (made at first use)."""
    with _BY_DB_LOCK:
        threads = _BY_DB.get(db)
        if threads is None:
            threads = _BY_DB[db] = StateThreads(db)
        return threads
