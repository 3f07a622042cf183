"""Backfill hours: when a backfill must leave the PBX alone (`[backfill] pause_during`).

A window is "HH:MM-HH:MM" in the PBX's local time, optionally after weekdays: "Mon-Fri
08:00-19:00", "Sat,Sun 10:00-14:00" (parsed and validated with the configuration:
`archiver.config.PauseWindow`). A window whose end is not after its start runs past midnight
("22:00-06:00" ends the next morning; "00:00-00:00" is the whole day); its weekdays are those it
starts on. Inside any window a backfill starts no new recording until the window ends
(recordings already in flight finish); the live poll of `archiver run` never waits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from archiver.config import PauseWindow

__all__ = ["covering", "paused_until"]

_MAX_CHAINED = 32  # back-to-back windows followed to the end of the last (a week of dailies + 4)


def covering(window: PauseWindow, now: datetime) -> datetime | None:
    """The end of `window`'s occurrence that contains `now` (aware), or None."""
    for day in (now.date(), now.date() - timedelta(days=1)):
        if day.weekday() not in window.days:
            continue
        begins = datetime.combine(day, window.start, now.tzinfo)
        ends_day = day if window.end > window.start else day + timedelta(days=1)
        ends = datetime.combine(ends_day, window.end, now.tzinfo)
        if begins <= now < ends:
            return ends
    return None


def paused_until(windows: Sequence[PauseWindow], now: datetime) -> datetime | None:
    """If `now` (aware, the PBX's local time) is inside a window, when the pause ends,
    following windows that start where another ends; else None."""
    until: datetime | None = None
    moment = now
    for _ in range(_MAX_CHAINED):
        ends = [end for window in windows if (end := covering(window, moment)) is not None]
        if not ends:
            break
        until = moment = max(ends)
    return until
