"""How hard archiver leans on one PBX: requests in flight (adaptive) and download bandwidth.

The PBX is a small appliance whose CPU and uplink also carry the company's live calls. Two
controls, one instance of each per PBX per process, shared by every request to that PBX (the
live poll's listings and downloads and a backfill's alike):

- `AdaptiveLimit`: at most `limit` requests in flight, where `limit` moves between 1 and
  `max_concurrent_requests` by AIMD (as TCP's congestion window does) on the PBX's *answer
  time*: the time from sending a request to its response headers, which a busy PBX stretches
  and a large body or our own bandwidth cap does not. An answer much slower than the quiet
  baseline (the fastest recent answer of that kind of request) multiplies the limit by
  `_DECREASE` (0.5), at most once per round of requests; an answer at the baseline while the limit
  was in full use adds 1/limit (one request per round trip). So the limit settles near the
  concurrency where the PBX starts queueing (its knee) instead of at the configured maximum.
- `Bandwidth`: a cap on body bytes per second (`pbx.max_download_kbps`), a leaky bucket from
  `aiolimiter`: every chunk read waits for its share, so the PBX's uplink sees our average
  rate, not bursts (the TCP window closes while we wait). aiolimiter's bucket is FIFO-fair
  between waiting tasks, cancellation-safe and well kept; the bucket holds a quarter second's
  worth (`_BURST_S`), so any measured window of 30 s is within 1 % of the cap. A chunk must not
  exceed the bucket: `chunk_bytes` says how much to read at a time. Under a cap the sockets get
  a receive buffer of one chunk, or the kernel's window (autotuned up to megabytes) would let
  the PBX send that much past the cap at the start of each download.

Several processes (several workers on a shared state, or `archiver run` beside `archiver
backfill`) each have their own: the adaptive limits compose by themselves (each backs off when
the one PBX they share answers slowly, as TCP flows share a link), while the bandwidth caps add
up; a cross-process limit (the state's request slots) is entered inside this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiolimiter import AsyncLimiter

__all__ = ["AdaptiveLimit", "Answer", "Bandwidth"]

# Multiplicative decrease on a slow answer, at most once per round of requests (as TCP Reno
# halves its window): from 16 to the knee of a small box in three or four rounds.
_DECREASE = 0.5
# An answer is slow when it takes more than `_SLOW_RATIO` times the baseline and at least
# `_SLOW_MARGIN_S` more: the margin keeps a few ms of scheduling noise on a fast local PBX (or
# a loaded host) from reading as congestion. With N requests worked on at once, the answer
# time passes 1.5x at about 1.5 N in flight, so the limit swings between ~N and ~1.5 N.
_SLOW_RATIO = 1.5
_SLOW_MARGIN_S = 0.1
# The baseline is the fastest answer of the last `_BASELINE_WINDOW_S` (kept as one minimum per
# `_BASELINE_BUCKET_S`), as BBR keeps its minimum RTT: a PBX that became slower for good (a
# bigger day to list, another network path) gets a new baseline within the window, and while
# it is congested the decreases bring quiet answers that hold the baseline down.
_BASELINE_WINDOW_S = 120.0
_BASELINE_BUCKET_S = 10.0
# The bandwidth bucket's size in seconds at the cap: the most sent at once after a pause.
_BURST_S = 0.25
_AIOHTTP_READ_BUFFER_BYTES = 2**16  # aiohttp's own default read_bufsize
# Below this the kernel's window makes TCP stall on its own acknowledgements.
_MIN_RECEIVE_BUFFER_BYTES = 16 * 1024


@dataclass
class Answer:
    """One request's slot: call `answered()` when the response headers arrive."""

    limit: AdaptiveLimit
    kind: str
    started_s: float
    full: bool  # the limit was in full use when this request started
    done: bool = False

    def sending(self) -> None:
        """The request goes out now: the answer time starts here, so a wait between taking
        the slot and sending (a limit shared with other processes) is not counted."""
        self.started_s = self.limit.clock()

    def answered(self) -> None:
        """The PBX answered (headers in): feed the answer time to the limit, once."""
        if not self.done:
            self.done = True
            self.limit.observe(self)


