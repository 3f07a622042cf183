"""Backing off from a PBX that refuses our credentials, in the long-running daemon.

A wrong password will not fix itself between two polls, and hammering the PBX's login may lock
the account, so a refused PBX is skipped for a pause that doubles from the poll interval up to a
cap, and every pause is logged with its length. One accepted listing resets it. Per PBX: one
PBX's bad password never slows the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CredentialBackoff"]


@dataclass
class CredentialBackoff:
    """Pauses per PBX after refused credentials: `base_s * 2**n`, at most `max_s`.

    Times are monotonic seconds supplied by the caller, so tests need no clock tricks.
    """

    base_s: float
    max_s: float
    _refusals: dict[str, int] = field(default_factory=dict)
    _next_try_s: dict[str, float] = field(default_factory=dict)

    def allowed(self, pbx: str, now_s: float) -> bool:
        """True if `pbx` may be asked now (never refused, or its pause is over)."""
        return now_s >= self._next_try_s.get(pbx, float("-inf"))

    def refused(self, pbx: str, now_s: float) -> float:
        """Record one more refusal by `pbx`; return the pause in seconds before the next try.

        The first pause is twice the base, so the daemon always waits longer than a poll
        interval after a refusal.
        """
        count = self._refusals.get(pbx, 0) + 1
        self._refusals[pbx] = count
        pause_s = min(self.base_s * 2.0 ** min(count, 60), self.max_s)
        self._next_try_s[pbx] = now_s + pause_s
        return pause_s

    def refusals(self, pbx: str) -> int:
        """How many refusals in a row `pbx` has given."""
        return self._refusals.get(pbx, 0)

    def accepted(self, pbx: str) -> None:
        """`pbx` accepted our credentials: forget its refusals."""
        self._refusals.pop(pbx, None)
        self._next_try_s.pop(pbx, None)
