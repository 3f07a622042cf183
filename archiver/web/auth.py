"""Sessions, CSRF tokens and login throttling for `archiver web`. In memory: a restart logs
everyone out and forgets failed attempts, which errs on the side of asking again.

- A session is a random 256-bit token in an HttpOnly, SameSite=Strict cookie; it carries the
  user's name, its own CSRF token, an expiry and the stamp of the credential it was opened with
  (a digest of the user's password hash): when the user is removed or the password changes the
  stamp no longer matches and the session ends on its next request.
- CSRF: every POST carries a `csrf_token` field equal to the session's token (after login) or to
  the pre-login cookie's (the login form itself), compared in constant time; a missing or empty
  token or cookie is a refusal, never an empty match.
- Throttling: every attempt is counted *before* its password is checked, per (user, address)
  pair and per address across users, in a sliding window. At a limit the attempt gets HTTP 429
  and costs no hash. There is no lock per user name alone, so a stranger guessing `bob` from
  other addresses never locks bob out, and no address is locked by one user's typos: an office
  behind one NAT address allows each colleague `login_max_failures` mistakes, and all of them
  together `login_max_failures_per_address`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["LoginThrottle", "Session", "Sessions", "VerifiedCache", "same_token"]

_MAX_SESSIONS: Final = 10_000
_MAX_TRACKED: Final = 50_000
_MAX_CACHED: Final = 1_000


def same_token(given: str | None, expected: str | None) -> bool:
    """Constant-time equality of a submitted token with the expected one; a missing or empty
    value on either side never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user. `expires_at_s` is monotonic seconds; `stamp` identifies the credential
    the user logged in with (see `Users.stamp`)."""

    token: str
    username: str
    csrf_token: str
    expires_at_s: float
    stamp: str


@dataclass
class Sessions:
    """Live sessions by token; expired ones are dropped when met."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _live: dict[str, Session] = field(default_factory=dict)

    def create(self, username: str, stamp: str) -> Session:
        """A new session for `username` (the oldest is dropped beyond 10,000 at once)."""
        self._drop_expired()
        if len(self._live) >= _MAX_SESSIONS:
            del self._live[next(iter(self._live))]
        session = Session(
            token=secrets.token_urlsafe(32),
            username=username,
            csrf_token=secrets.token_urlsafe(32),
            expires_at_s=self.clock() + self.ttl_s,
            stamp=stamp,
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
    """Login attempts per (user, address) pair and per address in a sliding window of
    `window_s`. `admit` counts an attempt at once (before any hash), so concurrent attempts
    cannot all slip under the limit; `succeeded` forgives the pair."""

    max_failures: int
    max_failures_per_address: int
    window_s: float
    clock: Callable[[], float] = time.monotonic
    _attempts: dict[str, deque[float]] = field(default_factory=dict)

    def admit(self, name: str, address: str) -> float:
        """0 if this attempt may check its password (and it is counted now), else the seconds
        until one may (then nothing is counted)."""
        now = self.clock()
        limits = ((_pair(name, address), self.max_failures),
                  (_address(address), self.max_failures_per_address))  # fmt: skip
        wait_s = 0.0
        for key, limit in limits:
            times = self._recent(key, now)
            if len(times) >= limit:
                wait_s = max(wait_s, times[-limit] + self.window_s - now)
        if wait_s > 0:
            return wait_s
        if len(self._attempts) >= _MAX_TRACKED:
            self._forget_old(now)
        for key, _ in limits:
            self._recent(key, now).append(now)
        return 0.0

    def succeeded(self, name: str, address: str) -> None:
        """The attempt admitted for (`name`, `address`) was right: the pair's count is forgiven
        and the address gets this attempt back."""
        self._attempts.pop(_pair(name, address), None)
        times = self._attempts.get(_address(address))
        if times:
            times.pop()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._attempts.setdefault(key, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def _forget_old(self, now: float) -> None:
        for key in list(self._attempts):
            if not self._recent(key, now):
                del self._attempts[key]
        while len(self._attempts) >= _MAX_TRACKED:
            del self._attempts[next(iter(self._attempts))]


def _pair(name: str, address: str) -> str:
    return f"pair:{name}\x00{address}"


def _address(address: str) -> str:
    return f"addr:{address}"


@dataclass
class VerifiedCache:
    """Credentials an HTTP Basic client proved recently, so a script fetching many files costs
    one hash, not one per request. Holds keyed digests, never passwords; an entry is good for
    `ttl_s` and only while the user's credential stamp is unchanged."""

    ttl_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _entries: OrderedDict[bytes, tuple[str, float]] = field(default_factory=OrderedDict)

    def _digest(self, name: str, password: str) -> bytes:
        message = name.encode() + b"\x00" + password.encode("utf-8", "replace")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def stamp_of(self, name: str, password: str) -> str | None:
        """The stamp remembered for this exact name and password, or None."""
        entry = self._entries.get(self._digest(name, password))
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def remember(self, name: str, password: str, stamp: str) -> None:
        self._entries[self._digest(name, password)] = (stamp, self.clock() + self.ttl_s)
        while len(self._entries) > _MAX_CACHED:
            self._entries.popitem(last=False)
