"""The daemon never waits on its database: state calls run on the state's own threads
(`archiver.state.aio`), so while PostgreSQL is away the event loop still answers /healthz within
a second, /readyz says 503 naming the state database, and a call-result callback is answered
(202, kept) and stored when the database is back. A real PostgreSQL server of this module's own
is stopped and started again; the SQLite side checks the thread pool's size and the shielded
write."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from support import state_config

from archiver.calls import add_callback_routes
from archiver.config import CallbacksConfig
from archiver.lab.postgres import LocalPostgres
from archiver.service import Health, Metrics, add_metrics_routes, build_http_app, start_http
from archiver.state import CallEvent, StateThreads, StateUnavailable, open_state, state_threads
from archiver.state.ledger import Ledger

TOKEN = "t" * 24
NUMBER = "903123320404"


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[LocalPostgres]:
    """A server of this module's own: the tests stop it."""
    with LocalPostgres() as server:
        yield server


async def _probe(session: aiohttp.ClientSession, url: str) -> tuple[int, str, float]:
    started = time.monotonic()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
        return response.status, await response.text(), time.monotonic() - started


async def test_postgresql_away_healthz_readyz_and_a_callback_answered_then_stored(
    own_postgres: LocalPostgres,
) -> None:
    state = open_state(state_config({"url": own_postgres.create_database(), "outage_s": 2}))
    health = Health()
    app = build_http_app(health)
    callbacks = CallbacksConfig(enabled=True, token=TOKEN)  # type: ignore[arg-type]
    add_callback_routes(app, callbacks, state.calls, state.aio)
    add_metrics_routes(app, Metrics([]), ready_window_s=60.0, state_problem=state.aio.problem)
    runner, port = await start_http(app, "127.0.0.1:0")
    base = f"http://127.0.0.1:{port}"
    session = aiohttp.ClientSession()
    try:
        status, text, _ = await _probe(session, f"{base}/readyz")
        assert status == 200, text
        own_postgres.stop()
        # What the pipeline does: a ledger read, which waits out the outage on a state thread.
        waiting = asyncio.ensure_future(state.aio.run(state.ledger.counts))
        probes = []
        callback: tuple[int, str, float] | None = None
        for tick in range(12):  # 3 s at 0.25 s: past the 2 s outage budget
            probes.append(await _probe(session, f"{base}/healthz"))
            if tick == 2:
                callback = await _probe(
                    session, f"{base}/pbx/call-result/{TOKEN}?sonuc=ANSWER&telefon={NUMBER}&son=1"
                )
            await asyncio.sleep(0.25)
        assert all(status == 200 and took < 1.0 for status, _, took in probes), probes
        assert callback is not None
        assert callback[0] == 202 and callback[1] == "kept\n" and callback[2] < 1.0, callback
        with pytest.raises(StateUnavailable):
            await waiting
        status, text, took = await _probe(session, f"{base}/readyz")
        assert status == 503 and "state database (postgresql) unavailable" in text, text
        assert took < 1.0
        own_postgres.start()
        deadline = time.monotonic() + 30
        events: list[CallEvent] = []
        while not events and time.monotonic() < deadline:
            with contextlib.suppress(StateUnavailable):  # the pool reconnects with a back-off
                events = await state.aio.run(state.calls.events)
            await asyncio.sleep(0.2)
        assert [(e.number, e.status, e.ended) for e in events] == [(NUMBER, "ANSWER", True)]
        status, text, _ = await _probe(session, f"{base}/readyz")
        assert status == 200, text
    finally:
        if own_postgres.pid is None:
            own_postgres.start()
        await session.close()
        await runner.cleanup()
        state.close()


async def test_a_slow_state_is_named_by_readyz_before_its_outage_budget_ends(
    tmp_path: Path,
) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite3")
    threads = StateThreads(ledger.db, slow_s=0.2)
    blocked = asyncio.ensure_future(threads.run(time.sleep, 0.6))
    await asyncio.sleep(0.4)
    problem = threads.problem()
    assert problem is not None and "state database (sqlite) not answering" in problem
    await blocked
    assert threads.problem() is None
    threads.close()
    ledger.close()


async def test_sqlite_has_one_state_thread_and_postgresql_as_many_as_its_pool(
    tmp_path: Path, own_postgres: LocalPostgres
) -> None:
    ledger = Ledger.open(tmp_path / "state.sqlite3")
    assert state_threads(ledger.db).threads == 1
    assert state_threads(ledger.db) is state_threads(ledger.db)  # one per database
    ledger.close()
    state = open_state(state_config({"url": own_postgres.create_database(), "pool_size": 3}))
    try:
        names = {await state.aio.run(_thread_name) for _ in range(8)}
        assert state.aio.threads >= 3 and all(n.startswith("state-postgresql") for n in names)
    finally:
        state.close()


def _thread_name() -> str:
    import threading

    return threading.current_thread().name


async def test_the_shielded_write_lands_when_its_caller_is_cancelled(tmp_path: Path) -> None:
    """A shutdown cancelling a recording's task during its verified write waits for the write:
    the ledger is never left not knowing whether it happened."""
    ledger = Ledger.open(tmp_path / "state.sqlite3")
    threads = state_threads(ledger.db)
    landed: list[int] = []

    def slow_write() -> None:
        time.sleep(0.3)
        landed.append(os.getpid())

    task = asyncio.ensure_future(threads.run_shielded(slow_write))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert landed == [os.getpid()]  # done before the cancellation went on
    ledger.close()


async def test_an_idle_state_is_watched_so_readyz_follows_the_database(
    own_postgres: LocalPostgres,
) -> None:
    """No pipeline call at all: `watch` alone finds the outage and its end."""
    state = open_state(state_config({"url": own_postgres.create_database(), "outage_s": 1}))
    watching = asyncio.ensure_future(state.aio.watch(every_s=0.3))
    try:
        await asyncio.sleep(0.8)
        assert state.aio.problem() is None
        own_postgres.stop()
        await _until(lambda: state.aio.problem() is not None, timeout_s=15)
        problem = state.aio.problem()
        assert problem is not None and "state database (postgresql)" in problem, problem
        own_postgres.start()
        await _until(lambda: state.aio.problem() is None, timeout_s=30)
        assert state.aio.problem() is None
    finally:
        if own_postgres.pid is None:
            own_postgres.start()
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        state.close()


async def _until(condition: Callable[[], bool], *, timeout_s: float) -> None:
    """Return once `condition()` holds or `timeout_s` has passed (the caller asserts)."""
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
