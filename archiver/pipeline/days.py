"""Which days to poll, and whether a listed recording is due now."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from archiver.names import Recording
from archiver.state import FINAL_STATES, LedgerEntry

__all__ = ["days_to_poll", "is_due"]


def days_to_poll(now: datetime, tz: ZoneInfo, lookback_days: int) -> list[date]:
    """Today in the PBX's time zone, then the `lookback_days` days before it."""
    today = now.astimezone(tz).date()
    return [today - timedelta(days=offset) for offset in range(lookback_days + 1)]


def is_due(
    rec: Recording, entry: LedgerEntry | None, *, now: datetime, settle_s: float, max_attempts: int
) -> bool | None:
    """True if `rec` should be archived now; None if not yet settled; False if it never needs to
    be (already final, or failed for good)."""
    if entry is not None:
        if entry.state in FINAL_STATES:
            return False
        if entry.state == "failed" and (not entry.retryable or entry.attempts >= max_attempts):
            return False
    if rec.ended_at + timedelta(seconds=settle_s) > now:
        return None
    return True
