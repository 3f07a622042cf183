"""Admission limits for expensive requests (zips, searches): at most `per_user` at once for one
user and `total` for everyone. A request beyond a limit is refused at once with the seconds to
wait, never queued, so a user cannot line up work that stalls the others."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["LimitReached", "PerUserLimit"]


class LimitReached(Exception):
    """Refused: `scope` is "user" (this user's limit) or "total" (everyone's)."""

    def __init__(self, scope: str) -> None:
        super().__init__(scope)
        self.scope = scope


@dataclass
class PerUserLimit:
    """Counts of requests running, per user and in total. Used from the event loop only."""

    per_user: int
    total: int
    _running: dict[str, int] = field(default_factory=dict)

    @property
    def running(self) -> int:
        return sum(self._running.values())

    @contextlib.contextmanager
    def slot(self, user: str) -> Iterator[None]:
        """Hold one slot for `user` while inside; raise `LimitReached` if none is free."""
        mine = self._running.get(user, 0)
        if mine >= self.per_user:
            raise LimitReached("user")
        if self.running >= self.total:
            raise LimitReached("total")
        self._running[user] = mine + 1
        try:
            yield
        finally:
            left = self._running[user] - 1
            if left:
                self._running[user] = left
            else:
                del self._running[user]
