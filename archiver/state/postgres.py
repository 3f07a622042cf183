"""The state in PostgreSQL: a connection pool, its side of the migrations (`migrating`: the lock
and the transaction; the runner is `archiver.state.migrate`) and cross-worker PBX request slots.

Driver: psycopg 3 with psycopg_pool. Its synchronous API matches the sqlite3 one the ledger and
the call log were written against, so both backends share one set of table code and the CLI and
the web can use the state without an event loop; the one asynchronous need (waiting for a PBX
request slot) runs its few statements in a thread. asyncpg would have forced an async state
interface on every caller and a second copy of every query.

A statement that fails because the server is gone (a restart, a network cut) is retried with
backoff for up to `state.outage_s` (stamina logs each retry), then raises `StateUnavailable`.
A statement whose connection broke after the server committed it runs twice: every write here is
idempotent or harmless twice (a failure's attempt count can be one too high), except a call placed
through `archiver call` at the very moment of a cut, which can be logged twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import weakref
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final, TypeVar

import psycopg
import stamina
import structlog
from psycopg_pool import ConnectionPool, PoolTimeout

from archiver.state.db import (
    Dialect,
    Execute,
    MigrationSession,
    Param,
    Result,
    StatementTimeout,
    StateUnavailable,
)

__all__ = ["PbxSlots", "PostgresDb"]

log = structlog.get_logger(__name__)
T = TypeVar("T")

# pg_advisory_lock keys: one for migrations, and a namespace per PBX for its request slots.
_MIGRATION_LOCK: Final = 0x61726368  # "arch"
_TRANSIENT: Final = (psycopg.OperationalError, PoolTimeout)
_SLOT_POLL_S: Final = (0.02, 0.08)
_CONNECTION_WAIT_MAX_S: Final = 10.0  # the longest one attempt waits for a pooled connection
_RECONNECT_TRIES_S: Final = 6.0  # how long one reconnection sequence of the pool goes on


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    """Our `?` marks as psycopg's `%s` (a literal `%` doubled first)."""
    return sql.replace("%", "%%").replace("?", "%s")


def _retrying(outage_s: float, what: str, call: Callable[[], T]) -> T:
    """Run `call`, retrying while the server is unreachable, for up to `outage_s`."""
    try:
        for attempt in stamina.retry_context(
            on=_TRANSIENT, attempts=None, timeout=outage_s, wait_initial=0.1, wait_max=2.0
        ):
            with attempt:
                return call()
    except _TRANSIENT as error:
        reason = f"PostgreSQL unreachable for {outage_s:.0f} s ({what}): {_first_line(error)}"
        raise StateUnavailable(reason) from None
    raise AssertionError("unreachable: retry_context either returns or raises")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


class PostgresDb:
    """A pool of autocommit connections to one database."""

    def __init__(self, dsn: str, *, pool_size: int, outage_s: float) -> None:
        self.outage_s = outage_s
        self._dsn = dsn
        self._limit_s: float | None = None
        self._limited: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self.pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            open=False,
            name="archiver-state",
            # How long one attempt waits for a connection. psycopg_pool's default (30 s) let a
            # single attempt outlast the whole outage budget: a state call with outage_s = 2
            # failed after 31 s. 10 s: attempts within the budget of the default outage_s, and
            # room for a busy pool (all connections in use is not an outage).
            timeout=_CONNECTION_WAIT_MAX_S,
            # psycopg_pool reconnects with a doubling back-off (1, 2, 4... s) until it gives up:
            # after a 75 s outage its next try came ~50 s after the server was back. Giving up
            # after a few seconds ends that sequence; the next connection we ask for starts a
            # new one at once, so the pool is back within seconds of the server.
            reconnect_timeout=_RECONNECT_TRIES_S,
        )

    def open(self) -> None:
        """Open the pool and wait for its first connection. Raise StateUnavailable if the
        server cannot be reached or refuses us (the reason never holds the password)."""
        self.pool.open()
        try:
            self.pool.wait(timeout=15.0)
        except PoolTimeout:
            reason = self._connect_error()
            self.pool.close()
            raise StateUnavailable(f"cannot connect to PostgreSQL: {reason}") from None

    def _connect_error(self) -> str:
        try:
            with psycopg.connect(self._dsn, autocommit=True):
                return "the pool timed out"
        except psycopg.Error as error:
            return _first_line(error)

    @property
    def dialect(self) -> Dialect:
        return "postgresql"

    @property
    def threads(self) -> int:
        return self.pool.max_size

    def limit_statements(self, limit_s: float) -> None:
        """From now on a statement of `execute` that runs longer than `limit_s` is cancelled
        by the server (`statement_timeout`, set once per connection) and raises
        `StatementTimeout`, never retried."""
        self._limit_s = limit_s

    def execute(self, sql: str, params: Sequence[Param] = ()) -> Result:
        text = _psycopg_sql(sql)

        def run() -> Result:
            with self.pool.connection() as conn:
                if self._limit_s is not None and conn not in self._limited:
                    conn.execute(f"SET statement_timeout = {int(self._limit_s * 1000)}")
                    self._limited.add(conn)
                try:
                    cursor = conn.execute(text, params)
                except psycopg.errors.QueryCanceled:
                    if self._limit_s is None:
                        raise
                    raise StatementTimeout(self._limit_s) from None
                rows = cursor.fetchall() if cursor.description is not None else []
                return Result(rows, cursor.rowcount)

        return _retrying(self.outage_s, "statement", run)

    def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> None:
        text = _psycopg_sql(sql)

        def run() -> None:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(text, rows)

        _retrying(self.outage_s, "batch", run)

    def executescript(self, script: str) -> None:
        def run() -> None:
            with self.pool.connection() as conn, conn.transaction():
                conn.execute(script.encode())

        _retrying(self.outage_s, "script", run)

    def transaction(self, statements: Sequence[tuple[str, Sequence[Param]]]) -> list[Result]:
        prepared = [(_psycopg_sql(sql), params) for sql, params in statements]

        def run() -> list[Result]:
            results = []
            with self.pool.connection() as conn, conn.transaction():
                for text, params in prepared:
                    cursor = conn.execute(text, params)
                    rows = cursor.fetchall() if cursor.description is not None else []
                    results.append(Result(rows, cursor.rowcount))
            return results

        return _retrying(self.outage_s, "transaction", run)

    def atomic(self, work: Callable[[Execute], T], *, lock: str) -> T:
        def run() -> T:
            with self.pool.connection() as conn, conn.transaction():
                execute = _executor(conn)
                execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"archiver:{lock}",))
                return work(execute)

        return _retrying(self.outage_s, "atomic", run)

    def has_table(self, name: str) -> bool:
        row = self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).one()
        return bool(row and row[0])

    @contextlib.contextmanager
    def migrating(self) -> Iterator[MigrationSession]:
        with self.pool.connection() as conn, conn.transaction():
            # The key older archivers held as a session lock: they wait for us, and we for them.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            yield _PgSession(conn)

    def retrying(self, what: str, call: Callable[[], T]) -> T:
        """`call`, retried while the server is unreachable, for up to `outage_s`."""
        return _retrying(self.outage_s, what, call)

    def close(self) -> None:
        self.pool.close()


