"""Password checks take their turn fairly: a few hash threads, and the checks waiting for them
served round-robin by client address, at most `per_source` waiting from one address. A brute
force from twenty addresses then delays a colleague's login by one check per attacking address
at worst (not by the whole queue the attackers filled), and one address can never queue more
than its share."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

__all__ = ["HASH_SOURCE", "FairQueue"]

# The client address a check is made for (set by the login flow around `check_password`).
HASH_SOURCE: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("hash_source", default="?")


@dataclass
class FairQueue:
    """`slots` checks at once; the rest wait in one line per source, served in turn. Used from
    the event loop only."""

    slots: int
    per_source: int
    _free: int = field(init=False)
    _waiting: OrderedDict[str, deque[asyncio.Future[None]]] = field(default_factory=OrderedDict)
    _held: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._free = self.slots

    def full(self, source: str) -> bool:
        """True if `source` already has its share of checks waiting or running."""
        return self._held[source] >= self.per_source

    @property
    def waiting(self) -> int:
        return sum(len(line) for line in self._waiting.values())

    @contextlib.asynccontextmanager
    async def slot(self, source: str) -> AsyncIterator[None]:
        """Hold one of the slots while inside, after the checks ahead in the round-robin."""
        self._held[source] += 1
        try:
            await self._acquire(source)
            try:
                yield
            finally:
                self._release()
        finally:
            self._held[source] -= 1
            if not self._held[source]:
                del self._held[source]

    async def _acquire(self, source: str) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(source, deque()).append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release()  # our turn came as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            source, line = next(iter(self._waiting.items()))
            turn = line.popleft()
            if line:
                self._waiting.move_to_end(source)
            else:
                del self._waiting[source]
            if not turn.done():
                turn.set_result(None)
                return
        self._free += 1
