"""What one poll or backfill did: `PollReport`, the counts the runner logs and the exit code
reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from archiver.observe import Outcome

__all__ = ["Outcome", "PollReport"]


@dataclass
class PollReport:
    """What one poll (or backfill) did, summed over PBXs and days.

    Every recording that became due ends in exactly one of archived, already_present, failed,
    empty, taken_elsewhere, deferred or cancelled (cut off by a forced shutdown); `unfinished`
    counts the due ones that did not end (cancelled, or never started because a stop was asked
    for). `interrupted` is set by the runner when a signal stopped the work before it was done.
    """

    days_planned: int = 0
    days_listed: int = 0  # listing attempted (a failed one is also in listing_errors)
    listed: int = 0
    invalid: int = 0
    due: int = 0
    unsettled: int = 0
    archived: int = 0
    already_present: int = 0
    failed: int = 0
    empty: int = 0
    taken_elsewhere: int = 0  # another worker sharing the state held or finished it
    deferred: int = 0  # the state database was unreachable; the next poll takes it again
    cancelled: int = 0
    interrupted: bool = False
    listing_errors: list[str] = field(default_factory=list)
    auth_refused: list[str] = field(default_factory=list)  # PBX names that refused us
    backing_off: list[str] = field(default_factory=list)  # PBX names skipped this poll

    def add(self, outcome: Outcome) -> None:
        """Count one recording's `outcome`."""
        match outcome:
            case Outcome.ARCHIVED:
                self.archived += 1
            case Outcome.ALREADY_PRESENT:
                self.already_present += 1
            case Outcome.FAILED:
                self.failed += 1
            case Outcome.EMPTY:
                self.empty += 1
            case Outcome.TAKEN_ELSEWHERE:
                self.taken_elsewhere += 1
            case Outcome.DEFERRED:
                self.deferred += 1
            case Outcome.CANCELLED:
                self.cancelled += 1

    @property
    def unfinished(self) -> int:
        """Due recordings that did not end in an outcome (cancelled, or never started)."""
        ended = self.archived + self.already_present + self.failed + self.empty
        return self.due - ended - self.taken_elsewhere - self.deferred

    @property
    def days_not_listed(self) -> int:
        return self.days_planned - self.days_listed

    def summary(self) -> dict[str, Any]:
        """The report as log fields (listing errors counted, not listed)."""
        fields = asdict(self)
        fields["listing_errors"] = len(self.listing_errors)
        return fields