@dataclass
class AdaptiveLimit:
    """At most `permits` requests in flight, AIMD-adjusted on answer times (see the module)."""

    max_limit: int
    clock: Callable[[], float] = time.monotonic
    limit: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    _minima: dict[str, deque[tuple[float, float]]] = field(default_factory=dict, init=False)
    decreases: int = field(default=0, init=False)
    adaptive: bool = field(default=True, init=False)
    _last_decrease_s: float = field(default=float("-inf"), init=False)
    _waiters: deque[asyncio.Future[None]] = field(default_factory=deque, init=False)

    def __post_init__(self) -> None:
        self.limit = float(self.max_limit)

    @property
    def permits(self) -> int:
        """Requests allowed in flight now: the limit rounded down, at least 1."""
        return max(1, int(self.limit))

    @contextlib.asynccontextmanager
    async def slot(self, kind: str) -> AsyncIterator[Answer]:
        """Wait for a free slot, hold it for the request, free it. `kind` groups requests
        whose answer times are comparable (a listing, a download)."""
        await self._acquire()
        answer = Answer(self, kind, self.clock(), full=self.in_flight >= self.permits)
        try:
            yield answer
        finally:
            self.in_flight -= 1
            self._wake()

    def freeze(self) -> None:
        """Keep the limit at `max_limit` whatever the answer times (adaptive_concurrency off)."""
        self.adaptive = False
        self.limit = float(self.max_limit)

    def observe(self, answer: Answer) -> None:
        """AIMD step for one answer (called by `Answer.answered`)."""
        if not self.adaptive:
            return
        now_s = self.clock()
        took_s = now_s - answer.started_s
        baseline_s = self._baseline(answer.kind, now_s, took_s)
        slow = took_s > _SLOW_RATIO * baseline_s and took_s - baseline_s > _SLOW_MARGIN_S
        if slow:
            # Answers to requests sent before the last decrease describe the old limit.
            if answer.started_s >= self._last_decrease_s:
                self.limit = max(1.0, self.limit * _DECREASE)
                self._last_decrease_s = now_s
                self.decreases += 1
        elif answer.full:
            self.limit = min(float(self.max_limit), self.limit + 1 / self.limit)
            self._wake()

    def baseline_s(self, kind: str) -> float | None:
        """The quiet answer time of `kind` (the fastest in the window), None before any."""
        minima = self._minima.get(kind)
        return min(took for _, took in minima) if minima else None

    def _baseline(self, kind: str, now_s: float, took_s: float) -> float:
        """Record one answer time of `kind`; return the baseline including it."""
        minima = self._minima.setdefault(kind, deque())
        bucket_s = now_s - now_s % _BASELINE_BUCKET_S
        if minima and minima[-1][0] == bucket_s:
            minima[-1] = (bucket_s, min(minima[-1][1], took_s))
        else:
            minima.append((bucket_s, took_s))
        while minima[0][0] < now_s - _BASELINE_WINDOW_S:
            minima.popleft()
        return min(took for _, took in minima)

    async def _acquire(self) -> None:
        if self.in_flight < self.permits and not self._waiters:
            self.in_flight += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted, then cancelled before use: give it back
                self._wake()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.permits:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)


class Bandwidth:
    """A cap on body bytes per second, or no cap (`kbps` None). See the module docstring."""

    def __init__(self, kbps: float | None, *, max_chunk_bytes: int) -> None:
        self.kbps = kbps
        if kbps is None:
            self._bucket: AsyncLimiter | None = None
            self.chunk_bytes = max_chunk_bytes
            return
        burst_bytes = kbps * 1000 / 8 * _BURST_S
        self._bucket = AsyncLimiter(burst_bytes, time_period=_BURST_S)
        # aiolimiter refuses an amount larger than its bucket.
        self.chunk_bytes = max(1, min(max_chunk_bytes, int(burst_bytes)))

    def socket_factory(self) -> SocketFactoryType | None:
        """For aiohttp's connector: sockets with a receive buffer of `chunk_bytes` under a cap
        (None: the default sockets)."""
        if self._bucket is None:
            return None
        receive_bytes = max(_MIN_RECEIVE_BUFFER_BYTES, self.chunk_bytes)

        def make(addr_info: AddrInfoType) -> socket.socket:
            family, kind, proto, _, _ = addr_info
            sock = socket.socket(family=family, type=kind, proto=proto)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_bytes)
            return sock

        return make

    @property
    def read_buffer_bytes(self) -> int:
        """aiohttp's read buffer per connection: one chunk under a cap, its default else."""
        return self.chunk_bytes if self._bucket is not None else _AIOHTTP_READ_BUFFER_BYTES

    async def take(self, size_bytes: int) -> None:
        """Wait until `size_bytes` fit under the cap (in pieces of at most `chunk_bytes`: the
        bucket refuses more at once)."""
        if self._bucket is None:
            return
        for offset in range(0, size_bytes, self.chunk_bytes):
            await self._bucket.acquire(min(self.chunk_bytes, size_bytes - offset))
