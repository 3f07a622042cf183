"""Sessions, CSRF tokens and login throttling for `archiver web`. In memory: a restart logs
everyone out and forgets failed attempts, which errs on the side of asking again.

- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; it carries the
  user's name, its own CSRF token and an expiry. Logging out deletes it.
- CSRF: every POST carries a `csrf_token` field equal to the session's token (after login) or to
  the pre-login cookie's (the login form itself), compared in constant time.
- Throttling: failed logins are counted per user name and per client address over a sliding
  window; at the limit further attempts get HTTP 429 *before* the password is checked, so a
  guesser learns nothing and costs no bcrypt work.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["LoginThrottle", "Session", "Sessions", "same_token"]

_MAX_SESSIONS: Final = 10_000
_MAX_TRACKED: Final = 50_000


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time equality of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user. `expires_at_s` is monotonic seconds."""

    token: str
    username: str
    csrf_token: str
    expires_at_s: float


@dataclass
class Sessions:
    """Live sessions by token; expired ones are dropped when met."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _live: dict[str, Session] = field(default_factory=dict)

    def create(self, username: str) -> Session:
        """A new session for `username` (the oldest is dropped beyond 10,000 at once)."""
        self._drop_expired()
        if len(self._live) >= _MAX_SESSIONS:
            del self._live[next(iter(self._live))]
        session = Session(
            token=secrets.token_urlsafe(32),
            username=username,
            csrf_token=secrets.token_urlsafe(32),
            expires_at_s=self.clock() + self.ttl_s,
        )
        self._live[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of `token`, or None (unknown, or expired: then forgotten)."""
        if not token:
            return None
        session = self._live.get(token)
        if session is None:
            return None
        if session.expires_at_s <= self.clock():
            del self._live[token]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._live.pop(token, None)

    def _drop_expired(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._live.items() if s.expires_at_s <= now]:
            del self._live[token]


@dataclass
class LoginThrottle:
    """Failed logins per key (`user:NAME`, `addr:IP`) in a sliding window of `window_s`."""

    max_failures: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after_s(self, *keys: str) -> float:
        """0 if every key may try now, else the seconds until the first of them may."""
        now = self.clock()
        wait_s = 0.0
        for key in keys:
            times = self._recent(key, now)
            if len(times) >= self.max_failures:
                wait_s = max(wait_s, times[0] + self.window_s - now)
        return wait_s

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self._failures) >= _MAX_TRACKED:
            self._forget_old(now)
        for key in keys:
            self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        """Forget `key`'s failures (the user's; an address keeps its count)."""
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def _forget_old(self, now: float) -> None:
        for key in list(self._failures):
            if not self._recent(key, now):
                del self._failures[key]
        while len(self._failures) >= _MAX_TRACKED:
            del self._failures[next(iter(self._failures))]