class _PgSession:
    """`MigrationSession` on one connection inside its open transaction."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn
        self.execute = _executor(conn)

    @property
    def dialect(self) -> Dialect:
        return "postgresql"

    def script(self, text: str) -> None:
        # As bytes: no parameter marks, so several statements (and $$ bodies) run as written.
        self._conn.execute(text.encode())


def _executor(conn: psycopg.Connection[tuple[Any, ...]]) -> Execute:
    """`Execute` over one connection (inside its open transaction)."""

    def execute(sql: str, params: Sequence[Param] = ()) -> Result:
        cursor = conn.execute(_psycopg_sql(sql), params)
        rows = cursor.fetchall() if cursor.description is not None else []
        return Result(rows, cursor.rowcount)

    return execute


class PbxSlots:
    """At most `limit` requests to one PBX at once across every worker sharing the database.

    Each slot is a session advisory lock (`pg_try_advisory_lock(pbx namespace, slot)`) held on a
    connection of its own for as long as the request runs. Chosen over a leased counter because
    PostgreSQL itself releases a dead worker's locks the moment its connection drops: a SIGKILLed
    worker never holds a PBX slot until a lease runs out. While the database is restarting the
    locks are gone too, so for those seconds the workers together may exceed the limit by the
    requests already running; new ones wait for the server.
    """

    def __init__(self, pool: ConnectionPool[Any], pbx: str, limit: int, *, outage_s: float) -> None:
        self._pool = pool
        self._limit = limit
        self._outage_s = outage_s
        # A stable signed 32-bit namespace per PBX name (advisory keys are two int4s).
        self._namespace = zlib.crc32(f"archiver.pbx:{pbx}".encode()) - 2**31

    def __call__(self) -> AbstractAsyncContextManager[None]:
        return self._held()

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        conn, slot = await self._acquire()
        try:
            yield
        finally:
            await asyncio.to_thread(self._release, conn, slot)

    async def _acquire(self) -> tuple[psycopg.Connection[Any], int]:
        while True:
            conn = await asyncio.to_thread(
                _retrying, self._outage_s, "pbx slot", lambda: self._pool.getconn()
            )
            try:
                slot = await asyncio.to_thread(
                    _retrying, self._outage_s, "pbx slot", lambda c=conn: self._try_lock(c)
                )
            except BaseException:
                self._pool.putconn(conn)
                raise
            if slot is not None:
                return conn, slot
            self._pool.putconn(conn)
            await asyncio.sleep(random.uniform(*_SLOT_POLL_S))  # noqa: S311 - jitter, not crypto

    def _try_lock(self, conn: psycopg.Connection[Any]) -> int | None:
        row = conn.execute(
            "SELECT s FROM generate_series(0, %s - 1) AS s"
            " WHERE pg_try_advisory_lock(%s, s) LIMIT 1",
            (self._limit, self._namespace),
        ).fetchone()
        return None if row is None else int(row[0])

    def _release(self, conn: psycopg.Connection[Any], slot: int) -> None:
        try:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self._namespace, slot))
        except psycopg.Error:
            pass  # the connection broke: the server dropped its locks with it
        finally:
            self._pool.putconn(conn)
